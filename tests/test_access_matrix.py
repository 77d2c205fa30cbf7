"""The access matrix of DESIGN.md, enforced server-side on every endpoint, as a table.

Each role is logged in and tries every endpoint; an endpoint the table does not list fails
the test, so a new route cannot be added without saying who may use it. Allowed means the
role got past the access check (any answer but 401/403: a 404 for a camera that does not
exist is fine); refused means 403 with the reason, and a register entry.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import av
import pytest
from yarl import URL

from bodycam.config import Config
from bodycam.evidence.keyring import Keyring
from bodycam.gateway.app import create_app
from bodycam.models import Position, Session, SessionState
from bodycam.store import SqliteStore

from .evidence_data import record_session
from .helpers import PASSWORD, Gateway, ShiftedClock, add_login, make_config, start_gateway

LIVE = {"operator", "supervisor", "police_nationale"}
ALERTS = {"operator", "supervisor"}
RECORDINGS = {"operator", "supervisor"}
SUPERVISOR = {"supervisor"}
REGISTER = {"supervisor", "auditor"}
STATS = {"supervisor", "auditor", "admin"}
ADMINISTRATION = {"supervisor", "admin"}
ROLES = ("operator", "supervisor", "police_nationale", "auditor", "admin")
EVERYONE = set(ROLES)
OFFER = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=recvonly\r\n"
REQUISITION = {"reference": "PV 2027/118", "reason": "réquisition du parquet"}
# s1 is recorded at 09:00 that day and the gateway starts an hour later, on that date: its
# retention (30 days) is then far from over whatever day the suite runs.
RECORDED = datetime(2026, 11, 2, 9, tzinfo=UTC)


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # a route's path with real values filled in
    route: str  # the route as registered
    allowed: set[str]
    body: Any = None


ENDPOINTS = [
    Endpoint("GET", "/api/v1/me", "/api/v1/me", EVERYONE),
    Endpoint("GET", "/api/v1/cameras", "/api/v1/cameras", LIVE),
    Endpoint(
        "GET", "/api/v1/cameras/selection?lat=49.12&lon=6.18", "/api/v1/cameras/selection", LIVE
    ),
    Endpoint("GET", "/api/v1/cameras/health", "/api/v1/cameras/health", LIVE | {"admin"}),
    Endpoint(
        "PUT",
        "/api/v1/cameras/nocam/control",
        "/api/v1/cameras/{camera_id}/control",
        LIVE,
        {"seconds": 60, "notice": "CIC: suivi d'un véhicule"},
    ),
    Endpoint(
        "DELETE", "/api/v1/cameras/nocam/control", "/api/v1/cameras/{camera_id}/control", LIVE
    ),
    Endpoint(
        "POST",
        "/api/v1/cameras/nocam/ptz",
        "/api/v1/cameras/{camera_id}/ptz",
        LIVE,
        {"pan": 0, "tilt": 0, "zoom": 1},
    ),
    Endpoint("GET", "/api/v1/sessions/s1/position", "/api/v1/sessions/{session_id}/position", LIVE),
    Endpoint("GET", "/api/v1/sessions/s1/track", "/api/v1/sessions/{session_id}/track", LIVE),
    Endpoint("GET", "/api/v1/alerts", "/api/v1/alerts", LIVE),
    Endpoint("POST", "/api/v1/alerts/s1/ack", "/api/v1/alerts/{session_id}/{action}", ALERTS),
    Endpoint("GET", "/api/v1/recordings", "/api/v1/recordings", RECORDINGS),
    Endpoint("GET", "/api/v1/recordings/s1", "/api/v1/recordings/{session_id}", RECORDINGS),
    Endpoint(
        "POST",
        "/api/v1/recordings/s1/viewings",
        "/api/v1/recordings/{session_id}/viewings",
        RECORDINGS,
        {"reason": "contrôle interne"},
    ),
    Endpoint(
        "GET",
        "/api/v1/viewings/forged.token/chunks/0",
        "/api/v1/viewings/{token}/chunks/{index}",
        RECORDINGS,
    ),
    Endpoint(
        "POST",
        "/api/v1/recordings/s1/holds",
        "/api/v1/recordings/{session_id}/holds",
        SUPERVISOR,
        REQUISITION,
    ),
    Endpoint(
        "POST",
        "/api/v1/recordings/s1/holds/999/lift",
        "/api/v1/recordings/{session_id}/holds/{hold_id}/lift",
        SUPERVISOR,
        REQUISITION,
    ),
    Endpoint(
        "POST",
        "/api/v1/exports",
        "/api/v1/exports",
        SUPERVISOR,
        {"sessions": ["s1"], **REQUISITION},
    ),
    Endpoint("GET", "/api/v1/exports/none", "/api/v1/exports/{name}", SUPERVISOR),
    Endpoint("GET", "/api/v1/register", "/api/v1/register", REGISTER),
    Endpoint("GET", "/api/v1/register/verify", "/api/v1/register/verify", REGISTER),
    Endpoint("GET", "/api/v1/stats", "/api/v1/stats", STATS),
    Endpoint("GET", "/api/v1/users", "/api/v1/users", ADMINISTRATION),
    Endpoint(
        "POST",
        "/api/v1/users",
        "/api/v1/users",
        SUPERVISOR,  # an admin creating a supervisor would give itself the recordings
        {"name": "new", "role": "operator", "service": "CSU", "password": PASSWORD},
    ),
    Endpoint("GET", "/api/v1/devices", "/api/v1/devices", ADMINISTRATION),
    Endpoint(
        "POST", "/api/v1/devices", "/api/v1/devices", ADMINISTRATION, {"id": "cam-9", "officer": ""}
    ),
    Endpoint(
        "POST", "/api/v1/devices/cam-9/revoke", "/api/v1/devices/{device_id}/revoke", ADMINISTRATION
    ),
    Endpoint("POST", "/whep/s1", "/whep/{session_id}", LIVE, OFFER),
    Endpoint("DELETE", "/whep/s1/v1", "/whep/{session_id}/{viewer_id}", LIVE),
    Endpoint("GET", "/ui/ws", "/ui/ws", LIVE),
    Endpoint("GET", "/ui/city.json", "/ui/city.json", LIVE),
    Endpoint("GET", "/ui/cameras/nocam/mjpeg", "/ui/cameras/{camera_id}/mjpeg", LIVE),
]

# Routes anyone reaches: the page itself, logging in, devices' own WHIP, ops endpoints.
OPEN_ROUTES = {
    "/",
    "/ui",
    "/ui/",
    "/api/v1/login",
    "/api/v1/logout",
    "/metrics",
    "/healthz",
    "/whip",
    "/whip/sessions/{resource_id}",
}


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Gateway]:
    config: Config = make_config(tmp_path / "data")
    # opening and closing a database is blocking work: off the test's loop (the loop-block
    # check failed this fixture, 156 ms, on a busy machine)
    store = await asyncio.to_thread(SqliteStore, config.database_path)
    keyring = await store.run(Keyring.load, config, store)
    await record_session(config, store, keyring, "s1", RECORDED)
    await asyncio.to_thread(store.close)
    app = create_app(config, ShiftedClock(RECORDED + timedelta(hours=1)))
    gateway = await start_gateway(app, config)
    try:
        yield gateway
    finally:
        await gateway.server.close()


def test_the_table_covers_every_route() -> None:
    app = create_app(make_config(Path("/nonexistent-never-started")))
    routes = {
        (r.method, r.resource.canonical)
        for r in app.router.routes()
        if r.method not in ("OPTIONS", "HEAD") and r.resource is not None
    }
    listed = {(e.method, e.route) for e in ENDPOINTS}
    unlisted = {
        (m, p)
        for m, p in routes
        if p not in OPEN_ROUTES and not p.startswith("/ui/static") and (m, p) not in listed
    }
    assert not unlisted, f"routes missing from the access table: {sorted(unlisted)}"
    assert not listed - routes, f"table rows without a route: {sorted(listed - routes)}"


async def call(
    http: aiohttp.ClientSession, url: str, endpoint: Endpoint, headers: dict[str, str]
) -> tuple[int, str]:
    if endpoint.path == "/ui/ws":  # a refusal comes before the upgrade, with its reason
        async with http.get(url + endpoint.path, headers=headers) as response:
            if response.status in (401, 403):
                return response.status, await response.text()
        async with http.ws_connect(url + endpoint.path, headers=headers) as ws:
            await ws.close()
            return 101, ""
    kwargs: dict[str, Any] = {"headers": dict(headers)}
    if isinstance(endpoint.body, str):
        kwargs["data"] = endpoint.body
        kwargs["headers"]["Content-Type"] = "application/sdp"
    elif endpoint.body is not None:
        kwargs["json"] = endpoint.body
    async with http.request(endpoint.method, url + endpoint.path, **kwargs) as response:
        return response.status, (await response.read()).decode(errors="replace")


@pytest.mark.parametrize("role", ROLES)
async def test_each_role_reaches_what_the_matrix_gives_it(served: Gateway, role: str) -> None:
    token = await add_login(served.store, f"agent-{role}", role)
    headers = {"Authorization": f"Bearer {token}"}
    wrong: list[str] = []
    refused = 0
    async with aiohttp.ClientSession() as http:
        for endpoint in ENDPOINTS:
            status, text = await call(http, served.url, endpoint, headers)
            if role in endpoint.allowed and (status in (401, 403) or status >= 500):
                wrong.append(f"{endpoint.method} {endpoint.path}: {status} {text[:120]}")
            elif role not in endpoint.allowed:
                if status != 403 or f"role {role} may not" not in text:
                    wrong.append(f"{endpoint.method} {endpoint.path}: {status} {text[:120]}")
                refused += 1
    assert not wrong, f"{role}:\n" + "\n".join(wrong)
    entries = await served.store.run(served.store.register_entries)
    refusals = [
        e for e in entries if e["action"] == "access_refused" and e["user"] == f"agent-{role}"
    ]
    assert len(refusals) == refused
    assert all(e["role"] == role and e["outcome"].startswith("refused: role") for e in refusals)


async def test_nobody_unknown_gets_anything(served: Gateway) -> None:
    async with aiohttp.ClientSession() as http:
        for endpoint in ENDPOINTS:
            for headers in ({}, {"Authorization": "Bearer bcu_forged"}):
                status, _ = await call(http, served.url, endpoint, headers)
                assert status == 401, (endpoint.path, headers, status)


async def test_a_login_that_has_ended_opens_nothing(served: Gateway) -> None:
    """Expired, logged out, its account disabled, or not a person's login at all: every
    route answers 401, and nothing else."""
    long_ago = ShiftedClock(RECORDED - timedelta(hours=2))  # a login of an hour, over
    expired = await add_login(served.store, "agent-a", "supervisor", clock=long_ago)
    logged_out = await add_login(served.store, "agent-b", "supervisor")
    disabled = await add_login(served.store, "agent-c", "supervisor")
    device = await served.enroll("cam-x")
    async with aiohttp.ClientSession() as http:
        bearer = {"Authorization": f"Bearer {logged_out}"}
        async with http.post(f"{served.url}/api/v1/logout", headers=bearer) as r:
            assert r.status == 204
        assert await served.store.run(served.store.disable_user, "agent-c", served.clock.now())
        ways = {
            "expired": {"Authorization": f"Bearer {expired}"},
            "logged out": bearer,
            "disabled": {"Authorization": f"Bearer {disabled}"},
            "a device's token": {"Authorization": f"Bearer {device}"},
            "another scheme": {"Authorization": f"Basic {logged_out}"},
        }
        wrong = []
        for endpoint in ENDPOINTS:
            for way, headers in ways.items():
                status, _ = await call(http, served.url, endpoint, headers)
                if status != 401:
                    wrong.append(f"{endpoint.method} {endpoint.path} ({way}): {status}")
    assert not wrong, "\n".join(wrong)


async def test_the_national_police_never_reaches_a_recording(served: Gateway) -> None:
    """Whatever URL it tries: the API's, another spelling, the files themselves."""
    token = await add_login(served.store, "cic", "police_nationale")
    headers = {"Authorization": f"Bearer {token}"}
    [segment] = (await served.store.run(served.store.segments_of, "s1"))[:1]
    granted = (await start_viewing(served, "martin", {"reason": "rapport d'intervention"}))[
        "chunks"
    ][0]["url"].split("/")[4]
    attempts = [
        "/api/v1/recordings/s1/media?reason=urgence%20absolue",  # the old spelling
        "/api/v1/recordings/s1/media",
        "/api/v1/recordings//s1/media?reason=xyz",
        "/api/v1/recordings/s1/../s1/media?reason=xyz",
        "/api/v1/recordings/s1/viewings",
        "/api/v1/recordings//s1/viewings",
        f"/api/v1/viewings/{granted}/chunks/0",  # a viewing an operator was granted
        f"/api/v1/viewings/{granted}/chunks/1",
        "/api/v1/recordings?session=s1",
        "/api/v1/exports/none",
        f"/recordings/{segment.path}",
        f"/ui/static/../../recordings/{segment.path}",
        "/api/v1/sessions/s1/track",  # an ended session's track is part of its recording
    ]
    async with aiohttp.ClientSession() as http:
        for path in attempts:
            # encoded: the paths reach the server as written, "..", "//" and all
            url = URL(served.url + path, encoded=True)
            for method in ("GET", "POST"):
                async with http.request(
                    method, url, headers=headers, json={"reason": "urgence absolue"}
                ) as response:
                    body = await response.read()
                    assert response.status in (403, 404, 405), (method, path, response.status)
                    assert b"\x1a\x45\xdf\xa3" not in body, path  # no Matroska
                    assert b"ftyp" not in body, path  # no MP4


