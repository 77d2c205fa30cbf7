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
from typing import IO, Any

from aiohttp import web

from .. import access
from ..clock import iso, parse_moment
from ..errors import BadRequest, NotFound
from ..evidence import bundle, holds, reasons, register
from ..evidence.recordings import opener, recorded, recordings, remux
from ..evidence.retention import expires_at
from ..models import Action, Actor, Hold
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
    r.add_get(f"{PREFIX}/recordings/{{session_id}}/media", play_recording)
    r.add_post(f"{PREFIX}/recordings/{{session_id}}/holds", place_hold)
    r.add_post(f"{PREFIX}/recordings/{{session_id}}/holds/{{hold_id}}/lift", lift_hold)
    r.add_post(f"{PREFIX}/exports", create_export)
    r.add_get(f"{PREFIX}/exports/{{name}}", download_export)
    r.add_get(f"{PREFIX}/register", read_register)
    r.add_get(f"{PREFIX}/register/verify", verify_register)
    r.add_get(f"{PREFIX}/stats", stats)


# recordings


async def list_recordings(request: web.Request) -> web.Response:
    """Recorded sessions, newest first, with their retention and holds."""
    auth.require(request, access.RECORDING_VIEW, "see recordings")
    store, retention = request.app[store_key], request.app[config_key].retention
    rows = await store.run(recordings, store)
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


async def play_recording(request: web.Request) -> web.StreamResponse:
    """GET …/media?reason=…: the whole session as one Matroska stream, decrypted on the fly."""
    person = auth.require(request, access.RECORDING_VIEW, "view recordings")
    reason = reasons.reason(request.query.get("reason"), "say why you view this recording")
    app, session_id = request.app, request.match_info["session_id"]
    store = app[store_key]
    session, segments = await store.run(recorded, store, session_id)
    key = await store.run(app[keyring_key].session_key, session_id)
    await auth.record(
        request,
        Action.RECORDING_VIEW,
        person,
        session_id=session_id,
        time_from=session.started_at,
        time_to=session.ended_at,
        reason=reason,
        detail=f"from {request.remote or '?'}",
    )
    open_segment = opener(app[config_key].recordings_dir, key)
    return await stream(
        request,
        "video/x-matroska",
        f"{session_id}.mkv",
        lambda out: remux(session.started_at, segments, open_segment, out),
    )


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
    try:
        hold_id = int(request.match_info["hold_id"])
    except ValueError:
        raise BadRequest("hold id must be a number") from None
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
