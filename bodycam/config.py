"""Configuration: frozen dataclasses loaded once from a TOML file and BODYCAM_* variables.

Every key has a default, so bodycam runs with no file at all. A variable overrides a file
value: ``BODYCAM_<SECTION>_<KEY>`` (``BODYCAM_SERVER_PORT=8443``, ``BODYCAM_REDIS_URL``), and
``BODYCAM_DATA_DIR`` for the top-level key. Errors name the key and say what was expected.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from .errors import ConfigError
from .models import Retention


@dataclass(frozen=True)
class ServerConfig:
    """The HTTP listener."""

    host: str = "127.0.0.1"
    port: int = 8080
    tls_cert: str = ""
    tls_key: str = ""
    max_sdp_bytes: int = 64 * 1024
    # plain HTTP on an address other machines reach, knowingly: TLS ends at a reverse proxy
    # on a private network (docs/deploy.md). Without it, such a listener does not start.
    insecure: bool = False
    # seconds between two returns of the C heap's free pages to the kernel (bodycam/heap.py);
    # 0: never
    heap_trim_seconds: float = 60.0

    @property
    def loopback(self) -> bool:
        """Only this machine reaches the listener."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:  # "" or a host name: every interface, or one we cannot judge
            return False

    @property
    def plain_http_exposed(self) -> bool:
        """Passwords and tokens would cross a network in clear."""
        return not self.tls_cert and not self.loopback

    def validate(self) -> None:
        _check(1 <= self.port <= 65535, "server.port", "must be between 1 and 65535", self.port)
        _check(
            bool(self.tls_cert) == bool(self.tls_key),
            "server.tls_cert",
            "and server.tls_key must be given together",
            self.tls_cert,
        )
        _check(
            1024 <= self.max_sdp_bytes <= 1024 * 1024,
            "server.max_sdp_bytes",
            "must be between 1024 and 1048576",
            self.max_sdp_bytes,
        )
        _check(
            self.heap_trim_seconds == 0 or 1 <= self.heap_trim_seconds <= 3600,
            "server.heap_trim_seconds",
            "must be 0 for never, or between 1 and 3600",
            self.heap_trim_seconds,
        )


def parse_allow_entry(entry: str) -> str | ipaddress.IPv4Network | ipaddress.IPv6Network:
    """An `ice.addresses` entry as a network, or as an interface name when it is not an
    address (`media.ice` matches the machine's interfaces against them)."""
    try:
        return ipaddress.ip_network(entry, strict=False)
    except ValueError:
        if not entry or "/" in entry or " " in entry:
            raise ValueError(
                f"{entry!r} is neither an address, a network nor an interface name"
            ) from None
        return entry


@dataclass(frozen=True)
class IceConfig:
    """Which local interfaces or addresses the gateway offers as ICE host candidates."""

    addresses: tuple[str, ...] = ("127.0.0.1",)

    def validate(self) -> None:
        for entry in self.addresses:
            try:
                parse_allow_entry(entry)
            except ValueError as err:
                raise ConfigError(f"ice.addresses: {err}") from None


@dataclass(frozen=True)
class MediaConfig:
    """How media is received."""

    # "lean": bodycam's own RTP path from the socket to the recorder (bodycam/media/tap.py);
    # "aiortc": aiortc's whole receive path, jitter buffer and bandwidth estimate included
    # (the baseline of bench/ingest.py, and a way back should the lean path ever misbehave)
    receive: str = "lean"
    # processes the sessions' media runs in (gateway/workers.py): "auto" is one per core,
    # 0 keeps it in the main process (the demo, the tests, a tiny installation)
    workers: str = "auto"

    def validate(self) -> None:
        _check(
            self.workers == "auto" or (self.workers.isdigit() and int(self.workers) <= 256),
            "media.workers",
            'must be "auto" or a number of processes (0: in the main process)',
            self.workers,
        )
        _check(
            self.receive in ("lean", "aiortc"),
            "media.receive",
            'must be "lean" or "aiortc"',
            self.receive,
        )


