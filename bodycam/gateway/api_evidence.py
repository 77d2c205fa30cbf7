"""The REST API of evidence (`/api/v1/…`): recordings, legal holds, exports, the register,
statistics. Thin handlers: the access matrix (`access`, checked by `auth.require`), then the
same functions of `evidence/` the command line calls.

Recordings are read only with a stated reason, and every read, hold and export is a
register entry. The national police role reaches none of this.
"""

from __future__ import annotations

import asyncio
import io
import re
import tarfile
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import IO, Any

from aiohttp import web

from .. import access
from ..clock import iso, parse_iso, parse_moment
from ..errors import BadRequest, NotFound
from ..evidence import bundle, holds, reasons, register, viewing
from ..evidence.recordings import Recorded, Search, opener, recorded, search
from ..evidence.retention import expires_at
from ..geo.places import went_by
from ..models import Action, Actor, Hold
from ..store import Store
from . import auth
from .appkeys import clock_key, config_key, keyring_key, store_key
from .params import PREFIX, json_body
from .streaming import stream

EXPORT_NAME = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]{0,150}$")
MAX_EXPORT_SESSIONS = 100


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get(f"{PREFIX}/recordings", list_recordings)
    r.add_get(f"{PREFIX}/recordings/{{session_id}}", show_recording)
    r.add_post(f"{PREFIX}/recordings/{{session_id}}/viewings", start_viewing)
    r.add_get(f"{PREFIX}/viewings/{{token}}/chunks/{{index}}", viewing_chunk)
    r.add_post(f"{PREFIX}/recordings/{{session_id}}/holds", place_hold)
    r.add_post(f"{PREFIX}/recordings/{{session_id}}/holds/{{hold_id}}/lift", lift_hold)
    r.add_post(f"{PREFIX}/exports", create_export)
    r.add_get(f"{PREFIX}/exports/{{name}}", download_export)
    r.add_get(f"{PREFIX}/register", read_register)
    r.add_get(f"{PREFIX}/register/verify", verify_register)
    r.add_get(f"{PREFIX}/stats", stats)


# recordings


async def list_recordings(request: web.Request) -> web.Response:
    """Recorded sessions, newest first, with their retention and holds; narrowed by
    ?officer= ?device= (part of the name or id), ?from= ?to= (ISO 8601) and ?place= (a
    street or building the officer went by)."""
    auth.require(request, access.RECORDING_VIEW, "see recordings")
    store, retention = request.app[store_key], request.app[config_key].retention
    query = request.query
    wanted = Search(
        officer=_text(query, "officer"),
        device=_text(query, "device"),
        since=parse_moment(query.get("from"), "from"),
        until=parse_moment(query.get("to"), "to"),
    )
    place = _text(query, "place")
    rows = await store.run(_search, store, wanted, place)
    return web.json_response(
        [
            {
                "session_id": r.session.id,
                "device_id": r.session.device_id,
                "officer": r.session.officer,
                "state": r.session.state.value,
                "started_at": iso(r.session.started_at),
                "ended_at": iso(r.session.ended_at) if r.session.ended_at else None,
                "segments": r.segments,
                "bytes": r.bytes,
                "held": r.held,
                "destroyed_at": iso(r.session.destroyed_at) if r.session.destroyed_at else None,
                # from the last recorded moment, as the purge counts it
                "expires_at": (
                    iso(expires_at(r.recorded_until, retention)) if r.recorded_until else None
                ),
            }
            for r in rows
        ]
    )


MAX_SEARCH_TEXT = 200


def _text(query: Mapping[str, str], name: str) -> str | None:
    value = query.get(name, "").strip()
    if len(value) > MAX_SEARCH_TEXT:
        raise BadRequest(f"{name}: at most {MAX_SEARCH_TEXT} characters")
    return value or None


def _search(store: Store, wanted: Search, place: str | None) -> list[Recorded]:
    """On the store's thread: the place's shape, then the matching recordings."""
    near = None
    if place is not None:
        places = [p for kind in ("street", "building") for p in store.places(kind)]
        near = went_by(places, place)
        if near is None:
            raise NotFound(f"place: the city has no street or building named like {place!r}")
    return search(store, wanted, near)


async def show_recording(request: web.Request) -> web.Response:
    auth.require(request, access.RECORDING_VIEW, "see recordings")
    store, session_id = request.app[store_key], request.match_info["session_id"]
    session, segments = await store.run(recorded, store, session_id)
    holds = await store.run(store.holds_of, session_id)
    return web.json_response(
        {
            "session_id": session.id,
            "device_id": session.device_id,
            "officer": session.officer,
            "started_at": iso(session.started_at),
            "ended_at": iso(session.ended_at) if session.ended_at else None,
            "segments": [
                {
                    "seq": g.seq,
                    "state": g.state,
                    "started_at": iso(g.started_at),
                    "ended_at": iso(g.ended_at) if g.ended_at else None,
                    "bytes": g.bytes,
                    "sha256": g.sha256,
                    "prev_sha256": g.prev_sha256,
                }
                for g in segments
            ],
            "holds": [_hold_json(h) for h in holds],
        }
    )


