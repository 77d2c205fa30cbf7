"""Shared fixtures: a real gateway on loopback with a temporary data directory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bodycam import devices, users
from bodycam.clock import SystemClock
from bodycam.config import Config
from bodycam.gateway.app import create_app
from bodycam.gateway.appkeys import metrics_key, sessions_key, store_key
from bodycam.store import Store
from simulators.media import MediaSettings


@dataclass
class Gateway:
    """A running gateway and what tests need to talk to it."""

    config: Config
    server: TestServer
    app: web.Application

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    @property
    def store(self) -> Store:
        return self.app[store_key]

    @property
    def sessions(self) -> Any:
        return self.app[sessions_key]

    @property
    def metrics(self) -> Any:
        return self.app[metrics_key]

    def enroll(self, device_id: str, officer: str = "") -> str:
        return devices.enroll(self.store, device_id, officer, SystemClock().now())

    def login(self, name: str = "dupont", role: str = "operator") -> dict[str, str]:
        """Headers of a person logged in with `role` (the account is made on first use)."""
        token = add_login(self.store, name, role)
        return {"Authorization": f"Bearer {token}"}

    @property
    def auth(self) -> dict[str, str]:
        """An operator's login headers: what most tests call the API with."""
        if "_auth" not in self.__dict__:
            self.__dict__["_auth"] = self.login()
        return dict(self.__dict__["_auth"])


PASSWORD = "correct horse battery"


def add_login(store: Store, name: str, role: str, token: str | None = None) -> str:
    """An account (if new) and a login token for it, straight in the store."""
    now = SystemClock().now()
    if store.get_user(name) is None:
        users.add(store, name, role, PASSWORD, "Police municipale", now)
    if token is None:
        return users.open_login(store, store.get_user(name)[0], now, timedelta(hours=1))
    store.add_login(users.login_hash(token), name, now, now + timedelta(hours=1))
    return token


def small_media(codec: str = "h264", loop_seconds: int = 3) -> MediaSettings:
    """320x240 loop-mode media with a flash and beep every second.

    Loop mode encodes the frames before going live, so the camera sends every one of them
    on time even on a busy CI machine, and a counter gap can only be the gateway's.
    """
    return MediaSettings(
        codec=codec,
        width=320,
        height=240,
        fps=30,
        encode="loop",
        loop_seconds=loop_seconds,
        flash_interval=1.0,
        flash_offset=0.5,
    )


async def wait_for(
    predicate: Callable[[], bool], within: float = 10.0, what: Callable[[], object] | None = None
) -> None:
    """Poll until `predicate()` holds, or fail saying what was seen."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met in {within} s: {what() if what else ''}")
        await asyncio.sleep(0.05)


def make_config(data_dir: Path, **overrides: Any) -> Config:
    return Config.load(None, environ={}, data_dir=str(data_dir), **overrides)


@pytest.fixture
def gateway_config(tmp_path: Path) -> Config:
    return make_config(tmp_path / "data", recording_segment_seconds=4)


@pytest.fixture
async def gateway(gateway_config: Config) -> AsyncIterator[Gateway]:
    app = create_app(gateway_config)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield Gateway(gateway_config, server, app)
    finally:
        await server.close()
