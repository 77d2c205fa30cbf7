"""Two gateway nodes: events cross nodes, and what only the camera's node can do (a live
view, an alert of its own database) is forwarded to it by the node asked."""

from __future__ import annotations

import base64
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yarl

from bodycam.evidence import register
from bodycam.gateway.appkeys import live_key
from bodycam.gateway.forward import forwarder_key
from simulators.axis_bodycam import AxisBodycam

from .helpers import (
    PASSWORD,
    Gateway,
    add_login,
    node_pair,
    small_media,
    wait_for,
)
from .whep_client import stop, watch


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[tuple[Gateway, Gateway]]:
    async with node_pair(lambda name: tmp_path / name) as pair:  # a database each
        yield pair


async def test_a_viewer_on_node_a_watches_node_bs_camera_and_sees_its_events(
    nodes: tuple[Gateway, Gateway],
) -> None:
    a, b = nodes
    token = await b.enroll("cam-b")
    # each node has its own database: the operator's account is on both
    login = await a.login()
    await add_login(b.store, "dupont", "operator", login["Authorization"].split()[1])
    with a.app[live_key].events.subscribe() as console_on_a:
        async with AxisBodycam(b.url, "cam-b", token, media=small_media()) as camera:
            await camera.press()
            [session] = await b.store.run(b.store.list_sessions)
            # an event raised on B (the officer's position) reaches a console on A
            seen: dict[str, Any] = {}
            while "position" not in seen:
                event = await console_on_a.get()
                assert event is not None
                seen.setdefault(event.type, event)
            # the alert, then the officer's position, raised on B, reach a console on A
            for kind in ("alert", "position"):
                assert seen[kind].node == "node-b"
                assert seen[kind].data["session_id"] == session.id
            assert seen["alert"].data["state"] == "nouvelle"
            # a WHEP request on A for B's session: forwarded to B, whose answer comes back
            offer = (
                "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=sendonly\r\n"
                "a=setup:actpass\r\na=fingerprint:sha-256 " + ":".join(["AB"] * 32) + "\r\n"
            )
            async with (
                aiohttp.ClientSession() as http,
                http.post(
                    f"{a.url}/whep/{session.id}",
                    data=offer,
                    headers={"Content-Type": "application/sdp", **login},
                    allow_redirects=False,
                ) as response,
            ):
                assert response.status == 422  # B read the offer: it does not receive video
                assert "direction must be recvonly" in (await response.json())["error"]
            # acting on the alert on A: B, whose database has it, records it
            async with (
                aiohttp.ClientSession() as http,
                http.post(f"{a.url}/api/v1/alerts/{session.id}/ack", headers=login) as response,
            ):
                assert response.status == 200
                assert (await response.json())["state"] == "prise_en_compte"
            alert = await b.store.run(b.store.get_alert, session.id)
            assert alert is not None
            assert [a.user for a in alert.actions] == ["dupont"]
            # a real viewer on A plays B's stream (its media comes from B), and ends the
            # view on A too
            view = await watch(a.url, session.id, login)
            assert view.location.startswith(a.url)
            await wait_for(lambda: len(view.counters) >= 30, within=10)
            live_on_b = b.sessions.session(session.id)
            assert live_on_b is not None
            assert len(live_on_b.views) == 1
            assert await stop(view, login) == 200
            assert len(live_on_b.views) == 0
            await camera.press()
    # once the session is over, no node claims it: A says so itself
    await wait_for(lambda: len(b.sessions.live_sessions()) == 0)
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{a.url}/whep/{session.id}",
            data="v=0",
            headers={"Content-Type": "application/sdp", **login},
            allow_redirects=False,
        ) as response,
    ):
        assert response.status == 404


@pytest.fixture
async def shared_nodes(tmp_path: Path, postgres_url: str) -> AsyncIterator[tuple[Gateway, Gateway]]:
    """Two nodes on one PostgreSQL and one Redis, as a cluster runs."""
    master_key = base64.b64encode(secrets.token_bytes(32)).decode()  # one key for the cluster
    async with node_pair(
        lambda name: tmp_path / name,
        store_url=postgres_url,
        evidence_master_key=master_key,
        evidence_signing_key_file=str(tmp_path / "signing.key"),
    ) as pair:
        yield pair


