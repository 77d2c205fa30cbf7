"""Media workers, the mediasoup pattern: the sessions' media runs in `[media] workers`
processes, each with its own event loop, while the main process keeps the control plane
(HTTP, signalling, the store, the register, the console, geolocation).

`WorkerPool` is the main process's `MediaHost` for them: it starts the workers
(`python -m bodycam.gateway.worker`), places each new session on the one with the fewest
sessions (a session's reconnections stay on its worker), and speaks to them over a `Pipe`.
A worker that dies interrupts its own sessions only: each is told to its owner as a lost
link (the camera reconnects within the grace window and the session goes on, on another
worker), the segments it left open are sealed by recovery, and the worker is started
again. Policy stays here: a worker may only write the catalogue rows of its own sessions.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import itertools
import logging
import os
import pickle
import socket
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from ..clock import parse_iso
from ..config import (
    AuthConfig,
    CamerasConfig,
    Config,
    EvidenceConfig,
    MetricsConfig,
    RedisConfig,
    ServerConfig,
    StoreConfig,
)
from ..errors import BadRequest, BodycamError, Conflict, NotFound, Unprocessable
from ..evidence.keyring import Keyring
from ..media.disk import DiskGuard
from ..media.recorder import segment_path
from ..media.recovery import recover_segments
from ..metrics import Metrics
from ..store import Store, StoreUnavailable
from .connection import MediaInfo
from .media import MediaOwner, Offer, SessionMedia
from .pipe import Message, Pipe, PipeClosed, RemoteError

logger = logging.getLogger(__name__)

START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 30.0
RESTART_DELAY_SECONDS = (0.0, 0.5, 2.0, 5.0)  # after 1, 2, 3, more deaths in a row
STEADY_SECONDS = 60.0  # a worker that lived this long died "in a row" with nobody
RECOVERY_TRIES = 30
RECOVERY_RETRY_SECONDS = 2.0
_ERRORS: dict[int, type[BodycamError]] = {
    400: BadRequest,
    404: NotFound,
    409: Conflict,
    422: Unprocessable,
    503: StoreUnavailable,
}


def worker_count(setting: str) -> int:
    """`[media] workers`: "auto" is one per core this process may run on."""
    if setting == "auto":
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    return int(setting)


def media_config(config: Config) -> Config:
    """What a worker is told of the configuration: what media needs, and no address or
    file of the database, Redis, the keys, the cameras or the metrics (it is given each
    session's key, and reaches nothing else). Not a sandbox: it runs as the same user."""
    return dataclasses.replace(
        config,
        server=ServerConfig(),
        store=StoreConfig(),
        redis=RedisConfig(),
        cameras=CamerasConfig(),
        evidence=EvidenceConfig(),
        metrics=MetricsConfig(),
        auth=AuthConfig(),
    )


def _environment() -> dict[str, str]:
    """The worker's environment: this one without BODYCAM_* (a database URL, a password)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("BODYCAM_")}


def _raised(err: RemoteError) -> BodycamError:
    """A worker's error as the kind the HTTP layer maps to its status."""
    return _ERRORS.get(err.status, BodycamError)(str(err))


class WorkerProcess:
    """One worker: its process, its pipe, the sessions placed on it."""

    def __init__(self, index: int, place: int, pool: WorkerPool) -> None:
        self.index = index  # its slot in the pool (a restarted worker takes the dead one's)
        self.place = place  # this process's own number: never given to another one
        self._pool = pool
        self.process: asyncio.subprocess.Process | None = None
        self.pipe: Pipe | None = None
        self.sessions: dict[str, WorkerMedia] = {}
        self.open_segments: set[int] = set()  # opened here and not yet sealed
        self.offers: set[str] = set()  # offers made here, not yet answered or discarded
        self.applying = 0  # offers being applied here now
        self.alive = False
        self.started_at = 0.0  # (monotonic) once it answered
        self._reader: asyncio.Task[None] | None = None

    @property
    def load(self) -> int:
        """What placement counts: its sessions, and the offers on their way to being one."""
        return len(self.sessions) + len(self.offers) + self.applying

    async def start(self) -> None:
        """Start the process and wait for its first answer; on failure, nothing is left
        running (the caller decides whether to try again)."""
        try:
            await self._start()
        except BaseException:
            await self._abandon()
            raise
        self.started_at = time.monotonic()
        assert self.process is not None
        logger.info("media worker %d started (pid %d)", self.index, self.process.pid)

    async def _start(self) -> None:
        mine, theirs = socket.socketpair()
        try:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bodycam.gateway.worker",
                str(theirs.fileno()),
                pass_fds=(theirs.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
                env=_environment(),
            )
        except BaseException:
            mine.close()
            raise
        finally:
            theirs.close()
        reader, writer = await asyncio.open_unix_connection(sock=mine)
        blob = pickle.dumps((media_config(self._pool.config), self.index))
        writer.write(len(blob).to_bytes(4, "big") + blob)
        self.pipe = Pipe(reader, writer, self._event, f"media worker {self.index}")
        self.alive = True
        self._reader = asyncio.create_task(self._read())
        # ready once it answers (its imports take a second or two)
        await asyncio.wait_for(self.call("disk", full=self._pool.disk_full), START_TIMEOUT_SECONDS)

    async def _abandon(self) -> None:
        """A start that failed: the process killed, the pipe closed, no death reported."""
        self.alive = False
        if self.pipe is not None:
            self.pipe.close()
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    async def call(self, kind: str, **fields: Any) -> Any:
        if self.pipe is None or not self.alive:
            raise PipeClosed(f"media worker {self.index} is not running")
        try:
            return await self.pipe.call(kind, **fields)
        except RemoteError as err:
            raise _raised(err) from None

    def tell(self, kind: str, **fields: Any) -> None:
        if self.pipe is not None and self.alive:
            self.pipe.tell(kind, **fields)

    async def stop(self) -> None:
        """Close every session's media (sealing it), then end the process."""
        process, self.alive = self.process, False
        if self.pipe is not None and not self.pipe.closed:
            with contextlib.suppress(BodycamError, TimeoutError):
                await asyncio.wait_for(self.pipe.call("stop"), STOP_TIMEOUT_SECONDS)
            self.pipe.close()
        if process is not None:
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT_SECONDS)
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    async def _read(self) -> None:
        assert self.pipe is not None
        try:
            await self.pipe.run()
        finally:
            # not stopped by us, nor a start given up: it died (or broke the protocol)
            if self.alive and self.started_at:
                self.alive = False
                await self._pool.died(self)

    # what the worker sends up

    async def _event(self, message: Message) -> Any:
        kind = message.get("t")
        owner = self._pool.owner
        if kind in ("open_segment", "close_segment"):
            return await self._catalogue(message)
        session_id = str(message.get("session", ""))
        media = self.sessions.get(session_id)
        if kind == "counters":
            self._pool.metrics.add(list(message.get("changes", [])))
        elif media is None:
            return None  # a session no longer placed here
        elif kind == "lost":
            resource, why = str(message["resource"]), str(message["why"])
            owner.spawn(session_id, lambda: owner.link_lost(session_id, resource, why))
        elif kind == "telemetry":
            raw: str | bytes = (
                str(message["text"]) if "text" in message else base64.b64decode(message["b64"])
            )
            owner.telemetry(session_id, str(message["resource"]), raw)
        elif kind == "view_ended":
            await owner.view_ended(session_id, str(message["viewer"]))
        return None

    async def _catalogue(self, message: Message) -> Any:
        """A recorder's catalogue write, for a session of this worker only."""
        store = self._pool.store
        if message["t"] == "open_segment":
            session_id = str(message["session"])
            if session_id not in self.sessions:
                raise BadRequest(f"session {session_id} is not placed on this worker")
            stamp, node = str(message["stamp"]), str(message["node"])
            if not stamp.isalnum():
                raise BadRequest("a segment's stamp is letters and digits")
            if node not in self._pool.runs():
                raise BadRequest(f"node {node} is not a run of this process")
            opening = store.run(
                store.open_segment,
                session_id,
                parse_iso(str(message["started"])),
                str(message["codec"]),
                int(message["width"]),
                int(message["height"]),
                lambda seq: segment_path(session_id, stamp, seq),
                node,
            )
            # (shielded: a worker dying now must not leave a row made and not known here,
            # which recovery would not look for)
            task = asyncio.ensure_future(opening)
            task.add_done_callback(self._opened)
            segment_id, seq = await asyncio.shield(task)
            return [segment_id, seq]
        segment_id = int(message["segment"])
        if segment_id not in self.open_segments:
            raise BadRequest(f"segment {segment_id} was not opened by this worker")
        ended = parse_iso(str(message["ended"]))
        size, digest = int(message["size"]), str(message["sha256"])
        await store.run(store.close_segment, segment_id, ended, size, digest)
        self.open_segments.discard(segment_id)
        return None

    def _opened(self, task: asyncio.Future[tuple[int, int]]) -> None:
        if not task.cancelled() and task.exception() is None:
            self.open_segments.add(task.result()[0])
            if not self.alive:  # it died meanwhile: recovery looks for this one too
                self._pool.recover([task.result()[0]])


