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

from aiohttp import web

from .. import users
from ..errors import (
    BadRequest,
    Forbidden,
    PayloadTooLarge,
    TooManyRequests,
    Unauthorized,
    UnsupportedMediaType,
)
from ..models import Role, User
from .keys import clock_key, config_key, store_key

logger = logging.getLogger(__name__)

COOKIE = "bodycam_session"
PROTECTED = ("/api/", "/whep/", "/ui/ws", "/ui/cameras/", "/ui/city.json")
OPEN = frozenset({"/api/v1/login", "/api/v1/logout"})
MAX_LOGIN_BYTES = 4096

# DESIGN, access matrix: what each role may do on the live side
LIVE_VIEW = frozenset({Role.OPERATOR, Role.SUPERVISOR, Role.POLICE_NATIONALE})
ALERT_ACTION = frozenset({Role.OPERATOR, Role.SUPERVISOR})
CAMERA_CONTROL = frozenset({Role.OPERATOR, Role.SUPERVISOR})  # the CIC: after notice (issue 5)

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
    """The logged-in person, if their role may do `what`; otherwise 403 saying why."""
    person = user(request)
    if person.role not in roles:
        logger.warning("refused: %s (%s) may not %s", person.name, person.role, what)
        raise Forbidden(f"role {person.role} may not {what}")
    return person


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
    if not isinstance(data, dict):
        raise BadRequest("login: expected a JSON object")
    name, password = data.get("name"), data.get("password")
    if not isinstance(name, str) or not isinstance(password, str):
        raise BadRequest("login: name and password must be strings")
    app = request.app
    store, config, now = app[store_key], app[config_key], app[clock_key].now()
    found = await store.run(store.get_user, name)
    try:
        person = await app[_password_checks_key].check(found, password)
    except Unauthorized:
        logger.warning("login failed for %r from %s", name[:64], request.remote)
        await asyncio.sleep(config.auth.failure_delay_seconds)  # slows down guessing
        raise
    lasts = timedelta(hours=config.auth.login_hours)
    token = await store.run(users.open_login, store, person, now, lasts)
    logger.info("login: %s (%s) from %s", person.name, person.role, request.remote)
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
        await store.run(users.close_login, store, token, now)
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
