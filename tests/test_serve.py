"""`bodycam serve` as an operator runs it: TLS when configured, a clear error when not right."""

from __future__ import annotations

import asyncio
import base64
import datetime
import ipaddress
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bodycam.cli import main
from bodycam.errors import ConfigError
from bodycam.evidence.keyring import Keyring
from bodycam.gateway.app import create_app
from bodycam.store import open_store

from .helpers import (
    REDIS_URL,
    free_port,
    make_config,
    require_redis,
    serve_process,
    start_gateway,
)


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def serve(tmp_path: Path, *args: str) -> list[str]:
    """The command line of `bodycam serve` with a data directory in the test's folder."""
    return [sys.executable, "-m", "bodycam", "serve", "--data-dir", str(tmp_path / "data"), *args]


async def test_serve_over_tls(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    port = free_port()
    config = tmp_path / "bodycam.toml"
    config.write_text(f'[server]\nport = {port}\ntls_cert = "{cert}"\ntls_key = "{key}"\n')
    process = await asyncio.create_subprocess_exec(
        *serve(tmp_path, "--config", str(config)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    context = ssl.create_default_context(cafile=str(cert))
    try:
        deadline = time.monotonic() + 20
        async with aiohttp.ClientSession() as http:
            while True:
                try:
                    async with http.get(
                        f"https://127.0.0.1:{port}/healthz", ssl=context
                    ) as response:
                        assert response.status == 200
                        break
                except aiohttp.ClientConnectorError:
                    assert process.returncode is None, "gateway exited"
                    assert time.monotonic() < deadline, "no TLS answer in 20 s"
                    await asyncio.sleep(0.1)
            # plain HTTP on the TLS port is not served
            try:
                async with http.get(f"http://127.0.0.1:{port}/healthz") as plain:
                    assert plain.status >= 400
            except aiohttp.ClientError:
                pass
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 20)


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ('[server]\ntls_cert = "/nope.pem"\n', ["server.tls_cert", "together"]),
        ('[ice]\naddresses = ["192.0.2.77"]\n', ["ice.addresses", "matches no local address"]),
        ("[recording]\nsegment_seconds = 0\n", ["recording.segment_seconds"]),
    ],
)
def test_serve_refuses_bad_configuration(tmp_path: Path, toml: str, expected: list[str]) -> None:
    config = tmp_path / "bodycam.toml"
    config.write_text(toml)
    command = serve(tmp_path, "--config", str(config))
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    for words in expected:
        assert words in done.stderr


