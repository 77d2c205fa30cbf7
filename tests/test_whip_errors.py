"""WHIP endpoint: every bad input gets a clear error, and the gateway stays up."""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any

import aiohttp
import pytest

from bodycam.clock import SystemClock
from bodycam.gateway.connection import accept_offer
from bodycam.media.tap import EncodedFrame, retrieve_connecting
from bodycam.models import SessionState
from simulators.axis_bodycam import AxisBodycam

from .helpers import Gateway, live_of, media_in_process, media_of, small_media, wait_for
from .whip_client import make_offer

SDP = "application/sdp"

FINGERPRINT = ":".join(["AB"] * 32)
AV1_ONLY = f"""v=0
o=- 1 1 IN IP4 127.0.0.1
s=-
t=0 0
m=video 9 UDP/TLS/RTP/SAVPF 96
c=IN IP4 127.0.0.1
a=mid:0
a=sendonly
a=rtpmap:96 AV1/90000
a=ice-ufrag:abcd
a=ice-pwd:abcdefghijklmnopqrstuvwx
a=fingerprint:sha-256 {FINGERPRINT}
a=setup:actpass
"""


async def post(
    gateway: Gateway, body: str | bytes, headers: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(gateway.url + "/whip", data=body, headers=headers) as response,
    ):
        return response.status, await response.json(content_type=None)


@pytest.fixture
async def offer() -> str:
    pc, sdp = await make_offer()
    await pc.close()
    return sdp


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        ({"Content-Type": SDP}, 401, "missing Authorization"),
        ({"Content-Type": SDP, "Authorization": "Basic abc"}, 401, "must be 'Bearer"),
        ({"Content-Type": SDP, "Authorization": "Bearer bcd_nope"}, 401, "unknown device token"),
        ({"Content-Type": SDP, "Authorization": "Bearer " + "x" * 300}, 401, "too long"),
    ],
)
async def test_bad_credentials(
    gateway: Gateway, offer: str, headers: dict[str, str], status: int, message: str
) -> None:
    got, body = await post(gateway, offer, headers)
    assert got == status
    assert message in body["error"]


async def test_revoked_device_is_forbidden(gateway: Gateway, offer: str) -> None:
    token = await gateway.enroll("cam-rev")
    await gateway.store.run(gateway.store.revoke_device, "cam-rev", SystemClock().now())
    status, body = await post(
        gateway, offer, {"Content-Type": SDP, "Authorization": f"Bearer {token}"}
    )
    assert status == 403
    assert "cam-rev is revoked" in body["error"]


@pytest.mark.parametrize(
    ("content_type", "body", "status", "message"),
    [
        ("text/plain", "OFFER", 415, "Content-Type must be application/sdp"),
        (SDP, "v=0\r\n" + "a=x\r\n" * 20000, 413, "over the 65536-byte limit"),
        (SDP, "hello", 400, "not an SDP offer"),
        (SDP, "v=0\nm=video 9 RTP/AVP\nthis is not sdp", 400, "could not be parsed"),
        (SDP, AV1_ONLY, 422, "no video codec the gateway records"),
        (SDP, b"m=\xff\xfe", 415, "not UTF-8"),
    ],
)
async def test_bad_bodies(
    gateway: Gateway, content_type: str, body: str, status: int, message: str
) -> None:
    token = await gateway.enroll("cam-1")
    got, answer = await post(
        gateway, body, {"Content-Type": content_type, "Authorization": f"Bearer {token}"}
    )
    assert got == status, answer
    assert message in answer["error"]


async def test_offer_without_video_is_unprocessable(gateway: Gateway) -> None:
    token = await gateway.enroll("cam-1")
    pc, sdp = await make_offer(video=None)
    await pc.close()
    status, body = await post(
        gateway, sdp, {"Content-Type": SDP, "Authorization": f"Bearer {token}"}
    )
    assert status == 422
    assert "no video" in body["error"]


async def test_an_offer_of_video_alone_is_answered(gateway: Gateway) -> None:
    # A camera with its microphone off: the gateway's audio transceiver matched nothing in
    # the offer and the answer failed ("None is not in list"), a 400 and a session for nothing.
    token = await gateway.enroll("cam-1")
    pc, sdp = await make_offer(audio=False)
    await pc.close()
    headers = {"Content-Type": SDP, "Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(gateway.url + "/whip", data=sdp, headers=headers) as response,
    ):
        assert response.status == 201, await response.text()
        assert "m=audio" not in await response.text()
    [session] = await gateway.store.run(gateway.store.list_sessions)
    assert (session.video_codec, session.audio_codec) == ("H264", "")