async def start_viewing(served: Gateway, user: str, body: Any) -> dict[str, Any]:
    token = await add_login(served.store, user, "operator")
    url = f"{served.url}/api/v1/recordings/s1/viewings"
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http,
        http.post(url, json=body) as response,
    ):
        assert response.status == 201, await response.text()
        return dict(await response.json())


async def test_viewing_a_recording_needs_a_reason_and_is_registered(served: Gateway) -> None:
    token = await add_login(served.store, "martin", "operator")
    headers = {"Authorization": f"Bearer {token}"}
    url = f"{served.url}/api/v1/recordings/s1/viewings"
    async with aiohttp.ClientSession(headers=headers) as http:
        reasonless: list[dict[str, object]] = [{}, {"reason": ""}, {"reason": "ok"}, {"reason": 12}]
        for body in reasonless:
            async with http.post(url, json=body) as response:
                assert response.status == 400
                assert "reason" in (await response.json())["error"]
        wrong_range: list[dict[str, object]] = [
            {"reason": "rapport", "from": "hier"},
            {"reason": "rapport", "from": 3},
            {"reason": "rapport", "from": "2026-11-02T09:00:02Z", "to": "2026-11-02T09:00:01Z"},
            {"reason": "rapport", "from": "0001-01-01T00:00:00+14:00"},  # before year 1 UTC
        ]
        for body in wrong_range:
            async with http.post(url, json=body) as response:
                assert response.status == 400, body
                error = (await response.json())["error"]
                assert "from" in error or "to" in error
        async with http.post(
            url, json={"reason": "rapport d'intervention", "from": "2026-12-01T00:00:00Z"}
        ) as response:
            assert response.status == 422
            assert "no recorded media in the range asked for" in (await response.json())["error"]
        async with http.post(url, json={"reason": "rapport d'intervention"}) as response:
            assert response.status == 201
            grant = await response.json()
        assert grant["from"] == "2026-11-02T09:00:00.020Z"  # the first keyframe
        assert grant["type"] == 'video/mp4; codecs="avc1.42e01f"'
        frames = []
        for chunk in grant["chunks"]:
            async with http.get(served.url + chunk["url"]) as response:
                assert response.status == 200
                # for the page's player: never a download, never kept
                assert response.headers["Content-Disposition"] == "inline"
                assert "no-store" in response.headers["Cache-Control"]
                assert float(response.headers["X-Bodycam-Start"]) == chunk["start"]
                data = await response.read()
            with av.open(io.BytesIO(data), "r") as container:
                assert container.format.name.startswith("mov")
                assert "viewed by martin" in container.metadata["title"]
                frames.append(sum(1 for p in container.demux(video=0) if p.size))
        assert frames == [30, 30]  # each chunk a part, never the whole session
        last = grant["chunks"][-1]["url"]
        async with http.get(served.url + last[:-1] + "2") as response:
            assert response.status == 404
            assert "it has 2" in (await response.json())["error"]
        _, mac = last.split("/")[4].split(".")
        async with http.get(served.url + last.replace(mac, mac[::-1])) as response:
            assert response.status == 404  # a token we did not sign
    # another operator cannot use martin's viewing
    other = await add_login(served.store, "bernard", "operator")
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {other}"}) as http,
        http.get(served.url + last) as response,
    ):
        assert response.status == 403
        assert "granted to someone else" in (await response.json())["error"]
    [view] = [
        e
        for e in (await served.store.run(served.store.register_entries))
        if e["action"] == "recording_view"
    ]
    assert view["user"] == "martin"
    assert view["session"] == "s1"
    assert view["reason"] == "rapport d'intervention"
    assert view["from"] == "2026-11-02T09:00:00.020Z"
    assert view["to"] == grant["to"]
    assert grant["viewing"] in view["detail"]


