"""The console's server side: logins, alerts, the live WebSocket, the map, camera pictures.

Real gateway, real body camera (aiortc), real simulated Axis cameras (VAPIX, Digest): the
scene of test_geo_live. The page itself is driven by Chromium in test_browser_console.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import subprocess
import sys
from typing import Any

import aiohttp
import pytest

from bodycam import users
from bodycam.config import Config
from bodycam.store import Store
from simulators.axis_bodycam import AxisBodycam
from simulators.axis_camera import AxisCameraSimulator

from .geo_scene import CAMERA_PASSWORD, street_walk
from .helpers import PASSWORD, Gateway, add_login, small_media, wait_for, wait_for_store


@pytest.fixture
def gateway_config(street_config: Config) -> Config:
    return street_config  # the street scene of test_geo_live


@pytest.fixture
def cameras(street_cameras: AxisCameraSimulator) -> AxisCameraSimulator:
    return street_cameras


class Console:
    """A console's WebSocket: the snapshot, then events as they come."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.snapshot: dict[str, Any] = {}
        self.events: list[dict[str, Any]] = []

    async def read(self) -> None:
        async for message in self.ws:
            data = message.json()
            if data["type"] == "snapshot":
                self.snapshot = data
            else:
                self.events.append(data)

    async def close(self, reader: asyncio.Task[None]) -> None:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await self.ws.close()

    def alerts(self, session_id: str) -> list[dict[str, Any]]:
        return [
            e["data"]
            for e in self.events
            if e["type"] == "alert" and e["data"]["session_id"] == session_id
        ]


async def connect(http: aiohttp.ClientSession, url: str) -> tuple[Console, asyncio.Task[None]]:
    console = Console(await http.ws_connect(url))
    return console, asyncio.create_task(console.read())


async def login(http: aiohttp.ClientSession, url: str, name: str, password: str) -> int:
    async with http.post(f"{url}/api/v1/login", json={"name": name, "password": password}) as r:
        return r.status


async def test_an_operator_logs_in_and_out_with_a_cookie(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    await add_login(gateway.store, "dupont", "operator")
    # (unsafe: keep cookies of an IP address host, as a browser does)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(f"{gateway.url}/api/v1/me") as r:
            assert r.status == 401
        with caplog.at_level(logging.WARNING, logger="bodycam.gateway.auth"):
            assert await login(http, gateway.url, "dupont", "wrong password!") == 401
            assert await login(http, gateway.url, "nobody", PASSWORD) == 401
        failed = [r.getMessage() for r in caplog.records if "login failed" in r.getMessage()]
        assert len(failed) == 2
        assert "'nobody'" in failed[1]
        async with http.post(
            f"{gateway.url}/api/v1/login", json={"name": "dupont", "password": PASSWORD}
        ) as r:
            assert r.status == 200
            body = await r.json()
            cookie = r.headers["Set-Cookie"]
        assert body["user"] == {
            "name": "dupont",
            "role": "operator",
            "service": "Police municipale",
        }
        assert "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie
        # only the token's hash is stored
        rows = sqlite3.connect(gateway.config.database_path).execute(
            "SELECT token_hash FROM logins"
        )
        hashes = [r[0] for r in rows]
        assert users.login_hash(body["token"]) in hashes
        assert body["token"] not in hashes
        # the cookie serves our own page only: another origin's request is refused
        async with http.post(
            f"{gateway.url}/api/v1/alerts/x/ack", headers={"Origin": "http://127.0.0.1:1"}
        ) as r:
            assert r.status == 403
            assert "another origin" in (await r.json())["error"]
        async with http.get(f"{gateway.url}/api/v1/me") as r:  # the cookie, from now on
            assert r.status == 200
            assert (await r.json())["name"] == "dupont"
        async with http.post(f"{gateway.url}/api/v1/logout") as r:
            assert r.status == 204
        # the token itself is dead, not only the cookie
        headers = {"Authorization": f"Bearer {body['token']}"}
        async with http.get(f"{gateway.url}/api/v1/me", headers=headers) as r:
            assert r.status == 401
    # the register has each attempt; failures in a row (here from one address) double the wait
    entries = [
        e
        for e in (await gateway.store.run(gateway.store.register_entries))
        if e["action"] != "access_refused"
    ]
    assert [(e["action"], e["user"]) for e in entries] == [
        ("login_failed", "dupont"),
        ("login_failed", "nobody"),
        ("login", "dupont"),
        ("logout", "dupont"),
    ]
    assert entries[0]["role"] == "operator"
    assert entries[1]["role"] == "none"
    assert "1 failures in a row" in entries[0]["detail"]
    assert "2 failures in a row" in entries[1]["detail"]
    assert "answered in 2.0 s" in failed[1]
    assert entries[0]["outcome"] == "refused: wrong user name or password"


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ("not json", 400, "not valid JSON"),
        ('["dupont"]', 400, "a JSON object"),
        ('{"name": "dupont", "password": 12}', 400, "must be strings"),
        ('{"name": "dupont", "password": "' + "x" * 5000 + '"}', 413, "over 4096 bytes"),
    ],
)
async def test_bad_logins_are_named(gateway: Gateway, body: str, status: int, message: str) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{gateway.url}/api/v1/login",
            data=body,
            headers={"Content-Type": "application/json"},
        ) as r,
    ):
        assert r.status == status
        assert message in (await r.json())["error"]