def test_serve_says_when_its_port_is_taken(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = subprocess.run(
            serve(tmp_path, "--port", str(port)),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr


def check_lines(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, str]]:
    """`bodycam serve --check`: its exit status, and each check's line by name."""
    status = main(["serve", "--check", *args])
    lines = capsys.readouterr().out.splitlines()
    return status, {line[6:18].strip(): line for line in lines}


def test_serve_check_names_what_a_cluster_node_reaches(
    tmp_path: Path, postgres_url: str, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    require_redis()
    monkeypatch.setenv("BODYCAM_STORE_URL", postgres_url)
    monkeypatch.setenv("BODYCAM_NODE_ID", "gw-1")
    port = free_port()
    status, lines = check_lines(
        capsys, "--data-dir", str(tmp_path / "data"), "--redis", REDIS_URL, "--port", str(port)
    )
    assert status == 0, lines
    assert lines["store"].startswith("ok")
    assert "schema version 0, migrated to" in lines["store"]  # not migrated by the check
    assert lines["redis"].startswith("ok    redis        Redis ")
    assert lines["master key"].startswith("warn")  # the first node makes it: copy it
    assert "every other node needs a copy" in lines["master key"]
    assert lines["listen"] == f"ok    listen       127.0.0.1:{port} is free"
    assert not (tmp_path / "data").exists()  # nothing made


def test_serve_check_fails_on_what_cannot_be_reached(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    down = free_port()
    monkeypatch.setenv("BODYCAM_STORE_URL", f"postgresql://bodycam:secret@127.0.0.1:{down}/x")
    monkeypatch.setenv("BODYCAM_SERVER_TLS_CERT", str(tmp_path / "missing.pem"))
    monkeypatch.setenv("BODYCAM_SERVER_TLS_KEY", str(tmp_path / "missing.key"))
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        status, lines = check_lines(
            capsys,
            "--data-dir", str(tmp_path / "data"),
            "--redis", f"redis://127.0.0.1:{down}/0",
            "--port", str(port),
        )  # fmt: skip
    assert status == 1
    assert lines["listen"].startswith(f"FAIL  listen       cannot listen on 127.0.0.1:{port}")
    assert lines["tls"].startswith("FAIL  tls")
    assert lines["store"].startswith("FAIL  store        PostgreSQL at postgresql://bodycam:…@")
    assert "secret" not in lines["store"]
    assert lines["redis"].startswith(f"FAIL  redis        Redis at redis://127.0.0.1:{down}/0")


def test_serve_check_refuses_a_master_key_that_is_not_the_databases(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(tmp_path / "data")
    store = open_store(config)
    store.call(Keyring.load, config, store)
    store.close()
    status, lines = check_lines(
        capsys, "--data-dir", str(config.data_dir), "--port", str(free_port())
    )
    assert status == 0, lines
    assert "opens the database's recordings" in lines["master key"]
    config.master_key_path.write_text(base64.b64encode(b"k" * 32).decode())
    status, lines = check_lines(
        capsys, "--data-dir", str(config.data_dir), "--port", str(free_port())
    )
    assert status == 1
    assert lines["master key"].startswith("FAIL")
    assert "is not the one the database's recordings were encrypted with" in lines["master key"]


def test_plain_http_that_other_machines_reach_does_not_start_unasked(tmp_path: Path) -> None:
    result = subprocess.run(
        serve(tmp_path, "--host", "0.0.0.0", "--port", str(free_port())),
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "without TLS would serve passwords and tokens in clear" in result.stderr
    assert "--insecure" in result.stderr


async def test_plain_http_asked_for_with_insecure_is_said_in_the_log(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "gateway.log"
    process = await serve_process(
        tmp_path / "data", port, log, BODYCAM_SERVER_HOST="0.0.0.0", BODYCAM_SERVER_INSECURE="1"
    )
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/healthz") as response,
        ):
            assert response.status == 200
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 20)
    warned = [line for line in log.read_text().splitlines() if "server.insecure" in line]
    assert warned
    assert "WARNING" in warned[0]
    assert f"plain HTTP on 0.0.0.0:{port}" in warned[0]


async def test_metrics_want_their_token_and_can_have_a_listener_of_their_own(
    tmp_path: Path,
) -> None:
    token, port = "scrape-" + "x" * 16, free_port()
    config = make_config(tmp_path / "data", metrics_token=token, metrics_listen=f"127.0.0.1:{port}")
    gateway = await start_gateway(create_app(config), config)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{gateway.url}/metrics") as r:
                assert r.status == 404  # not on the main listener
            scrape = f"http://127.0.0.1:{port}/metrics"
            async with http.get(scrape) as r:
                assert r.status == 401
                assert "metrics.token" in (await r.json())["error"]
            async with http.get(scrape, headers={"Authorization": "Bearer wrong"}) as r:
                assert r.status == 401
            async with http.get(scrape, headers={"Authorization": f"Bearer {token}"}) as r:
                assert r.status == 200
                assert "bodycam_sessions_live" in await r.text()
    finally:
        await gateway.server.close()
    with pytest.raises(ConfigError, match=r"metrics\.token: must be 16 characters"):
        make_config(tmp_path / "data", metrics_token="short")
    with pytest.raises(ConfigError, match=r"metrics\.listen: must be host:port"):
        make_config(tmp_path / "data", metrics_listen="9101")
