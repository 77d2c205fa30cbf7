"""Geolocation end to end: a simulated officer walks a street past simulated Axis cameras.

The gateway, the body camera and the fixed/PTZ cameras are all real (aiortc, aiohttp,
VAPIX over HTTP with Digest auth); the scene is a street in metres around a fixed origin.
"""

from __future__ import annotations

import asyncio
import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from bodycam.clock import parse_iso
from bodycam.config import Config
from bodycam.gateway.api_live import event_start
from bodycam.gateway.app import create_app
from bodycam.gateway.appkeys import live_key, tracker_key
from bodycam.live.base import Event
from bodycam.models import Action, Actor, Entry, SessionState
from simulators.axis_bodycam import AxisBodycam
from simulators.axis_camera import AxisCameraSimulator
from simulators.gps import Position as GpsPosition
from simulators.gps import Walk

from .geo_scene import CAMERA_PASSWORD, SCENE_CAMERAS, SPEED, at, street_walk
from .helpers import Gateway, small_media, start_gateway, wait_for, wait_for_session

MEDIA = small_media()


@pytest.fixture
def gateway_config(street_config: Config) -> Config:
    return street_config  # the street scene, for every test here


@pytest.fixture
def cameras(street_cameras: AxisCameraSimulator) -> AxisCameraSimulator:
    return street_cameras


async def collect(gateway: Gateway, events: list[Event]) -> None:
    with gateway.app[live_key].events.subscribe() as subscription:
        while (event := await subscription.get()) is not None:
            events.append(event)