async def test_a_viewing_covers_only_the_range_asked_for(served: Gateway) -> None:
    grant = await start_viewing(
        served,
        "martin",
        {"reason": "rapport", "from": "2026-11-02T09:00:01.500Z", "to": "2026-11-02T09:00:01.700Z"},
    )
    # the range starts at the keyframe before it: the second segment's, at 09:00:01.0xx
    assert grant["from"].startswith("2026-11-02T09:00:01.0")
    assert grant["to"] == "2026-11-02T09:00:01.700Z"
    [chunk] = grant["chunks"]
    token = await add_login(served.store, "martin", "operator")
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http,
        http.get(served.url + chunk["url"]) as response,
    ):
        data = await response.read()
    with av.open(io.BytesIO(data), "r") as container:
        times = [float((p.pts or 0) * p.time_base) for p in container.demux(video=0) if p.size]
    assert 0.6 < times[-1] < 0.75  # cut at "to", 0.7 s after the keyframe
    assert len(times) < 30


async def test_recordings_are_found_by_officer_device_date_and_place(served: Gateway) -> None:
    store = served.store
    other_start = RECORDED + timedelta(days=1)
    await store.run(store.add_device, "cam-7", "Agent Leroy", "hash-cam-7", other_start)
    await store.run(
        store.create_session,
        Session("s2", "cam-7", "Agent Leroy", SessionState.ENDED, other_start),
        "r-s2",
    )
    await store.run(store.add_position, "s2", Position(49.2, 6.3, 5.0, other_start))
    # s1's fixes run north from (49.12, 6.18); the street passes 10 m east of them
    street = '{"type": "LineString", "coordinates": [[6.18014, 49.119], [6.18014, 49.121]]}'
    far = '{"type": "LineString", "coordinates": [[6.0, 49.0], [6.001, 49.0]]}'
    await store.run(
        store.replace_places,
        [("street", "Rue Serpenoise", street), ("street", "Rue de Metz", far)],
    )
    token = await add_login(store, "martin", "operator")
    url = f"{served.url}/api/v1/recordings"

    async def found(query: str) -> list[str]:
        async with (
            aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http,
            http.get(url + query) as response,
        ):
            assert response.status == 200, await response.text()
            return [r["session_id"] for r in await response.json()]

    assert await found("") == ["s2", "s1"]
    assert await found("?officer=martin") == ["s1"]
    assert await found("?officer=LEROY") == ["s2"]
    assert await found("?device=cam-7") == ["s2"]
    assert await found("?from=2026-11-02T12:00:00Z") == ["s2"]
    assert await found("?to=2026-11-02T12:00:00Z") == ["s1"]
    assert await found("?place=serpenoise") == ["s1"]
    assert await found("?place=rue%20de%20metz") == []
    assert await found("?place=serpenoise&officer=leroy") == []
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http,
        http.get(url + "?place=avenue%20inconnue") as unknown,
        http.get(url + "?officer=" + "x" * 300) as long,
    ):
        assert unknown.status == 404
        assert (
            "no street or building named like 'avenue inconnue'" in (await unknown.json())["error"]
        )
        assert long.status == 400


