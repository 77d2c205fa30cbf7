"""Shared fixtures: a real gateway on loopback with a temporary data directory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bodycam import devices
from bodycam.clock import SystemClock
from bodycam.config import Config
from bodycam.gateway.app import create_app
from bodycam.gateway.keys import metrics_key, sessions_key, store_key
from bodycam.store import Store


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