async def get_json(headers: dict[str, str], url: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession(headers=headers) as http, http.get(url) as response:
        body: dict[str, Any] = await response.json()
        return response.status, body


async def test_the_selection_follows_the_officer_and_the_ptz_camera_turns(
    gateway: Gateway, cameras: AxisCameraSimulator
) -> None:
    events: list[Event] = []
    listener = asyncio.create_task(collect(gateway, events))
    token = await gateway.enroll("cam-geo", "Brigadier Martin")
    async with AxisBodycam(
        gateway.url, "cam-geo", token, media=MEDIA, walk=street_walk(), position_interval=0.2
    ) as bodycam:
        await bodycam.press()
        [session] = await gateway.store.run(gateway.store.list_sessions)
        # the officer goes from the west end to the east end of the street (and back)
        await asyncio.sleep(200 / SPEED)
        status, position = await get_json(
            gateway.auth, f"{gateway.url}/api/v1/sessions/{session.id}/position"
        )
        assert status == 200
        assert position["street"] == "Rue du Test"
        assert position["address"].startswith("Rue du Test, ")
        assert position["street_distance_m"] < 15
        assert position["officer"] == "Brigadier Martin"
        chosen = {c["camera_id"]: c for c in position["cameras"]}
        assert "behind" not in chosen or chosen["behind"]["reason"] == "nearby"
        ptz = chosen["ptz-1"]
        assert ptz["reason"] in ("sees", "can_aim")
        # the API's aim and the bearing agree: pan is the bearing from the camera's zero
        assert ptz["pan"] == pytest.approx((ptz["bearing_deg"] + 180) % 360 - 180, abs=0.1)
        # the simulated PTZ camera was turned there (to within the resend threshold)
        await wait_for(lambda: abs(cameras.camera("ptz-1").pan - ptz["pan"]) < 8, within=3)
        assert len(cameras.camera("ptz-1").moves) >= 3
        # geolocation lives with the session only
        await bodycam.press()
        await wait_for_session(gateway.store, session.id, SessionState.ENDED)
    status, body = await get_json(
        gateway.auth, f"{gateway.url}/api/v1/sessions/{session.id}/position"
    )
    assert status == 404
    assert "over" in body["error"]
    listener.cancel()

    selections = [e.data for e in events if e.type == "selection"]
    seen = [{c["camera_id"] for c in s["cameras"]} for s in selections]
    # west of the street first (the fixed camera looking east), east of it later
    first_west = next(i for i, s in enumerate(seen) if "fixed-west" in s)
    first_east = next(i for i, s in enumerate(seen) if "fixed-east" in s)
    assert first_west < first_east
    assert any("fixed-west" in s["removed"] for s in selections)
    assert seen[-1] == set()  # the session ended: no cameras any more
    assert all(s["session_id"] == session.id for s in selections)
    moves = [e.data for e in events if e.type == "ptz"]
    assert moves
    assert all(m["camera_id"] == "ptz-1" for m in moves)
    pans = [m["pan"] for m in moves]
    assert min(pans) < -45
    assert max(pans) > 45
    kept = await gateway.store.run(gateway.store.positions_of, session.id, track_only=True)
    assert len(kept) >= 30


async def test_manual_control_stops_automatic_aiming(
    gateway: Gateway, cameras: AxisCameraSimulator
) -> None:
    base = f"{gateway.url}/api/v1/cameras/ptz-1"
    dupont, martin = await gateway.login("dupont"), await gateway.login("martin")
    async with aiohttp.ClientSession(headers=dupont) as http:
        async with http.put(f"{base}/control", json={"seconds": 60}) as r:
            assert r.status == 200
            assert (await r.json())["holder"] == "dupont"  # the logged-in person
        async with http.put(f"{base}/control", json={"seconds": 60}, headers=martin) as r:
            assert r.status == 409
            assert "under manual control by dupont" in (await r.json())["error"]
        move = {"pan": 10, "tilt": -10, "zoom": 100}
        async with http.post(f"{base}/ptz", json=move, headers=martin) as r:
            assert r.status == 409
        async with http.post(f"{base}/ptz", json=move) as r:
            assert r.status == 204
        assert cameras.camera("ptz-1").moves == [(10.0, -10.0, 100.0)]

        token = await gateway.enroll("cam-geo")
        async with AxisBodycam(
            gateway.url, "cam-geo", token, media=MEDIA, walk=street_walk(), position_interval=0.2
        ) as bodycam:
            await bodycam.press()
            tracker = gateway.app[tracker_key]
            [session] = await gateway.store.run(gateway.store.list_sessions)
            officer = tracker.officer
            await wait_for(lambda: bool(getattr(officer(session.id), "selection", None)))
            await asyncio.sleep(1.0)
            assert cameras.camera("ptz-1").moves == [(10.0, -10.0, 100.0)]  # left alone
            async with http.delete(f"{base}/control") as r:
                assert r.status == 204
            await wait_for(lambda: len(cameras.camera("ptz-1").moves) > 1, within=3)
            # where the officer is, and their track, asked by a person: registered
            where = f"{gateway.url}/api/v1/sessions/{session.id}"
            for path in ("position", "track"):
                async with http.get(f"{where}/{path}") as r:
                    assert r.status == 200
            async with http.post(f"{gateway.url}/api/v1/alerts/{session.id}/ack") as r:
                assert r.status == 200
    entries = await gateway.store.run(gateway.store.register_entries)
    registered = [(e["action"], e["camera"] or e["session"]) for e in entries]
    for done in (
        ("ptz_control", "ptz-1"),
        ("ptz_move", "ptz-1"),
        ("ptz_release", "ptz-1"),
        ("position_view", session.id),
        ("track_view", session.id),
        ("alert_action", session.id),
    ):
        assert done in registered, done
    [moved] = [e for e in entries if e["action"] == "ptz_move"]
    assert (moved["user"], moved["detail"]) == ("dupont", "pan 10 tilt -10 zoom 100")
    [tracked] = [e for e in entries if e["action"] == "track_view"]
    assert tracked["from"] <= tracked["to"]  # the time range of the fixes shown


async def test_when_manual_control_expires_the_camera_follows_the_officer_again(
    gateway: Gateway, cameras: AxisCameraSimulator
) -> None:
    """An officer standing still: the camera turned by hand must come back to them."""
    events: list[Event] = []
    listener = asyncio.create_task(collect(gateway, events))
    token = await gateway.enroll("cam-geo")
    standing = Walk(standing_at=GpsPosition(*at(-60, 0)), seed=3)
    async with (
        aiohttp.ClientSession(headers=gateway.auth) as http,
        AxisBodycam(
            gateway.url, "cam-geo", token, media=MEDIA, walk=standing, position_interval=0.2
        ) as bodycam,
    ):
        await bodycam.press()
        ptz = cameras.camera("ptz-1")
        await wait_for(lambda: len(ptz.moves) >= 1)
        aimed = ptz.moves[-1]
        base = f"{gateway.url}/api/v1/cameras/ptz-1"
        async with http.put(f"{base}/control", json={"seconds": 1}) as r:
            assert r.status == 200
        # the CIC turns it from its own VMS, straight to the camera: bodycam does not know
        digest = aiohttp.DigestAuthMiddleware("root", CAMERA_PASSWORD)
        vms = cameras.base_url("ptz-1") + "axis-cgi/com/ptz.cgi?pan=120&tilt=-10&zoom=1"
        async with (
            aiohttp.ClientSession() as vms_http,
            vms_http.get(vms, middlewares=(digest,)) as r,
        ):
            assert r.status == 204
        manual = len(ptz.moves)
        assert ptz.moves[-1] == (120.0, -10.0, 1.0)
        # back on the officer (the fixes wander by a few metres: so does the aim)
        await wait_for(
            lambda: len(ptz.moves) > manual and abs(ptz.moves[-1][0] - aimed[0]) < 10,
            within=5,
            what=lambda: (aimed, ptz.moves[-3:]),
        )
        await bodycam.press()
    listener.cancel()
    released = [e.data for e in events if e.type == "ptz_control" and not e.data["taken"]]
    assert [(r["camera_id"], r["why"]) for r in released] == [("ptz-1", "expired")]


async def test_camera_health_counts_the_offline_camera(
    gateway: Gateway, cameras: AxisCameraSimulator
) -> None:
    url = f"{gateway.url}/api/v1/cameras/health"

    async def report() -> dict[str, Any]:
        return (await get_json(gateway.auth, url))[1]

    await wait_for_async(lambda r: r["up"] + r["down"] == 5, report)
    health = await report()
    assert health["summary"] == ("6 cameras, 1 down, 1 not monitored (no VAPIX URL or credentials)")
    assert health["availability"] == 0.8  # of the cameras polled
    assert health["not_monitored"] == 1
    states = {c["camera_id"]: c for c in health["cameras"]}
    assert states["offline"]["state"] == "down"
    assert "offline" in states["offline"]["error"]
    assert states["ptz-1"]["model"]
    assert states["ptz-1"]["serial"]
    cameras.set_online("offline", True)
    await wait_for_async(lambda r: r["down"] == 0, report)
    assert 'bodycam_cameras{state="up"} 5.0' in await metrics_text(gateway)


async def test_camera_availability_survives_a_restart(
    street_config: Config, cameras: AxisCameraSimulator
) -> None:
    async def offline(gateway: Gateway) -> dict[str, Any]:
        health = (await get_json(gateway.auth, f"{gateway.url}/api/v1/cameras/health"))[1]
        return next(c for c in health["cameras"] if c["camera_id"] == "offline")

    first = await start_gateway(create_app(street_config), street_config)
    try:
        await wait_for_async(lambda c: c["state"] == "down", lambda: offline(first))
        assert (await offline(first))["availability"] == 0
    finally:
        await first.server.close()
    cameras.set_online("offline", True)
    again = await start_gateway(create_app(street_config), street_config)
    try:
        await wait_for_async(lambda c: c["state"] == "up", lambda: offline(again))
        # its down polls from before the restart still count
        assert 0 < (await offline(again))["availability"] < 1
    finally:
        await again.server.close()


async def test_wrong_camera_password_is_reported_as_such(
    gateway: Gateway, cameras: AxisCameraSimulator
) -> None:
    cameras.camera("behind").password = "changed-on-the-camera"

    async def report() -> dict[str, Any]:
        return (await get_json(gateway.auth, f"{gateway.url}/api/v1/cameras/health"))[1]

    await wait_for_async(
        lambda r: {c["camera_id"]: c["state"] for c in r["cameras"]}["behind"] == "auth_failed",
        report,
    )
    health = await report()
    behind = next(c for c in health["cameras"] if c["camera_id"] == "behind")
    assert "credentials 'csu' refused" in behind["error"]


async def wait_for_async(check: Any, fetch: Any, within: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = await fetch()
        if check(value):
            return
        if loop.time() > deadline:
            raise AssertionError(f"not met in {within} s: {json.dumps(value)[:2000]}")
        await asyncio.sleep(0.2)


async def metrics_text(gateway: Gateway) -> str:
    async with aiohttp.ClientSession() as http, http.get(f"{gateway.url}/metrics") as r:
        return await r.text()


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("lat=49.12", "lon: required"),
        ("lat=91&lon=6.1", "lat: a number between -90 and 90 is required, got '91'"),
        ("lat=abc&lon=6.1", "lat: a number between -90 and 90"),
        ("lat=49.1&lon=6.1&limit=0", "limit: an integer between 1 and 16"),
        ("lat=49.1&lon=6.1&limit=2.5", "limit: an integer"),
        ("lat=nan&lon=6.1", "lat: a number"),
    ],
)
async def test_selection_api_names_bad_parameters(
    gateway: Gateway, query: str, message: str
) -> None:
    status, body = await get_json(gateway.auth, f"{gateway.url}/api/v1/cameras/selection?{query}")
    assert status == 400
    assert message in body["error"]


