"""Streaming a file that a worker thread produces (a remuxed recording, a bundle as tar) to
one client, with back-pressure, on threads of their own.

A long view holds its thread for its whole length: those threads are not the default pool's
(logins' password checks and the purge use that one), and at most `MAX_STREAMS` run at
once; past that the answer is 429. Errors before the first byte get a proper HTTP answer;
after it, the stream just stops (and the log says why).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web

from ..errors import BodycamError, TooManyRequests

logger = logging.getLogger(__name__)

PIPE_DEPTH = 8  # chunks between the producing thread and the client: back-pressure
MAX_STREAMS = 8  # recordings and bundles streamed at once


class Pipe:
    """A non-seekable file for a worker thread whose bytes the event loop sends on."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(PIPE_DEPTH)
        self.gone = threading.Event()

    def write(self, data: Any) -> int:
        if self.gone.is_set():
            raise OSError("the client went away")
        future = asyncio.run_coroutine_threadsafe(self.queue.put(bytes(data)), self._loop)
        while True:
            try:
                future.result(timeout=1.0)
                return len(data)
            except TimeoutError:
                if self.gone.is_set():
                    future.cancel()
                    raise OSError("the client went away") from None

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        raise OSError("not seekable")

    def flush(self) -> None:
        return None


async def stream(
    request: web.Request, content_type: str, filename: str, produce: Callable[[Any], Any]
) -> web.StreamResponse:
    """Run `produce(file)` on a worker thread and stream what it writes to the client."""
    pipe = Pipe(asyncio.get_running_loop())

    def work() -> None:
        try:
            produce(pipe)
        finally:
            if not pipe.gone.is_set():
                asyncio.run_coroutine_threadsafe(pipe.queue.put(None), pipe._loop)

    streams = request.app[streams_key]
    if streams.running >= MAX_STREAMS:
        raise TooManyRequests(f"{MAX_STREAMS} recordings are being read already: try again soon")
    streams.running += 1
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(loop.run_in_executor(streams.executor, work))
    task.add_done_callback(lambda _: streams.finished())
    response: web.StreamResponse | None = None
    try:
        first = await _next(pipe, task)  # errors before the first byte get a proper answer
        response = web.StreamResponse(
            headers={
                "Content-Type": content_type,
                "Content-Disposition": f'attachment; filename="{filename}"',
                "Cache-Control": "no-store",
            }
        )
        await response.prepare(request)
        chunk = first
        while chunk is not None:
            await response.write(chunk)
            chunk = await _next(pipe, task)
        await response.write_eof()
    except (ConnectionError, BodycamError) as err:
        if response is None or not response.prepared:
            raise  # nothing sent yet: the client gets the error itself
        logger.warning("%s: stream stopped: %s", request.path, err)
    finally:
        pipe.gone.set()
        while not pipe.queue.empty():
            pipe.queue.get_nowait()
        await asyncio.gather(task, return_exceptions=True)
    return response


class Streams:
    """Threads of their own for recordings and bundles being streamed: a long view holds
    one for its whole length, and must not take those logins and the purge run on."""

    def __init__(self) -> None:
        self.executor = ThreadPoolExecutor(MAX_STREAMS, thread_name_prefix="stream")
        self.running = 0

    def finished(self) -> None:
        self.running -= 1


streams_key = web.AppKey("streams", Streams)


async def streams_ctx(app: web.Application) -> AsyncIterator[None]:
    app[streams_key] = streams = Streams()
    yield
    streams.executor.shutdown(wait=False, cancel_futures=True)


async def _next(pipe: Pipe, task: asyncio.Future[Any]) -> bytes | None:
    """The next chunk, None at the end; the producer's error if it failed."""
    getter = asyncio.ensure_future(pipe.queue.get())
    done, _ = await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
    if getter not in done:
        error = task.exception()
        if error is not None:
            getter.cancel()
            raise error
        return await getter
    chunk = getter.result()
    if chunk is None:
        await task  # raises what the producer raised, if anything
    return chunk