@dataclass(frozen=True)
class SessionsConfig:
    """Live session lifecycle."""

    grace_seconds: float = 60.0
    media_timeout_seconds: float = 3.0
    # which node holds a session is kept this long after the node last refreshed it (a
    # third of it): how long other nodes may send viewers to a node that died
    claim_ttl_seconds: float = 30.0

    def validate(self) -> None:
        _check(
            3 <= self.claim_ttl_seconds <= 3600,
            "sessions.claim_ttl_seconds",
            "must be between 3 and 3600",
            self.claim_ttl_seconds,
        )
        _check(
            0 <= self.grace_seconds <= 3600,
            "sessions.grace_seconds",
            "must be between 0 and 3600",
            self.grace_seconds,
        )
        _check(
            0.5 <= self.media_timeout_seconds <= 60,
            "sessions.media_timeout_seconds",
            "must be between 0.5 and 60",
            self.media_timeout_seconds,
        )


@dataclass(frozen=True)
class RecordingConfig:
    """Segmented passthrough recording."""

    segment_seconds: float = 10.0
    keyframe_request_seconds: float = 1.0
    sender_report_wait_seconds: float = 3.0
    # Below this much free space on the recordings' filesystem no segment opens: what is
    # left is the database's reserve (register, logins). media/disk.py.
    min_free_bytes: int = 2_000_000_000

    def validate(self) -> None:
        _check(
            0 <= self.min_free_bytes <= 10**15,
            "recording.min_free_bytes",
            "must be between 0 and 10**15",
            self.min_free_bytes,
        )
        _check(
            1 <= self.segment_seconds <= 3600,
            "recording.segment_seconds",
            "must be between 1 and 3600",
            self.segment_seconds,
        )
        _check(
            0.1 <= self.keyframe_request_seconds <= 30,
            "recording.keyframe_request_seconds",
            "must be between 0.1 and 30",
            self.keyframe_request_seconds,
        )
        _check(
            0 <= self.sender_report_wait_seconds <= 10,
            "recording.sender_report_wait_seconds",
            "must be between 0 and 10",
            self.sender_report_wait_seconds,
        )


@dataclass(frozen=True)
class TelemetryConfig:
    """The camera's data channel."""

    max_message_bytes: int = 4096

    def validate(self) -> None:
        _check(
            64 <= self.max_message_bytes <= 65536,
            "telemetry.max_message_bytes",
            "must be between 64 and 65536",
            self.max_message_bytes,
        )


@dataclass(frozen=True)
class GeoConfig:
    """The officer's position and the choice of cameras."""

    max_accuracy_m: float = 50.0
    max_speed_mps: float = 60.0
    selection_limit: int = 4
    # an officer's live position is forgotten this long after the last kept fix
    position_ttl_seconds: float = 180.0
    # fixes kept of each live officer's track (the console draws its tail, a search by place
    # reads the store): an hour at 1 Hz, ~0.3 KB of memory a fix
    track_points: int = 3600

    def validate(self) -> None:
        _check(
            10 <= self.track_points <= 86400,
            "geo.track_points",
            "must be between 10 and 86400",
            self.track_points,
        )
        _check(
            5 <= self.position_ttl_seconds <= 3600,
            "geo.position_ttl_seconds",
            "must be between 5 and 3600",
            self.position_ttl_seconds,
        )
        _check(
            1 <= self.max_accuracy_m <= 1000,
            "geo.max_accuracy_m",
            "must be between 1 and 1000",
            self.max_accuracy_m,
        )
        _check(
            1 <= self.max_speed_mps <= 400,
            "geo.max_speed_mps",
            "must be between 1 and 400",
            self.max_speed_mps,
        )
        _check(
            1 <= self.selection_limit <= 16,
            "geo.selection_limit",
            "must be between 1 and 16",
            self.selection_limit,
        )


