"""One WHIP (RFC 9725) publishing session: peer connection, offer/answer over HTTP, teardown.

Besides the clean end (`unpublish`: DELETE, then close), a session can `vanish` the way a
body camera on 4G does when the network drops: from one instant nothing more leaves or
arrives, no DTLS close_notify, no RTCP BYE, no SCTP ABORT, no DELETE. The gateway sees
silence and must decide on its own that the link is gone.

The camera's side of that: a gateway that stops sending RTCP receiver reports (aiortc's
receivers send one every 0.5 to 1.5 s) for `link_timeout` seconds is gone (killed, its host
down, the radio lost), and `on_lost` is told so; ICE consent freshness alone would take 30 s.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcdatachannel import RTCDataChannel

from bodycam.media.ice import restrict_host_candidates

logger = logging.getLogger(__name__)

_MIME = {"h264": "video/H264", "vp8": "video/VP8"}


class WhipError(Exception):
    """The WHIP endpoint refused or failed a request."""

    def __init__(self, message: str, status: int | None = None, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


def whip_endpoint(base_url: str) -> str:
    """The WHIP endpoint for a gateway base URL (`…/whip` is kept as it is)."""
    base = base_url.rstrip("/")
    return base if base.endswith("/whip") else base + "/whip"


def default_ice_addresses(url: str) -> list[str]:
    """Loopback only when the gateway is on this host, else every interface (empty list)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return ["127.0.0.1"]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return []
    if address.is_loopback:
        return [str(address) if address.version == 6 else "127.0.0.1"]
    return []


def codec_preferences(kind: str, codec: str) -> list[Any]:
    """Only `codec` (and its RTX for video), so the offer leaves the answerer no choice."""
    capabilities = RTCRtpSender.getCapabilities(kind).codecs
    wanted = "audio/opus" if kind == "audio" else _MIME[codec]
    chosen = [c for c in capabilities if c.mimeType.lower() == wanted.lower()]
    if kind == "video" and codec == "h264":
        # Constrained baseline (42e0..) first: that is what the encoder produces.
        chosen.sort(key=lambda c: not str(c.parameters.get("profile-level-id")).startswith("42e0"))
    rtx = [c for c in capabilities if c.mimeType.lower() == "video/rtx"]
    return chosen + rtx


class _BlackHole:
    """Stands in for a UDP transport after a link loss: swallows whatever aiortc sends."""

    def __init__(self, protocol: asyncio.DatagramProtocol) -> None:
        self._protocol = protocol

    def sendto(self, data: bytes, addr: Any = None) -> None:
        pass

    def close(self) -> None:
        # aioice's StunProtocol.close() waits for connection_lost: give it one.
        self._protocol.connection_lost(None)