def test_users_are_added_from_the_command_line(tmp_path: Any) -> None:
    data = tmp_path / "data"

    def bodycam(*args: str, password: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bodycam", *args, "--data-dir", str(data)],
            input=password + "\n",
            capture_output=True,
            text=True,
            check=False,
        )

    added = bodycam(
        "users", "add", "dupont", "--role", "operator", "--password-stdin", password=PASSWORD
    )
    assert added.returncode == 0, added.stderr
    short = bodycam(
        "users", "add", "martin", "--role", "operator", "--password-stdin", password="x"
    )
    assert short.returncode == 2
    assert "at least 10 characters" in short.stderr
    again = bodycam(
        "users", "add", "dupont", "--role", "auditor", "--password-stdin", password=PASSWORD
    )
    assert again.returncode == 2
    assert "already exists" in again.stderr
    listed = bodycam("users", "list")
    assert "dupont" in listed.stdout
    assert "operator" in listed.stdout
    database = (data / "bodycam.sqlite3").read_bytes()
    assert PASSWORD.encode() not in database
    assert b"scrypt$16384$8$1$" in database


async def test_an_officer_going_live_raises_an_alert_that_operators_work_through(
    gateway: Gateway, cameras: AxisCameraSimulator
) -> None:
    token = await gateway.enroll("cam-geo", "Brigadier Lefèvre")
    cic = await gateway.login("cic", "police_nationale")
    async with aiohttp.ClientSession(headers=gateway.auth) as http:
        console, reader = await connect(http, f"{gateway.url}/ui/ws")
        await wait_for(lambda: bool(console.snapshot))
        assert console.snapshot["alerts"] == []
        assert console.snapshot["cameras"]["unwired"] in ("not_configured", "unknown")
        async with AxisBodycam(
            gateway.url, "cam-geo", token, media=small_media(), walk=street_walk()
        ) as bodycam:
            await bodycam.press()
            [session] = await gateway.store.run(gateway.store.list_sessions)
            sid = session.id
            await wait_for(lambda: bool(console.alerts(sid)))
            raised = console.alerts(sid)[0]
            assert raised["state"] == "nouvelle"
            assert raised["session_state"] == "live"
            assert raised["officer"] == "Brigadier Lefèvre"
            assert raised["device_id"] == "cam-geo"
            # the battery and the street follow in later versions of the alert
            await wait_for(
                lambda: any(a["battery_percent"] is not None for a in console.alerts(sid)),
                what=lambda: console.alerts(sid),
            )
            await wait_for(
                lambda: any(
                    (a["address"] or "").startswith("Rue du Test") for a in console.alerts(sid)
                ),
                what=lambda: console.alerts(sid),
            )
            await wait_for(lambda: {"position", "selection"} <= {e["type"] for e in console.events})

            url = f"{gateway.url}/api/v1/alerts/{sid}"
            async with http.post(f"{url}/ack", headers=cic) as r:  # live images only
                assert r.status == 403
                assert "police_nationale may not act on alerts" in (await r.json())["error"]
            async with http.post(f"{url}/close") as r:
                assert r.status == 200
            async with http.post(f"{url}/ack") as r:
                assert r.status == 409
                assert (await r.json())["error"] == (
                    f"alert {sid} is clôturée: cannot move to prise en compte"
                )
            await bodycam.press()
        await wait_for(lambda: console.alerts(sid)[-1]["session_state"] == "ended")
        async with http.get(f"{gateway.url}/api/v1/alerts") as r:
            [listed] = await r.json()
        await console.close(reader)
    assert listed["state"] == "cloturee"
    [closed] = listed["actions"]
    assert closed["user"] == "dupont"
    assert closed["role"] == "operator"
    assert closed["at"]