async def test_second_live_session_conflicts_then_delete_rules(gateway: Gateway) -> None:
    token = await gateway.enroll("cam-1")
    other = await gateway.enroll("cam-2")
    auth = {"Authorization": f"Bearer {token}"}
    pc1, sdp1 = await make_offer()
    pc2, sdp2 = await make_offer()
    async with aiohttp.ClientSession() as http:
        async with http.post(
            gateway.url + "/whip", data=sdp1, headers={**auth, "Content-Type": SDP}
        ) as first:
            assert first.status == 201
            assert first.content_type == SDP
            assert "a=recvonly" in await first.text()
            location = first.headers["Location"]
            assert first.headers["Access-Control-Allow-Origin"] == "*"
            assert "Location" in first.headers["Access-Control-Expose-Headers"]
        assert len(location.rsplit("/", 1)[1]) >= 32  # unguessable
        async with http.post(
            gateway.url + "/whip", data=sdp2, headers={**auth, "Content-Type": SDP}
        ) as second:
            assert second.status == 409
            assert "already has a live session" in (await second.json())["error"]
        async with http.delete(
            gateway.url + location, headers={"Authorization": f"Bearer {other}"}
        ) as wrong:
            assert wrong.status == 403
        async with http.delete(gateway.url + "/whip/sessions/nope", headers=auth) as unknown:
            assert unknown.status == 404
        async with http.delete(gateway.url + location) as anonymous:
            assert anonymous.status == 401
        async with http.delete(gateway.url + location, headers=auth) as done:
            assert done.status == 200
            assert (await done.json())["state"] == "ended"
        async with http.delete(gateway.url + location, headers=auth) as again:
            assert again.status == 200  # idempotent
        async with http.patch(gateway.url + location, headers=auth) as patch:
            assert patch.status == 405  # no trickle ICE (RFC 9725 section 4.3.1)
    await pc1.close()
    await pc2.close()
    sessions = await gateway.store.run(gateway.store.list_sessions)
    assert [s.state for s in sessions] == ["ended"]


async def test_options_advertises_sdp_and_cors(gateway: Gateway) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.options(
            gateway.url + "/whip",
            headers={"Origin": "https://console.example", "Access-Control-Request-Method": "POST"},
        ) as response,
    ):
        assert response.status == 204
        assert response.headers["Accept-Post"] == "application/sdp"
        allowed = response.headers["Access-Control-Allow-Headers"]
        assert "Authorization" in allowed
        assert "Content-Type" in allowed
        assert "POST" in response.headers["Access-Control-Allow-Methods"]


async def test_gateway_still_serves_after_errors(gateway: Gateway, offer: str) -> None:
    for _ in range(3):
        await post(gateway, "garbage", {"Content-Type": SDP, "Authorization": "Bearer x"})
    async with aiohttp.ClientSession() as http, http.get(gateway.url + "/healthz") as health:
        assert health.status == 200
    async with aiohttp.ClientSession() as http, http.get(gateway.url + "/metrics") as metrics:
        text = await metrics.text()
    assert 'bodycam_whip_requests_total{method="POST",status="401"} 3.0' in text


async def raw_post(gateway: Gateway, head: bytes, body_parts: list[bytes]) -> tuple[int, bytes]:
    """POST /whip over a bare socket, the body sent in parts with pauses between them."""
    reader, writer = await asyncio.open_connection(gateway.server.host, gateway.server.port)
    length = sum(len(p) for p in body_parts)
    writer.write(
        b"POST /whip HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/sdp\r\n"
        + head
        + f"Content-Length: {length}\r\nConnection: close\r\n\r\n".encode()
    )
    for part in body_parts:
        writer.write(part)
        await writer.drain()
        await asyncio.sleep(0.3)
    response = await reader.read()
    writer.close()
    status = int(response.split(b" ", 2)[1])
    return status, response.split(b"\r\n\r\n", 1)[1]


