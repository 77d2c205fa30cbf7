"""The evidence commands of `bodycam`: register, purge, hold, export, verify, keys.

Commands that reach recordings or the register act as a named person (`--user`, whose
password is asked for) and go through the same access matrix and register as the API, and
the same functions of `evidence/` (purge, holds, exports, verification). Administration from
the command line is registered under the system account that ran it. An entry point: the
store is reached with `store.call`, the gateway's internals never.
"""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import socket
import sys
from collections.abc import Callable
from pathlib import Path

from . import access, users
from .clock import SystemClock, iso, parse_moment
from .config import Config
from .errors import BadRequest, BodycamError, Conflict, Forbidden, Unauthorized
from .evidence import bundle, holds, register
from .evidence.keyring import Keyring
from .evidence.purge import prune_register, purge
from .evidence.reasons import Requisition
from .models import Action, Actor, Entry, Role, User
from .store import Store, open_store

COMMANDS = ("register", "purge", "hold", "export", "verify", "keys")


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    common: Callable[[argparse.ArgumentParser], None],
) -> None:
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
    store = open_store(config)
    try:
        if args.command == "register":
            return register_command(store, args)
        if args.command == "purge":
            return purge_command(store, config, args)
        if args.command == "hold":
            return hold_command(store, args)
        keyring = store.call(Keyring.load, config, store, False)
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
    found = store.call(store.get_user, args.user)
    now = SystemClock().now()
    try:
        person = users.authenticate_found(found, password)
    except Unauthorized as err:
        who = Actor(args.user[:64], found[0].role.value if found else "none")
        failed = Entry(Action.LOGIN_FAILED, who, now, f"refused: {err}", detail="command line")
        store.call(store.record, failed)
        raise
    if person.role not in roles:
        refusal = Forbidden(f"role {person.role} may not {what}")
        entry = Entry(
            Action.ACCESS_REFUSED,
            Actor.of(person),
            now,
            f"refused: {refusal}",
            detail=f"command line: bodycam {args.command}",
        )
        store.call(store.record, entry)
        raise refusal
    return person


def register_command(store: Store, args: argparse.Namespace) -> int:
    if args.action == "verify":
        verdict = store.call(register.verify, store)
        print(verdict.text())
        return 0 if verdict.ok else 1
    act_as(store, args, access.REGISTER_READ, "read the register")
    since = parse_moment(args.since, "--from")
    until = parse_moment(args.until, "--to")
    rows = register.entries(store, since, until)
    if args.out:
        with open(args.out, "x", encoding="utf-8", newline="") as f:
            count = register.write_csv(rows, f)
        print(f"wrote {count} entries to {args.out}", file=sys.stderr)
    else:
        register.write_csv(rows, sys.stdout)
    return 0


def purge_command(store: Store, config: Config, args: argparse.Namespace) -> int:
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
    if report.busy:
        raise Conflict("another gateway node (or bodycam purge) is purging now: try again later")
    verb = "would destroy" if args.dry_run else "destroyed"
    gone = report.due if args.dry_run else report.destroyed
    print(f"retention {config.retention}, now {iso(now)}: {verb} {len(gone)} sessions")
    for session_id in gone:
        print(f"  {session_id}")
    for session_id in report.held:
        print(f"  {session_id} kept: legal hold")
    if not args.dry_run:
        years = config.evidence.register_years
        pruned = prune_register(store, years, real)  # never an earlier one than the real date
        if pruned:
            print(f"register: {pruned} entries older than {years} years pruned")
    return 0


def hold_command(store: Store, args: argparse.Namespace) -> int:
    if args.action == "list":
        for h in store.call(store.holds_of, args.session):
            state = f"lifted {iso(h.lifted_at)} by {h.lifted_by}" if h.lifted_at else "in force"
            print(f"#{h.id} {h.reference:24} by {h.placed_by} {iso(h.placed_at)}  {state}")
        return 0
    person = act_as(store, args, access.LEGAL_HOLD, f"{args.action} legal holds")
    now, who = SystemClock().now(), Actor.of(person)
    if args.action == "place":
        hold = store.call(holds.place, store, args.session, who, args.reference, args.reason, now)
        print(f"hold #{hold.id} placed on {args.session} ({hold.reference})")
    else:
        store.call(
            holds.lift, store, args.session, args.hold_id, who, args.reference, args.reason, now
        )
        print(f"hold #{args.hold_id} lifted")
    return 0


def export_command(store: Store, config: Config, keyring: Keyring, args: argparse.Namespace) -> int:
    requisition = Requisition.checked(args.reference, args.reason, system_actor())
    person = act_as(store, args, access.EXPORT, "export recordings")
    requisition = dataclasses.replace(requisition, actor=Actor.of(person))
    out = Path(args.out)

    def progress(session_id: str, done: int, total: int) -> None:
        print(f"\rexporting {session_id}: step {done}/{total}", end="", file=sys.stderr, flush=True)

    _, manifest = bundle.export(
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
    print(file=sys.stderr)
    print(f"wrote {out}: {len(manifest['sessions'])} sessions, signed by {keyring.fingerprint}")
    return 0


def verify_command(args: argparse.Namespace) -> int:
    if not Path(args.bundle).is_dir():
        raise BodycamError(f"bundle {args.bundle} is not a folder (unpack it first)")
    trusted = None
    if args.key:
        try:
            trusted = bundle.public_key_from_pem(Path(args.key).read_bytes())
        except (OSError, ValueError) as err:
            raise BodycamError(f"--key {args.key}: {err}") from None
    report = bundle.verify_bundle(Path(args.bundle), trusted)
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
    print(f"fingerprint (SHA-256 of the raw Ed25519 key): {keyring.fingerprint}")
    sys.stdout.write(keyring.public_pem().decode())
    return 0
