"""Offers for tests that exercise the WHIP endpoint without a full camera."""

from __future__ import annotations

from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack


async def make_offer(
    video: str | None = "H264", audio: bool = True
) -> tuple[RTCPeerConnection, str]:
    """A real aiortc offer (sendonly), and its peer connection (close it after use)."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    if video:
        transceiver = pc.addTransceiver(VideoStreamTrack(), direction="sendonly")
        capabilities = RTCRtpSender.getCapabilities("video")
        transceiver.setCodecPreferences([c for c in capabilities.codecs if c.name == video])
    if audio:
        pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
    pc.createDataChannel("telemetry")
    await pc.setLocalDescription(await pc.createOffer())
    return pc, pc.localDescription.sdp
