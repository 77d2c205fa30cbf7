"""`bodycam serve --check`: can this configuration reach everything it names?

Each check says what it found, and what to do when it is missing: the listen address, TLS,
the database (reached, its schema version against the code's, never migrated here), the
master key (present, and the one the database's recordings were encrypted with), the data
folder and the recordings under it (writable: on a cluster, the shared mount), Redis, the
camera credentials, and what a cluster needs (a node id, an address the others reach).
Nothing is changed: no schema migrated, no key created, no file left behind.
"""

from __future__ import annotations

import enum
import os
import socket
import sqlite3
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg
import redis

from ..config import Config, redacted
from ..errors import BodycamError, ConfigError
from ..evidence import keyring
from ..store import StoreUnavailable
from ..store.postgres import peek as postgres_peek
from ..store.postgres.schema import MIGRATIONS as POSTGRES_MIGRATIONS
from ..store.sqlite import peek as sqlite_peek
from ..store.sqlite.schema import MIGRATIONS as SQLITE_MIGRATIONS
from .vapix import load_credentials

TIMEOUT_SECONDS = 5


class Verdict(enum.StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "FAIL"


@dataclass(frozen=True)
class Finding:
    what: str
    verdict: Verdict
    detail: str

    def line(self) -> str:
        return f"{self.verdict.value:4}  {self.what:12} {self.detail}"


def check(config: Config) -> list[Finding]:
    """Every check, in the order a gateway needs them at start."""
    checks: list[tuple[str, Callable[[Config], tuple[Verdict, str]]]] = [
        ("listen", _listen),
        ("tls", _tls),
        ("store", _store),
        ("master key", _master_key),
        ("recordings", _recordings),
        ("redis", _redis),
        ("cameras", _credentials),
        ("cluster", _cluster),
    ]
    findings = []
    for what, run in checks:
        try:
            verdict, detail = run(config)
        except (BodycamError, OSError, psycopg.Error, redis.RedisError, sqlite3.Error) as err:
            verdict, detail = Verdict.FAIL, str(err)
        findings.append(Finding(what, verdict, detail))
    return findings


def _listen(config: Config) -> tuple[Verdict, str]:
    host, port = config.server.host, config.server.port
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as err:
        return Verdict.FAIL, f"cannot listen on {host}:{port}: {err.strerror} (server.port)"
    return Verdict.OK, f"{host}:{port} is free"


def _tls(config: Config) -> tuple[Verdict, str]:
    if not config.server.tls_cert:
        if config.server.loopback:
            return Verdict.OK, "plain HTTP on loopback (a reverse proxy in front ends TLS)"
        if not config.server.insecure:
            return Verdict.FAIL, (
                f"plain HTTP on {config.server.host or 'every address'} does not start: set"
                " server.tls_cert and server.tls_key, or server.insecure behind a reverse"
                " proxy on a private network"
            )
        return Verdict.WARN, (
            f"plain HTTP on {config.server.host} (server.insecure): passwords and tokens cross"
            " the network in clear unless a reverse proxy on a private network ends TLS"
        )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config.server.tls_cert, config.server.tls_key)
    return Verdict.OK, f"certificate {config.server.tls_cert} loads"


def _store(config: Config) -> tuple[Verdict, str]:
    if config.store.url:
        where, code = redacted(config.store.url), len(POSTGRES_MIGRATIONS)
        try:
            version = postgres_peek.schema_version(config.store.url, TIMEOUT_SECONDS)
        except StoreUnavailable as err:
            return Verdict.FAIL, f"PostgreSQL at {where} cannot be reached: {err}"
    else:
        path, code = config.database_path, len(SQLITE_MIGRATIONS)
        where = f"SQLite at {path}"
        if not path.exists():
            return _writable_dir(path.parent, f"{where}: made at first start")
        version = sqlite_peek.schema_version(path)
    if version > code:
        return Verdict.FAIL, f"{where}: schema version {version} is newer than this code's {code}"
    if version < code:
        return Verdict.OK, f"{where}: schema version {version}, migrated to {code} at start"
    return Verdict.OK, f"{where}: schema version {version}, up to date"