@dataclass(frozen=True)
class CamerasConfig:
    """The city's cameras: VAPIX credentials, health polling, PTZ."""

    credentials_file: str = ""  # default: <data_dir>/camera-credentials.toml, if present
    health_interval_seconds: float = 60.0
    request_timeout_seconds: float = 5.0
    health_concurrency: int = 32
    aim_min_change_deg: float = 2.0
    manual_control_max_seconds: float = 1800.0
    # The national police (CIC) steers a camera only after notice, and for this long at most.
    cic_control_max_seconds: float = 300.0
    # ... renewed up to this long per event; a break shorter than the rest continues it.
    cic_control_total_seconds: float = 1800.0
    cic_control_rest_seconds: float = 900.0

    def validate(self) -> None:
        _check(
            1 <= self.health_interval_seconds <= 3600,
            "cameras.health_interval_seconds",
            "must be between 1 and 3600",
            self.health_interval_seconds,
        )
        _check(
            0.2 <= self.request_timeout_seconds <= 60,
            "cameras.request_timeout_seconds",
            "must be between 0.2 and 60",
            self.request_timeout_seconds,
        )
        _check(
            1 <= self.health_concurrency <= 256,
            "cameras.health_concurrency",
            "must be between 1 and 256",
            self.health_concurrency,
        )
        _check(
            0 <= self.aim_min_change_deg <= 45,
            "cameras.aim_min_change_deg",
            "must be between 0 and 45",
            self.aim_min_change_deg,
        )
        _check(
            10 <= self.manual_control_max_seconds <= 86400,
            "cameras.manual_control_max_seconds",
            "must be between 10 and 86400",
            self.manual_control_max_seconds,
        )
        _check(
            10 <= self.cic_control_max_seconds <= self.manual_control_max_seconds,
            "cameras.cic_control_max_seconds",
            "must be between 10 and cameras.manual_control_max_seconds",
            self.cic_control_max_seconds,
        )
        _check(
            self.cic_control_max_seconds <= self.cic_control_total_seconds <= 86400,
            "cameras.cic_control_total_seconds",
            "must be between cameras.cic_control_max_seconds and 86400",
            self.cic_control_total_seconds,
        )
        _check(
            0 <= self.cic_control_rest_seconds <= 86400,
            "cameras.cic_control_rest_seconds",
            "must be between 0 and 86400",
            self.cic_control_rest_seconds,
        )


@dataclass(frozen=True)
class StoreConfig:
    """The database of durable facts: SQLite under `data_dir` (one node, the default), or a
    PostgreSQL server that several gateway nodes share."""

    url: str = ""  # postgresql://user[:password]@host[:port]/dbname[?options]
    pool_size: int = 4  # connections (and store threads) per node, PostgreSQL only

    def validate(self) -> None:
        _check(
            not self.url or self.url.startswith(("postgresql://", "postgres://")),
            "store.url",
            "must be empty (SQLite under data_dir) or start with postgresql://",
            redacted(self.url),
        )
        _check(
            1 <= self.pool_size <= 64,
            "store.pool_size",
            "must be between 1 and 64",
            self.pool_size,
        )


def redacted(url: str) -> str:
    """A URL as an error message may show it: without its password."""
    head, at, tail = url.rpartition("@")
    if not at or ":" not in head.split("//", 1)[-1]:
        return url
    scheme, _, credentials = head.partition("//")
    return f"{scheme}//{credentials.split(':', 1)[0]}:…@{tail}"


@dataclass(frozen=True)
class RedisConfig:
    """Live, shared state (events, positions, who holds a session) in Redis, for several
    gateway nodes; with no URL it stays in this process (one node)."""

    url: str = ""  # redis://[[user]:password@]host:port/db, rediss://…, unix://…
    key_prefix: str = "bodycam:"
    max_events: int = 100_000  # the stream's length, for consoles that catch up

    def validate(self) -> None:
        _check(
            not self.url or self.url.startswith(("redis://", "rediss://", "unix://")),
            "redis.url",
            "must start with redis://, rediss:// or unix://",
            self.url,
        )
        _check(bool(self.key_prefix), "redis.key_prefix", "must not be empty", self.key_prefix)
        _check(
            1000 <= self.max_events <= 10_000_000,
            "redis.max_events",
            "must be between 1000 and 10000000",
            self.max_events,
        )


@dataclass(frozen=True)
class NodeConfig:
    """This gateway process among several sharing one database and one Redis."""

    id: str = ""  # default: <hostname>-<pid>-<4 random hex digits>; one process per id
    # the base URL other nodes forward requests to; default: http(s)://<server.host, or
    # the host name when listening on every address>:<server.port>
    url: str = ""
    # each node writes that it is alive this often; one not heard from for dead_after is
    # dead: another seals the segments it left open, and minds its sessions' grace
    heartbeat_seconds: float = 1.0
    dead_after_seconds: float = 5.0

    def validate(self) -> None:
        _check(
            not self.url or self.url.startswith(("http://", "https://")),
            "node.url",
            "must start with http:// or https://",
            self.url,
        )
        _check(
            0.1 <= self.heartbeat_seconds <= 60,
            "node.heartbeat_seconds",
            "must be between 0.1 and 60",
            self.heartbeat_seconds,
        )
        _check(
            2 * self.heartbeat_seconds <= self.dead_after_seconds <= 3600,
            "node.dead_after_seconds",
            "must be at least twice node.heartbeat_seconds, and at most 3600",
            self.dead_after_seconds,
        )