class WhipPublisher:
    """Publishes tracks and a `telemetry` data channel to a WHIP endpoint."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        endpoint: str,
        token: str,
        user_agent: str,
        ice_addresses: Sequence[str],
        name: str,
        on_open: Callable[[RTCDataChannel], None] | None = None,
        link_timeout: float | None = 3.0,
    ) -> None:
        self.endpoint = endpoint
        self.link_timeout = link_timeout
        self.location: str | None = None
        self.pc: RTCPeerConnection | None = None
        self.channel: RTCDataChannel | None = None
        self.on_lost: Callable[[WhipPublisher, str], None] | None = None
        self._http = http
        self._token = token
        self._user_agent = user_agent
        self._ice_addresses = list(ice_addresses)
        self._name = name
        self._on_open = on_open
        self._ending = False
        self._deaf: list[asyncio.BaseTransport] = []
        self._heard: float | None = None  # monotonic time of the gateway's last RTCP
        self._watchdog: asyncio.Task[None] | None = None

    def _headers(self, **extra: str) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self._token}",
            "User-Agent": self._user_agent,
            **extra,
        }

    async def publish(self, video: MediaStreamTrack, audio: MediaStreamTrack, codec: str) -> None:
        """Offer the tracks and the data channel, POST the offer, apply the answer."""
        restrict_host_candidates(self._ice_addresses)
        self.pc = pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.on("connectionstatechange", self._state_changed)
        # The channel must exist before createOffer for the offer to carry an SCTP m-line.
        self.channel = channel = pc.createDataChannel("telemetry")
        if self._on_open is not None:
            channel.on("open", functools.partial(self._on_open, channel))
        video_tx = pc.addTransceiver(video, direction="sendonly")
        video_tx.setCodecPreferences(codec_preferences("video", codec))
        audio_tx = pc.addTransceiver(audio, direction="sendonly")
        audio_tx.setCodecPreferences(codec_preferences("audio", codec))
        # With encoded packets, RTCRtpSender._send_keyframe only sets a flag its (unused)
        # encoder would read, so PLI/FIR from the gateway would do nothing. An instance
        # attribute shadows the method: keyframe requests now reach the track.
        video_tx.sender._send_keyframe = video.request_keyframe  # type: ignore[attr-defined,method-assign]
        try:
            # aiortc gathers every candidate inside setLocalDescription: no trickle needed.
            await pc.setLocalDescription(await pc.createOffer())
            answer = await self._post(pc.localDescription.sdp)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        except BaseException:
            self._ending = True
            await pc.close()
            raise
        if self.link_timeout is not None:
            for sender in (video_tx.sender, audio_tx.sender):
                self._listen_rtcp(sender)
            self._watchdog = asyncio.create_task(self._watch(self.link_timeout))
        logger.info("%s: published to %s", self._name, self.location)

    def _listen_rtcp(self, sender: RTCRtpSender) -> None:
        # RTCDtlsTransport routes each RTCP packet for our SSRCs to the sender's
        # `_handle_rtcp_packet`: an instance attribute in front of it notes the time.
        handle = sender._handle_rtcp_packet

        async def heard(packet: Any) -> None:
            self._heard = time.monotonic()
            await handle(packet)

        sender._handle_rtcp_packet = heard  # type: ignore[method-assign]

    async def _watch(self, silence: float) -> None:
        """Armed by the gateway's first report, so a slow start is not a lost link."""
        while not self._ending:
            await asyncio.sleep(silence / 6)
            heard = self._heard
            if heard is not None and time.monotonic() - heard > silence and not self._ending:
                self._ending = True
                logger.warning("%s: no RTCP from %s for %.0f s", self._name, self.location, silence)
                if self.on_lost is not None:
                    self.on_lost(self, f"gateway silent for {silence:.0f} s")
                return

    async def _post(self, offer: str) -> str:
        headers = self._headers(**{"Content-Type": "application/sdp"})
        try:
            async with self._http.post(self.endpoint, data=offer, headers=headers) as response:
                body = await response.text()
                if response.status != 201:
                    raise WhipError(
                        f"WHIP POST {self.endpoint} answered {response.status} "
                        f"{response.reason}: {body.strip()[:500]}",
                        status=response.status,
                        body=body,
                    )
                location = response.headers.get("Location")
        except (aiohttp.ClientError, TimeoutError) as err:
            raise WhipError(f"WHIP POST {self.endpoint} failed: {err!r}") from err
        if not location:
            raise WhipError(f"WHIP POST {self.endpoint} answered 201 without a Location", 201)
        # RFC 9725 allows a relative Location: resolve it against the endpoint.
        self.location = urljoin(self.endpoint, location)
        return body

    async def unpublish(self) -> None:
        """End the session cleanly: DELETE the resource, then close the peer connection."""
        self._ending = True
        self._stop_watchdog()
        try:
            if self.location:
                async with self._http.delete(self.location, headers=self._headers()) as response:
                    if response.status >= 300:
                        text = (await response.text()).strip()[:200]
                        raise WhipError(
                            f"WHIP DELETE {self.location} answered {response.status}: {text}",
                            status=response.status,
                            body=text,
                        )
        except (aiohttp.ClientError, TimeoutError) as err:
            raise WhipError(f"WHIP DELETE {self.location} failed: {err!r}") from err
        finally:
            if self.pc is not None:
                await self.pc.close()

    async def vanish(self) -> None:
        """Go silent like a dropped 4G link: nothing more in or out, no goodbye of any kind.

        The UDP sockets stay open but deaf until `release()`, so the gateway's packets meet
        no ICMP port-unreachable either, as on a real radio drop. Closing the sockets instead
        would not do: asyncio logs "socket.send() raised exception." for every send to a
        closed datagram transport after the fifth, and pc.close() sends several.
        """
        self._ending = True
        self._stop_watchdog()
        pc = self.pc
        if pc is None:
            return
        for connection in self._ice_connections(pc):
            # aioice keeps one StunProtocol per local candidate; aiortc sends DTLS, SRTP
            # and SCTP through them. Detach each from its socket in both directions.
            for protocol in list(connection._protocols):
                real = protocol.transport
                real.set_protocol(asyncio.DatagramProtocol())
                protocol.transport = _BlackHole(protocol)
                self._deaf.append(real)
        # Closing now sends BYE, close_notify and ABORT into the black hole, and stops the
        # RTP tasks and the tracks.
        await pc.close()
        logger.info("%s: link to %s lost (simulated)", self._name, self.location)

    async def close(self) -> None:
        """Close the peer connection without telling the endpoint (after a failure)."""
        self._ending = True
        self._stop_watchdog()
        if self.pc is not None:
            await self.pc.close()

    def _stop_watchdog(self) -> None:
        if self._watchdog is not None and self._watchdog is not asyncio.current_task():
            self._watchdog.cancel()

    def release(self) -> None:
        """Close the sockets a vanished session kept open."""
        for transport in self._deaf:
            transport.close()
        self._deaf.clear()

    @staticmethod
    def _ice_connections(pc: RTCPeerConnection) -> set[Any]:
        transports = [t.sender.transport for t in pc.getTransceivers()]
        if pc.sctp is not None:
            transports.append(pc.sctp.transport)
        # RTCDtlsTransport → RTCIceTransport → aioice.Connection; bundled m-lines share one.
        return {dtls.transport._connection for dtls in transports}

    def _state_changed(self) -> None:
        assert self.pc is not None
        state = self.pc.connectionState
        logger.debug("%s: connection %s", self._name, state)
        if self._ending or self.on_lost is None:
            return
        if state == "failed":
            self.on_lost(self, "connection failed")
        elif state == "closed":
            # aiortc closes the peer connection itself when the remote DTLS sends close_notify.
            self.on_lost(self, "closed by gateway")