async def test_each_action_records_who_and_when(gateway: Gateway) -> None:
    token = await gateway.enroll("cam-1")
    martin = await gateway.login("martin", "supervisor")
    async with (
        aiohttp.ClientSession(headers=gateway.auth) as http,
        AxisBodycam(gateway.url, "cam-1", token, media=small_media()) as bodycam,
    ):
        await bodycam.press()
        [session] = await gateway.store.run(gateway.store.list_sessions)
        url = f"{gateway.url}/api/v1/alerts/{session.id}"
        async with http.post(f"{url}/ack") as r:
            assert r.status == 200
        async with http.post(f"{url}/ack") as r:
            assert r.status == 409
        async with http.post(f"{url}/dispatch", headers=martin) as r:
            assert r.status == 200
            alert = await r.json()
        async with http.post(f"{url}/reopen") as r:
            assert r.status == 404
            assert "ack, dispatch or close" in (await r.json())["error"]
        async with http.post(f"{gateway.url}/api/v1/alerts/nope/ack") as r:
            assert r.status == 404
        await bodycam.press()
    assert alert["state"] == "renforts_envoyes"
    assert [(a["state"], a["user"], a["role"]) for a in alert["actions"]] == [
        ("prise_en_compte", "dupont", "operator"),
        ("renforts_envoyes", "martin", "supervisor"),
    ]
    # durable: in the database, not only in the event
    stored = await gateway.store.run(gateway.store.get_alert, session.id)
    assert stored is not None
    assert [a.user for a in stored.actions] == ["dupont", "martin"]


async def test_a_console_that_reconnects_gets_what_it_missed(gateway: Gateway) -> None:
    token = await gateway.enroll("cam-1")
    async with aiohttp.ClientSession(headers=gateway.auth) as http:
        console, reader = await connect(http, f"{gateway.url}/ui/ws")
        await wait_for(lambda: bool(console.snapshot))
        last_id = console.snapshot["last_id"]
        await console.close(reader)
        # while it is away, an officer goes live and an operator acknowledges
        async with AxisBodycam(gateway.url, "cam-1", token, media=small_media()) as bodycam:
            await bodycam.press()
            [session] = await gateway.store.run(gateway.store.list_sessions)
            async with http.post(f"{gateway.url}/api/v1/alerts/{session.id}/ack") as r:
                assert r.status == 200
            back, reader = await connect(http, f"{gateway.url}/ui/ws?after={last_id}")
            await wait_for(lambda: len(back.alerts(session.id)) >= 2)
            # the snapshot has the alert as it is now; the replay has its history
            [now] = back.snapshot["alerts"]
            assert now["state"] == "prise_en_compte"
            assert [a["state"] for a in back.alerts(session.id)][:2] == [
                "nouvelle",
                "prise_en_compte",
            ]
            await bodycam.press()
        await back.close(reader)


async def test_the_console_needs_a_login_for_everything_but_the_page(gateway: Gateway) -> None:
    auditor = await gateway.login("audit", "auditor")
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{gateway.url}/ui/", allow_redirects=False) as r:
            assert r.status == 200
            assert "text/html" in r.headers["Content-Type"]
        # the page's modules, revalidated so that an upgrade never mixes old and new files
        async with http.get(f"{gateway.url}/ui/static/console.js") as r:
            assert r.status == 200
            assert r.content_type.endswith("/javascript")
            assert r.headers["Cache-Control"] == "no-cache"
        for path in ("/ui/city.json", "/ui/ws", "/ui/cameras/x/mjpeg", "/api/v1/alerts"):
            async with http.get(gateway.url + path) as r:
                assert r.status == 401, path
            async with http.get(gateway.url + path, headers=auditor) as r:
                assert r.status == 403, path
        async with http.get(f"{gateway.url}/ui/ws?after=yesterday", headers=gateway.auth) as r:
            assert r.status == 400
            assert "event id" in (await r.json())["error"]