@dataclass(frozen=True)
class AuthConfig:
    """People's logins: how long a login lasts, how failed attempts are slowed down."""

    login_hours: float = 12.0  # an operator's shift
    failure_delay_seconds: float = 1.0  # the answer to a wrong password waits this long

    def validate(self) -> None:
        _check(
            0.1 <= self.login_hours <= 24 * 7,
            "auth.login_hours",
            "must be between 0.1 and 168",
            self.login_hours,
        )
        _check(
            0 <= self.failure_delay_seconds <= 30,
            "auth.failure_delay_seconds",
            "must be between 0 and 30",
            self.failure_delay_seconds,
        )


@dataclass(frozen=True)
class EvidenceConfig:
    """Recordings as evidence: how long they are kept, the keys that seal and sign them."""

    retention: str = "30 days"  # or "1 month": the calendar month the law says
    purge_interval_seconds: float = 3600.0
    register_years: int = 3  # register entries are kept this long, then pruned
    master_key_file: str = ""  # default: <data_dir>/master.key, made on first start
    master_key: str = field(default="", repr=False)  # base64; takes the place of the file
    signing_key_file: str = ""  # default: <data_dir>/signing.key (Ed25519, PEM)

    def validate(self) -> None:
        try:
            Retention.parse(self.retention)
        except ValueError as err:
            raise ConfigError(f"evidence.retention: {err}") from None
        _check(
            60 <= self.purge_interval_seconds <= 86400,
            "evidence.purge_interval_seconds",
            "must be between 60 and 86400",
            self.purge_interval_seconds,
        )
        _check(
            1 <= self.register_years <= 30,
            "evidence.register_years",
            "must be between 1 and 30",
            self.register_years,
        )


@dataclass(frozen=True)
class LogConfig:
    """Log level and format."""

    level: str = "info"
    format: str = "json"

    def validate(self) -> None:
        _check(
            self.level in ("debug", "info", "warning", "error"),
            "log.level",
            "must be one of debug, info, warning, error",
            self.level,
        )
        _check(self.format in ("json", "text"), "log.format", "must be json or text", self.format)


@dataclass(frozen=True)
class MetricsConfig:
    """Who reaches `GET /metrics`: the main listener (default), or only `listen`; with a
    `token`, only a scraper that sends it as a Bearer token."""

    listen: str = ""  # host:port of a listener of its own, e.g. 127.0.0.1:9101
    token: str = ""

    @property
    def address(self) -> tuple[str, int] | None:
        if not self.listen:
            return None
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)

    def validate(self) -> None:
        host, sep, port = self.listen.rpartition(":")
        _check(
            not self.listen
            or (bool(sep) and bool(host) and port.isdigit() and 0 < int(port) < 65536),
            "metrics.listen",
            "must be host:port",
            self.listen,
        )
        _check(
            not self.token or len(self.token) >= 16,
            "metrics.token",
            "must be 16 characters or more",
            "…",
        )


