"""Live relay: a session's encoded frames forwarded to its viewers, never re-encoded.

Each viewer has one track per kind whose `recv()` returns encoded `av.Packet`s: aiortc's
sender then packetizes them as they are (as `MediaPlayer(decode=False)` does). Frames
reach the relay inline from the ingest tap, so the per-frame work is a queue put per
viewer; everything else happens in each viewer's own sender task.

A viewer starts on a keyframe (the relay asks the camera for one at once) and starts again
on a keyframe after it fell behind: its queues are bounded, and a viewer whose queue is
full loses what is queued, not the recording's or other viewers' frames. H.264 keyframes
that come without SPS/PPS get the last ones seen put in front, so a viewer can decode its
first picture. When the camera reconnects (new RTP timestamps), each viewer's timestamps
are rebased so they keep running forward.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from fractions import Fraction
from typing import Any

import av
from aiortc import MediaStreamTrack, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError

from ..logs import ids
from .bitstream import h264_keyframe_info
from .tap import EncodedFrame

logger = logging.getLogger(__name__)

VIDEO_QUEUE = 60  # frames: two seconds at 30 fps
AUDIO_QUEUE = 100  # 20 ms Opus frames: two seconds
KEYFRAME_REQUEST_INTERVAL = 0.5  # seconds between PLIs asked on behalf of viewers
# After a camera reconnects, the next frame follows the last one sent by one frame length.
FRAME_STEP = {"video": 3000, "audio": 960}  # 30 fps at 90 kHz, 20 ms at 48 kHz


class ViewerTrack(MediaStreamTrack):
    """One kind of a viewer's media: encoded packets from the relay, bounded."""

    def __init__(self, kind: str, size: int) -> None:
        super().__init__()
        self.kind = kind
        self.queue: asyncio.Queue[av.Packet[Any] | None] = asyncio.Queue(size)

    async def recv(self) -> av.Packet[Any]:
        packet = await self.queue.get()
        if packet is None:
            self.stop()
            raise MediaStreamError
        return packet


class Viewer:
    """What the relay keeps per viewer: its tracks and where each kind's timeline stands."""

    def __init__(self, viewer_id: str, label: str, pc: RTCPeerConnection | None = None) -> None:
        self.id = viewer_id
        self.label = label
        self.pc = pc
        self.tracks = {
            "video": ViewerTrack("video", VIDEO_QUEUE),
            "audio": ViewerTrack("audio", AUDIO_QUEUE),
        }
        self.waiting_keyframe = True
        self.sent = 0
        self.dropped = 0
        self._offset = {"video": 0, "audio": 0}
        self._last = {"video": -1, "audio": -1}
        self._rebase = {"video": False, "audio": False}
        # Called once when the view ends, however it ends (the register's "live view end").
        self.on_end: Callable[[], Awaitable[None]] | None = None

    def rebase(self) -> None:
        """The camera's timestamps restart (a reconnect): keep ours running forward."""
        self._rebase = {"video": True, "audio": True}
        self.waiting_keyframe = True

    def pts(self, frame: EncodedFrame) -> int:
        kind = frame.kind
        if self._rebase[kind] and self._last[kind] >= 0:
            self._offset[kind] = self._last[kind] + FRAME_STEP[kind] - frame.rtp_time
        self._rebase[kind] = False
        pts = frame.rtp_time + self._offset[kind]
        self._last[kind] = pts
        return pts

    async def close(self) -> None:
        for track in self.tracks.values():
            _drain(track.queue)
            track.queue.put_nowait(None)
        if self.pc is not None:
            await self.pc.close()
        on_end, self.on_end = self.on_end, None
        if on_end is not None:
            try:
                await on_end()
            except Exception:  # the view is over whatever the register said
                logger.exception(
                    "viewer %s: end of view not recorded", self.label, extra=ids(viewer_id=self.id)
                )


class Relay:
    """One live session's viewers, fed from the ingest tap."""

    def __init__(self, session_id: str, request_keyframe: Callable[[], None]) -> None:
        self.session_id = session_id
        self._request_keyframe = request_keyframe
        self._viewers: dict[str, Viewer] = {}
        self._parameter_sets = b""  # last H.264 SPS+PPS seen (Annex B)
        self._last_request = 0.0

    def __len__(self) -> int:
        return len(self._viewers)

    def viewer(self, viewer_id: str) -> Viewer | None:
        return self._viewers.get(viewer_id)

    def add(self, viewer: Viewer) -> None:
        self._viewers[viewer.id] = viewer
        self.keyframe_wanted(force=True)

    async def remove(self, viewer_id: str) -> Viewer | None:
        viewer = self._viewers.pop(viewer_id, None)
        if viewer is not None:
            await viewer.close()
        return viewer

    async def close(self) -> None:
        """The session is over: every view ends."""
        await asyncio.gather(*(self.remove(v) for v in list(self._viewers)))

    def new_connection(self, parameter_sets: bytes) -> None:
        """The camera (re)connected: new timestamps, maybe parameter sets from the offer."""
        if parameter_sets:
            self._parameter_sets = parameter_sets
        for viewer in self._viewers.values():
            viewer.rebase()

    def push(self, frame: EncodedFrame) -> None:
        """Every frame of the session, inline from the tap: a queue put per viewer."""
        data = frame.data
        if frame.keyframe and frame.codec == "H264":
            # even without viewers: the next one may start on a keyframe without them
            data = self._with_parameter_sets(data)
        for viewer in self._viewers.values():
            self._offer(viewer, frame, data)

    def keyframe_wanted(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_request >= KEYFRAME_REQUEST_INTERVAL:
            self._last_request = now
            self._request_keyframe()

    def _offer(self, viewer: Viewer, frame: EncodedFrame, data: bytes) -> None:
        if viewer.waiting_keyframe:
            if frame.kind != "video" or not frame.keyframe:
                return  # video starts on a keyframe, and audio with it
            viewer.waiting_keyframe = False
        queue = viewer.tracks[frame.kind].queue
        if queue.full():
            viewer.dropped += _drain(queue)
            if frame.kind == "video":
                logger.info(
                    "session %s: viewer %s fell behind; restarting it on a keyframe",
                    self.session_id,
                    viewer.label,
                    extra=ids(session_id=self.session_id, viewer_id=viewer.id),
                )
                viewer.waiting_keyframe = True
                self.keyframe_wanted()
                return
        packet = av.Packet(data)
        packet.pts = packet.dts = viewer.pts(frame)
        packet.time_base = Fraction(1, frame.clock_rate)
        queue.put_nowait(packet)
        viewer.sent += 1

    def _with_parameter_sets(self, data: bytes) -> bytes:
        try:
            info = h264_keyframe_info(data)
        except ValueError:  # a broken SPS: the camera's, not ours to end the session over
            info = None
        if info is not None:
            self._parameter_sets = info.extradata
            return data
        return self._parameter_sets + data


def _drain(queue: asyncio.Queue[av.Packet[Any] | None]) -> int:
    count = 0
    while not queue.empty():
        queue.get_nowait()
        count += 1
    return count
