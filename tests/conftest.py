"""Shared fixtures: a real gateway on loopback with a temporary data directory. Helpers that
tests call are in helpers.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bodycam.config import Config
from bodycam.gateway.app import create_app

from .helpers import Gateway, make_config, start_gateway


@pytest.fixture
def gateway_config(tmp_path: Path) -> Config:
    return make_config(tmp_path / "data", recording_segment_seconds=4)


@pytest.fixture
async def gateway(gateway_config: Config) -> AsyncIterator[Gateway]:
    app = create_app(gateway_config)
    gateway = await start_gateway(app, gateway_config)
    try:
        yield gateway
    finally:
        await gateway.server.close()
