"""Who is asking: people's logins (cookie or Bearer token) and what their role allows.

Every path under the prefixes of `PROTECTED` needs a login, checked once in
`auth_middleware` (deny by default: a new endpoint there cannot be left open by mistake);
handlers then say which roles they serve with `require`. Devices are not people: WHIP
keeps its device tokens (`bodycam.devices`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from aiohttp import web

from .. import users
from ..clock import iso
from ..errors import (
    BadRequest,
    BodycamError,
    Forbidden,
    PayloadTooLarge,
    TooManyRequests,
    Unauthorized,
    UnsupportedMediaType,
)
from ..models import Action, Actor, Entry, Role, User
from .appkeys import clock_key, config_key, store_key

logger = logging.getLogger(__name__)

COOKIE = "bodycam_session"
PROTECTED = ("/api/", "/whep/", "/ui/ws", "/ui/cameras/", "/ui/city.json")
OPEN = frozenset({"/api/v1/login", "/api/v1/logout"})
MAX_LOGIN_BYTES = 4096

_user_key = web.RequestKey("user", User)  # the logged-in person, for this request
PASSWORD_CHECKS = 2  # scrypt runs at once
MAX_WAITING_LOGINS = 32


class PasswordChecks:
    """scrypt costs ~50 ms of CPU and 16 MiB: it runs on worker threads, a few at a time,
    and a flood of guesses is turned away (429) rather than queued without end, so that it
    cannot starve the gateway's other threads (recording, city rebuilds)."""

    def __init__(self) -> None:
        self._running = asyncio.Semaphore(PASSWORD_CHECKS)
        self._queued = 0

    async def check(self, found: tuple[User, str] | None, password: str) -> User:
        if self._queued >= MAX_WAITING_LOGINS:
            raise TooManyRequests("too many logins at once: try again in a few seconds")
        self._queued += 1
        try:
            async with self._running:
                return await asyncio.to_thread(users.authenticate_found, found, password)
        finally:
            self._queued -= 1


_password_checks_key = web.AppKey("password_checks", PasswordChecks)

FAILURE_WINDOW = timedelta(seconds=900)
MAX_FAILURE_DELAY_SECONDS = 30.0