async def test_a_hold_id_is_a_number_of_a_database_size(served: Gateway) -> None:
    token = await add_login(served.store, "durand", "supervisor")
    base = f"{served.url}/api/v1/recordings/s1/holds"
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        for hold in ("abc", "-1", "1" * 40):
            async with http.post(f"{base}/{hold}/lift", json=REQUISITION) as response:
                assert response.status == 400, hold
                assert "hold id must be a number" in (await response.json())["error"]
        async with http.post(f"{base}/999/lift", json=REQUISITION) as response:
            assert response.status == 404


async def test_hold_export_and_stats_through_the_api(served: Gateway, tmp_path: Path) -> None:
    token = await add_login(served.store, "durand", "supervisor")
    headers = {"Authorization": f"Bearer {token}"}
    base = f"{served.url}/api/v1"
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{base}/recordings/s1/holds", json={"reason": "x" * 10}, headers=headers
        ) as r:
            assert r.status == 400
            assert "reference" in (await r.json())["error"]
        async with http.post(f"{base}/recordings/s1/holds", json=REQUISITION, headers=headers) as r:
            assert r.status == 201
            hold = await r.json()
        async with http.get(f"{base}/recordings", headers=headers) as r:
            [listed] = await r.json()
            assert listed["held"] is True
            assert listed["expires_at"] == "2026-12-02T09:00:02.000Z"
        async with http.post(
            f"{base}/exports", json={"sessions": ["s1"], "reason": "enquête"}, headers=headers
        ) as r:
            assert r.status == 400
            assert "reference" in (await r.json())["error"]
        async with http.post(
            f"{base}/exports", json={"sessions": ["s1"], **REQUISITION}, headers=headers
        ) as r:
            assert r.status == 201
            made = await r.json()
        async with http.get(served.url + made["download"], headers=headers) as r:
            assert r.status == 200
            tar = await r.read()
        lift = {"reference": "classement 12", "reason": "affaire classée"}
        async with http.post(
            f"{base}/recordings/s1/holds/{hold['id']}/lift", json=lift, headers=headers
        ) as r:
            assert r.status == 200
            assert (await r.json())["lifted_by"] == "durand"
        async with http.post(
            f"{base}/recordings/s1/holds/{hold['id']}/lift", json=lift, headers=headers
        ) as r:
            assert r.status == 409
        async with http.get(f"{base}/stats?year=2026", headers=headers) as r:
            stats = await r.json()
        async with http.get(f"{base}/stats", headers=headers) as r:
            assert (await r.json())["year"] == 2026  # "this year" on the gateway's clock
        async with http.get(f"{base}/register/verify", headers=headers) as r:
            assert (await r.json())["ok"] is True
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        archive.extractall(tmp_path / "got", filter="data")
    from bodycam.evidence.bundle import verify_bundle

    report = verify_bundle(tmp_path / "got" / made["name"])
    assert report.ok, report.problems
    downloads = [
        e
        for e in (await served.store.run(served.store.register_entries))
        if e["action"] == "export_download"
    ]
    assert len(downloads) == 1
    assert made["name"] in downloads[0]["detail"]
    assert not list(served.config.exports_dir.glob(".partial-*"))
    november = stats["months"]["2026-11"]
    assert november["sessions"] == 1
    assert november["exports"] == 1
    assert november["requisitions"] == 1  # the hold and the export share their reference
    assert stats["total"]["exports"] == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"seconds": 60}, "only after giving notice"),
        ({"seconds": 60, "notice": "  "}, "only after giving notice"),
        ({"seconds": 301, "notice": "CIC Metz, suivi d'un véhicule"}, "300 s at most"),
    ],
)
async def test_the_cic_steers_a_camera_only_after_notice_and_for_a_while(
    served: Gateway, body: dict[str, Any], message: str
) -> None:
    token = await add_login(served.store, "cic", "police_nationale")
    url = f"{served.url}/api/v1/cameras/nocam/control"
    async with (
        aiohttp.ClientSession() as http,
        http.put(url, json=body, headers={"Authorization": f"Bearer {token}"}) as r,
    ):
        assert r.status == 400
        assert message in (await r.json())["error"]


@pytest.mark.parametrize(
    ("method", "path", "body", "message"),
    [
        ("POST", "/api/v1/cameras/nocam/ptz", b'{"pan": 1' + b"0" * 400 + b"}", "pan: a number"),
        ("POST", "/api/v1/devices", b"[" * 10_000, "nested too deeply"),
        ("POST", "/api/v1/login", b"[" * 4000, "nested too deeply"),
    ],
)
async def test_json_bodies_too_big_or_too_deep_for_python_say_so(
    served: Gateway, method: str, path: str, body: bytes, message: str
) -> None:
    """Found by tests/test_fuzz_http.py: a 400-digit number (OverflowError) and JSON nested
    ten thousand deep (RecursionError) answered 500."""
    token = await add_login(served.store, "durand", "supervisor")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, served.url + path, data=body, headers=headers) as response,
    ):
        assert response.status == 400
        assert message in (await response.json())["error"]
