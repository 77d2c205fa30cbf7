"""A live viewer's peer connection (WHEP): answered with the session's own codecs.

The relay does not transcode: the answer offers the camera's codecs only, sendonly, and a
viewer that cannot receive them is refused (422) with the codec named. The viewer's tracks
are fed by the session's relay (`media.relay`); the bookkeeping of a view (register
entries, its end) is `SessionManager.watch`'s.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.rtcrtpparameters import RTCRtpCodecCapability

from ..errors import Unprocessable
from ..media.relay import Viewer
from ..media.tap import forward_keyframe_requests, retrieve_connecting
from .connection import parse_offer


def _codecs(kind: str, name: str) -> list[RTCRtpCodecCapability]:
    capabilities = RTCRtpSender.getCapabilities(kind)
    assert capabilities is not None
    return [c for c in capabilities.codecs if c.name.lower() == name.lower()]


def _check_offer(sdp: str) -> None:
    parsed = parse_offer(sdp)
    videos = [m for m in parsed.media if m.kind == "video" and m.port != 0]
    if not any(m.direction in ("recvonly", "sendrecv") for m in videos):
        raise Unprocessable("the offer does not receive video (direction must be recvonly)")


async def open_view(
    codecs: tuple[str, str],
    offer: str,
    label: str,
    request_keyframe: Callable[[], None],
    viewer_id: str = "",
) -> tuple[Viewer, str]:
    """A viewer of a session sending (video, audio) `codecs`, with the SDP answer for it.

    The viewer's own keyframe requests (PLI, FIR on loss) go to `request_keyframe`.
    """
    _check_offer(offer)
    video, audio = codecs
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    viewer = Viewer(viewer_id or secrets.token_urlsafe(16), label, pc)
    try:
        # As for WHIP: aiortc answers in the offer's codec order unless transceivers with
        # preferences exist before the offer is applied; here they must be the session's.
        for kind, name in (("video", video), ("audio", audio)):
            if name:
                transceiver = pc.addTransceiver(viewer.tracks[kind], direction="sendonly")
                transceiver.setCodecPreferences(_codecs(kind, name))
                if kind == "video":
                    forward_keyframe_requests(transceiver.sender, request_keyframe)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        answer = await pc.createAnswer()
        await pc.setLocalDescription(answer)
        retrieve_connecting(pc)
    except Exception as err:  # noqa: BLE001 aiortc raises what its negotiation meets
        await pc.close()
        raise Unprocessable(f"cannot answer this viewer with {video}/{audio}: {err}") from None
    sent = {t.kind for t in pc.getTransceivers() if t.sender.track is not None and t._codecs}
    if "video" not in sent:
        await pc.close()
        raise Unprocessable(f"the viewer cannot receive {video}, the session's video codec")
    return viewer, str(pc.localDescription.sdp)
