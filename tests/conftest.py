"""Shared fixtures: a real gateway on loopback with a temporary data directory. Helpers that
tests call are in helpers.py."""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, settings

from bodycam.config import Config
from bodycam.gateway.app import create_app
from bodycam.store import SqliteStore
from simulators.axis_camera import AxisCameraSimulator, SimCamera

from .fuzzing import CI_EXAMPLES, FUZZ_FACTOR, RESULTS, summary_lines
from .geo_scene import CAMERA_PASSWORD, SCENE_CAMERAS, give_camera_password, import_street
from .helpers import (
    POSTGRES_URL,
    SLOW_CALLBACK_SECONDS,
    Gateway,
    OwnRedis,
    SlowCallbacks,
    make_config,
    require_postgres,
    require_redis,
    start_gateway,
    with_database,
    with_schema,
)

# The fuzzing campaign (tests/test_fuzz_*.py, tests/fuzzing.py): "ci" keeps the suite's run
# bounded and the same every time; "fuzz" (HYPOTHESIS_PROFILE=fuzz, `./dev fuzz`) draws new
# cases, FUZZ_FACTOR times as many. No example database: nothing written into the tree.
settings.register_profile(
    "ci",
    max_examples=CI_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=False,
    # a gateway is started once per test, not per case; some cases are large on purpose
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
settings.register_profile(
    "fuzz",
    parent=settings.get_profile("ci"),
    max_examples=CI_EXAMPLES * FUZZ_FACTOR,
    derandomize=False,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The fuzzing targets' figures (cases, answers, memory), when any ran."""
    if RESULTS:
        for line in summary_lines():
            terminalreporter.write_line(line)


@pytest.fixture(autouse=True)
def no_blocked_event_loop(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test whose event loop ran a callback longer than 100 ms.

    pyproject's `asyncio_debug` runs each test's loop in debug mode, in which asyncio logs
    "Executing <handle> took 0.123 seconds" for such a callback: the gateway (or the test)
    did blocking work on the loop. The report names the callback.

    A test marked `loop_budget(seconds)` allows its callbacks that long: the fuzz tests draw
    their cases on a worker thread, whose C calls (hypothesis' own, building and parsing
    large cases) hold the GIL the loop needs; a hostile input that held the loop past the
    budget would still fail them.
    """
    marker = request.node.get_closest_marker("loop_budget")
    handler = SlowCallbacks(float(marker.args[0]) if marker else SLOW_CALLBACK_SECONDS)
    watched = logging.getLogger("asyncio")
    watched.addHandler(handler)
    try:
        yield
    finally:
        watched.removeHandler(handler)
    if handler.seen and request.node.get_closest_marker("blocks_the_loop") is None:
        pytest.fail(
            f"the event loop was blocked over {handler.budget * 1000:.0f} ms"
            f" {len(handler.seen)} time(s):\n" + "\n".join(handler.seen[:5]),
            pytrace=False,
        )


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    """A redis-server of the test's own on a free port, which the test can stop and start."""
    require_redis()  # (its binary comes with the server CI starts)
    server = OwnRedis()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A database of this test run's own on the PostgreSQL server (dropped at the end)."""
    require_postgres()
    name = f"bodycam_test_{os.getpid()}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())
        admin.execute(f"CREATE DATABASE {name}".encode())
    try:
        yield with_database(POSTGRES_URL, name)
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())


@pytest.fixture
def postgres_url(postgres_database: str) -> Iterator[str]:
    """A schema of this test's own in the run's database: a fresh, empty store."""
    schema = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(postgres_database, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}".encode())
    try:
        yield with_schema(postgres_database, schema)
    finally:
        with psycopg.connect(postgres_database, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE".encode())


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


@pytest.fixture
async def street_cameras() -> AsyncIterator[AxisCameraSimulator]:
    sims = [
        SimCamera(f["properties"]["id"], f["properties"]["name"], f["properties"]["kind"])
        for f in SCENE_CAMERAS
    ]
    for sim in sims:
        sim.password = CAMERA_PASSWORD
    async with AxisCameraSimulator(sims) as simulator:
        simulator.set_online("offline", False)
        yield simulator


@pytest.fixture
def street_config(tmp_path: Path, street_cameras: AxisCameraSimulator) -> Config:
    """A gateway configuration with the street scene imported, its cameras simulated."""
    config = make_config(
        tmp_path / "data", cameras_health_interval_seconds=1, cameras_request_timeout_seconds=2
    )
    store = SqliteStore(config.database_path)
    import_street(store, street_cameras)
    store.close()
    give_camera_password(config)
    return config