async def test_nodes_on_one_postgresql_share_people_alerts_and_one_register(
    shared_nodes: tuple[Gateway, Gateway],
) -> None:
    a, b = shared_nodes
    await add_login(a.store, "dupont", "operator")  # an account made once, for every node
    async with aiohttp.ClientSession() as http:
        for node in (a, b):  # a guesser going from node to node is counted once
            async with http.post(
                f"{node.url}/api/v1/login", json={"name": "dupont", "password": "guess"}
            ) as r:
                assert r.status == 401
        async with http.post(
            f"{a.url}/api/v1/login", json={"name": "dupont", "password": PASSWORD}
        ) as r:
            assert r.status == 200
            login = {"Authorization": f"Bearer {(await r.json())['token']}"}
        async with http.get(f"{b.url}/api/v1/me", headers=login) as r:
            assert r.status == 200  # a login made on A opens B
        token = await a.enroll("cam-b")  # a device enrolled on A publishes to B
        async with AxisBodycam(b.url, "cam-b", token, media=small_media()) as camera:
            await camera.press()
            [session] = await a.store.run(a.store.list_sessions)  # B's session, seen from A
            async with http.get(f"{a.url}/api/v1/alerts", headers=login) as r:
                [alert] = await r.json()
                assert alert["session_id"] == session.id
                assert alert["session_state"] == "live"  # B holds it: A knows from the store
            view = await watch(b.url, session.id, login)
            await wait_for(lambda: len(view.counters) >= 10, within=10)
            await view.close()
            # the officer's position, asked of A by a browser (its login in a cookie for
            # A's address), is B's answer
            where = f"/api/v1/sessions/{session.id}/position"
            browser = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
            credentials = {"name": "dupont", "password": PASSWORD}
            async with browser, browser.post(f"{a.url}/api/v1/login", json=credentials) as r:
                assert r.status == 200

                async def located() -> bool:
                    async with browser.get(f"{a.url}{where}") as r:
                        return r.status == 200 and "lat" in await r.json()

                await wait_for(located, within=10)
            # the camera's WHIP DELETE lands on A (a load balancer's choice): B ends it
            assert camera.session_url is not None
            resource = yarl.URL(camera.session_url).path
            async with http.delete(
                f"{a.url}{resource}", headers={"Authorization": f"Bearer {token}"}
            ) as r:
                assert r.status == 200
                assert (await r.json())["state"] == "ended"
        await wait_for(lambda: len(b.sessions.live_sessions()) == 0)
        async with http.get(f"{a.url}/api/v1/alerts", headers=login) as r:
            [alert] = await r.json()
            assert alert["session_state"] == "ended"
        # a node takes the caller's address from a forwarded request only when a node of
        # the cluster signed it (the key is in the shared database)
        signed = a.app[forwarder_key].sign("192.0.2.7")
        forged = signed.replace("192.0.2.7", "192.0.2.8")
        for header in (signed, forged):
            async with http.post(
                f"{b.url}/api/v1/login",
                json={"name": "dupont", "password": "guess"},
                headers={"Bodycam-Forwarded": header},
            ) as r:
                assert r.status == 401
    entries = await a.store.run(a.store.register_entries)
    actions = [e["action"] for e in entries]
    assert "login" in actions  # appended by A
    failures = [e["detail"] for e in entries if e["action"] == "login_failed"]
    assert [d.split("; ")[1] for d in failures[:2]] == [
        "1 failures in a row",
        "2 failures in a row",
    ]
    assert [d.split("; ")[0] for d in failures[2:]] == ["from 192.0.2.7", "from 127.0.0.1"]
    assert "live_view_start" in actions  # appended by B
    verdict = await b.store.run(register.verify, b.store)
    assert verdict.ok, verdict.text()
    assert verdict.checked == len(entries)  # one chain, whichever node wrote
