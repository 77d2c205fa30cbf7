"""Telemetry messages: what is accepted, and every bad message refused with a reason."""

from __future__ import annotations

import json

import pytest

from bodycam.gateway import telemetry
from bodycam.models import Position, SessionState

from .helpers import Gateway, live_of, wait_for_store
from .whip_client import publish

FIX = {
    "type": "position",
    "lat": 49.1196,
    "lon": 6.1764,
    "accuracy": 4.5,
    "heading": 360,
    "speed": 1.4,
    "time": "2026-11-22T10:00:00.250Z",
}


def test_valid_messages() -> None:
    position = telemetry.parse(json.dumps(FIX), 4096)
    assert isinstance(position, Position)
    assert (position.lat, position.lon, position.accuracy_m) == (49.1196, 6.1764, 4.5)
    assert position.heading_deg == 0  # 360° is north
    assert position.time.microsecond == 250000
    assert telemetry.parse('{"type": "battery", "percent": 87.5}', 4096) == telemetry.Battery(87.5)
    assert telemetry.parse('{"type": "button", "action": "press"}', 4096) == telemetry.ButtonPress(
        None
    )
    hello = telemetry.parse(
        '{"type": "hello", "serial": "ACCC8E000001", "model": "AXIS W110", "firmware": "10.12.3"}',
        4096,
    )
    assert hello == telemetry.Hello("ACCC8E000001", "AXIS W110", "10.12.3")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("x" * 5000, "over the 4096-byte limit"),
        ("{not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"type": "selfie"}', "unknown message type 'selfie'"),
        (json.dumps({**FIX, "lat": 91}), "position.lat: 91 is outside"),
        (json.dumps({**FIX, "lon": "6.17"}), "position.lon: expected a number"),
        (json.dumps({**FIX, "accuracy": True}), "position.accuracy: expected a number"),
        (json.dumps({**FIX, "time": "10:00"}), "position.time"),
        (json.dumps({**FIX, "time": "2026-11-22T10:00:00"}), "has no time zone"),
        (json.dumps({**FIX, "lat": float("nan")}), "position.lat: nan is outside"),
        ('{"type": "position", "lat": 1' + "0" * 400 + "}", "unusable value"),
        ("[" * 3000, "unusable value"),
        (json.dumps({**FIX, "time": "9999-12-31T23:59:59-01:00"}), "out of range"),
        ('{"type": "battery", "percent": 101}', "battery.percent"),
        ('{"type": "hello", "serial": 7}', "hello.serial"),
    ],
)
def test_invalid_messages_say_why(raw: str, reason: str) -> None:
    with pytest.raises(telemetry.TelemetryError, match=reason.replace("(", r"\(")):
        telemetry.parse(raw, 4096)


async def test_bad_messages_are_counted_and_the_session_goes_on(gateway: Gateway) -> None:
    token = await gateway.enroll("cam-1")
    pc, channel = await publish(gateway.url, token)
    bad = [
        '{"type": "position", "lat": 1' + "0" * 400 + "}",
        "[" * 3000,
        "garbage",
        json.dumps({**FIX, "lat": 200}),
    ]
    for message in bad:
        channel.send(message)
    channel.send(json.dumps(FIX))
    [session] = await gateway.store.run(gateway.store.list_sessions)
    await wait_for_store(gateway.store, lambda s: len(s.positions_of(session.id)) == 1)
    live = live_of(gateway, session.id)
    assert live.invalid_telemetry == len(bad)
    assert live.state == SessionState.LIVE
    assert gateway.metrics.telemetry_invalid._value.get() == len(bad)
    await pc.close()
