"""Two gateway nodes on one Redis: events cross nodes, viewers are sent to the camera's node."""

from __future__ import annotations

import base64
import secrets
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bodycam.evidence import register
from bodycam.gateway.app import create_app
from bodycam.gateway.appkeys import live_key
from simulators.axis_bodycam import AxisBodycam

from .helpers import (
    PASSWORD,
    REDIS_URL,
    Gateway,
    add_login,
    delete_keys,
    free_port,
    make_config,
    require_redis,
    small_media,
    wait_for,
)
from .whep_client import watch


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[tuple[Gateway, Gateway]]:
    require_redis()
    prefix = f"bodycam-test:{uuid.uuid4().hex}:"
    started: list[Gateway] = []
    try:
        for name in ("a", "b"):
            port = free_port()
            config = make_config(
                tmp_path / name,
                redis_url=REDIS_URL,
                redis_key_prefix=prefix,
                node_id=f"node-{name}",
                node_url=f"http://127.0.0.1:{port}",
            )
            server = TestServer(create_app(config), host="127.0.0.1", port=port)
            await server.start_server()
            started.append(Gateway(config, server, server.app))
        yield started[0], started[1]
    finally:
        for gateway in started:
            await gateway.server.close()
        await delete_keys(prefix)


async def test_a_viewer_on_node_a_is_sent_to_node_b_and_sees_its_events(
    nodes: tuple[Gateway, Gateway],
) -> None:
    a, b = nodes
    token = await b.enroll("cam-b")
    # each node has its own database: the operator's account is on both
    login = await a.login()
    await add_login(b.store, "dupont", "operator", login["Authorization"].split()[1])
    with a.app[live_key].events.subscribe() as console_on_a:
        async with AxisBodycam(b.url, "cam-b", token, media=small_media()) as camera:
            await camera.press()
            [session] = await b.store.run(b.store.list_sessions)
            # an event raised on B (the officer's position) reaches a console on A
            seen: dict[str, Any] = {}
            while "position" not in seen:
                event = await console_on_a.get()
                assert event is not None
                seen.setdefault(event.type, event)
            # the alert, then the officer's position, raised on B, reach a console on A
            for kind in ("alert", "position"):
                assert seen[kind].node == "node-b"
                assert seen[kind].data["session_id"] == session.id
            assert seen["alert"].data["state"] == "nouvelle"
            # a WHEP request on A for B's session: 307 to B, offer and all
            offer = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
            async with (
                aiohttp.ClientSession() as http,
                http.post(
                    f"{a.url}/whep/{session.id}",
                    data=offer,
                    headers={"Content-Type": "application/sdp", **login},
                    allow_redirects=False,
                ) as response,
            ):
                assert response.status == 307
                assert response.headers["Location"] == f"{b.url}/whep/{session.id}"
            # acting on the alert on A: sent to B, which records it
            async with (
                aiohttp.ClientSession() as http,
                http.post(
                    f"{a.url}/api/v1/alerts/{session.id}/ack", headers=login, allow_redirects=False
                ) as response,
            ):
                assert response.status == 307
                assert response.headers["Location"] == f"{b.url}/api/v1/alerts/{session.id}/ack"
            # a real viewer following the redirect plays B's stream
            view = await watch(a.url, session.id, login)
            await wait_for(lambda: len(view.counters) >= 30, within=10)
            await view.close()
            await camera.press()
    # once the session is over, no node claims it: A says so itself
    await wait_for(lambda: len(b.sessions.live_sessions()) == 0)
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{a.url}/whep/{session.id}",
            data="v=0",
            headers={"Content-Type": "application/sdp", **login},
            allow_redirects=False,
        ) as response,
    ):
        assert response.status == 404


@pytest.fixture
async def shared_nodes(tmp_path: Path, postgres_url: str) -> AsyncIterator[tuple[Gateway, Gateway]]:
    """Two nodes on one PostgreSQL and one Redis, as a cluster runs."""
    require_redis()
    prefix = f"bodycam-test:{uuid.uuid4().hex}:"
    started: list[Gateway] = []
    master_key = base64.b64encode(secrets.token_bytes(32)).decode()  # one key for the cluster
    try:
        for name in ("a", "b"):
            port = free_port()
            config = make_config(
                tmp_path / name,
                store_url=postgres_url,
                redis_url=REDIS_URL,
                redis_key_prefix=prefix,
                node_id=f"node-{name}",
                node_url=f"http://127.0.0.1:{port}",
                evidence_master_key=master_key,
                evidence_signing_key_file=str(tmp_path / "signing.key"),
            )
            server = TestServer(create_app(config), host="127.0.0.1", port=port)
            await server.start_server()
            started.append(Gateway(config, server, server.app))
        yield started[0], started[1]
    finally:
        for gateway in started:
            await gateway.server.close()
        await delete_keys(prefix)


async def test_nodes_on_one_postgresql_share_people_alerts_and_one_register(
    shared_nodes: tuple[Gateway, Gateway],
) -> None:
    a, b = shared_nodes
    await add_login(a.store, "dupont", "operator")  # an account made once, for every node
    async with aiohttp.ClientSession() as http:
        for node in (a, b):  # a guesser going from node to node is counted once
            async with http.post(
                f"{node.url}/api/v1/login", json={"name": "dupont", "password": "guess"}
            ) as r:
                assert r.status == 401
        async with http.post(
            f"{a.url}/api/v1/login", json={"name": "dupont", "password": PASSWORD}
        ) as r:
            assert r.status == 200
            login = {"Authorization": f"Bearer {(await r.json())['token']}"}
        async with http.get(f"{b.url}/api/v1/me", headers=login) as r:
            assert r.status == 200  # a login made on A opens B
        token = await a.enroll("cam-b")  # a device enrolled on A publishes to B
        async with AxisBodycam(b.url, "cam-b", token, media=small_media()) as camera:
            await camera.press()
            [session] = await a.store.run(a.store.list_sessions)  # B's session, seen from A
            async with http.get(f"{a.url}/api/v1/alerts", headers=login) as r:
                [alert] = await r.json()
                assert alert["session_id"] == session.id
            view = await watch(b.url, session.id, login)
            await wait_for(lambda: len(view.counters) >= 10, within=10)
            await view.close()
            await camera.press()
        await wait_for(lambda: len(b.sessions.live_sessions()) == 0)
    entries = await a.store.run(a.store.register_entries)
    actions = [e["action"] for e in entries]
    assert "login" in actions  # appended by A
    failures = [e["detail"] for e in entries if e["action"] == "login_failed"]
    assert [d.split("; ")[1] for d in failures] == ["1 failures in a row", "2 failures in a row"]
    assert "live_view_start" in actions  # appended by B
    verdict = await b.store.run(register.verify, b.store)
    assert verdict.ok, verdict.text()
    assert verdict.checked == len(entries)  # one chain, whichever node wrote
