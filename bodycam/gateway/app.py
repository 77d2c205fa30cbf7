"""The gateway's application factory: every long-lived resource is a cleanup context."""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from aiohttp import web

from .. import __version__, heap
from ..clock import Clock, SystemClock
from ..config import Config
from ..errors import BodycamError, ConfigError, Unauthorized
from ..evidence.keyring import Keyring
from ..evidence.purge import prune_register, purge
from ..live import open_live
from ..media.disk import DiskGuard
from ..media.ice import restrict_host_candidates
from ..metrics import Metrics
from ..store import Store, open_store
from ..ui import routes as console
from . import api_admin, api_evidence, api_live, auth, forward, whep, whip
from .appkeys import (
    clock_key,
    config_key,
    health_key,
    keyring_key,
    live_key,
    login_watch_key,
    metrics_key,
    sessions_key,
    store_key,
    tracker_key,
    vapix_key,
)
from .health import HealthMonitor
from .logins import LoginWatch
from .nodes import NodeKeeper
from .params import CORS
from .sessions import SessionManager
from .streaming import streams_ctx
from .tracking import City, Tracker
from .vapix import Vapix, load_credentials
from .workers import WorkerPool, worker_count

logger = logging.getLogger(__name__)

INSECURE_WARNING_SECONDS = 3600.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Domain errors become JSON answers a person can act on; the gateway stays up."""
    try:
        return await handler(request)
    except BodycamError as err:
        logger.warning("%s %s refused (%d): %s", request.method, request.path, err.status, err)
        if err.status == 403:
            try:
                await auth.record_refusal(request, err)
            except Exception:  # the person still gets their answer
                logger.exception("refusal of %s %s not registered", request.method, request.path)
        if request.path.startswith(whip.WHIP_PATH):
            request.app[metrics_key].whip_requests.labels(request.method, str(err.status)).inc()
        return web.json_response({"error": str(err)}, status=err.status, headers=CORS)


async def live_ctx(app: web.Application) -> AsyncIterator[None]:
    """Events, live positions, who holds which session: in process, or shared in Redis."""
    app[live_key] = live = await open_live(app[config_key], app[clock_key])
    yield
    await live.close()


async def store_ctx(app: web.Application) -> AsyncIterator[None]:
    """The database, and the keys that seal its recordings (checked against it). Opening
    and closing wait for the store's thread (a schema to bring up to date, the last
    queries to finish): off the event loop."""
    app[store_key] = store = await asyncio.to_thread(open_store, app[config_key])
    try:
        app[keyring_key] = await store.run(Keyring.load, app[config_key], store)
    except BaseException:
        await asyncio.to_thread(store.close)
        raise
    yield
    await asyncio.to_thread(store.close)


async def geo_ctx(app: web.Application) -> AsyncIterator[None]:
    """The city (cameras, places), officers' tracks, PTZ aiming, camera health polling."""
    config = app[config_key]
    city = await _load_city(app[store_key], City.empty())
    tracker = Tracker(config, city, app[vapix_key], app[live_key], app[metrics_key], app[clock_key])
    app[tracker_key] = tracker
    app[health_key] = health = HealthMonitor(
        app[vapix_key],
        app[clock_key],
        app[live_key].events,
        app[metrics_key],
        lambda: list(tracker.city.cameras.values()),
        config.cameras.health_concurrency,
        app[store_key],
        config.cameras.health_interval_seconds,
        config.cameras.request_timeout_seconds,
    )
    await health.load()
    tracker.unavailable = health.is_down
    watch = asyncio.create_task(_watch_cameras(app, tracker, health))
    yield
    watch.cancel()
    await asyncio.gather(watch, return_exceptions=True)
    await tracker.close()
    await app[vapix_key].close()


async def _load_city(store: Store, current: City) -> City:
    """The city as imported; if it cannot be built, the current one (never fatal: body
    cameras must go live whatever the state of the map)."""
    version = await store.run(store.geo_version)
    try:
        city = await City.load(store)
    except Exception:
        logger.exception(
            "city data (geo version %d) cannot be used; keeping %d cameras: re-import it",
            version,
            len(current.cameras),
        )
        return dataclasses.replace(current, version=version)  # not retried until re-imported
    logger.info(
        "city: %d cameras, %d streets (geo version %d)",
        len(city.cameras),
        len(city.streets),
        city.version,
    )
    return city


