"""The REST API of evidence (`/api/v1/…`): recordings, legal holds, exports, the register,
statistics, people and devices. Thin handlers over the access matrix (`access`).

Recordings are read only with a stated reason, and every read, hold, export and
administrative act is a register entry. The national police role reaches none of this.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
import secrets
import shutil
import tarfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from .. import access, devices, users
from ..clock import iso, parse_moment
from ..errors import BadRequest, BodycamError, Conflict, NotFound, TooManyRequests
from ..evidence import bundle as evidence
from ..evidence import holds
from ..evidence.recordings import opener, recorded, remux
from ..evidence.register import Action, Entry
from ..evidence.retention import expires_at
from ..models import Hold
from . import auth
from .api_live import PREFIX, _json
from .appkeys import clock_key, config_key, keyring_key, store_key

logger = logging.getLogger(__name__)

MAX_REASON = 500
PIPE_DEPTH = 8  # chunks between the remuxing thread and the client: back-pressure
MAX_STREAMS = 8  # recordings and bundles streamed at once
EXPORT_NAME = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]{0,150}$")


def add_routes(app: web.Application) -> None:
    app[_streams_key] = _Streams()
    app.on_cleanup.append(_close_streams)
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
    r.add_get(f"{PREFIX}/users", list_users)
    r.add_post(f"{PREFIX}/users", add_user)
    r.add_get(f"{PREFIX}/devices", list_devices)
    r.add_post(f"{PREFIX}/devices", add_device)
    r.add_post(f"{PREFIX}/devices/{{device_id}}/revoke", revoke_device)


# recordings


async def list_recordings(request: web.Request) -> web.Response:
    """Recorded sessions, newest first, with their retention and holds."""
    auth.require(request, access.RECORDING_VIEW, "see recordings")
    store, retention = request.app[store_key], request.app[config_key].retention
    rows = await store.run(_recordings, store)
    return web.json_response(
        [
            {
                "session_id": s.id,
                "device_id": s.device_id,
                "officer": s.officer,
                "state": s.state.value,
                "started_at": iso(s.started_at),
                "ended_at": iso(s.ended_at) if s.ended_at else None,
                "segments": count,
                "bytes": size,
                "held": held,
                "destroyed_at": iso(s.destroyed_at) if s.destroyed_at else None,
                # from the last recorded moment, as the purge counts it
                "expires_at": iso(expires_at(until, retention)) if until else None,
            }
            for s, count, size, held, until in rows
        ]
    )


def _recordings(store: Any) -> list[tuple[Any, int, int, bool, datetime | None]]:
    held = store.held_sessions()
    until = {session_id: moment for session_id, moment, _ in store.recorded_until()}
    return [
        (s, *store.recording_totals(s.id), s.id in held, until.get(s.id))
        for s in reversed(store.list_sessions())
    ]


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
    reason = holds.text(request.query.get("reason"), "reason", "say why you view this recording")
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
    return await _stream(
        request,
        "video/x-matroska",
        f"{session_id}.mkv",
        lambda out: remux(session.started_at, segments, open_segment, out),
    )


# legal holds


async def place_hold(request: web.Request) -> web.Response:
    """POST {"reference", "reason"}: the session survives the purge until lifted."""
    person = auth.require(request, access.LEGAL_HOLD, "place legal holds")
    body = await _json(request)
    store, now = request.app[store_key], request.app[clock_key].now()
    hold = await store.run(
        holds.place,
        store,
        request.match_info["session_id"],
        auth.actor(person),
        body.get("reference"),
        body.get("reason"),
        now,
    )
    return web.json_response(_hold_json(hold), status=201)


async def lift_hold(request: web.Request) -> web.Response:
    """POST {"reference", "reason"}: lift one hold (the purge may then take the session)."""
    person = auth.require(request, access.LEGAL_HOLD, "lift legal holds")
    body = await _json(request)
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
        auth.actor(person),
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
    body = await _json(request)
    reference, reason = evidence.check_requisition(body.get("reference"), body.get("reason"))
    sessions = body.get("sessions")
    if not isinstance(sessions, list) or not all(isinstance(s, str) for s in sessions):
        raise BadRequest("sessions: a list of session ids is required")
    if len(sessions) > 100:
        raise BadRequest("sessions: at most 100 per export")
    app = request.app
    store, keyring, config = app[store_key], app[keyring_key], app[config_key]
    now = app[clock_key].now()
    requisition = evidence.Requisition(reference, reason, auth.actor(person))
    name, manifest = await export_bundle(
        store, keyring, config.exports_dir, config.recordings_dir, sessions, requisition, now
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


async def export_bundle(
    store: Any,
    keyring: Any,
    exports_dir: Path,
    recordings_dir: Path,
    sessions: list[str],
    requisition: evidence.Requisition,
    now: datetime,
    progress: Callable[[str, int, int], None] | None = None,
    name: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """Build a bundle and register the export of each session in it (API and CLI)."""
    facts = await store.run(evidence.collect, store, keyring, sessions)
    head = await store.run(store.register_head)
    name = name or bundle_name(requisition.reference, now)
    final = exports_dir / name
    if final.exists():
        raise Conflict(f"{final} already exists: an export never overwrites anything")
    # Built under a hidden name; it appears under its own only once its register entries
    # are written: no bundle can exist that the register does not know about.
    partial = exports_dir / f".partial-{name}"
    manifest = await asyncio.to_thread(
        evidence.build_bundle,
        partial,
        facts,
        requisition,
        keyring,
        recordings_dir,
        head,
        now,
        progress,
    )
    entries = [
        Entry(
            Action.EXPORT,
            requisition.actor,
            now,
            session_id=f.session.id,
            time_from=f.session.started_at,
            time_to=f.session.ended_at,
            reason=requisition.reason,
            reference=requisition.reference,
            detail=f"bundle {name}",
        )
        for f in facts
    ]
    try:
        await store.run(store.record_all, entries)
        partial.rename(final)
    except BaseException:
        await asyncio.to_thread(shutil.rmtree, partial, True)
        raise
    logger.info("export %s by %s: %d sessions", name, requisition.actor.user, len(facts))
    return name, manifest


def bundle_name(reference: str, now: datetime) -> str:
    """A folder name from the reference and the time, plus random digits: never reused."""
    slug = re.sub(r"[^0-9A-Za-z]+", "-", reference).strip("-")[:60] or "export"
    return f"{now:%Y%m%dT%H%M%SZ}-{slug}-{secrets.token_hex(3)}"


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

    def write_tar(out: Any) -> None:
        with tarfile.open(fileobj=out, mode="w|") as tar:
            tar.add(folder, arcname=name)

    return await _stream(request, "application/x-tar", f"{name}.tar", write_tar)


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
        from ..evidence.register import write_csv

        write_csv(iter(rows), out)
        return web.Response(text=out.getvalue(), content_type="text/csv")
    return web.json_response(rows)


async def verify_register(request: web.Request) -> web.Response:
    auth.require(request, access.REGISTER_READ, "verify the register")
    store = request.app[store_key]
    verdict = await store.run(store.verify_register)
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


# people and devices


async def list_users(request: web.Request) -> web.Response:
    auth.require(request, access.ADMINISTRATION, "administer accounts")
    store = request.app[store_key]
    return web.json_response([u.to_json() for u in await store.run(store.list_users)])


async def add_user(request: web.Request) -> web.Response:
    """POST {"name", "role", "service", "password"}: a supervisor's act only (an account
    made by an admin could give its maker rights the admin role does not have)."""
    person = auth.require(request, access.USER_ADMINISTRATION, "create accounts")
    body = await _json(request)
    fields = {k: body.get(k, "") for k in ("name", "role", "service", "password")}
    if not all(isinstance(v, str) for v in fields.values()):
        raise BadRequest("name, role, service and password must be strings")
    store, now = request.app[store_key], request.app[clock_key].now()
    made, password_hash = await asyncio.to_thread(
        users.new_account,
        fields["name"],
        fields["role"],
        fields["password"],
        fields["service"],
        now,
    )
    await store.run(users.keep_account, store, made, password_hash)
    await auth.record(
        request,
        Action.USER_ADDED,
        person,
        detail=f"{made.name} ({made.role}, {made.service or 'no service'})",
    )
    return web.json_response(made.to_json(), status=201)


async def list_devices(request: web.Request) -> web.Response:
    auth.require(request, access.ADMINISTRATION, "administer devices")
    store = request.app[store_key]
    return web.json_response(
        [
            {
                "id": d.id,
                "officer": d.officer,
                "created_at": iso(d.created_at),
                "revoked_at": iso(d.revoked_at) if d.revoked_at else None,
                "serial": d.serial,
                "model": d.model,
            }
            for d in await store.run(store.list_devices)
        ]
    )


async def add_device(request: web.Request) -> web.Response:
    """POST {"id", "officer"}: enrol a body camera; its token is in this answer only."""
    person = auth.require(request, access.ADMINISTRATION, "administer devices")
    body = await _json(request)
    device_id, officer = body.get("id"), body.get("officer", "")
    if not isinstance(device_id, str) or not isinstance(officer, str):
        raise BadRequest("id and officer must be strings")
    store, now = request.app[store_key], request.app[clock_key].now()
    token = await store.run(devices.enroll, store, device_id, officer, now)
    await auth.record(request, Action.DEVICE_ADDED, person, detail=f"{device_id} ({officer})")
    return web.json_response({"id": device_id, "officer": officer, "token": token}, status=201)


async def revoke_device(request: web.Request) -> web.Response:
    person = auth.require(request, access.ADMINISTRATION, "administer devices")
    device_id = request.match_info["device_id"]
    store, now = request.app[store_key], request.app[clock_key].now()
    await store.run(devices.revoke, store, device_id, now)
    await auth.record(request, Action.DEVICE_REVOKED, person, detail=device_id)
    return web.Response(status=204)


# helpers


class _Pipe:
    """A non-seekable file for a worker thread whose bytes the event loop sends on."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(PIPE_DEPTH)
        self.gone = threading.Event()

    def write(self, data: Any) -> int:
        if self.gone.is_set():
            raise OSError("the client went away")
        future = asyncio.run_coroutine_threadsafe(self.queue.put(bytes(data)), self._loop)
        while True:
            try:
                future.result(timeout=1.0)
                return len(data)
            except TimeoutError:
                if self.gone.is_set():
                    future.cancel()
                    raise OSError("the client went away") from None

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        raise OSError("not seekable")

    def flush(self) -> None:
        return None