async def test_an_offer_split_over_tcp_segments_is_read_whole(gateway: Gateway) -> None:
    token = await gateway.enroll("cam-1")
    pc, sdp = await make_offer()
    body = sdp.encode()
    status, answer = await raw_post(
        gateway,
        f"Authorization: Bearer {token}\r\n".encode(),
        [body[: len(body) // 3], body[len(body) // 3 :]],
    )
    await pc.close()
    assert status == 201, answer
    assert b"a=recvonly" in answer


async def test_a_token_that_is_not_ascii_is_refused_not_crashed(gateway: Gateway) -> None:
    status, body = await raw_post(gateway, b"Authorization: Bearer \xff\xfe\xfd\r\n", [b"v=0"])
    assert status == 401
    assert b"printable ASCII" in body


def without_direction(sdp: str, kind: str) -> str:
    """The offer with the direction attribute of its `kind` section taken out."""
    sections = sdp.split("m=")
    for at, section in enumerate(sections):
        if section.startswith(kind):
            sections[at] = "".join(
                line for line in section.splitlines(keepends=True) if line.strip() != "a=sendonly"
            )
    return "m=".join(sections)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda sdp: sdp.replace("a=mid:0\r\n", ""), "BUNDLE group names mid 0"),
        (lambda sdp: sdp.replace("a=mid:1\r\n", "a=mid:0\r\n"), "gives mid 0 to two media"),
        (
            lambda sdp: "\r\n".join(x for x in sdp.split("\r\n") if "fingerprint" not in x),
            "without a=fingerprint",
        ),
        (lambda sdp: sdp + "m=audio 9 RTP/AVP 0\r\n" * 20, "at most 16"),
        (lambda sdp: without_direction(sdp, "audio"), "audio section (m= line 2) has no direction"),
    ],
)
async def test_offers_aiortc_would_trip_on_are_refused_first(
    gateway: Gateway, offer: str, edit: Any, message: str
) -> None:
    """Found by tests/test_fuzz_http.py: such offers answered 500 (aiortc failing to answer,
    then to close) and left the device's new session without a connection, or failed later
    in a task of aiortc's own; thousands of m= lines held the event loop over 100 ms."""
    token = await gateway.enroll("cam-1")
    headers = {"Content-Type": SDP, "Authorization": f"Bearer {token}"}
    status, body = await post(gateway, edit(offer), headers)
    assert status == 400, body
    assert message in body["error"]
    async with (
        aiohttp.ClientSession() as http,
        http.post(gateway.url + "/whip", data=offer, headers=headers) as good,
    ):
        assert good.status == 201  # the device was left free to publish


async def test_aiortc_s_connecting_step_failing_is_retrieved(
    offer: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Found by tests/test_fuzz_http.py (2 offers in 2479): a peer closed while aiortc's own
    connecting task was between two ICE transports made it fail on the closed one, an
    exception nobody retrieved (asyncio logs it as an error when the task is collected).
    Here the ICE transport is closed before that task first runs, which fails it the same
    way every time."""
    caplog.set_level(logging.DEBUG, "bodycam.media.tap")
    pc, _ = await accept_offer(offer)
    await pc.setLocalDescription(await pc.createAnswer())
    retrieve_connecting(pc)
    [connecting] = [t for t in asyncio.all_tasks() if "__connect" in repr(t)]
    await pc.getTransceivers()[0].receiver.transport.transport.stop()
    await asyncio.wait_for(asyncio.wait([connecting]), 5)
    await pc.close()
    del connecting
    gc.collect()  # asyncio reports an exception nobody retrieved when its task goes
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]
    assert "peer closed while connecting: RTCIceTransport is closed" in caplog.text


@media_in_process
async def test_a_frame_a_consumer_fails_on_does_not_end_the_session(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    """Raised inside aiortc's RTP handler, a consumer's failure would close the camera's
    DTLS transport: the connection logs it (at most every 10 s) and goes on."""
    token = await gateway.enroll("cam-1")
    async with AxisBodycam(gateway.url, "cam-1", token, media=small_media()) as camera:
        await camera.press()
        [session] = await gateway.store.run(gateway.store.list_sessions)
        connection = media_of(gateway, session.id).connection
        assert connection is not None
        failed: list[EncodedFrame] = []

        def failing(frame: EncodedFrame) -> None:
            failed.append(frame)
            raise ValueError("a consumer that trips on this frame")

        # a consumer that fails, first in line; one that counts, last: it gets every frame
        after: list[EncodedFrame] = []
        connection._sinks = (failing, *connection._sinks, after.append)
        await wait_for(lambda: len(failed) > 60, within=10)
        assert after[: len(failed) - 1] == failed[: len(failed) - 1]
        live = live_of(gateway, session.id)
        assert live.state == SessionState.LIVE
        assert (
            media_of(gateway, session.id).connection is connection
        )  # the same connection throughout
        logged = [r for r in caplog.records if "could not be handled" in r.getMessage()]
        assert len(logged) == 1  # not one line per frame
        await camera.press()
