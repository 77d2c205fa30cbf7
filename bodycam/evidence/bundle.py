"""Export on requisition: a signed bundle anyone can check offline, and its checker.

A bundle is a directory:

    manifest.json             what was exported, by whom, why; every file's SHA-256
    manifest.sig              Ed25519 signature of manifest.json's exact bytes (base64)
    gateway.pub               the gateway's public key (PEM), also inside the manifest
    media/<session>.mkv       one playable file per session (segments remuxed, not re-encoded)
    segments/<session>/NNNNN.mkv  the sealed segments, decrypted: the very bytes whose
                              SHA-256 the recorder chained when it closed each of them

The segments tie the bundle to the moment of recording (their hashes and chain were stored
as they were sealed); the media file is what a court plays. The manifest also carries the
session's position track, its register entries (each with its hash) and the register's
head at export time. `verify_bundle` says exactly which file, segment or entry was altered.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .. import __version__
from ..clock import iso
from ..errors import BadRequest, BodycamError, Conflict, Unprocessable
from ..models import GENESIS_HASH, Action, Device, Entry, Position, Segment, Session
from ..store import Store
from . import register, sealed
from .keyring import Keyring, segment_label
from .reasons import Requisition
from .recordings import recorded, remux

logger = logging.getLogger(__name__)

FORMAT = "bodycam-evidence/1"
HASH_CHUNK = 1 << 20


@dataclass
class SessionFacts:
    """What the database says about one exported session (read before the export runs)."""

    session: Session
    device: Device | None
    segments: list[Segment]
    positions: list[Position]
    entries: list[dict[str, str]]
    key: bytes = field(repr=False)


def collect(store: Store, keyring: Keyring, session_ids: list[str]) -> list[SessionFacts]:
    """Read what the bundle needs from the database; on the store's thread."""
    if not session_ids:
        raise BadRequest("sessions: name at least one session to export")
    if len(set(session_ids)) != len(session_ids):
        raise BadRequest("sessions: a session is named twice")
    found = []
    for session_id in session_ids:
        session, segments = recorded(store, session_id)
        found.append(
            SessionFacts(
                session,
                store.get_device(session.device_id),
                segments,
                store.positions_of(session_id, track_only=True),
                store.register_entries(session_id=session_id),
                keyring.session_key(session_id),
            )
        )
    return found