@dataclass(frozen=True)
class Config:
    """Everything bodycam reads from its configuration."""

    data_dir: Path = Path("data")
    server: ServerConfig = field(default_factory=ServerConfig)
    ice: IceConfig = field(default_factory=IceConfig)
    media: MediaConfig = field(default_factory=MediaConfig)
    sessions: SessionsConfig = field(default_factory=SessionsConfig)
    recording: RecordingConfig = field(default_factory=RecordingConfig)
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)
    geo: GeoConfig = field(default_factory=GeoConfig)
    cameras: CamerasConfig = field(default_factory=CamerasConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    redis: RedisConfig = field(default_factory=RedisConfig)
    node: NodeConfig = field(default_factory=NodeConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    evidence: EvidenceConfig = field(default_factory=EvidenceConfig)
    log: LogConfig = field(default_factory=LogConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)

    @property
    def database_path(self) -> Path:
        return self.data_dir / "bodycam.sqlite3"

    @property
    def recordings_dir(self) -> Path:
        return self.data_dir / "recordings"

    @property
    def camera_credentials_path(self) -> Path:
        if self.cameras.credentials_file:
            return Path(self.cameras.credentials_file)
        return self.data_dir / "camera-credentials.toml"

    @property
    def exports_dir(self) -> Path:
        return self.data_dir / "exports"

    @property
    def master_key_path(self) -> Path:
        return Path(self.evidence.master_key_file or self.data_dir / "master.key")

    @property
    def signing_key_path(self) -> Path:
        return Path(self.evidence.signing_key_file or self.data_dir / "signing.key")

    @property
    def retention(self) -> Retention:
        return Retention.parse(self.evidence.retention)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str] | None = None,
        environ: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> Config:
        """Read a TOML file (optional), then BODYCAM_* variables, then explicit overrides.

        ``overrides`` use dotted keys with ``_`` for the dot: ``server_port=8081``,
        ``data_dir="/srv/bodycam"``; None values are ignored (unset command-line flags).
        """
        raw: dict[str, Any] = {}
        if path is not None:
            try:
                with open(path, "rb") as f:
                    raw = tomllib.load(f)
            except FileNotFoundError:
                raise ConfigError(f"configuration file {path} does not exist") from None
            except tomllib.TOMLDecodeError as err:
                raise ConfigError(f"configuration file {path} is not valid TOML: {err}") from None
        _apply_environment(raw, os.environ if environ is None else environ)
        for key, value in overrides.items():
            if value is not None:
                _set_flat(raw, key, value)
        config: Config = _build(cls, raw, "")
        config.validate()
        return config

    def validate(self) -> None:
        for section in (
            self.server,
            self.ice,
            self.media,
            self.sessions,
            self.recording,
            self.telemetry,
            self.geo,
            self.cameras,
            self.store,
            self.redis,
            self.node,
            self.auth,
            self.evidence,
            self.log,
            self.metrics,
        ):
            section.validate()
        _check(str(self.data_dir) != "", "data_dir", "must not be empty", self.data_dir)


def _check(ok: bool, key: str, message: str, value: object) -> None:
    if not ok:
        raise ConfigError(f"{key}: {message}, got {value!r}")


def _sections() -> dict[str, type]:
    hints = get_type_hints(Config)
    return {name: hints[name] for name in hints if dataclasses.is_dataclass(hints[name])}


def _set_flat(raw: dict[str, Any], flat_key: str, value: Any) -> None:
    """Place `server_port`-style keys into the nested raw dict."""
    for section in _sections():
        prefix = section + "_"
        if flat_key.startswith(prefix):
            raw.setdefault(section, {})[flat_key[len(prefix) :]] = value
            return
    raw[flat_key] = value


def _apply_environment(raw: dict[str, Any], environ: Mapping[str, str]) -> None:
    for name, value in environ.items():
        if name.startswith("BODYCAM_") and name != "BODYCAM_CONFIG":
            key = name[len("BODYCAM_") :].lower()
            _set_flat(raw, key, value)


def _build(cls: Any, raw: Mapping[str, Any], prefix: str) -> Any:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{prefix.rstrip('.') or 'configuration'}: must be a table")
    hints = get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]}: unknown key (known: {', '.join(sorted(known))})")
    values: dict[str, Any] = {}
    for name, value in raw.items():
        key = prefix + name
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = _build(hint, value, key + ".")
        else:
            values[name] = _coerce(key, hint, value)
    return cls(**values)


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError


def _to_int(value: Any) -> int:
    if isinstance(value, bool | float):  # 8.5 is not a port, True is not a count
        raise ValueError
    return int(value)


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError
    return float(value)


def _to_str(value: Any) -> str:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ValueError
    return str(value)


def _to_path(value: Any) -> Path:
    if not isinstance(value, str | os.PathLike):
        raise ValueError
    return Path(value)


def _to_strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):  # from the environment: "eth0, 10.0.0.0/8"
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ValueError
    return tuple(value)


# field type -> (how a TOML or environment value becomes it, what the error says)
_COERCE: dict[Any, tuple[Any, str]] = {
    bool: (_to_bool, "a boolean"),
    int: (_to_int, "an integer"),
    float: (_to_float, "a number"),
    str: (_to_str, "a string"),
    Path: (_to_path, "a path"),
    tuple[str, ...]: (_to_strings, "a list of strings"),
}


def _coerce(key: str, hint: Any, value: Any) -> Any:
    """Turn a TOML or environment value into the field's type, or say what was wrong."""
    if hint not in _COERCE:
        raise ConfigError(f"{key}: unsupported type {hint}")
    convert, expected = _COERCE[hint]
    try:
        return convert(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: expected {expected}, got {value!r}") from None