async def test_selection_and_registry_api(gateway: Gateway) -> None:
    lat, lon = at(-60, 0)
    status, body = await get_json(
        gateway.auth, f"{gateway.url}/api/v1/cameras/selection?lat={lat}&lon={lon}&limit=3"
    )
    assert status == 200
    assert body["address"] == "Rue du Test, 0 m"
    assert [c["camera_id"] for c in body["cameras"]][:2] == ["fixed-west", "ptz-1"]
    west, ptz = body["cameras"][:2]
    assert west["reason"] == "sees"
    assert "pan" not in west
    assert ptz["reason"] == "can_aim"
    expected_bearing = math.degrees(math.atan2(-60, 10)) % 360
    assert ptz["bearing_deg"] == pytest.approx(expected_bearing, abs=0.5)
    assert ptz["tilt"] < 0
    assert ptz["zoom"] >= 1
    status, registry = await get_json(gateway.auth, f"{gateway.url}/api/v1/cameras")
    assert status == 200
    assert registry["type"] == "FeatureCollection"
    assert {f["properties"]["id"] for f in registry["features"]} == {
        f["properties"]["id"] for f in SCENE_CAMERAS
    }
    for feature in registry["features"]:  # cameras are reached through the gateway only
        assert not {"credentials_ref", "vapix_url", "mjpeg_url"} & set(feature["properties"])
    status, body = await get_json(gateway.auth, f"{gateway.url}/api/v1/sessions/nope/position")
    assert status == 404
    assert body["error"] == "no session nope"


