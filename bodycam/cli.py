"""The `bodycam` command: serve, demo, devices, users, cameras, places, sessions (the
evidence commands are in `cli_evidence`).

An entry point: it calls the domains and the store (always through `store.call`), never the
gateway's internals; `serve` builds the gateway with `create_app`.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import socket
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from . import cli_evidence, devices, users
from .clock import SystemClock, iso
from .config import Config, redacted
from .demo import run_demo
from .errors import BadRequest, BodycamError, ConfigError
from .evidence.keyring import Keyring
from .evidence.recordings import verify_session
from .gateway import preflight
from .gateway.app import create_app
from .geo import registry
from .logs import setup_logging
from .models import Action, Entry, Role
from .store import PostgresStore, Store, open_store, transfer


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="TOML configuration file")
    parser.add_argument("--data-dir", metavar="DIR", help="where the database and recordings live")


def _redis(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--redis",
        metavar="URL",
        help="share live state (events, positions, who holds a session) with other gateway"
        " nodes through this Redis, e.g. redis://127.0.0.1:6379/0 (config redis.url,"
        " BODYCAM_REDIS_URL; default: in this process)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bodycam", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gateway")
    _common(serve)
    serve.add_argument("--host", help="listen address (default from config: 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default from config: 8080)")
    _redis(serve)
    serve.add_argument(
        "--insecure",
        action="store_true",
        default=None,
        help="serve plain HTTP on an address other machines reach (TLS ends at a reverse"
        " proxy on a private network); said in the log at start and every hour",
    )
    serve.add_argument(
        "--check",
        action="store_true",
        help="check that the configuration reaches everything it names (database, Redis,"
        " keys, folders, TLS, the port), say what is missing, and exit",
    )

    demo = sub.add_parser("demo", help="gateway and three simulated body cameras")
    _common(demo)
    demo.add_argument("--port", type=int, help="listen port (default 8080)")
    demo.add_argument(
        "--duration", type=float, default=60.0, help="seconds of demo before stopping (default 60)"
    )
    _redis(demo)

    migrate = sub.add_parser(
        "migrate", help="copy a node's SQLite database into an empty PostgreSQL one"
    )
    migrate.add_argument(
        "--from", dest="source", required=True, metavar="sqlite:PATH", help="the SQLite database"
    )
    migrate.add_argument(
        "--to", dest="target", required=True, metavar="postgresql://…", help="the PostgreSQL one"
    )

    grant = sub.add_parser(
        "grant",
        help="give a PostgreSQL role what a gateway needs: no UPDATE or DELETE on the register"
        " (run as the tables' owner; the gateways then connect as that role)",
    )
    _common(grant)
    grant.add_argument("role")

    devices = sub.add_parser("devices", help="enrol, list and revoke body cameras")
    dsub = devices.add_subparsers(dest="action", required=True)
    add = dsub.add_parser("add", help="enrol a device and print its token once")
    _common(add)
    add.add_argument("id")
    add.add_argument("--officer", default="", help="officer the camera is assigned to")
    lst = dsub.add_parser("list", help="list enrolled devices")
    _common(lst)
    lst.add_argument("--json", action="store_true")
    rotate = dsub.add_parser("rotate", help="give a device a new token, printed once")
    _common(rotate)
    rotate.add_argument("id")
    revoke = dsub.add_parser("revoke", help="revoke a device's token")
    _common(revoke)
    revoke.add_argument("id")

    people = sub.add_parser("users", help="people who log in to the console and the API")
    usub = people.add_subparsers(dest="action", required=True)
    uadd = usub.add_parser("add", help="create an account (the password is asked for)")
    _common(uadd)
    uadd.add_argument("name")
    uadd.add_argument("--role", required=True, choices=[r.value for r in Role])
    uadd.add_argument("--service", default="", help="e.g. 'Police municipale de Metz'")
    _password_stdin(uadd)
    ulist = usub.add_parser("list", help="list accounts")
    _common(ulist)
    upass = usub.add_parser("passwd", help="change a password (ends the person's logins)")
    _common(upass)
    upass.add_argument("name")
    _password_stdin(upass)
    udisable = usub.add_parser(
        "disable", help="disable an account: its logins end, its open consoles and views close"
    )
    _common(udisable)
    udisable.add_argument("name")

    cameras = sub.add_parser("cameras", help="the city's camera registry (GeoJSON)")
    csub = cameras.add_subparsers(dest="action", required=True)
    cimport = csub.add_parser("import", help="replace the registry with a GeoJSON file")
    _common(cimport)
    cimport.add_argument("file")
    cexport = csub.add_parser("export", help="write the registry as GeoJSON")
    _common(cexport)
    cexport.add_argument("--out", metavar="FILE", help="output file (default: standard output)")

    places = sub.add_parser("places", help="building footprints and streets (GeoJSON)")
    psub = places.add_subparsers(dest="action", required=True)
    pimport = psub.add_parser("import", help="replace the places with a GeoJSON file")
    _common(pimport)
    pimport.add_argument("file")

    sessions = sub.add_parser("sessions", help="list, show and verify recorded sessions")
    ssub = sessions.add_subparsers(dest="action", required=True)
    slist = ssub.add_parser("list", help="list sessions")
    _common(slist)
    slist.add_argument("--json", action="store_true")
    show = ssub.add_parser("show", help="one session with its segments")
    _common(show)
    show.add_argument("id")
    show.add_argument("--json", action="store_true")
    sverify = ssub.add_parser("verify", help="decrypt each segment, check its hash and chain")
    _common(sverify)
    sverify.add_argument("id")
    cli_evidence.add_parsers(sub, _common)
    return parser


def _password_stdin(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input (for scripts)",
    )


def load_config(args: argparse.Namespace) -> Config:
    return Config.load(
        args.config,
        data_dir=args.data_dir,
        server_host=getattr(args, "host", None),
        server_port=getattr(args, "port", None),
        redis_url=getattr(args, "redis", None),
        server_insecure=getattr(args, "insecure", None),
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "verify":  # offline: no configuration, no database
            return cli_evidence.verify_command(args)
        if args.command == "migrate":  # the two databases named: no configuration
            return migrate_command(args)
        config = load_config(args)
        if args.command == "serve":
            return check_command(config) if args.check else serve_command(config)
        if args.command == "demo":
            setup_logging(config.log.level, "text")
            return asyncio.run(run_demo(config, args.duration))
        if args.command == "grant":
            return grant_command(config, args.role)
        if args.command in cli_evidence.COMMANDS:
            return cli_evidence.run(config, args)
        store = open_store(config)
        try:
            if args.command == "devices":
                return devices_command(store, args)
            if args.command == "users":
                return users_command(store, args)
            if args.command in ("cameras", "places"):
                return geo_command(store, args)
            return sessions_command(store, config, args)
        finally:
            store.close()
    except BodycamError as err:
        print(f"bodycam: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def serve_command(config: Config) -> int:
    setup_logging(config.log.level, config.log.format)
    serve(config)
    return 0


def check_command(config: Config) -> int:
    findings = preflight.check(config)
    for finding in findings:
        print(finding.line())
    return 1 if any(f.verdict == preflight.Verdict.FAIL for f in findings) else 0


def grant_command(config: Config, role: str) -> int:
    if not config.store.url:
        raise ConfigError("grant: store.url names no PostgreSQL (SQLite has no roles)")
    store = PostgresStore(config.store.url, 1)  # migrated first: every table exists
    try:
        store.call(store.grant, role, 365 * config.evidence.register_years - 1)
    finally:
        store.close()
    print(
        f"role {role}: every table, but only SELECT and INSERT on the register; entries"
        f" younger than {config.evidence.register_years} years are never pruned"
    )
    return 0


def migrate_command(args: argparse.Namespace) -> int:
    source, target = str(args.source), str(args.target)
    if not source.startswith("sqlite:"):
        raise ConfigError(f"--from must be sqlite:PATH, got {source!r}")
    if not target.startswith(("postgresql://", "postgres://")):
        raise ConfigError(f"--to must be a postgresql:// URL, got {redacted(target)!r}")

    def copied(table: str, rows: int) -> None:
        print(f"  {table}: {rows} rows", file=sys.stderr, flush=True)

    done = transfer.sqlite_to_postgres(Path(source.removeprefix("sqlite:")), target, copied)
    print(done.text())
    print(
        "the recordings stay in place: every node must see them under its data_dir, with"
        " the same master key (docs/deploy.md)"
    )
    return 0


def serve(config: Config) -> None:
    context = None
    if config.server.tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(config.server.tls_cert, config.server.tls_key)
        except (OSError, ssl.SSLError) as err:
            raise ConfigError(
                f"server.tls_cert/server.tls_key: cannot load {config.server.tls_cert} and"
                f" {config.server.tls_key}: {err}"
            ) from None
    if config.server.plain_http_exposed and not config.server.insecure:
        raise ConfigError(
            f"server.host: {config.server.host or 'every address'} without TLS would serve"
            " passwords and tokens in clear: set server.tls_cert and server.tls_key, listen on"
            " 127.0.0.1 behind a reverse proxy that ends TLS, or say --insecure (server.insecure)"
            " when that proxy is on a private network"
        )
    _check_port(config.server.host, config.server.port)
    web.run_app(
        create_app(config),
        host=config.server.host,
        port=config.server.port,
        ssl_context=context,
        print=None,
        access_log=None,
    )


def _check_port(host: str, port: int) -> None:
    """Fail with the key to change when the listen address is taken or not ours."""
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as err:
        raise ConfigError(
            f"server.host/server.port: cannot listen on {host}:{port}: {err.strerror}"
        ) from None


def users_command(store: Store, args: argparse.Namespace) -> int:
    now = SystemClock().now()
    if args.action == "add":
        user = users.add(store, args.name, args.role, _read_password(args), args.service, now)
        _registered(store, Action.USER_ADDED, f"{user.name} ({user.role}, {user.service or '-'})")
        print(f"user {user.name} added ({user.role})")
    elif args.action == "list":
        for u in store.call(store.list_users):
            disabled = f"  disabled {iso(u.disabled_at)}" if u.disabled_at else ""
            print(
                f"{u.name:24} {u.role:18} {u.service or '-':32} since {iso(u.created_at)}"
                + disabled
            )
    elif args.action == "passwd":
        users.set_password(store, args.name, _read_password(args))
        _registered(store, Action.PASSWORD_CHANGED, args.name)
        print(f"password of {args.name} changed; their logins have ended")
    elif args.action == "disable":
        users.disable(store, args.name, now)
        _registered(store, Action.USER_DISABLED, args.name)
        print(f"{args.name} disabled: their logins have ended, their open consoles and views close")
    return 0


def _registered(store: Store, action: Action, detail: str) -> None:
    """Administration from the command line is registered under the system account."""
    entry = Entry(action, cli_evidence.system_actor(), SystemClock().now(), detail=detail)
    store.call(store.record, entry)


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    password = getpass.getpass("password: ")
    if getpass.getpass("again: ") != password:
        raise BadRequest("the two passwords differ")
    return password


def devices_command(store: Store, args: argparse.Namespace) -> int:
    now = SystemClock().now()
    if args.action == "add":
        token = store.call(devices.enroll, store, args.id, args.officer, now)
        _registered(store, Action.DEVICE_ADDED, f"{args.id} ({args.officer or '-'})")
        print(f"device {args.id} enrolled. Its token is shown only this once:")
        print(token)
    elif args.action == "list":
        rows = store.call(store.list_devices)
        if args.json:
            _print_json([_plain(d) for d in rows])
        else:
            for d in rows:
                state = f"revoked {iso(d.revoked_at)}" if d.revoked_at else "active"
                print(f"{d.id:20} {d.officer or '-':24} {state:32} {d.model} {d.serial}")
    elif args.action == "rotate":
        token = store.call(devices.rotate, store, args.id)
        _registered(store, Action.DEVICE_TOKEN_ROTATED, args.id)
        print(f"device {args.id} has a new token (the old one no longer works):")
        print(token)
    elif args.action == "revoke":
        store.call(devices.revoke, store, args.id, now)
        _registered(store, Action.DEVICE_REVOKED, args.id)
        print(f"device {args.id} revoked: its token no longer opens a session")
    return 0


def geo_command(store: Store, args: argparse.Namespace) -> int:
    if args.action == "export":
        cameras = registry.load_cameras(store.call(store.camera_features))
        text = json.dumps(registry.cameras_to_geojson(cameras), indent=1, ensure_ascii=False)
        if args.out:
            Path(args.out).write_text(text + "\n", encoding="utf-8")
            print(f"wrote {args.out}")
        else:
            print(text)
        return 0
    try:
        document = registry.load_json(Path(args.file).read_bytes(), args.file)
    except OSError as err:
        raise BodycamError(f"cannot read {args.file}: {err.strerror}") from None
    if args.command == "cameras":
        cameras = registry.import_cameras(store, document, args.file)
        kinds = ", ".join(
            f"{sum(c.kind == k for c in cameras)} {k}" for k in sorted({c.kind for c in cameras})
        )
        print(f"imported {len(cameras)} cameras ({kinds}) from {args.file}")
    else:
        places = registry.import_places(store, document, args.file)
        buildings = sum(p.kind == "building" for p in places)
        print(
            f"imported {buildings} buildings and {len(places) - buildings} streets from {args.file}"
        )
    return 0


def sessions_command(store: Store, config: Config, args: argparse.Namespace) -> int:
    if args.action == "list":
        rows = store.call(store.list_sessions)
        if args.json:
            out = []
            for s in rows:
                count, size = store.call(store.recording_totals, s.id)
                out.append({**_plain(s), "segments": count, "bytes": size})
            _print_json(out)
            return 0
        for s in rows:
            count, size = store.call(store.recording_totals, s.id)
            ended = iso(s.ended_at) if s.ended_at else "-"
            print(
                f"{s.id}  {s.device_id:14} {s.state:11} {iso(s.started_at)} → {ended}"
                f"  {count} segments, {size / 1e6:.1f} MB"
            )
        return 0
    session = store.call(store.get_session, args.id)
    if session is None:
        raise BodycamError(f"session {args.id} does not exist")
    if args.action == "show":
        segments = store.call(store.segments_of, session.id)
        positions = store.call(store.positions_of, session.id)
        if args.json:
            _print_json(
                {
                    **_plain(session),
                    "segments": [_plain(s) for s in segments],
                    "positions": len(positions),
                }
            )
            return 0
        for key, value in _plain(session).items():
            print(f"{key:18} {value}")
        print(f"{'positions':18} {len(positions)}")
        for seg in segments:
            print(
                f"  #{seg.seq:<4} {seg.state:9} {iso(seg.started_at)} → "
                f"{iso(seg.ended_at) if seg.ended_at else '-':24} {seg.width}x{seg.height}"
                f" {seg.bytes:>10} B  sha256 {seg.sha256[:16]}…  prev {seg.prev_sha256[:16]}…"
            )
        return 0
    keyring = store.call(Keyring.load, config, store, False)
    report = verify_session(store, keyring, config.recordings_dir, session.id)
    print(report.text())
    return 0 if report.ok else 1


def _plain(obj: Any) -> dict[str, Any]:
    out = {}
    for key, value in vars(obj).items():
        if hasattr(value, "isoformat"):
            value = iso(value)
        out[key] = value
    return out


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False, default=str))


if __name__ == "__main__":
    sys.exit(main())