class WorkerMedia:
    """A session's media in a worker, as the main process sees it."""

    def __init__(self, worker: WorkerProcess, session_id: str) -> None:
        self.worker = worker
        self.place = worker.place
        self.session_id = session_id
        self.resource_id = ""  # its current connection
        self.views: set[str] = set()  # viewer ids attached in the worker

    @property
    def alive(self) -> bool:
        return self.worker.alive and self.worker.sessions.get(self.session_id) is self

    async def connect(self, offer: Offer, resource_id: str) -> str:
        self.resource_id = resource_id
        self.worker.offers.discard(offer.handle)
        try:
            answer = await self.worker.call(
                "connect", session=self.session_id, handle=offer.handle, resource=resource_id
            )
        except NotFound:  # (its worker restarted meanwhile)
            raise PipeClosed("the media worker restarted: send the offer again") from None
        return str(answer)

    async def silent_for(self, seconds: float) -> bool:
        if not self.alive:
            return True
        with contextlib.suppress(PipeClosed):
            return bool(await self.worker.call("silent", session=self.session_id, seconds=seconds))
        return True

    async def end_connection(self) -> None:
        if self.alive:
            with contextlib.suppress(PipeClosed, NotFound):
                await self.worker.call("end_connection", session=self.session_id)

    async def watch(self, viewer_id: str, offer: str, label: str, codecs: tuple[str, str]) -> str:
        if not self.alive:
            raise PipeClosed("the session's media worker is restarting: try again in a moment")
        fields = {"viewer": viewer_id, "offer": offer, "label": label, "codecs": list(codecs)}
        answer = await self.worker.call("watch", session=self.session_id, **fields)
        self.views.add(viewer_id)
        return str(answer)

    async def end_view(self, viewer_id: str) -> None:
        if self.alive:
            with contextlib.suppress(PipeClosed, NotFound):
                await self.worker.call("end_view", session=self.session_id, viewer=viewer_id)

    async def set_node(self, node: str) -> None:
        if self.alive:
            with contextlib.suppress(PipeClosed, NotFound):
                await self.worker.call("set_node", session=self.session_id, node=node)

    async def close(self) -> None:
        if self.alive:
            with contextlib.suppress(PipeClosed, NotFound):
                await self.worker.call("close", session=self.session_id)
        if self.worker.sessions.get(self.session_id) is self:
            del self.worker.sessions[self.session_id]