async def test_a_camera_that_is_down_is_not_selected(
    gateway: Gateway, cameras: AxisCameraSimulator
) -> None:
    lat, lon = at(-60, 0)
    url = f"{gateway.url}/api/v1/cameras/selection?lat={lat}&lon={lon}"

    async def selected() -> list[str]:
        return [c["camera_id"] for c in (await get_json(gateway.auth, url))[1]["cameras"]]

    assert "fixed-west" in await selected()
    cameras.set_online("fixed-west", False)
    await wait_for_async(lambda ids: "fixed-west" not in ids and "ptz-1" in ids, selected)
    cameras.set_online("fixed-west", True)
    await wait_for_async(lambda ids: ids[0] == "fixed-west", selected)


def test_an_event_runs_back_through_controls_separated_by_less_than_the_rest() -> None:
    now = datetime(2026, 11, 2, 12, tzinfo=UTC)
    minute = timedelta(minutes=1)
    rest = 15 * minute
    assert event_start([], now, rest) == now
    spans = [(now - 20 * minute, now - 15 * minute), (now - 14 * minute, now - 9 * minute)]
    assert event_start(spans, now, rest) == now - 20 * minute
    # a break longer than the rest ends the older event
    spans.insert(0, (now - 60 * minute, now - 36 * minute))
    assert event_start(spans, now, rest) == now - 20 * minute
    assert event_start([(now - 40 * minute, now - 16 * minute)], now, rest) == now


