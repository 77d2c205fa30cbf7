"""The evidence commands of `bodycam`: register, purge, hold, export, verify, keys.

Commands that reach recordings or the register act as a named person (`--user`, whose
password is asked for) and go through the same access matrix and register as the API.
Administration from the command line is registered under the system account that ran it.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import access, users
from .clock import SystemClock, iso, parse_moment
from .config import Config
from .errors import BadRequest, BodycamError, Forbidden, Unauthorized
from .evidence import register
from .evidence.keyring import Keyring, segment_label
from .evidence.register import Action, Actor, Entry
from .models import Role, User
from .store import Store

COMMANDS = ("register", "purge", "hold", "export", "verify", "keys")


def add_parsers(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add the evidence commands to the `bodycam` parser."""
    reg = sub.add_parser("register", help="the access register: verify it, export it as CSV")
    rsub = reg.add_subparsers(dest="action", required=True)
    common(rsub.add_parser("verify", help="recompute the chain: OK, or the first broken entry"))
    rexport = rsub.add_parser("export", help="entries as CSV (auditor or supervisor)")
    common(rexport)
    _as_user(rexport)
    rexport.add_argument("--from", dest="since", metavar="ISO", help="first moment (inclusive)")
    rexport.add_argument("--to", dest="until", metavar="ISO", help="last moment (inclusive)")
    rexport.add_argument("--out", metavar="FILE", help="output file (default: standard output)")

    purge = sub.add_parser("purge", help="destroy expired sessions not on legal hold")
    common(purge)
    purge.add_argument("--now", metavar="ISO", help="take this moment as now (default: now)")
    purge.add_argument("--dry-run", action="store_true", help="say what would go, change nothing")

    hold = sub.add_parser("hold", help="legal holds (supervisor, with a requisition reference)")
    hsub = hold.add_subparsers(dest="action", required=True)
    place = hsub.add_parser("place", help="keep a session past its retention")
    lift = hsub.add_parser("lift", help="lift a hold")
    for p in (place, lift):
        common(p)
        _as_user(p)
        p.add_argument("session")
        p.add_argument("--reference", required=True, help="requisition or decision reference")
        p.add_argument("--reason", required=True, help="what the hold is for")
    lift.add_argument("hold_id", type=int)
    hlist = hsub.add_parser("list", help="a session's holds")
    common(hlist)
    hlist.add_argument("session")

    export = sub.add_parser("export", help="signed evidence bundle on requisition (supervisor)")
    common(export)
    _as_user(export)
    export.add_argument("sessions", nargs="+", metavar="SESSION")
    export.add_argument("--reference", required=True, help="the requisition's reference")
    export.add_argument("--reason", required=True, help="what the export is for")
    export.add_argument("--out", required=True, metavar="DIR", help="new folder for the bundle")

    verify = sub.add_parser("verify", help="check an evidence bundle offline")
    verify.add_argument("bundle", metavar="BUNDLE")
    verify.add_argument("--key", metavar="PEM", help="the gateway's public key to trust")

    keys = sub.add_parser("keys", help="the gateway's signing key (its public part)")
    ksub = keys.add_subparsers(dest="action", required=True)
    common(ksub.add_parser("show", help="public key and fingerprint, to publish"))


def _as_user(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--user", required=True, help="who acts (their password is asked for)")
    parser.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )


def run(config: Config, args: argparse.Namespace) -> int:
    store = Store(config.database_path)
    try:
        if args.command == "register":
            return register_command(store, args)
        if args.command == "purge":
            return purge_command(store, config, args)
        if args.command == "hold":
            return hold_command(store, args)
        keyring = Keyring.load(config, store, create=False)
        if args.command == "keys":
            return keys_command(keyring)
        return export_command(store, config, keyring, args)
    finally:
        store.close()


def system_actor() -> Actor:
    """Who runs the command line, for administration done there."""
    return Actor(f"{getpass.getuser()}@{socket.gethostname()}", "system", "command line")


def act_as(store: Store, args: argparse.Namespace, roles: frozenset[Role], what: str) -> User:
    """Authenticate `--user` and check their role, registering a failure or a refusal."""
    password = (
        sys.stdin.readline().rstrip("\r\n")
        if args.password_stdin
        else getpass.getpass(f"password of {args.user}: ")
    )
    found = store.get_user(args.user)
    now = SystemClock().now()
    try:
        person = users.authenticate_found(found, password)
    except Unauthorized as err:
        who = Actor(args.user[:64], found[0].role.value if found else "none")
        store.record(Entry(Action.LOGIN_FAILED, who, now, f"refused: {err}", detail="command line"))
        raise
    if person.role not in roles:
        refusal = Forbidden(f"role {person.role} may not {what}")
        store.record(
            Entry(
                Action.ACCESS_REFUSED,
                Actor(person.name, person.role.value, person.service),
                now,
                f"refused: {refusal}",
                detail=f"command line: bodycam {args.command}",
            )
        )
        raise refusal
    return person


def _actor(person: User) -> Actor:
    return Actor(person.name, person.role.value, person.service)


def register_command(store: Store, args: argparse.Namespace) -> int:

    if args.action == "verify":
        verdict = store.verify_register()
        print(verdict.text())
        return 0 if verdict.ok else 1
    act_as(store, args, access.REGISTER_READ, "read the register")
    since = parse_moment(args.since, "--from")
    until = parse_moment(args.until, "--to")
    rows = store.iter_register(since, until)
    if args.out:
        with open(args.out, "x", encoding="utf-8", newline="") as f:
            count = register.write_csv(rows, f)
        print(f"wrote {count} entries to {args.out}", file=sys.stderr)
    else:
        register.write_csv(rows, sys.stdout)
    return 0


