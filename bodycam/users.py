"""People: accounts with a role, memory-hard password hashes, login tokens.

Passwords are hashed with scrypt (memory-hard: 16 MiB per attempt, so a stolen database
costs an attacker memory as well as time), each with its own salt; the stored form names
its parameters so they can be raised later without breaking old hashes. A login is a
random token, given to the browser in an HttpOnly cookie (or to a script as a Bearer
token); like device tokens, only its SHA-256 is stored.

Hashing takes ~50 ms of CPU: `add` and `set_password` run off the event loop (a worker
thread, or the command line) and reach the store with `store.call`; the other functions
that take a store run on the store's thread (`store.run` / `store.call` them).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from datetime import datetime, timedelta

from .errors import BadRequest, Conflict, NotFound, Unauthorized
from .models import Role, User
from .store import Store

USER_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
LOGIN_PREFIX = "bcu_"
MIN_PASSWORD = 10
MAX_PASSWORD = 1024  # scrypt reads it all: bound the work an attacker can ask for
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1  # 128·N·r bytes = 16 MiB
_SCRYPT_MAXMEM = 64 * 1024 * 1024


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    computed = _scrypt(password, _unb64(salt), int(n), int(r), int(p))
    return hmac.compare_digest(computed, _unb64(digest))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_SCRYPT_MAXMEM)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text)


# a hash to check against when the name is unknown, so that the answer takes as long as
# for a wrong password and does not tell which names exist
_NOBODY = hash_password(secrets.token_urlsafe(16))


def check_new_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise BadRequest(f"password: at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise BadRequest(f"password: at most {MAX_PASSWORD} characters")


def add(store: Store, name: str, role: str, password: str, service: str, now: datetime) -> User:
    """Create an account (the password is checked, then only its hash is kept); off the
    event loop."""
    user, password_hash = new_account(name, role, password, service, now)
    store.call(keep_account, store, user, password_hash)
    return user


def new_account(
    name: str, role: str, password: str, service: str, now: datetime
) -> tuple[User, str]:
    """Check an account's fields and hash its password (scrypt: a worker thread's job)."""
    if not USER_NAME.match(name):
        raise BadRequest(
            f"user name {name!r} is invalid: 1-64 lower-case letters, digits, '.', '_' or '-'"
        )
    try:
        user = User(name, Role(role), service, now)
    except ValueError:
        raise BadRequest(
            f"role {role!r} is unknown: one of {', '.join(r.value for r in Role)}"
        ) from None
    if len(service) > 200:
        raise BadRequest("service is longer than 200 characters")
    check_new_password(password)
    return user, hash_password(password)


def keep_account(store: Store, user: User, password_hash: str) -> None:
    """Keep a checked account; on the store's thread."""
    if not store.add_user(user, password_hash):
        raise Conflict(f"user {user.name} already exists")


def set_password(store: Store, name: str, password: str) -> None:
    """Change a password; the person's current logins end. Off the event loop."""
    check_new_password(password)
    if not store.call(store.set_password, name, hash_password(password)):
        raise NotFound(f"user {name} does not exist")


def disable(store: Store, name: str, now: datetime) -> None:
    """Disable an account: it logs in no more, its logins end (off the event loop)."""
    if not store.call(store.disable_user, name, now):
        raise NotFound(f"user {name} does not exist")


def authenticate_found(found: tuple[User, str] | None, password: str) -> User:
    """Check a password against what the store found for a name (maybe nobody)."""
    stored = found[1] if found else _NOBODY
    ok = len(password) <= MAX_PASSWORD and check_password(password, stored)
    if found is None or not ok or found[0].disabled_at is not None:
        raise Unauthorized("wrong user name or password")
    return found[0]


def login_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_login(store: Store, user: User, now: datetime, lasts: timedelta) -> str:
    """A new login for `user`; returns its token (shown once, to the browser)."""
    token = LOGIN_PREFIX + secrets.token_urlsafe(32)
    store.add_login(login_hash(token), user.name, now, now + lasts)
    return token


def user_of_login(store: Store, token: str, now: datetime) -> User:
    user = store.user_of_login(login_hash(token), now)
    if user is None or user.disabled_at is not None:
        raise Unauthorized("login expired or unknown: log in again")
    return user


def close_login(store: Store, token: str, now: datetime) -> None:
    store.end_login(login_hash(token), now)
