"""Offers for tests that exercise the WHIP endpoint without a full camera."""

from __future__ import annotations

import asyncio

import aiohttp
from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack


async def make_offer(
    video: str | None = "H264", audio: bool = True
) -> tuple[RTCPeerConnection, str]:
    """A real aiortc offer (sendonly), and its peer connection (close it after use)."""
    pc, _ = await _offerer(video, audio)
    return pc, pc.localDescription.sdp


async def _offerer(video: str | None, audio: bool) -> tuple[RTCPeerConnection, RTCDataChannel]:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    if video:
        transceiver = pc.addTransceiver(VideoStreamTrack(), direction="sendonly")
        capabilities = RTCRtpSender.getCapabilities("video")
        transceiver.setCodecPreferences([c for c in capabilities.codecs if c.name == video])
    if audio:
        pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
    channel = pc.createDataChannel("telemetry")
    await pc.setLocalDescription(await pc.createOffer())
    return pc, channel


async def publish(gateway_url: str, token: str) -> tuple[RTCPeerConnection, RTCDataChannel]:
    """A connected publisher (aiortc's own test tracks) and its open telemetry channel."""
    pc, channel = await _offerer("H264", True)
    opened = asyncio.Event()
    channel.on("open", opened.set)
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            gateway_url + "/whip",
            data=pc.localDescription.sdp,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/sdp"},
        ) as response,
    ):
        assert response.status == 201, await response.text()
        answer = await response.text()
    await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    await asyncio.wait_for(opened.wait(), 10)
    return pc, channel
