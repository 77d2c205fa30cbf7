"""Any node answers any request: what only the node holding a live session can do is
forwarded to that node, and its answer returned as it is.

That is: a WHEP view (the offer, its end), the camera's WHIP DELETE, the officer's
position and track, and an alert of a session that only the holder's own database has (on
one shared PostgreSQL every node acts on alerts itself). The holder is found in the live
state's session registry. A viewer's media then flows between the viewer and the holder's
ICE candidates (the SDP answer is the holder's), so a load balancer in front of the nodes
needs nothing sticky, and a browser keeps its login cookie on the one address it uses.

A forwarded request carries the caller's login token as a Bearer header (the holder
authenticates and registers the person itself) and ``Bodycam-Forwarded: <node>;<caller's
address>;<epoch ms>;<HMAC-SHA256>``, signed with the cluster key (kept in the shared store,
chosen by the first node to start): the holder registers the caller's address rather than
the forwarding node's when the signature holds and is under `FRESH_SECONDS` old, and
ignores the header otherwise. A request that arrives forwarded is never forwarded again,
so two nodes that disagree on who holds a session cannot pass it back and forth.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
from aiohttp import web

from ..clock import Clock
from ..errors import BodycamError
from ..live.base import LiveState
from . import auth
from .appkeys import clock_key, live_key, store_key
from .params import CORS

logger = logging.getLogger(__name__)

HEADER = "Bodycam-Forwarded"
FORWARD_SECONDS = 10.0  # the holder's answer (a WHEP answer takes ICE gathering)
FRESH_SECONDS = 30.0
MAX_ANSWER_BYTES = 1024 * 1024
SENT_HEADERS = ("Content-Type", "Accept", "If-Match")
RETURNED_HEADERS = ("Content-Type", "Location", "ETag", "Link", "X-Bodycam-Session")
CLUSTER_KEY = "cluster_key"  # the store's meta entry

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class HolderUnreachable(BodycamError):
    """The node holding a session does not answer."""

    status = 503


def cluster_key() -> str:
    """A new cluster key (the store keeps the first one any node made)."""
    return base64.b64encode(secrets.token_bytes(32)).decode()


class Forwarder:
    """This node's way to the others: it forwards, and it checks what others forwarded."""

    def __init__(self, live: LiveState, key: str, clock: Clock) -> None:
        self._live = live
        self._clock = clock
        self._key = base64.b64decode(key)
        self._http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=FORWARD_SECONDS), auto_decompress=False
        )

    async def close(self) -> None:
        await self._http.close()

    def _mac(self, node: str, client: str, ms: str) -> str:
        message = f"{node};{client};{ms}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def sign(self, client: str) -> str:
        node, ms = self._live.node.id, str(int(self._clock.now().timestamp() * 1000))
        return f"{node};{client};{ms};{self._mac(node, client, ms)}"

    def caller(self, header: str) -> str | None:
        """The caller's address a node forwarded, if its signature holds and is fresh."""
        parts = header.split(";")
        if len(parts) != 4:
            return None
        node, client, ms, mac = parts
        if not hmac.compare_digest(mac, self._mac(node, client, ms)):
            return None
        try:
            age = self._clock.now().timestamp() - int(ms) / 1000
        except ValueError:
            return None
        return client if abs(age) <= FRESH_SECONDS else None

    async def to_holder(
        self, request: web.Request, session_id: str, body: bytes | None = None
    ) -> web.Response | None:
        """The holder's answer to `request`, or None if this node is to answer: it holds
        the session, no node does, or the request was forwarded here already."""
        if HEADER in request.headers:
            return None
        holder = await self._live.sessions.holder(session_id)
        if holder is None or holder.id == self._live.node.id:
            return None
        headers = {h: request.headers[h] for h in SENT_HEADERS if h in request.headers}
        if "Authorization" in request.headers:  # a person's login or a device's token
            headers["Authorization"] = request.headers["Authorization"]
        elif (cookie := request.cookies.get(auth.COOKIE)) is not None:
            headers["Authorization"] = f"Bearer {cookie}"  # the login, without the cookie
        headers[HEADER] = self.sign(request.remote or "?")
        url = holder.url + request.path_qs
        try:
            async with self._http.request(
                request.method, url, data=body, headers=headers, allow_redirects=False
            ) as answer:
                content = await answer.content.read(MAX_ANSWER_BYTES + 1)
                if len(content) > MAX_ANSWER_BYTES:
                    raise HolderUnreachable(f"node {holder.id} answered over 1 MiB")
                kept = {h: answer.headers[h] for h in RETURNED_HEADERS if h in answer.headers}
        except (aiohttp.ClientError, TimeoutError) as err:
            raise HolderUnreachable(
                f"session {session_id} is held by node {holder.id} ({holder.url}), which does"
                f" not answer: {err or type(err).__name__}"
            ) from None
        logger.info(
            "%s %s forwarded to node %s: %d", request.method, request.path, holder.id, answer.status
        )
        return web.Response(status=answer.status, body=content, headers={**CORS, **kept})


forwarder_key = web.AppKey("forwarder", Forwarder)


async def forward_ctx(app: web.Application) -> AsyncIterator[None]:
    """The way to the other nodes, with the cluster's key (from the store)."""
    store = app[store_key]
    key = await store.run(store.meta_default, CLUSTER_KEY, cluster_key())
    app[forwarder_key] = forwarder = Forwarder(app[live_key], key, app[clock_key])
    yield
    await forwarder.close()


@web.middleware
async def forwarded_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A request another node forwarded: the caller's address is the one it signed."""
    header = request.headers.get(HEADER)
    if header is not None:
        caller = request.app[forwarder_key].caller(header)
        if caller is None:
            logger.warning("%s from %s not signed by this cluster: ignored", HEADER, request.remote)
        else:
            request = request.clone(remote=caller)
    return await handler(request)
