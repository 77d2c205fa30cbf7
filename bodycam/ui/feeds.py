"""Fixed cameras' pictures for the console: one VAPIX MJPEG stream per camera, shared.

The gateway holds the camera credentials; browsers only ever talk to the gateway. However
many tiles show a camera, the camera sends one stream (cameras have few stream slots, and
the CSU's uplink is shared): each JPEG is passed on as received, never decoded. A viewer
that reads slowly gets the newest picture when it is ready, never a queue of old ones. The
upstream stops when its last viewer has been gone for `LINGER_SECONDS`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import aiohttp
from aiohttp.http_exceptions import HttpProcessingError

from ..errors import BodycamError
from ..gateway.vapix import CameraError, Vapix
from ..logs import ids
from ..models import Camera

logger = logging.getLogger(__name__)

RESOLUTION, FPS = "640x360", 5  # a tile on a video wall, not a recording
MAX_JPEG_BYTES = 4 * 1024 * 1024
JPEG_START = b"\xff\xd8"  # SOI
LINGER_SECONDS = 5.0
RETRY_SECONDS = 2.0


class Feed:
    """One camera's MJPEG: the newest picture, and whoever waits for the next one."""

    def __init__(self, camera: Camera, vapix: Vapix, on_idle: Callable[[Feed], None]) -> None:
        self.camera = camera
        self._ids = ids(camera_id=camera.id)
        self.frame: bytes | None = None
        self.seq = 0
        self.error = ""
        self.viewers = 0
        self._vapix = vapix
        self._on_idle = on_idle
        self._next: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._run())

    @property
    def done(self) -> bool:
        return self._task.done()

    async def next_frame(self, after: int, wait: float) -> tuple[int, bytes] | None:
        """The first picture newer than `after`; None after `wait` seconds without one, or
        at once when the camera is failing (`error` says why)."""
        if self.seq > after and self.frame is not None:
            return self.seq, self.frame
        if self.error and self.frame is None:
            return None
        try:
            await asyncio.wait_for(asyncio.shield(self._next), wait)
        except TimeoutError:
            return None
        if self.frame is None:  # woken by a failure
            return None
        return self.seq, self.frame

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        idle_since: float | None = None
        while True:
            try:
                if await self._stream(lambda: self.viewers == 0):
                    break  # nobody has watched for LINGER_SECONDS
            except Exception as err:  # never a silent death: tiles would wait for nothing
                if not isinstance(err, BodycamError):
                    logger.exception(
                        "camera %s: MJPEG relay failed", self.camera.id, extra=self._ids
                    )
                elif str(err) != self.error:
                    logger.warning(
                        "camera %s: no picture for the console: %s",
                        self.camera.id,
                        err,
                        extra=self._ids,
                    )
                self._fail(str(err))
            if self.viewers == 0:
                idle_since = idle_since or loop.time()
                if loop.time() - idle_since >= LINGER_SECONDS:
                    break
            else:
                idle_since = None
            await asyncio.sleep(RETRY_SECONDS)
        self._on_idle(self)

    async def _stream(self, idle: Callable[[], bool]) -> bool:
        """Read pictures until the camera stops (an error) or nobody has watched for a while
        (True)."""
        loop = asyncio.get_running_loop()
        idle_since: float | None = None
        seconds = self._vapix.timeout_seconds
        async with self._vapix.mjpeg(self.camera, RESOLUTION, FPS) as response:
            try:
                reader = aiohttp.MultipartReader(response.headers, response.content)
            except (ValueError, KeyError, AssertionError) as err:
                raise CameraError(f"camera {self.camera.id}: not an MJPEG stream: {err}") from None
            while True:
                # each picture in time, whole: a camera trickling a byte a second (each read
                # in time) would otherwise hold the stream open for ever, viewers or not
                try:
                    async with asyncio.timeout(seconds):
                        jpeg = await self._picture(reader)
                except TimeoutError:
                    if idle():
                        return True  # nobody to tell
                    raise CameraError(
                        f"camera {self.camera.id}: no picture in {seconds:g} s"
                    ) from None
                self._publish(jpeg)
                if idle():
                    idle_since = idle_since or loop.time()
                    if loop.time() - idle_since >= LINGER_SECONDS:
                        return True
                else:
                    idle_since = None

    async def _picture(self, reader: aiohttp.MultipartReader) -> bytes:
        try:
            part = await reader.next()
            if part is None:
                raise CameraError(f"camera {self.camera.id}: MJPEG stream ended")
            if not isinstance(part, aiohttp.BodyPartReader):
                raise CameraError(f"camera {self.camera.id}: nested multipart in MJPEG")
            return await _read_part(part, self.camera.id)
        except (ValueError, AssertionError, HttpProcessingError) as err:  # aiohttp's parser
            raise CameraError(f"camera {self.camera.id}: bad MJPEG: {err}") from None

    def _publish(self, jpeg: bytes) -> None:
        self.frame, self.seq, self.error = jpeg, self.seq + 1, ""
        self._wake()

    def _fail(self, error: str) -> None:
        """No more picture: tiles stop showing the last one and hear why at once."""
        self.frame, self.error = None, error
        self._wake()

    def _wake(self) -> None:
        done, self._next = self._next, asyncio.get_running_loop().create_future()
        done.set_result(None)


async def _read_part(part: aiohttp.BodyPartReader, camera_id: str) -> bytes:
    chunks, size = [], 0
    while chunk := await part.read_chunk(64 * 1024):
        size += len(chunk)
        if size > MAX_JPEG_BYTES:
            raise CameraError(f"camera {camera_id}: a picture over {MAX_JPEG_BYTES} bytes")
        chunks.append(chunk)
    jpeg = b"".join(chunks)
    # passed on as received, never decoded: but a tile is sent JPEGs only (a camera's
    # login page or garbage would be shown as live, or not at all)
    if not jpeg.startswith(JPEG_START):
        raise CameraError(f"camera {camera_id}: a part of its MJPEG is not a JPEG picture")
    return jpeg


class Feeds:
    """The cameras being watched now, by id."""

    def __init__(self, vapix: Vapix) -> None:
        self._vapix = vapix
        self._feeds: dict[str, Feed] = {}

    def watch(self, camera: Camera) -> Feed:
        feed = self._feeds.get(camera.id)
        # new, or the registry changed it, or it stopped for lack of viewers just now
        if feed is None or feed.camera != camera or feed.done:
            feed = Feed(camera, self._vapix, self._forget)
            self._feeds[camera.id] = feed
        return feed

    def _forget(self, feed: Feed) -> None:
        if self._feeds.get(feed.camera.id) is feed:
            del self._feeds[feed.camera.id]

    async def close(self) -> None:
        feeds, self._feeds = list(self._feeds.values()), {}
        await asyncio.gather(*(f.close() for f in feeds))