async def start_viewing(request: web.Request) -> web.Response:
    """POST {"reason", "from"?, "to"?}: watch part of a recording in the console.

    The viewing is registered with the range it covers; what comes back lists its chunks
    (`GET /api/v1/viewings/{token}/chunks/{n}`), each a few seconds of the recording for
    the console's player, never the whole file and never as a download (evidence/viewing.py).
    """
    person = auth.require(request, access.RECORDING_VIEW, "view recordings")
    body = await json_body(request)
    reason = reasons.reason(body.get("reason"), "say why you view this recording")
    since, until = _moment(body, "from"), _moment(body, "to")
    app, session_id = request.app, request.match_info["session_id"]
    store, now = app[store_key], app[clock_key].now()
    session, segments = await store.run(recorded, store, session_id)
    chunks, start, end = viewing.grant_range(session, segments, since, until)
    grant = viewing.Grant(
        viewing.new_viewing_id(),
        session_id,
        person.name,
        iso(start),
        iso(end),
        iso(now + timedelta(minutes=viewing.GRANT_MINUTES)),
    )
    await auth.record(
        request,
        Action.RECORDING_VIEW,
        person,
        session_id=session_id,
        time_from=start,
        time_to=end,
        reason=reason,
        detail=f"in the console from {request.remote or '?'}; viewing {grant.viewing}",
    )
    token = grant.token(app[keyring_key].derived(viewing.GRANT_PURPOSE))
    return web.json_response(
        {
            "viewing": grant.viewing,
            "session_id": session_id,
            "officer": session.officer,
            "device_id": session.device_id,
            "from": grant.since,
            "to": grant.until,
            "duration": (end - start).total_seconds(),
            "expires_at": grant.expires,
            "type": viewing.mime_type(segments[0], bool(session.audio_codec)),
            "viewer": person.name,
            "chunks": [
                {
                    "index": c.index,
                    "start": c.start,
                    "duration": c.duration,
                    "url": f"{PREFIX}/viewings/{token}/chunks/{c.index}",
                }
                for c in chunks
            ],
        },
        status=201,
    )


async def viewing_chunk(request: web.Request) -> web.Response:
    """A few seconds of a granted viewing, for the console's player (not a download)."""
    person = auth.require(request, access.RECORDING_VIEW, "view recordings")
    app = request.app
    store, now = app[store_key], app[clock_key].now()
    key = app[keyring_key].derived(viewing.GRANT_PURPOSE)
    grant = viewing.Grant.of_token(request.match_info["token"], key, person.name, now)
    session, segments = await store.run(recorded, store, grant.session_id)
    chunks, _, _ = viewing.grant_range(
        session, segments, parse_iso(grant.since), parse_iso(grant.until)
    )
    raw = request.match_info["index"]
    if not raw.isdigit() or int(raw) >= len(chunks):
        raise NotFound(f"no chunk {raw[:20]} in this viewing (it has {len(chunks)})")
    chunk = chunks[int(raw)]
    session_key = await store.run(app[keyring_key].session_key, grant.session_id)
    metadata = {
        "title": f"bodycam: viewed by {person.name} on {iso(now)}",
        "comment": f"viewing {grant.viewing} of session {grant.session_id}; not a copy",
    }
    data, audio = await asyncio.to_thread(
        viewing.cut, chunk, opener(app[config_key].recordings_dir, session_key), metadata
    )
    mime = viewing.mime_type(chunk.segment, audio)
    return web.Response(
        body=data,
        headers={
            "Content-Type": mime.split(";")[0],
            "X-Bodycam-Type": mime,
            "X-Bodycam-Start": f"{chunk.start:.3f}",
            # for the player in the page, never a file to keep
            "Content-Disposition": "inline",
            "Cache-Control": "no-store, private",
            "X-Content-Type-Options": "nosniff",
            "Cross-Origin-Resource-Policy": "same-origin",
        },
    )


def _moment(body: dict[str, Any], name: str) -> datetime | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise BadRequest(f"{name}: an ISO 8601 date and time is required")
    return parse_moment(value, name)


# legal holds


async def place_hold(request: web.Request) -> web.Response:
    """POST {"reference", "reason"}: the session survives the purge until lifted."""
    person = auth.require(request, access.LEGAL_HOLD, "place legal holds")
    body = await json_body(request)
    store, now = request.app[store_key], request.app[clock_key].now()
    hold = await store.run(
        holds.place,
        store,
        request.match_info["session_id"],
        Actor.of(person),
        body.get("reference"),
        body.get("reason"),
        now,
    )
    return web.json_response(_hold_json(hold), status=201)