def failure_delay(base: float, in_a_row: int) -> float:
    """Each failure in a row (per name and per address, counted in the store so that every
    node sees the same count) doubles the wait before the answer, from
    `auth.failure_delay_seconds` to at most 30 s: guessing gets slower and slower while a
    person who mistypes once barely notices."""
    return min(MAX_FAILURE_DELAY_SECONDS, base * 2.0 ** (in_a_row - 1))


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Find the person behind a protected request; 401 when there is none."""
    path = request.path
    if request.method != "OPTIONS" and path.startswith(PROTECTED) and path not in OPEN:
        token = login_token(request)
        if token is None:
            raise Unauthorized("log in first (cookie or Authorization: Bearer <login token>)")
        if "Authorization" not in request.headers:
            _same_origin(request)
        store, now = request.app[store_key], request.app[clock_key].now()
        request[_user_key] = await store.run(users.user_of_login, store, token, now)
    return await handler(request)


def _same_origin(request: web.Request) -> None:
    """A browser sends the cookie with requests that other pages of the same site make
    (SameSite stops other sites only): actions and the WebSocket must come from our page."""
    if request.method in ("GET", "HEAD") and request.path != "/ui/ws":
        return
    origin = request.headers.get("Origin")
    if origin is not None and origin != f"{request.scheme}://{request.host}":
        raise Forbidden(f"request from another origin ({origin[:100]}) refused")


def login_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip().startswith(users.LOGIN_PREFIX):
            raise Unauthorized("Authorization must be 'Bearer <login token>'")
        return token.strip()
    return request.cookies.get(COOKIE)


def user(request: web.Request) -> User:
    found: User | None = request.get(_user_key)
    if found is None:  # a handler outside PROTECTED asked: a programming error
        raise Unauthorized("log in first")
    return found


def require(request: web.Request, roles: frozenset[Role], what: str) -> User:
    """The logged-in person, if their role may do `what`; otherwise 403 saying why.

    The refusal is logged and registered by `record_refusal`, from the errors middleware.
    """
    person = user(request)
    if person.role not in roles:
        raise Forbidden(f"role {person.role} may not {what}")
    return person


async def record(
    request: web.Request, action: Action, person: User | None = None, **what: Any
) -> None:
    """Append a register entry about this request (by default, by its logged-in person)."""
    store, now = request.app[store_key], request.app[clock_key].now()
    who = Actor.of(person or user(request))
    await store.run(store.record, Entry(action, who, now, **what))


async def record_refusal(request: web.Request, err: BodycamError) -> None:
    """Every 403 is a register entry: who was refused what, and why."""
    person: User | None = request.get(_user_key)
    who = Actor.of(person) if person else Actor("(unknown)", "none")
    logger.warning(
        "refused: %s (%s): %s %s: %s", who.user, who.role, request.method, request.path, err
    )
    store, now = request.app[store_key], request.app[clock_key].now()
    entry = Entry(
        Action.ACCESS_REFUSED,
        who,
        now,
        outcome=f"refused: {err}",
        session_id=request.match_info.get("session_id", ""),
        camera_id=request.match_info.get("camera_id", ""),
        detail=f"{request.method} {request.path[:200]} from {request.remote or '?'}",
    )
    await store.run(store.record, entry)


# handlers


async def login(request: web.Request) -> web.Response:
    """POST {"name", "password"}: a login cookie, and the token for scripts."""
    if request.content_type != "application/json":
        raise UnsupportedMediaType('login: send JSON {"name": ..., "password": ...}')
    if (request.content_length or 0) > MAX_LOGIN_BYTES:
        raise PayloadTooLarge(f"login: body over {MAX_LOGIN_BYTES} bytes")
    body = await request.content.read(MAX_LOGIN_BYTES + 1)
    if len(body) > MAX_LOGIN_BYTES:
        raise PayloadTooLarge(f"login: body over {MAX_LOGIN_BYTES} bytes")
    try:
        data = json.loads(body)
    except ValueError as err:
        raise BadRequest(f"login: not valid JSON: {err}") from None
    except RecursionError:  # `[[[…` a few thousand deep fits in the login's 4 KB
        raise BadRequest("login: JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise BadRequest("login: expected a JSON object")
    name, password = data.get("name"), data.get("password")
    if not isinstance(name, str) or not isinstance(password, str):
        raise BadRequest("login: name and password must be strings")
    app = request.app
    store, config, now = app[store_key], app[config_key], app[clock_key].now()
    found = await store.run(store.get_user, name)
    keys = [f"name:{name[:64]}", f"addr:{request.remote}"]
    try:
        person = await app[_password_checks_key].check(found, password)
    except Unauthorized as err:
        count = await store.run(store.login_failed, keys, now, now - FAILURE_WINDOW)
        wait = failure_delay(config.auth.failure_delay_seconds, count)
        logger.warning(
            "login failed for %r from %s (%d in a row, answered in %.1f s)",
            name[:64],
            request.remote,
            count,
            wait,
        )
        who = Actor.of(found[0]) if found else Actor(name[:64], "none")
        entry = Entry(
            Action.LOGIN_FAILED,
            who,
            now,
            outcome=f"refused: {err}",
            detail=f"from {request.remote or '?'}; {count} failures in a row",
        )
        await store.run(store.record, entry)
        await asyncio.sleep(wait)  # slows down guessing
        raise
    await store.run(store.login_succeeded, keys)
    lasts = timedelta(hours=config.auth.login_hours)
    token = await store.run(users.open_login, store, person, now, lasts)
    logger.info("login: %s (%s) from %s", person.name, person.role, request.remote)
    await record(
        request,
        Action.LOGIN,
        person,
        detail=f"from {request.remote or '?'}; until {iso(now + lasts)}",
    )
    response = web.json_response({"user": person.to_json(), "token": token})
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(lasts.total_seconds()),
        path="/",
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )
    return response


async def logout(request: web.Request) -> web.Response:
    token = login_token(request)
    if token is not None:
        store, now = request.app[store_key], request.app[clock_key].now()
        try:
            person = await store.run(users.user_of_login, store, token, now)
        except Unauthorized:
            person = None
        await store.run(users.close_login, store, token, now)
        if person is not None:
            await record(request, Action.LOGOUT, person)
    response = web.Response(status=204)
    response.del_cookie(COOKIE, path="/")
    return response


async def me(request: web.Request) -> web.Response:
    return web.json_response(user(request).to_json())


def add_routes(app: web.Application) -> None:
    app[_password_checks_key] = PasswordChecks()
    app.router.add_post("/api/v1/login", login)
    app.router.add_post("/api/v1/logout", logout)
    app.router.add_get("/api/v1/me", me)
