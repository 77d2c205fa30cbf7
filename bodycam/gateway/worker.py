"""A media worker process: `python -m bodycam.gateway.worker FD`, started by the main
process (`gateway.workers`) with one end of a socket pair as file descriptor FD.

It runs an event loop of its own with the peer connections, taps, recorders and relays of
the sessions the main process placed here, in a `LocalHost`: the same code as media in the
main process. It enforces no policy and reaches no store: it does what its pipe asks, and
sends up what its media says (link lost, telemetry, a view ended), its recorders' two
catalogue writes, and its counters ten times a second. Its first message is the configuration.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import pickle
import secrets
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, ClassVar

from ..clock import iso
from ..config import Config
from ..errors import BadRequest, BodycamError, NotFound
from ..logs import setup_logging
from ..media.ice import restrict_host_candidates
from ..metrics import Metrics
from ..store import StoreUnavailable
from .media import LocalHost, LocalMedia, Offer
from .pipe import Message, Pipe, PipeClosed, RemoteError

logger = logging.getLogger("bodycam.gateway.worker")  # (__name__ is __main__ here)

# A batch of counters every 0.1 s: sent at once for all of a worker's connections, they would
# otherwise make a scrape up to half a second late for all of them together.
METRICS_SECONDS = 0.1
CATALOGUE_TIMEOUT_SECONDS = 60.0


class DiskFlag:
    """The main process's free-space floor, as it last said (`FreeSpace`)."""

    full = False


class PipeCatalogue:
    """A recorder's catalogue writes, sent to the main process (called from the writer
    threads: each blocks its thread, never the loop, until the main process answers)."""

    def __init__(self, worker: Worker, loop: asyncio.AbstractEventLoop) -> None:
        self._worker = worker
        self._loop = loop

    def _call(self, kind: str, **fields: Any) -> Any:
        call = self._worker.pipe.call(kind, **fields)
        try:
            return asyncio.run_coroutine_threadsafe(call, self._loop).result(
                CATALOGUE_TIMEOUT_SECONDS
            )
        except RemoteError as err:
            if err.status == StoreUnavailable.status:
                raise StoreUnavailable(str(err)) from None  # the recorder retries
            raise

    def open_segment(
        self,
        session_id: str,
        started_at: datetime,
        video_codec: str,
        width: int,
        height: int,
        stamp: str,
        node: str,
    ) -> tuple[int, int]:
        segment_id, seq = self._call(
            "open_segment",
            session=session_id,
            started=iso(started_at),
            codec=video_codec,
            width=width,
            height=height,
            stamp=stamp,
            node=node,
        )
        return int(segment_id), int(seq)

    def close_segment(self, segment_id: int, ended_at: datetime, size: int, sha256: str) -> None:
        self._call(
            "close_segment", segment=segment_id, ended=iso(ended_at), size=size, sha256=sha256
        )


