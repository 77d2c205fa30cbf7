"""Talking to the city's Axis cameras over VAPIX: device info, PTZ moves and position.

Every request uses HTTP Digest authentication (aiohttp's DigestAuthMiddleware, one per
camera so its nonce is reused). Credentials are never in the registry: a camera names a
`credentials_ref`, looked up in a TOML file kept beside the database (or where
`cameras.credentials_file` says), one table per reference:

    [csu-metz]
    username = "root"
    password = "…"

aiohttp and OS errors become CameraError subclasses here, once, with the camera id.
"""

from __future__ import annotations

import asyncio
import json
import logging
import stat
import tomllib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import aiohttp
from yarl import URL

from ..errors import BodycamError, ConfigError
from ..geo.ptz import Aim
from ..models import Camera

logger = logging.getLogger(__name__)

MAX_ANSWER_BYTES = 64 * 1024


class CameraError(BodycamError):
    """A camera could not do what was asked; the message names the camera."""

    status = 502


class CameraNotConfigured(CameraError):
    """No VAPIX URL, or no credentials for its reference."""


class CameraUnreachable(CameraError):
    """No answer: the camera, its link or its power is down."""

    status = 504


class CameraAuthFailed(CameraError):
    """The camera refused the credentials."""


class CameraRefused(CameraError):
    """The camera answered, with an error."""


@dataclass(frozen=True)
class Login:
    username: str
    password: str


@dataclass(frozen=True)
class DeviceInfo:
    serial: str
    model: str
    firmware: str


def load_credentials(path: Path) -> dict[str, Login]:
    """The credentials file, or {} if there is none; a malformed one is a ConfigError."""
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
        mode = path.stat().st_mode
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"camera credentials {path}: not valid TOML: {err}") from None
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        logger.warning("camera credentials %s can be read by other users: chmod 600 it", path)
    logins: dict[str, Login] = {}
    for ref, table in raw.items():
        if not (
            isinstance(table, dict)
            and isinstance(table.get("username"), str)
            and isinstance(table.get("password"), str)
        ):
            raise ConfigError(
                f"camera credentials {path}: [{ref}] needs username and password strings"
            )
        logins[ref] = Login(table["username"], table["password"])
    return logins