async def lift_hold(request: web.Request) -> web.Response:
    """POST {"reference", "reason"}: lift one hold (the purge may then take the session)."""
    person = auth.require(request, access.LEGAL_HOLD, "lift legal holds")
    body = await json_body(request)
    raw = request.match_info["hold_id"]
    if not raw.isdigit() or len(raw) > 18:  # (a database integer has 19 digits at most)
        raise BadRequest(f"hold id must be a number, got {raw[:40]!r}")
    hold_id = int(raw)
    store, now = request.app[store_key], request.app[clock_key].now()
    hold = await store.run(
        holds.lift,
        store,
        request.match_info["session_id"],
        hold_id,
        Actor.of(person),
        body.get("reference"),
        body.get("reason"),
        now,
    )
    return web.json_response(_hold_json(hold))


def _hold_json(hold: Hold) -> dict[str, Any]:
    return {
        "id": hold.id,
        "session_id": hold.session_id,
        "reference": hold.reference,
        "reason": hold.reason,
        "placed_by": hold.placed_by,
        "placed_at": iso(hold.placed_at),
        "lifted_by": hold.lifted_by,
        "lifted_at": iso(hold.lifted_at) if hold.lifted_at else None,
        "lift_reference": hold.lift_reference,
    }


# exports


async def create_export(request: web.Request) -> web.Response:
    """POST {"sessions": [...], "reference", "reason"}: a signed bundle on the gateway."""
    person = auth.require(request, access.EXPORT, "export recordings")
    body = await json_body(request)
    requisition = reasons.Requisition.checked(
        body.get("reference"), body.get("reason"), Actor.of(person)
    )
    sessions = body.get("sessions")
    if not isinstance(sessions, list) or not all(isinstance(s, str) for s in sessions):
        raise BadRequest("sessions: a list of session ids is required")
    if len(sessions) > MAX_EXPORT_SESSIONS:
        raise BadRequest(f"sessions: at most {MAX_EXPORT_SESSIONS} per export")
    app = request.app
    store, keyring, config = app[store_key], app[keyring_key], app[config_key]
    name, manifest = await asyncio.to_thread(
        bundle.export,
        store,
        keyring,
        config.exports_dir,
        config.recordings_dir,
        sessions,
        requisition,
        app[clock_key].now(),
    )
    return web.json_response(
        {
            "name": name,
            "download": f"{PREFIX}/exports/{name}",
            "fingerprint": manifest["gateway"]["fingerprint"],
            "sessions": [
                {"session": s["session"], "media": s["media"], "segments": len(s["segments"])}
                for s in manifest["sessions"]
            ],
        },
        status=201,
    )


async def download_export(request: web.Request) -> web.StreamResponse:
    """A bundle as an uncompressed tar stream (the media are compressed already)."""
    person = auth.require(request, access.EXPORT, "download exports")
    name = request.match_info["name"]
    folder = request.app[config_key].exports_dir / name
    if not EXPORT_NAME.match(name) or not (folder / "manifest.json").is_file():
        raise NotFound(f"no export {name[:160]}")
    await auth.record(
        request, Action.EXPORT_DOWNLOAD, person, detail=f"bundle {name} to {request.remote}"
    )

    def write_tar(out: IO[bytes]) -> None:
        with tarfile.open(fileobj=out, mode="w|") as tar:
            tar.add(folder, arcname=name)

    return await stream(request, "application/x-tar", f"{name}.tar", write_tar)


# register and statistics


async def read_register(request: web.Request) -> web.StreamResponse:
    """GET ?from=&to= (ISO 8601): entries as JSON, or CSV with ?format=csv."""
    auth.require(request, access.REGISTER_READ, "read the register")
    query = request.query
    since, until = parse_moment(query.get("from"), "from"), parse_moment(query.get("to"), "to")
    store = request.app[store_key]
    rows = await store.run(store.register_entries, since, until)
    if request.query.get("format") == "csv":
        out = io.StringIO()
        register.write_csv(rows, out)
        return web.Response(text=out.getvalue(), content_type="text/csv")
    return web.json_response(rows)


async def verify_register(request: web.Request) -> web.Response:
    auth.require(request, access.REGISTER_READ, "verify the register")
    store = request.app[store_key]
    verdict = await store.run(register.verify, store)
    return web.json_response(
        {
            "ok": verdict.ok,
            "checked": verdict.checked,
            "head": {"seq": verdict.head_seq, "hash": verdict.head_hash},
            "broken_seq": verdict.broken_seq,
            "problem": verdict.problem,
            "text": verdict.text(),
        }
    )


async def stats(request: web.Request) -> web.Response:
    """Per month of ?year= (default: this year): what a centre reports each year."""
    auth.require(request, access.STATS_READ, "see statistics")
    now = request.app[clock_key].now()
    raw = request.query.get("year", str(now.year))
    if not raw.isdigit() or not 2000 <= int(raw) <= 2100:
        raise BadRequest(f"year: a year between 2000 and 2100 is required, got {raw[:10]!r}")
    store = request.app[store_key]
    months = await store.run(store.monthly_stats, int(raw))
    totals = {k: sum(m[k] for m in months.values()) for k in next(iter(months.values()))}
    totals["requisitions"] = await store.run(store.yearly_requisitions, int(raw))
    return web.json_response({"year": int(raw), "months": months, "total": totals})
