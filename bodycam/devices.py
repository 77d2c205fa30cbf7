"""Device enrolment and Bearer-token authentication of body cameras.

A token is 256 random bits, shown once at enrolment. Only its SHA-256 is stored: a
random token needs no slow hash (nothing to brute-force), and hashing lets the gateway
find the device from the token in one indexed lookup. The functions that take a store run
on the store's thread (`store.run` / `store.call` them).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime

from .errors import BadRequest, Conflict, Forbidden, NotFound, Unauthorized
from .models import Device
from .store import Store

DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
TOKEN_PREFIX = "bcd_"
MAX_TOKEN_LENGTH = 256


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def enroll(store: Store, device_id: str, officer: str, now: datetime) -> str:
    """Enrol a device and return its token (the only time it is ever visible)."""
    if not DEVICE_ID.match(device_id):
        raise BadRequest(
            f"device id {device_id!r} is invalid: 1-64 letters, digits, '.', '_' or '-',"
            " starting with a letter or digit"
        )
    if len(officer) > 200:
        raise BadRequest("officer name is longer than 200 characters")
    token = new_token()
    if not store.add_device(device_id, officer, token_hash(token), now):
        raise Conflict(f"device {device_id} is already enrolled")
    return token


def rotate(store: Store, device_id: str) -> str:
    """Give a device a new token (the old one stops working) and return it, once."""
    token = new_token()
    if not store.set_device_token(device_id, token_hash(token)):
        raise NotFound(f"device {device_id} is not enrolled")
    return token


def revoke(store: Store, device_id: str, now: datetime) -> None:
    if store.get_device(device_id) is None:
        raise NotFound(f"device {device_id} is not enrolled")
    if not store.revoke_device(device_id, now):
        raise Conflict(f"device {device_id} is already revoked")


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer …` header, or Unauthorized."""
    if not authorization:
        raise Unauthorized("missing Authorization: Bearer token")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("Authorization header must be 'Bearer <token>'")
    if len(token) > MAX_TOKEN_LENGTH:
        raise Unauthorized("Bearer token is too long")
    if not token.isascii() or not token.isprintable():
        raise Unauthorized("Bearer token must be printable ASCII")
    return token


def authenticate(store: Store, authorization: str | None) -> Device:
    """The enrolled, not revoked device that owns the Bearer token."""
    device = store.device_by_token_hash(token_hash(bearer_token(authorization)))
    if device is None:
        raise Unauthorized("unknown device token")
    if device.revoked:
        raise Forbidden(f"device {device.id} is revoked")
    return device