async def _stream(
    request: web.Request, content_type: str, filename: str, produce: Callable[[Any], Any]
) -> web.StreamResponse:
    """Run `produce(file)` on a worker thread and stream what it writes to the client."""
    pipe = _Pipe(asyncio.get_running_loop())

    def work() -> None:
        try:
            produce(pipe)
        finally:
            if not pipe.gone.is_set():
                asyncio.run_coroutine_threadsafe(pipe.queue.put(None), pipe._loop)

    streams = request.app[_streams_key]
    if streams.running >= MAX_STREAMS:
        raise TooManyRequests(f"{MAX_STREAMS} recordings are being read already: try again soon")
    streams.running += 1
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(loop.run_in_executor(streams.executor, work))
    task.add_done_callback(lambda _: streams.finished())
    response: web.StreamResponse | None = None
    try:
        first = await _next(pipe, task)  # errors before the first byte get a proper answer
        response = web.StreamResponse(
            headers={
                "Content-Type": content_type,
                "Content-Disposition": f'attachment; filename="{filename}"',
                "Cache-Control": "no-store",
            }
        )
        await response.prepare(request)
        chunk = first
        while chunk is not None:
            await response.write(chunk)
            chunk = await _next(pipe, task)
        await response.write_eof()
    except (ConnectionError, BodycamError) as err:
        if response is None or not response.prepared:
            raise  # nothing sent yet: the client gets the error itself
        logger.warning("%s: stream stopped: %s", request.path, err)
    finally:
        pipe.gone.set()
        while not pipe.queue.empty():
            pipe.queue.get_nowait()
        await asyncio.gather(task, return_exceptions=True)
    return response


class _Streams:
    """Threads of their own for recordings and bundles being streamed: a long view holds
    one for its whole length, and must not take those logins and the purge run on."""

    def __init__(self) -> None:
        self.executor = ThreadPoolExecutor(MAX_STREAMS, thread_name_prefix="stream")
        self.running = 0

    def finished(self) -> None:
        self.running -= 1


_streams_key = web.AppKey("streams", _Streams)


async def _close_streams(app: web.Application) -> None:
    app[_streams_key].executor.shutdown(wait=False, cancel_futures=True)


async def _next(pipe: _Pipe, task: asyncio.Future[Any]) -> bytes | None:
    """The next chunk, None at the end; the producer's error if it failed."""
    getter = asyncio.ensure_future(pipe.queue.get())
    done, _ = await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
    if getter not in done:
        error = task.exception()
        if error is not None:
            getter.cancel()
            raise error
        return await getter
    chunk = getter.result()
    if chunk is None:
        await task  # raises what the producer raised, if anything
    return chunk
