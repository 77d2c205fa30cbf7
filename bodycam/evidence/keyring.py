"""The gateway's keys: the master key that wraps each session's data key, and its Ed25519
signing key for export bundles.

The master key lives in a file (or `BODYCAM_EVIDENCE_MASTER_KEY`), never in the database;
the database holds only session keys wrapped by it, and a check value that tells a wrong
master key from an altered session key. A master key is created on first start only when
the database has never held a key: a gateway whose key file went missing refuses to start
instead of recording under a new key that could never open the old sessions.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..clock import iso
from ..config import Config
from ..errors import ConfigError
from ..models import Segment
from ..store import Store
from . import sealed

logger = logging.getLogger(__name__)

CHECK_LABEL = "master key check"


def chunk_label(session_id: str, seq: int) -> str:
    """What a segment's chunks are bound to: a renamed file still opens, a swapped one not."""
    return f"{session_id}/{seq}"


def segment_label(segment: Segment) -> str:
    return chunk_label(segment.session_id, segment.seq)


class Keyring:
    """Wraps, unwraps and signs; one per gateway process (and per CLI command)."""

    def __init__(self, master: bytes, signing: Ed25519PrivateKey, store: Store) -> None:
        self._master = master
        self.signing = signing
        self._store = store

    @classmethod
    def load(cls, config: Config, store: Store, create: bool = True) -> Keyring:
        """Read the keys (creating them on a fresh install when `create`), check the master.

        Runs on the store's thread (`store.run` or `store.call` it).
        """
        check = store.meta("master_key_check")
        master = _master_key(config, check is not None or not create)
        keyring = cls(master, _signing_key(config.signing_key_path, create), store)
        if check is None:
            wrapped = sealed.wrap_key(master, sealed.new_key(), CHECK_LABEL)
            store.set_meta("master_key_check", base64.b64encode(wrapped).decode())
        else:
            check_master_key(config, master, check)
        return keyring

    # session keys

    def session_key(self, session_id: str, create: bool = False) -> bytes:
        """The session's data key (made on first use when `create`).

        Runs on the store's thread. Raises KeyDestroyed once the session was purged.
        """
        label = f"session {session_id}"
        wrapped = self._store.wrapped_key(session_id)
        if wrapped is None:
            destroyed = self._store.destroyed_at(session_id)
            if destroyed is not None:
                raise KeyDestroyed(
                    f"session {session_id} was destroyed on {iso(destroyed)}: its key is gone"
                )
            if not create:
                raise KeyDestroyed(f"session {session_id} has no key: nothing was recorded")
            self._store.add_wrapped_key(
                session_id, sealed.wrap_key(self._master, sealed.new_key(), label)
            )
            wrapped = self._store.wrapped_key(session_id)
            assert wrapped is not None
        return sealed.unwrap_key(self._master, wrapped, label)

    def derived(self, purpose: bytes) -> bytes:
        """A key of its own for `purpose` (HMAC-SHA256 of the master key): the same on every
        node, and telling nothing of the master key."""
        return hmac.new(self._master, purpose, hashlib.sha256).digest()

    # signing

    @property
    def public_key(self) -> bytes:
        return self.signing.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the raw public key, what a court compares with the published one."""
        return hashlib.sha256(self.public_key).hexdigest()

    def public_pem(self) -> bytes:
        """The public key as PEM (what `bodycam keys show` prints and bundles carry)."""
        return self.signing.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, data: bytes) -> bytes:
        return self.signing.sign(data)


class KeyDestroyed(sealed.SealedError):
    """The session's key was destroyed at expiry: its media can never be read again."""

    status = 410


def read_master_key(config: Config) -> bytes:
    """The configured master key; a ConfigError naming what is wrong (missing, not base64,
    not 32 bytes). Nothing is created."""
    return _master_key(config, must_exist=True)


def check_master_key(config: Config, master: bytes, check: str) -> None:
    """A ConfigError unless `master` opens the database's check value (its meta
    `master_key_check`): the key its recordings were encrypted with."""
    try:
        sealed.unwrap_key(master, base64.b64decode(check), CHECK_LABEL)
    except sealed.SealedError:
        raise ConfigError(
            f"the master key ({_source(config)}) is not the one this database's"
            " recordings were encrypted with"
        ) from None


def _source(config: Config) -> str:
    if config.evidence.master_key:
        return "BODYCAM_EVIDENCE_MASTER_KEY"
    return str(config.master_key_path)


def _master_key(config: Config, must_exist: bool) -> bytes:
    if config.evidence.master_key:
        return _decode(config.evidence.master_key, "BODYCAM_EVIDENCE_MASTER_KEY")
    path = config.master_key_path
    try:
        return _decode(path.read_text().strip(), str(path))
    except FileNotFoundError:
        pass
    if must_exist:
        raise ConfigError(
            f"master key file {path} is missing: without it no recording of this database"
            " can be read (restore it from its backup, or set evidence.master_key_file)"
        )
    key = sealed.new_key()
    _write_secret(path, base64.b64encode(key) + b"\n")
    logger.warning("created a new master key in %s: back it up apart from the database", path)
    return key


def _decode(text: str, where: str) -> bytes:
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"master key in {where} is not base64") from None
    if len(key) != 32:
        raise ConfigError(f"master key in {where} must be 32 bytes, got {len(key)}")
    return key


def _signing_key(path: Path, create: bool) -> Ed25519PrivateKey:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        if not create:
            raise ConfigError(f"signing key file {path} is missing") from None
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write_secret(path, pem)
        logger.info("created the gateway's signing key in %s", path)
        return key
    try:
        loaded = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"signing key file {path} is not a PEM private key: {err}") from None
    if not isinstance(loaded, Ed25519PrivateKey):
        raise ConfigError(f"signing key file {path} is not an Ed25519 key")
    return loaded


def _write_secret(path: Path, data: bytes) -> None:
    """Write a key readable by its owner only; never replace an existing one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