async def _watch_cameras(app: web.Application, tracker: Tracker, health: HealthMonitor) -> None:
    """Each interval: reload the city and the camera credentials if they changed, then poll
    every camera."""
    store, vapix = app[store_key], app[vapix_key]
    config = app[config_key]
    credentials = _modified(config.camera_credentials_path)
    while True:
        try:
            if await store.run(store.geo_version) != tracker.city.version:
                tracker.city = await _load_city(store, tracker.city)
            if _modified(config.camera_credentials_path) != credentials:
                credentials = _modified(config.camera_credentials_path)
                vapix.credentials = load_credentials(config.camera_credentials_path)
                logger.info("camera credentials reloaded: %d", len(vapix.credentials))
        except Exception:  # a bad file must not stop the polling
            logger.exception("camera registry or credentials reload failed")
        try:
            await health.poll_all()
        except Exception:  # a bad round must not stop the next ones
            logger.exception("camera health round failed")
        await asyncio.sleep(config.cameras.health_interval_seconds)


def _modified(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


async def purge_ctx(app: web.Application) -> AsyncIterator[None]:
    """The periodic purge and register pruning, every `evidence.purge_interval_seconds`."""
    task = asyncio.create_task(_purge_loop(app))
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _purge_loop(app: web.Application) -> None:
    config, store, clock = app[config_key], app[store_key], app[clock_key]
    while True:
        now = clock.now()
        try:
            await asyncio.to_thread(purge, store, config.recordings_dir, config.retention, now)
            await asyncio.to_thread(prune_register, store, config.evidence.register_years, now)
        except Exception:  # the next round tries again; a stuck purge shows in the logs
            logger.exception("purge failed")
        await asyncio.sleep(config.evidence.purge_interval_seconds)


async def logins_ctx(app: web.Application) -> AsyncIterator[None]:
    """Open consoles and views closed when the login they were opened with ends."""
    app[login_watch_key] = watch = LoginWatch(app[store_key], app[clock_key])
    yield
    await watch.close()


async def sessions_ctx(app: web.Application) -> AsyncIterator[None]:
    config, live = app[config_key], app[live_key]
    disk = DiskGuard(
        config.recordings_dir,
        config.recording.min_free_bytes,
        app[metrics_key],
        live.events.publish,
        live.node.id,
    )
    await disk.start()
    manager = SessionManager(
        app[config_key],
        app[store_key],
        app[metrics_key],
        app[clock_key],
        app[tracker_key],
        app[live_key].sessions,
        app[live_key].events,
        app[live_key].positions,
        app[keyring_key],
        disk,
    )
    app[sessions_key] = manager
    count = worker_count(config.media.workers)
    pool: WorkerPool | None = None
    if count:
        pool = WorkerPool(
            config,
            app[store_key],
            app[keyring_key],
            app[metrics_key],
            manager,
            count,
            disk,
            lambda: sorted(manager.runs),
        )
        await pool.start()
        manager.host = pool
    app[metrics_key].viewers.set_function(manager.viewers)
    # (read at each scrape, on the loop's thread where /metrics is rendered: a leak of
    # tasks shows as a slope)
    app[metrics_key].event_loop_tasks.set_function(lambda: len(asyncio.all_tasks()))
    keeper = NodeKeeper(
        app[config_key],
        app[store_key],
        app[keyring_key],
        manager,
        app[live_key].node,
        app[clock_key],
    )
    await keeper.start()  # seals what an earlier run left open, minds its sessions
    yield
    if pool is not None:
        pool.closing = True  # (a worker ending now is not restarted)
    await manager.close_all()
    if pool is not None:
        await pool.close()
    await keeper.close()
    await disk.close()


async def metrics_handler(request: web.Request) -> web.Response:
    token = request.app[config_key].metrics.token
    if token:
        sent = request.headers.get("Authorization", "")
        if not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
            raise Unauthorized("/metrics wants Authorization: Bearer <metrics.token>")
    return web.Response(
        body=request.app[metrics_key].render(), content_type="text/plain", charset="utf-8"
    )


async def metrics_ctx(app: web.Application) -> AsyncIterator[None]:
    """`/metrics` on a listener of its own when `metrics.listen` names one."""
    config = app[config_key]
    address = config.metrics.address
    if address is None:
        yield
        return
    scrape = web.Application(middlewares=[errors_middleware])
    scrape[config_key], scrape[metrics_key] = config, app[metrics_key]
    scrape.router.add_get("/metrics", metrics_handler)
    runner = web.AppRunner(scrape, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, *address).start()
    except OSError as err:
        await runner.cleanup()
        raise ConfigError(
            f"metrics.listen: cannot listen on {config.metrics.listen}: {err.strerror}"
        ) from None
    logger.info("metrics on http://%s/metrics", config.metrics.listen)
    yield
    await runner.cleanup()


async def heap_ctx(app: web.Application) -> AsyncIterator[None]:
    """The C heap in `/metrics`, and its free pages given back every
    `server.heap_trim_seconds` (bodycam/heap.py: without it a gateway's RSS climbs with
    the allocator's fragmentation, not with what it holds)."""
    metrics, interval = app[metrics_key], app[config_key].server.heap_trim_seconds
    if heap.available():
        metrics.heap_in_use.set_function(lambda: heap.figure("in_use"))
        metrics.heap_free.set_function(lambda: heap.figure("free"))
    task = asyncio.create_task(heap.trim_forever(interval)) if interval else None
    yield
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def insecure_ctx(app: web.Application) -> AsyncIterator[None]:
    """Plain HTTP that other machines reach, knowingly (`server.insecure`): said at start,
    and every hour after."""
    server = app[config_key].server
    task = None
    if server.plain_http_exposed:
        task = asyncio.create_task(_warn_insecure(server.host, server.port))
    yield
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _warn_insecure(host: str, port: int) -> None:
    while True:
        logger.warning(
            "serving plain HTTP on %s:%d (server.insecure): passwords, login and device tokens"
            " cross the network in clear unless a reverse proxy on a private network ends TLS",
            host,
            port,
        )
        await asyncio.sleep(INSECURE_WARNING_SECONDS)


async def health_handler(request: web.Request) -> web.Response:
    manager = request.app[sessions_key]
    return web.json_response(
        {"status": "ok", "version": __version__, "sessions": len(manager.live_sessions())}
    )


def create_app(config: Config, clock: Clock | None = None) -> web.Application:
    """Build the gateway: WHIP ingest, recording, geolocation and cameras, metrics."""
    try:
        restrict_host_candidates(config.ice.addresses)
    except ValueError as err:
        raise ConfigError(f"ice.addresses: {err}") from None
    config.recordings_dir.mkdir(parents=True, exist_ok=True)
    app = web.Application(
        middlewares=[errors_middleware, forward.forwarded_middleware, auth.auth_middleware],
        client_max_size=config.server.max_sdp_bytes,
    )
    app[config_key] = config
    app[clock_key] = clock = clock or SystemClock()
    app[metrics_key] = Metrics()
    app[vapix_key] = Vapix(
        load_credentials(config.camera_credentials_path), config.cameras.request_timeout_seconds
    )
    app.cleanup_ctx.append(live_ctx)
    app.cleanup_ctx.append(store_ctx)
    app.cleanup_ctx.append(forward.forward_ctx)
    app.cleanup_ctx.append(logins_ctx)
    app.cleanup_ctx.append(geo_ctx)
    app.cleanup_ctx.append(sessions_ctx)
    app.cleanup_ctx.append(purge_ctx)
    app.cleanup_ctx.append(streams_ctx)
    app.cleanup_ctx.append(metrics_ctx)
    app.cleanup_ctx.append(heap_ctx)
    app.cleanup_ctx.append(insecure_ctx)
    whip.add_routes(app)
    whep.add_routes(app)
    auth.add_routes(app)
    api_live.add_routes(app)
    api_evidence.add_routes(app)
    api_admin.add_routes(app)
    console.add_routes(app)
    if config.metrics.address is None:
        app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/healthz", health_handler)
    return app