class Vapix:
    """A VAPIX client for many cameras: one HTTP connection pool for requests (health,
    PTZ), another for MJPEG streams, which hold their connection as long as a tile shows
    them and must never leave a PTZ command waiting for a free connection."""

    def __init__(self, credentials: dict[str, Login], timeout_seconds: float) -> None:
        self.credentials = credentials  # replaced when the file changes
        self.timeout_seconds = timeout_seconds  # an answer, or a picture of a stream
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session: aiohttp.ClientSession | None = None
        self._streams: aiohttp.ClientSession | None = None
        self._auth: dict[str, tuple[Login, aiohttp.DigestAuthMiddleware]] = {}

    async def close(self) -> None:
        for session in (self._session, self._streams):
            if session is not None:
                await session.close()

    def _requests(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def device_info(self, camera: Camera) -> DeviceInfo:
        """basicdeviceinfo.cgi, getAllProperties: serial number, model, firmware."""
        answer = await self._request(
            camera,
            "POST",
            "axis-cgi/basicdeviceinfo.cgi",
            json={"apiVersion": "1.0", "method": "getAllProperties"},
        )
        try:
            data: Any = json.loads(answer)
            if "error" in data:
                raise CameraRefused(f"camera {camera.id}: basicdeviceinfo: {data['error']}")
            props = data["data"]["propertyList"]
            return DeviceInfo(
                str(props.get("SerialNumber", "")),
                str(props.get("ProdNbr", "")),
                str(props.get("Version", "")),
            )
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as err:
            raise CameraRefused(
                f"camera {camera.id}: basicdeviceinfo answer is not the VAPIX JSON: {err!r}"
            ) from None

    async def move(self, camera: Camera, aim: Aim) -> None:
        """An absolute PTZ move (com/ptz.cgi)."""
        await self._request(
            camera,
            "GET",
            "axis-cgi/com/ptz.cgi",
            params={"camera": "1", "pan": aim.pan, "tilt": aim.tilt, "zoom": aim.zoom},
        )

    async def position(self, camera: Camera) -> Aim:
        """The camera's current PTZ position (com/ptz.cgi?query=position)."""
        text = await self._request(
            camera, "GET", "axis-cgi/com/ptz.cgi", params={"camera": "1", "query": "position"}
        )
        values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line.strip())
        try:
            return Aim(float(values["pan"]), float(values["tilt"]), round(float(values["zoom"])))
        except (KeyError, ValueError):
            raise CameraRefused(
                f"camera {camera.id}: ptz position answer not understood: {text[:200]!r}"
            ) from None

    @asynccontextmanager
    async def mjpeg(
        self, camera: Camera, resolution: str, fps: int
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """The camera's MJPEG stream (mjpg/video.cgi), open until the block ends.

        Only its opening (up to the headers) and each read are bounded in time: the stream
        itself lasts.
        """
        url = self._url(camera, "axis-cgi/mjpg/video.cgi")
        auth = self._middleware(camera)
        if self._streams is None:
            self._streams = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=self._timeout.total, sock_read=self._timeout.total
                ),
                connector=aiohttp.TCPConnector(limit=0),  # one per camera shown: bounded
            )
        params = {"resolution": resolution, "fps": str(fps)}
        answers = _Answers()
        try:
            opening = self._streams.get(
                url, params=params, middlewares=(auth, answers), allow_redirects=False
            )
            async with asyncio.timeout(self.timeout_seconds):  # headers that trickle too
                response = await opening
            answers.close(but=response)
            async with response:
                if response.status >= 300:
                    _refuse(camera, response, "mjpg/video.cgi", b"")
                if response.content_type != "multipart/x-mixed-replace":
                    raise CameraRefused(
                        f"camera {camera.id}: mjpg/video.cgi answered {response.status}"
                        f" {response.content_type}, not an MJPEG stream"
                    )
                yield response
        except (TimeoutError, aiohttp.ClientError, OSError) as err:
            raise CameraUnreachable(
                f"camera {camera.id}: MJPEG from {url.origin()} stopped: {err!r}"
            ) from err
        finally:
            answers.close()

    async def _request(self, camera: Camera, method: str, path: str, **kwargs: Any) -> str:
        url = self._url(camera, path)
        auth = self._middleware(camera)
        answers = _Answers()
        try:
            # never redirected: a camera could send the request, and the Digest answer to
            # whatever challenges it there, to another host
            async with self._requests().request(
                method, url, middlewares=(auth, answers), allow_redirects=False, **kwargs
            ) as response:
                if response.status >= 300:
                    _refuse(camera, response, path, await response.content.read(200))
                return (await _answer(camera, response, path)).decode("utf-8", "replace")
        except (TimeoutError, aiohttp.ClientError, OSError) as err:
            raise CameraUnreachable(
                f"camera {camera.id}: no answer from {url.origin()}: {err!r}"
            ) from err
        finally:
            answers.close()

    def _url(self, camera: Camera, path: str) -> URL:
        if not camera.vapix_url:
            raise CameraNotConfigured(f"camera {camera.id}: no VAPIX URL in the registry")
        base = camera.vapix_url if camera.vapix_url.endswith("/") else camera.vapix_url + "/"
        return URL(base).join(URL(path))

    def _middleware(self, camera: Camera) -> aiohttp.DigestAuthMiddleware:
        # One per camera: aiohttp's DigestAuthMiddleware keeps the last challenge (realm,
        # nonce, nonce count) and sends it pre-emptively. Shared between cameras it would
        # sign for camera B with camera A's nonce, costing a 401 and a retry on every
        # switch. It reads only the first WWW-Authenticate header (so MD5 when a camera
        # offers MD5 then SHA-256), and after a wrong password it retries once and hands
        # back the 401: it does not raise.
        login = self.credentials.get(camera.credentials_ref)
        if login is None:
            raise CameraNotConfigured(
                f"camera {camera.id}: no credentials named {camera.credentials_ref!r}"
            )
        known = self._auth.get(camera.id)
        if known is None or known[0] != login:
            known = (login, aiohttp.DigestAuthMiddleware(login.username, login.password))
            self._auth[camera.id] = known
        return known[1]


class _Answers:
    """The responses a request's middlewares were handed (innermost of them), closed when
    the request is done with: aiohttp 3.14's DigestAuthMiddleware drops the 401 it retries
    after without releasing it, and raises with one in hand when the challenge names an
    algorithm it lacks (SHA-512-256): each left a connection open (found by ./dev fuzz)."""

    def __init__(self) -> None:
        self._seen: list[aiohttp.ClientResponse] = []

    async def __call__(
        self, request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        response = await handler(request)
        self._seen.append(response)
        return response

    def close(self, but: aiohttp.ClientResponse | None = None) -> None:
        for response in self._seen:
            if response is not but:
                response.close()
        self._seen = [but] if but is not None and but in self._seen else []


def _refuse(camera: Camera, response: aiohttp.ClientResponse, path: str, start: bytes) -> NoReturn:
    """A camera that does not answer 2xx refuses, a redirect too (it is not followed)."""
    if response.status == 401:
        raise CameraAuthFailed(
            f"camera {camera.id}: credentials {camera.credentials_ref!r} refused"
        )
    text = start.decode("utf-8", "replace")
    raise CameraRefused(f"camera {camera.id}: {path} answered {response.status}: {text}")


async def _answer(camera: Camera, response: aiohttp.ClientResponse, path: str) -> bytes:
    """The whole answer, however it is cut into reads, up to MAX_ANSWER_BYTES."""
    chunks, size = [], 0
    async for chunk in response.content.iter_any():
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            raise CameraRefused(
                f"camera {camera.id}: {path} answered over {MAX_ANSWER_BYTES} bytes"
            )
        chunks.append(chunk)
    return b"".join(chunks)