class Worker:
    """What one worker process holds: sessions' media, and offers not yet answered."""

    def __init__(self, config: Config, index: int) -> None:
        self.config = config
        self.index = index
        self.metrics = Metrics()
        self.disk = DiskFlag()
        self.media: dict[str, LocalMedia] = {}
        self.offers: dict[str, Offer] = {}
        self.pipe: Pipe
        self._tasks: set[asyncio.Future[Any]] = set()
        self._stopped = False  # by the main process (else it died)
        self.host: LocalHost

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        self.pipe = Pipe(reader, writer, self.handle, f"media worker {self.index}'s pipe")
        self.host = LocalHost(
            self.config, PipeCatalogue(self, loop), self.metrics, time.monotonic, self, self.disk
        )
        counters = asyncio.create_task(self._send_counters())
        await self.pipe.run()  # until the main process says stop, or goes
        counters.cancel()
        if not self._stopped:
            # The main process died: this worker is part of a dead node now. Closing the
            # peer connections would tell each camera its session ended (a DTLS close)
            # instead of letting it notice the silence and go to another node; the files
            # it was writing are sealed by recovery, as a dead node's are.
            logger.error("media worker %d: the main process is gone, exiting", self.index)
            os._exit(70)

    async def handle(self, message: Message) -> Any:
        kind = message.get("t")
        act = self._acts.get(str(kind))
        if act is None:
            raise BadRequest(f"unknown request {kind!r}")
        return await act(self, message)

    # the requests of the main process (docs/media-internals.md, "Media workers")

    async def _offer(self, message: Message) -> Any:
        offer = await self.host.offer(str(message["sdp"]), None)
        handle = secrets.token_hex(8)
        self.offers[handle] = offer
        info = offer.info
        return {
            "handle": handle,
            "video": info.video_codec,
            "audio": info.audio_codec,
            "sets": base64.b64encode(info.parameter_sets).decode(),
        }

    async def _discard(self, message: Message) -> Any:
        offer = self.offers.pop(str(message["handle"]), None)
        if offer is not None:
            await self.host.discard(offer)

    async def _open(self, message: Message) -> Any:
        session_id = str(message["session"])
        key = base64.b64decode(message["key"])
        old = self.media.pop(session_id, None)
        if old is not None:
            await old.close()
        self.media[session_id] = await self.host.open(session_id, key, str(message["node"]), 0)

    async def _connect(self, message: Message) -> Any:
        offer = self.offers.pop(str(message["handle"]), None)
        if offer is not None and str(message["session"]) not in self.media:
            await self.host.discard(offer)  # (no peer connection left behind)
        media = self._media(message)
        if offer is None:
            raise NotFound("no such offer (discarded, or its worker restarted)")
        return await media.connect(offer, str(message["resource"]))

    async def _silent(self, message: Message) -> Any:
        return await self._media(message).silent_for(float(message["seconds"]))

    async def _end_connection(self, message: Message) -> Any:
        await self._media(message).end_connection()

    async def _watch(self, message: Message) -> Any:
        video, audio = message["codecs"]
        return await self._media(message).watch(
            str(message["viewer"]), str(message["offer"]), str(message["label"]), (video, audio)
        )

    async def _end_view(self, message: Message) -> Any:
        await self._media(message).end_view(str(message["viewer"]))

    async def _set_node(self, message: Message) -> Any:
        await self._media(message).set_node(str(message["node"]))

    async def _close(self, message: Message) -> Any:
        media = self.media.pop(str(message["session"]), None)
        if media is not None:
            await media.close()

    async def _disk_full(self, message: Message) -> Any:
        self.disk.full = bool(message["full"])

    async def _stop(self, message: Message) -> Any:
        self._stopped = True
        await self._close_all()
        asyncio.get_running_loop().call_soon(self.pipe.close)

    _acts: ClassVar[dict[str, Callable[[Worker, Message], Awaitable[Any]]]] = {
        "offer": _offer,
        "discard": _discard,
        "open": _open,
        "connect": _connect,
        "silent": _silent,
        "end_connection": _end_connection,
        "watch": _watch,
        "end_view": _end_view,
        "set_node": _set_node,
        "close": _close,
        "disk": _disk_full,
        "stop": _stop,
    }

    def _media(self, message: Message) -> LocalMedia:
        media = self.media.get(str(message["session"]))
        if media is None:
            raise NotFound(f"session {message['session']} has no media in this worker")
        return media

    # MediaOwner: what the sessions' media says, sent up

    async def link_lost(self, session_id: str, resource_id: str, why: str) -> None:
        self.pipe.tell("lost", session=session_id, resource=resource_id, why=why)

    def telemetry(self, session_id: str, resource_id: str, raw: str | bytes) -> None:
        data = {"text": raw} if isinstance(raw, str) else {"b64": base64.b64encode(raw).decode()}
        self.pipe.tell("telemetry", session=session_id, resource=resource_id, **data)

    async def view_ended(self, session_id: str, viewer_id: str) -> None:
        self.pipe.tell("view_ended", session=session_id, viewer=viewer_id)

    def spawn(self, session_id: str, make: Callable[[], Awaitable[object]]) -> None:
        task = asyncio.ensure_future(make())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_counters(self) -> None:
        sent: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        while True:
            await asyncio.sleep(METRICS_SECONDS)
            changes = self.metrics.changes(sent)
            if changes:
                self.pipe.tell("counters", changes=changes)

    async def _close_all(self) -> None:
        """Every session's media closed: its segments sealed in the catalogue."""
        media, self.media = list(self.media.values()), {}
        for offer in self.offers.values():
            await self.host.discard(offer)
        self.offers.clear()
        for one in media:
            with contextlib.suppress(BodycamError, PipeClosed):
                await one.close()


async def _main(fd: int) -> None:
    sock = socket.socket(fileno=fd)
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    # The configuration comes first, pickled by the main process (which started this one;
    # nothing is ever unpickled the other way).
    size = int.from_bytes(await reader.readexactly(4), "big")
    config, index = pickle.loads(await reader.readexactly(size))
    assert isinstance(config, Config)
    setup_logging(config.log.level, config.log.format)
    restrict_host_candidates(config.ice.addresses)
    worker = Worker(config, int(index))
    logger.info("media worker %d: pid %d, ready", worker.index, os.getpid())
    await worker.serve(reader, writer)
    logger.info("media worker %d: stopped", worker.index)


def main(argv: list[str]) -> None:
    # Ctrl-C in a terminal reaches the whole process group: the main process stops the
    # workers itself, after its sessions' media is closed (a main process killed outright
    # ends its workers through their pipe).
    # So does SIGTERM, from a service manager stopping the whole group (systemd's default).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    asyncio.run(_main(int(argv[1])))


if __name__ == "__main__":
    main(sys.argv)