def export(
    store: Store,
    keyring: Keyring,
    exports_dir: Path,
    recordings_dir: Path,
    session_ids: list[str],
    requisition: Requisition,
    now: datetime,
    progress: Callable[[str, int, int], None] | None = None,
    name: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """Build a bundle and register the export of each session in it; returns its name and
    manifest. The API (on a worker thread) and the command line both call this; it reaches
    the store with `store.call`.
    """
    facts = store.call(collect, store, keyring, session_ids)
    head = store.call(store.register_head)
    name = name or bundle_name(requisition.reference, now)
    final = exports_dir / name
    if final.exists():
        raise Conflict(f"{final} already exists: an export never overwrites anything")
    # Built under a hidden name; it appears under its own only once its register entries
    # are written: no bundle can exist that the register does not know about.
    partial = exports_dir / f".partial-{name}"
    manifest = build_bundle(
        partial, facts, requisition, keyring, recordings_dir, head, now, progress
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
        store.call(store.record_all, entries)
        partial.rename(final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    logger.info("export %s by %s: %d sessions", name, requisition.actor.user, len(facts))
    return name, manifest


def bundle_name(reference: str, now: datetime) -> str:
    """A folder name from the reference and the time, plus random digits: never reused."""
    slug = re.sub(r"[^0-9A-Za-z]+", "-", reference).strip("-")[:60] or "export"
    return f"{now:%Y%m%dT%H%M%SZ}-{slug}-{secrets.token_hex(3)}"


def build_bundle(
    out: Path,
    facts: list[SessionFacts],
    requisition: Requisition,
    keyring: Keyring,
    recordings_dir: Path,
    register_head: tuple[int, str],
    now: datetime,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Write the bundle into the new directory `out`; returns the manifest.

    Runs on a worker thread (it decrypts, hashes and remuxes whole sessions). A segment
    whose bytes no longer match the hash it was sealed with stops the export: altered
    evidence is reported, never handed over.
    """
    try:
        out.mkdir(mode=0o700, parents=True, exist_ok=False)  # decrypted media: owner only
    except FileExistsError:
        raise Conflict(f"{out} already exists: an export never overwrites anything") from None
    except OSError as err:
        raise Unprocessable(f"cannot create {out}: {err}") from None
    try:
        sessions = [_export_session(out, f, recordings_dir, progress) for f in facts]
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # no half bundle that looks whole
        raise
    manifest = {
        "format": FORMAT,
        "gateway": {
            "version": __version__,
            "public_key": _b64(keyring.public_key),
            "fingerprint": keyring.fingerprint,
        },
        "created_at": iso(now),
        "requisition": {"reference": requisition.reference, "reason": requisition.reason},
        "exported_by": {
            "user": requisition.actor.user,
            "role": requisition.actor.role,
            "service": requisition.actor.service,
        },
        "register_head": {"seq": register_head[0], "hash": register_head[1]},
        "sessions": sessions,
    }
    body = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False).encode() + b"\n"
    (out / "manifest.json").write_bytes(body)
    (out / "manifest.sig").write_text(_b64(keyring.sign(body)) + "\n")
    (out / "gateway.pub").write_bytes(keyring.public_pem())
    return manifest


def _export_session(
    out: Path,
    facts: SessionFacts,
    recordings_dir: Path,
    progress: Callable[[str, int, int], None] | None,
) -> dict[str, Any]:
    session = facts.session
    folder = out / "segments" / session.id
    folder.mkdir(parents=True)
    listed, files, prev = [], [], GENESIS_HASH
    for index, segment in enumerate(facts.segments):
        name = f"segments/{session.id}/{segment.seq:05d}.mkv"
        size, digest = _decrypt(recordings_dir / segment.path, out / name, facts.key, segment)
        if digest != segment.sha256:
            raise BodycamError(
                f"session {session.id} segment {segment.seq} ({segment.path}): its bytes no"
                f" longer match the SHA-256 it was sealed with: altered, export refused"
            )
        if segment.prev_sha256 != prev:
            raise BodycamError(
                f"session {session.id} segment {segment.seq}: its link to the previous segment"
                " is broken in the catalogue: export refused"
            )
        prev = segment.sha256
        listed.append(
            {
                "seq": segment.seq,
                "state": segment.state,
                "file": name,
                "bytes": size,
                "started_at": iso(segment.started_at),
                "ended_at": iso(segment.ended_at) if segment.ended_at else None,
                "sha256": segment.sha256,
                "prev_sha256": segment.prev_sha256,
            }
        )
        files.append(name)
        if progress is not None:
            progress(session.id, index + 1, len(facts.segments) + 1)
    media = f"media/{session.id}.mkv"
    (out / "media").mkdir(exist_ok=True)
    remux(session.started_at, facts.segments, lambda s: str(out / _seg_file(s)), out / media)
    if progress is not None:
        progress(session.id, len(facts.segments) + 1, len(facts.segments) + 1)
    return {
        "session": session.id,
        "device": session.device_id,
        "device_serial": facts.device.serial if facts.device else "",
        "officer": session.officer,
        "started_at": iso(session.started_at),
        "ended_at": iso(session.ended_at) if session.ended_at else None,
        "media": {"file": media, **_file_facts(out / media)},
        "segments": listed,
        "track": [
            {"time": iso(p.time), "lat": p.lat, "lon": p.lon, "accuracy_m": p.accuracy_m}
            for p in facts.positions
        ],
        "register": facts.entries,
    }


def _seg_file(segment: Segment) -> str:
    return f"segments/{segment.session_id}/{segment.seq:05d}.mkv"


def _decrypt(source: Path, target: Path, key: bytes, segment: Segment) -> tuple[int, str]:
    if not source.is_file():
        raise Unprocessable(f"session {segment.session_id}: segment file {source} is missing")
    digest, size = hashlib.sha256(), 0
    with open(target, "xb") as f:
        for chunk in sealed.read_plaintext(source, key, segment_label(segment)):
            f.write(chunk)
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _file_facts(path: Path) -> dict[str, Any]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return {"bytes": size, "sha256": digest.hexdigest()}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# verification, offline: nothing here reads the gateway's database or keys


@dataclass
class Report:
    """What `verify_bundle` found: the problems, each naming its place; none means intact."""

    problems: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    fingerprint: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_bundle(bundle: Path, trusted_key: bytes | None = None) -> Report:
    """Check a bundle's signature, every file's hash, the segment chains and the entries."""
    report = Report()
    try:
        body = (bundle / "manifest.json").read_bytes()
        manifest = json.loads(body)
        public = base64.b64decode(manifest["gateway"]["public_key"])
        signature = base64.b64decode((bundle / "manifest.sig").read_text().strip())
    except (OSError, ValueError, KeyError, TypeError) as err:
        report.problems.append(f"manifest.json or manifest.sig unreadable: {err}")
        return report
    report.fingerprint = hashlib.sha256(public).hexdigest()
    if trusted_key is not None and public != trusted_key:
        report.problems.append(
            "manifest.json: signed by another key than the trusted one "
            f"(fingerprint {report.fingerprint})"
        )
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, body)
        report.checked.append("manifest.json signature")
    except (InvalidSignature, ValueError):
        report.problems.append(
            "manifest.json: the signature does not match: the manifest (or manifest.sig)"
            " was altered after the export"
        )
    listed = {"manifest.json", "manifest.sig", "gateway.pub"}
    for entry in manifest.get("sessions", []):
        _verify_session(bundle, entry, report, listed)
    for path in sorted(p for p in bundle.rglob("*") if p.is_file()):
        name = path.relative_to(bundle).as_posix()
        if name not in listed:
            report.problems.append(f"{name}: not in the manifest (added after the export)")
    return report


def _verify_session(bundle: Path, entry: dict[str, Any], report: Report, listed: set[str]) -> None:
    sid = entry.get("session", "?")
    files = [(entry["media"]["file"], entry["media"])] + [(s["file"], s) for s in entry["segments"]]
    for name, facts in files:
        listed.add(name)
        path = bundle / name
        if not path.is_file():
            report.problems.append(f"{name}: missing")
            continue
        found = _file_facts(path)
        if found["sha256"] != facts["sha256"]:
            report.problems.append(
                f"{name}: SHA-256 differs from the manifest ({found['bytes']} bytes,"
                f" {facts['bytes']} listed): the file was altered"
            )
        else:
            report.checked.append(name)
    prev = GENESIS_HASH
    for segment in entry["segments"]:
        if segment["prev_sha256"] != prev:
            report.problems.append(
                f"session {sid} segment {segment['seq']}: its link to the previous segment"
                " does not match: a segment was removed, inserted or altered"
            )
        prev = segment["sha256"]
    for row in entry.get("register", []):
        if register.row_hash(row) != row["hash"]:
            report.problems.append(
                f"session {sid} register entry {row['seq']}: its content does not match its hash"
            )


def public_key_from_pem(data: bytes) -> bytes:
    """The raw 32 bytes of an Ed25519 public key file (gateway.pub, or `bodycam keys`)."""
    key = serialization.load_pem_public_key(data)
    if not isinstance(key, Ed25519PublicKey):
        raise BodycamError("the trusted key is not an Ed25519 public key")
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