class WorkerPool:
    """The main process's media host: `count` worker processes."""

    def __init__(
        self,
        config: Config,
        store: Store,
        keyring: Keyring,
        metrics: Metrics,
        owner: MediaOwner,
        count: int,
        disk: DiskGuard | None = None,
        runs: Callable[[], list[str]] = list,
    ) -> None:
        self.config = config
        self.store = store
        self.metrics = metrics
        self.owner = owner
        self.runs = runs  # the node's runs: what the workers' segments are held by
        self._keyring = keyring
        self._disk = disk
        self._places = itertools.count()
        self.workers = [WorkerProcess(index, next(self._places), self) for index in range(count)]
        self._deaths = [0] * count
        self._tasks: set[asyncio.Future[Any]] = set()
        self.closing = False  # set before the sessions' media is closed: no restart then

    @property
    def disk_full(self) -> bool:
        return self._disk is not None and self._disk.full

    async def start(self) -> None:
        await asyncio.gather(*(worker.start() for worker in self.workers))
        if self._disk is not None:
            self._disk.listeners.append(self._disk_changed)

    async def close(self) -> None:
        self.closing = True
        if self._disk is not None and self._disk_changed in self._disk.listeners:
            self._disk.listeners.remove(self._disk_changed)
        while self._tasks:  # (a task may spawn another)
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(worker.stop() for worker in self.workers))

    # MediaHost

    async def offer(self, sdp: str, near: SessionMedia | None) -> Offer:
        worker = self._place(near)
        worker.applying += 1  # counted at once: a burst of offers is spread out
        try:
            found = await worker.call("offer", sdp=sdp)
        finally:
            worker.applying -= 1
        info = MediaInfo(str(found["video"]), str(found["audio"]), base64.b64decode(found["sets"]))
        handle = str(found["handle"])
        worker.offers.add(handle)
        return Offer(info, worker.place, handle=handle)

    async def discard(self, offer: Offer) -> None:
        for worker in self.workers:
            worker.offers.discard(offer.handle)
        with contextlib.suppress(PipeClosed):
            await self._at(offer.place).call("discard", handle=offer.handle)

    async def open(self, session_id: str, key: bytes, node: str, place: int) -> WorkerMedia:
        worker = self._at(place)
        media = WorkerMedia(worker, session_id)
        worker.sessions[session_id] = media
        try:
            await worker.call(
                "open", session=session_id, key=base64.b64encode(key).decode(), node=node
            )
        except BaseException:
            worker.sessions.pop(session_id, None)
            raise
        return media

    def _at(self, place: int) -> WorkerProcess:
        """The worker process of an offer; PipeClosed once it is gone."""
        for worker in self.workers:
            if worker.place == place and worker.alive:
                return worker
        raise PipeClosed("the media worker of this offer is gone")

    def _place(self, near: SessionMedia | None) -> WorkerProcess:
        """The worker of `near` while it runs, else the running one with fewest sessions."""
        if isinstance(near, WorkerMedia) and near.alive:
            return near.worker
        running = [w for w in self.workers if w.alive]
        if not running:
            raise PipeClosed("no media worker is running (one is restarting): try again")
        return min(running, key=lambda w: (w.load, w.index))

    # a worker died

    async def died(self, worker: WorkerProcess) -> None:
        """A worker's process ended, or broke the protocol: its sessions are interrupted,
        their views ended, its open segments sealed, and it is started again."""
        process = worker.process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()  # (one that broke the protocol is not to be trusted)
        code = await process.wait() if process is not None else None
        sessions, worker.sessions = dict(worker.sessions), {}
        segments, worker.open_segments = sorted(worker.open_segments), set()
        worker.offers.clear()
        logger.error(
            "media worker %d died (exit %s) with %d session(s): they are interrupted",
            worker.index,
            code,
            len(sessions),
        )
        why = f"media worker {worker.index} died"
        for session_id, media in sessions.items():
            for viewer_id in sorted(media.views):
                self.owner.spawn(session_id, partial(self.owner.view_ended, session_id, viewer_id))
            lost = partial(self.owner.link_lost, session_id, media.resource_id, why)
            self.owner.spawn(session_id, lost)
        self.recover(segments)
        if not self.closing:
            lived = time.monotonic() - worker.started_at
            self._deaths[worker.index] = (
                1 if lived > STEADY_SECONDS else self._deaths[worker.index] + 1
            )
            self._spawn(self._restart(worker.index))

    def _closed(self) -> bool:
        return self.closing

    def recover(self, segments: list[int]) -> None:
        """Seal these segments of a dead worker, as they are on disk."""
        if segments:
            self._spawn(self._recover(set(segments)))

    async def _recover(self, segments: set[int]) -> None:
        store = self.store
        for _ in range(RECOVERY_TRIES):
            still = {s.id for s in await store.run(store.open_segments, self.runs())} & segments
            if not still:
                return
            try:
                found = await asyncio.to_thread(
                    recover_segments,
                    store,
                    self._keyring,
                    self.config.recordings_dir,
                    self.runs(),
                    still,
                )
                if found:
                    logger.warning("media worker: %d segment(s) it left open sealed", found)
            except Exception:  # tried again; at worst the keeper seals them at start
                logger.exception("media worker: its open segments could not be sealed yet")
            await asyncio.sleep(RECOVERY_RETRY_SECONDS)  # (another node may hold the lock)
        logger.error("media worker: segments %s still open: the next start seals them", segments)

    async def _restart(self, index: int) -> None:
        """Start the worker of slot `index` again, after a delay that grows while it dies
        young (a session whose media kills its worker must not make it spin)."""
        while not self.closing:
            deaths = self._deaths[index]
            await asyncio.sleep(RESTART_DELAY_SECONDS[min(deaths, len(RESTART_DELAY_SECONDS)) - 1])
            if self._closed():  # (it may have begun while this slept)
                return
            fresh = WorkerProcess(index, next(self._places), self)
            try:
                await fresh.start()
            except (OSError, BodycamError, TimeoutError) as err:
                logger.error("media worker %d could not be restarted: %s", index, err)
                self._deaths[index] += 1
                continue
            self.workers[index] = fresh
            return

    def _disk_changed(self, full: bool) -> None:
        """The free-space floor crossed: every worker is told."""
        for worker in self.workers:
            worker.tell("disk", full=full)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