async def cic_controls(gateway: Gateway, spans: list[tuple[float, float]]) -> None:
    """Register entries of controls of ptz-1 by `cic`, (start, end) in minutes from now."""
    now = gateway.clock.now()
    for start, end in spans:
        entry = Entry(
            Action.PTZ_CONTROL,
            Actor("cic", "police_nationale"),
            now + timedelta(minutes=start),
            camera_id="ptz-1",
            time_to=now + timedelta(minutes=end),
            reason="CIC Metz: suivi d'un véhicule",
        )
        await gateway.store.run(gateway.store.record, entry)


async def test_the_cic_notice_and_countdown_reach_the_csu_and_its_event_is_capped(
    gateway: Gateway, cameras: AxisCameraSimulator
) -> None:
    cic = await gateway.login("cic", "police_nationale")
    url = f"{gateway.url}/api/v1/cameras/ptz-1/control"
    notice = "CIC Metz: suivi d'un véhicule volé"
    events: list[Event] = []
    collector = asyncio.create_task(collect(gateway, events))
    await asyncio.sleep(0.1)
    async with aiohttp.ClientSession(headers=cic) as http:
        async with http.put(url, json={"seconds": 300, "notice": notice}) as r:
            assert r.status == 200
            taken = await r.json()
        assert taken["notice"] == notice
        assert taken["since"] is not None
        await wait_for(lambda: any(e.type == "ptz_control" for e in events))
        [event] = [e for e in events if e.type == "ptz_control"]
        assert event.data["notice"] == notice  # what the CSU's consoles show
        assert event.data["taken"] is True
        # a console that opens now finds it in its snapshot, with the time left
        async with http.ws_connect(f"{gateway.url}/ui/ws", headers=gateway.auth) as ws:
            snapshot = await ws.receive_json()
        [shown] = snapshot["controls"]
        assert (shown["camera_id"], shown["notice"]) == ("ptz-1", notice)
        assert shown["until"] == taken["until"]
        async with http.put(url, json={"seconds": 300, "notice": notice}) as r:
            assert r.status == 200  # a renewal keeps the event's start
            assert (await r.json())["since"] == taken["since"]
        async with http.delete(url) as r:
            assert r.status == 204

        # the event began 27 minutes ago, with breaks shorter than the rest: the renewal
        # is cut to what is left of the 30 minutes
        await cic_controls(gateway, [(-27, -22), (-21, -16), (-15, -10), (-9, -4)])
        async with http.put(url, json={"seconds": 300, "notice": notice}) as r:
            assert r.status == 200
            cut = await r.json()
        left = (parse_iso(cut["until"]) - gateway.clock.now()).total_seconds()
        assert 2 * 60 < left <= 3 * 60 + 1
        async with http.delete(url) as r:
            assert r.status == 204
        await cic_controls(gateway, [(-31, -26)])  # the event began over 30 minutes ago
        async with http.put(url, json={"seconds": 60, "notice": notice}) as r:
            assert r.status == 409
            error = (await r.json())["error"]
        assert "the most one event allows (30 min" in error
        assert "may take it again from" in error
        # the CSU itself is not capped
        async with http.put(url, json={"seconds": 600}, headers=gateway.auth) as r:
            assert r.status == 200
    collector.cancel()
    entries = await gateway.store.run(gateway.store.register_entries)
    renewals = [
        e
        for e in entries
        if e["action"] == "ptz_control" and e["user"] == "cic" and "event began" in e["detail"]
    ]
    assert len(renewals) == 2  # each renewal is an entry, with when its event began
    assert all(e["from"] < e["to"] for e in renewals)