async def test_the_map_has_streets_buildings_and_camera_sectors(
    gateway: Gateway, cameras: AxisCameraSimulator
) -> None:
    async with (
        aiohttp.ClientSession(headers=gateway.auth) as http,
        http.get(f"{gateway.url}/ui/city.json") as r,
    ):
        assert r.status == 200
        city = await r.json()
    [street] = city["streets"]["features"]
    assert street["properties"]["name"] == "Rue du Test"
    assert len(city["buildings"]["features"]) == 1
    by_id = {f["properties"]["id"]: f for f in city["cameras"]["features"]}
    assert set(by_id) == {c.id for c in cameras.cameras}
    west = by_id["fixed-west"]["properties"]
    assert "credentials_ref" not in west
    assert "vapix_url" not in west
    # a 60° sector 100 m long looking east: its far points are east of the camera
    lon0 = by_id["fixed-west"]["geometry"]["coordinates"][0]
    assert max(p[0] for p in west["sector"]) > lon0 + 0.001
    assert min(p[0] for p in west["sector"]) == pytest.approx(lon0, abs=1e-6)
    (south, west_lon), (north, east_lon) = city["bounds"]
    assert south < north
    assert west_lon < east_lon
    assert CAMERA_PASSWORD not in str(city)


async def test_fixed_camera_pictures_are_relayed_once_for_many_tiles(
    gateway: Gateway, cameras: AxisCameraSimulator
) -> None:
    url = f"{gateway.url}/ui/cameras/fixed-west/mjpeg"

    async def pictures(http: aiohttp.ClientSession, count: int) -> list[bytes]:
        async with http.get(url) as r:
            assert r.status == 200, await r.text()
            assert r.content_type == "multipart/x-mixed-replace"
            reader = aiohttp.MultipartReader(r.headers, r.content)
            found: list[bytes] = []
            while len(found) < count:
                part = await reader.next()
                assert isinstance(part, aiohttp.BodyPartReader)
                found.append(await part.read())
            return found

    streams_before = cameras.streams
    async with aiohttp.ClientSession(headers=gateway.auth) as http:
        tiles = await asyncio.gather(*(pictures(http, 3) for _ in range(3)))
        for jpegs in tiles:
            assert all(j.startswith(b"\xff\xd8") and j.endswith(b"\xff\xd9") for j in jpegs)
        assert cameras.streams - streams_before == 1  # three tiles, one camera stream
        async with http.get(f"{gateway.url}/ui/cameras/nope/mjpeg") as r:
            assert r.status == 404
            assert "no camera nope" in (await r.json())["error"]
        async with http.get(f"{gateway.url}/ui/cameras/offline/mjpeg") as r:
            assert r.status == 502
            error = (await r.json())["error"]
            assert error == "camera offline: no picture (the camera does not answer)"
        # a camera that fails while watched: the stream ends, no old picture shown as live
        async with http.get(url) as r:
            reader = aiohttp.MultipartReader(r.headers, r.content)
            part = await reader.next()
            assert isinstance(part, aiohttp.BodyPartReader)
            await part.read()
            cameras.set_online("fixed-west", False)
            async with asyncio.timeout(15):
                while (part := await reader.next()) is not None:
                    assert isinstance(part, aiohttp.BodyPartReader)
                    await part.read()


async def test_a_camera_picture_stream_ends_with_its_login(
    gateway: Gateway, cameras: AxisCameraSimulator
) -> None:
    login = {"Authorization": f"Bearer {await add_login(gateway.store, 'dupont', 'operator')}"}
    async with (
        aiohttp.ClientSession(headers=login) as http,
        http.get(f"{gateway.url}/ui/cameras/fixed-west/mjpeg") as r,
    ):
        assert r.status == 200
        reader = aiohttp.MultipartReader(r.headers, r.content)
        part = await reader.next()
        assert isinstance(part, aiohttp.BodyPartReader)
        await part.read()
        async with http.post(f"{gateway.url}/api/v1/logout") as out:
            assert out.status == 204
        # the camera still sends pictures; the stream ends all the same
        async with asyncio.timeout(5):
            while (part := await reader.next()) is not None:
                assert isinstance(part, aiohttp.BodyPartReader)
                await part.read()

    def view_ended(store: Store) -> bool:
        return any(e["action"] == "camera_view_end" for e in store.register_entries())

    await wait_for_store(gateway.store, view_ended)  # its start and end in the register
    entries = await gateway.store.run(gateway.store.register_entries)
    [start] = [e for e in entries if e["action"] == "camera_view"]
    [end] = [e for e in entries if e["action"] == "camera_view_end"]
    assert (end["user"], end["camera"]) == ("dupont", "fixed-west")
    assert start["at"] <= end["from"] <= end["to"]