def _meta(config: Config, key: str) -> str | None:
    """A meta value, read without opening the store (no migration)."""
    if config.store.url:
        return postgres_peek.meta(config.store.url, key, TIMEOUT_SECONDS)
    if not config.database_path.exists():
        return None
    return sqlite_peek.meta(config.database_path, key)


def _master_key(config: Config) -> tuple[Verdict, str]:
    """The key as the gateway will read it (`keyring`), against the database's check."""
    check = _meta(config, "master_key_check")
    path = config.master_key_path
    if not config.evidence.master_key and not path.exists():
        if check is not None:
            return Verdict.FAIL, (
                f"{path} is missing, and the database's recordings were encrypted with a"
                " master key: restore it from its backup (evidence.master_key_file)"
            )
        if config.store.url:
            return Verdict.WARN, (
                f"{path} is missing: the first node makes one; every other node needs a"
                " copy of that one (and a backup, apart from the database)"
            )
        return _writable_dir(path.parent, f"{path}: made at first start")
    master = keyring.read_master_key(config)  # a ConfigError names what is wrong with it
    source = "BODYCAM_EVIDENCE_MASTER_KEY" if config.evidence.master_key else str(path)
    if check is None:
        return Verdict.OK, f"{source} is read (the database has no recording yet)"
    try:
        keyring.check_master_key(config, master, check)
    except ConfigError:
        return Verdict.FAIL, (
            f"the master key in {source} is not the one the database's recordings were"
            " encrypted with"
        )
    return Verdict.OK, f"{source} opens the database's recordings"


def _recordings(config: Config) -> tuple[Verdict, str]:
    return _writable_dir(config.recordings_dir, f"{config.recordings_dir} is writable")


def _writable_dir(path: Path, ok: str) -> tuple[Verdict, str]:
    """`path`, or the nearest folder above it that exists, can be written to."""
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        return Verdict.FAIL, f"{probe} cannot be written to (data_dir)"
    return Verdict.OK, ok


def _redis(config: Config) -> tuple[Verdict, str]:
    if not config.redis.url:
        return Verdict.OK, "none: live state in this process (one node)"
    where = redacted(config.redis.url)
    client = redis.Redis.from_url(
        config.redis.url, socket_connect_timeout=TIMEOUT_SECONDS, socket_timeout=TIMEOUT_SECONDS
    )
    try:
        client.ping()
        version = client.info("server").get("redis_version", "?")
    except redis.RedisError as err:
        return Verdict.FAIL, f"Redis at {where} cannot be reached: {err}"
    finally:
        client.close()
    return Verdict.OK, f"Redis {version} at {where}"


def _credentials(config: Config) -> tuple[Verdict, str]:
    path = config.camera_credentials_path
    logins = load_credentials(path)
    if not path.exists():
        return Verdict.OK, f"no {path}: fixed cameras are reached without a password"
    return Verdict.OK, f"{path}: {len(logins)} camera logins"


def _cluster(config: Config) -> tuple[Verdict, str]:
    if not config.store.url:
        if config.redis.url:
            return Verdict.WARN, (
                "Redis is shared but the database is this node's SQLite: the nodes keep"
                " separate accounts, alerts and registers (set store.url to PostgreSQL)"
            )
        return Verdict.OK, "one node"
    problems = []
    if not config.redis.url:
        problems.append("no redis.url: the nodes share no live state (events, positions)")
    if not config.node.id:
        problems.append("no node.id: each process gets a random one (set one per node)")
    if not config.node.url and config.server.host in ("0.0.0.0", "::", ""):
        problems.append("no node.url: the others reach this node by its host name")
    if problems:
        return Verdict.WARN, "; ".join(problems)
    return Verdict.OK, f"node {config.node.id}, reached at {config.node.url or 'its host name'}"
