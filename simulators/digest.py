"""HTTP Digest authentication (RFC 7616, qop=auth) on the server side, as Axis cameras do it.

Nonces are bounded in number, age and uses; a nonce count seen twice is a replay. aiohttp
has Digest only for clients (DigestAuthMiddleware), so the camera simulator brings its own.
"""

from __future__ import annotations

import enum
import hashlib
import re
import secrets
from collections.abc import Mapping

NONCE_TTL = 300.0  # seconds a Digest nonce stays valid
MAX_NONCES = 4096
MAX_NONCE_USES = 256  # then stale=true makes the client take a fresh nonce
HASHES = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}  # offered in this order
DIGEST_FIELDS = ("username", "realm", "nonce", "uri", "response", "qop", "nc", "cnonce")
_AUTH_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


class NonceState(enum.Enum):
    VALID = "valid"
    STALE = "stale"  # unknown, expired, worn out or another camera's: retry with stale=true
    REPLAYED = "replayed"


class NonceStore:
    """Digest nonces issued, bounded in number and age; `now` is a monotonic clock reading."""

    def __init__(self, ttl: float = NONCE_TTL, capacity: int = MAX_NONCES) -> None:
        self.ttl, self.capacity = ttl, capacity
        self._nonces: dict[str, tuple[str, float, set[int]]] = {}  # camera id, issued, nc seen

    def issue(self, camera_id: str, now: float) -> str:
        self._expire(now)
        while len(self._nonces) >= self.capacity:
            del self._nonces[next(iter(self._nonces))]
        nonce = secrets.token_hex(16)
        self._nonces[nonce] = (camera_id, now, set())
        return nonce

    def check(self, nonce: str, camera_id: str, count: int, now: float) -> NonceState:
        """Whether `nonce` may sign a request with nonce count `count` for this camera."""
        self._expire(now)
        owner, _, counts = self._nonces.get(nonce, ("", 0.0, set()))
        if owner != camera_id or len(counts) >= MAX_NONCE_USES:
            return NonceState.STALE
        if count in counts:
            return NonceState.REPLAYED
        counts.add(count)
        return NonceState.VALID

    def _expire(self, now: float) -> None:
        # Insertion order is issue order: the expired nonces are at the front.
        while self._nonces and now - next(iter(self._nonces.values()))[1] > self.ttl:
            del self._nonces[next(iter(self._nonces))]


def parse_digest(header: str) -> dict[str, str] | None:
    """The parameters of a `Digest ...` Authorization header, None if it is not one."""
    scheme, _, rest = header.partition(" ")
    if scheme.lower() != "digest":
        return None
    return {
        m[1].lower(): re.sub(r"\\(.)", r"\1", m[2]) if m[2] is not None else m[3]
        for m in _AUTH_PARAM.finditer(rest)
    }


def digest_response(fields: Mapping[str, str], password: str, method: str) -> str:
    """RFC 7616 `response` for qop=auth: H(H(user:realm:password):nonce:nc:cnonce:qop:H(A2))."""
    hash_fn = HASHES[fields.get("algorithm", "MD5").upper()]

    def h(*parts: str) -> str:
        return hash_fn(":".join(parts).encode()).hexdigest()

    ha1, ha2 = h(fields["username"], fields["realm"], password), h(method, fields["uri"])
    return h(ha1, fields["nonce"], fields["nc"], fields["cnonce"], fields["qop"], ha2)