def purge_command(store: Store, config: Config, args: argparse.Namespace) -> int:
    from .evidence.purge import purge
    from .evidence.retention import years_before

    real = SystemClock().now()
    now = parse_moment(args.now, "--now") or real
    if now > real and not args.dry_run:
        raise BadRequest(
            f"--now {iso(now)} is in the future: it would destroy recordings before the end"
            " of their retention (use it with --dry-run to see what will go)"
        )
    report = purge(
        store, config.recordings_dir, config.retention, now, system_actor(), args.dry_run
    )
    verb = "would destroy" if args.dry_run else "destroyed"
    gone = report.due if args.dry_run else report.destroyed
    print(f"retention {config.retention}, now {iso(now)}: {verb} {len(gone)} sessions")
    for session_id in gone:
        print(f"  {session_id}")
    for session_id in report.held:
        print(f"  {session_id} kept: legal hold")
    if not args.dry_run:
        years = config.evidence.register_years
        pruned = store.prune_register(years_before(real, years), real)  # never an earlier one
        if pruned:
            print(f"register: {pruned} entries older than {years} years pruned")
    return 0


def hold_command(store: Store, args: argparse.Namespace) -> int:
    from .evidence import holds

    if args.action == "list":
        for h in store.holds_of(args.session):
            state = f"lifted {iso(h.lifted_at)} by {h.lifted_by}" if h.lifted_at else "in force"
            print(f"#{h.id} {h.reference:24} by {h.placed_by} {iso(h.placed_at)}  {state}")
        return 0
    person = act_as(store, args, access.LEGAL_HOLD, f"{args.action} legal holds")
    now, who = SystemClock().now(), _actor(person)
    if args.action == "place":
        hold = holds.place(store, args.session, who, args.reference, args.reason, now)
        print(f"hold #{hold.id} placed on {args.session} ({hold.reference})")
    else:
        holds.lift(store, args.session, args.hold_id, who, args.reference, args.reason, now)
        print(f"hold #{args.hold_id} lifted")
    return 0


def export_command(store: Store, config: Config, keyring: Keyring, args: argparse.Namespace) -> int:
    from .evidence import bundle as evidence
    from .gateway.api_evidence import export_bundle

    reference, reason = evidence.check_requisition(args.reference, args.reason)
    person = act_as(store, args, access.EXPORT, "export recordings")
    out = Path(args.out)
    requisition = evidence.Requisition(reference, reason, _actor(person))

    def progress(session_id: str, done: int, total: int) -> None:
        print(f"\rexporting {session_id}: step {done}/{total}", end="", file=sys.stderr, flush=True)

    _, manifest = asyncio.run(
        export_bundle(
            store,
            keyring,
            out.parent,
            config.recordings_dir,
            args.sessions,
            requisition,
            SystemClock().now(),
            progress,
            name=out.name,
        )
    )
    print(file=sys.stderr)
    print(f"wrote {out}: {len(manifest['sessions'])} sessions, signed by {keyring.fingerprint}")
    return 0


def verify_command(args: argparse.Namespace) -> int:
    from .evidence.bundle import public_key_from_pem, verify_bundle

    if not Path(args.bundle).is_dir():
        raise BodycamError(f"bundle {args.bundle} is not a folder (unpack it first)")
    trusted = None
    if args.key:
        try:
            trusted = public_key_from_pem(Path(args.key).read_bytes())
        except (OSError, ValueError) as err:
            raise BodycamError(f"--key {args.key}: {err}") from None
    report = verify_bundle(Path(args.bundle), trusted)
    if report.ok:
        print(
            f"OK: {args.bundle}: {len(report.checked)} items checked,"
            f" signed by key {report.fingerprint}"
        )
        return 0
    print(f"ALTERED: {args.bundle}:")
    for problem in report.problems:
        print(f"  {problem}")
    return 1


def keys_command(keyring: Keyring) -> int:
    from cryptography.hazmat.primitives import serialization

    print(f"fingerprint (SHA-256 of the raw Ed25519 key): {keyring.fingerprint}")
    sys.stdout.write(
        keyring.signing.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return 0


def verify_session(store: Store, config: Config, session_id: str) -> int:
    """Decrypt every segment of a session and check its hash and chain: OK, or where not."""
    from .evidence import sealed
    from .evidence.recordings import recorded

    keyring = Keyring.load(config, store, create=False)
    session, segments = recorded(store, session_id)
    key = keyring.session_key(session_id)
    prev, problems = register.GENESIS_HASH, []
    for segment in segments:
        path = config.recordings_dir / segment.path
        try:
            _, digest = sealed.digest(path, key, segment_label(segment))
        except (OSError, sealed.SealedError) as err:
            problems.append(f"segment {segment.seq}: {err}")
            continue
        if digest != segment.sha256:
            problems.append(
                f"segment {segment.seq} ({segment.path}): SHA-256 differs from the one sealed"
            )
        if segment.prev_sha256 != prev:
            problems.append(f"segment {segment.seq}: link to the previous segment broken")
        prev = segment.sha256
    if problems:
        print(f"ALTERED: session {session.id}:")
        for p in problems:
            print(f"  {p}")
        return 1
    print(
        f"OK: session {session.id}: {len(segments)} segments decrypt, match their hashes and chain"
    )
    return 0
