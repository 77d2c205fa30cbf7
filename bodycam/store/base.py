"""The store's interface: what every database backend implements, and the one way to call it.

Queries run on the store's own threads (one for SQLite, a pool's worth for a server), never
on the event loop and never on a caller's thread: `await store.run(store.get_session, sid)`
from the event loop, `store.call(...)` from any other thread (the command line, recovery,
the recorders' writer threads). A function given to `run` or `call` may itself call queries
directly: it runs on a store thread. Anything else fails at once with `StoreThreadError`
(`_check_thread`), so a stray call shows in the tests instead of as a transaction begun
beside another.

Backends convert their own errors at this edge: a duplicate is a False return or a
domain error, never an `sqlite3.IntegrityError` reaching the caller.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import ParamSpec, TypeVar

from ..models import (
    Alert,
    AlertAction,
    AlertState,
    CameraCheck,
    Device,
    Entry,
    Hold,
    Position,
    Segment,
    Session,
    SessionState,
    User,
)

P = ParamSpec("P")
T = TypeVar("T")


LOCK_NAMES = frozenset({"purge", "recovery"})  # the cluster-wide locks of `Store.exclusive`


class StoreThreadError(RuntimeError):
    """The store was called another way than `run` (event loop) or `call` (other threads):
    a programming error, raised at once."""


@dataclass(frozen=True)
class Checkpoint:
    """Where the register's chain restarts after pruning: the last removed entry."""

    last_seq: int
    last_hash: str
    at: str
    pruned: int


@dataclass(frozen=True)
class Destruction:
    """An ended session not yet fully destroyed, as the purge sees it."""

    session_id: str
    recorded_until: datetime  # its last recorded moment: what its retention counts from
    state: str  # "" (nothing done), "shredded" (key gone, files maybe still there)


class Store(ABC):
    """The durable facts of one gateway (or of several nodes, on a shared backend)."""

    shared = False  # several nodes may use it at once (PostgreSQL); SQLite: one node

    def __init__(self, thread_name: str = "store", threads: int = 1) -> None:
        self._threads: set[int] = set()  # the store's own, as its executor starts them
        self._executor = ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix=thread_name, initializer=self._joined
        )

    def _joined(self) -> None:
        self._threads.add(threading.get_ident())

    # how to call it

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn` (a query, or a function making several) on the store's thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn` on the store's thread from a thread that is not an event loop's; wait."""
        if threading.get_ident() in self._threads:
            raise StoreThreadError(
                "store.call on the store's own thread would wait for itself: call the query"
                " directly there"
            )
        if _loop_running():
            raise StoreThreadError(
                "store.call from the event loop would block it: await store.run(...) instead"
            )
        return self._executor.submit(functools.partial(fn, *args, **kwargs)).result()

    def _check_thread(self) -> None:
        """Every query starts here: it must be on one of the store's threads."""
        if threading.get_ident() not in self._threads:
            raise StoreThreadError(
                f"a query ran on thread {threading.current_thread().name!r}: use"
                " `await store.run(store.query, ...)` on the event loop, `store.call(...)`"
                " elsewhere"
            )

    def close(self) -> None:
        """Close the connection (on its thread) and stop the thread."""
        self._executor.submit(self._close).result()
        self._executor.shutdown(wait=True)

    @abstractmethod
    def _close(self) -> None: ...

    @abstractmethod
    def snapshot(self) -> AbstractContextManager[None]:
        """Queries inside see one state of the database (a read transaction)."""

    @abstractmethod
    def exclusive(self, name: str) -> AbstractContextManager[bool]:
        """Hold the cluster-wide lock `name` ("purge") for the length of the block, if no
        one else holds it: the block gets True when it has it, False when another process
        (another node, the command line) does. The lock goes with its holder's process,
        however that ends, so a node killed in the middle frees it for the others.

        Called like `call` (from a thread that is not the event loop); not a query, it
        keeps a connection or a file of its own rather than a store thread."""

    # meta values

    @abstractmethod
    def meta(self, key: str) -> str | None: ...

    @abstractmethod
    def set_meta(self, key: str, value: str) -> None: ...

    @abstractmethod
    def meta_default(self, key: str, value: str) -> str:
        """The value of `key`, set to `value` first if it has none (the first node to ask
        chooses it, every other gets the same)."""

    # devices

    @abstractmethod
    def add_device(self, device_id: str, officer: str, token_hash: str, now: datetime) -> bool:
        """Enrol a device; False if the id is taken."""

    @abstractmethod
    def get_device(self, device_id: str) -> Device | None: ...

    @abstractmethod
    def device_by_token_hash(self, token_hash: str) -> Device | None: ...

    @abstractmethod
    def list_devices(self) -> list[Device]: ...

    @abstractmethod
    def revoke_device(self, device_id: str, now: datetime) -> bool:
        """Mark a device revoked; False if it does not exist or was already revoked."""

    @abstractmethod
    def set_device_token(self, device_id: str, token_hash: str) -> bool:
        """Replace a device's token (and un-revoke it); False if the device does not exist."""

    @abstractmethod
    def set_device_identity(self, device_id: str, serial: str, model: str, firmware: str) -> None:
        """What the camera says it is (its telemetry `hello`)."""

    # people and their logins

    @abstractmethod
    def add_user(self, user: User, password_hash: str) -> bool:
        """Add a person; False if the name is taken."""

    @abstractmethod
    def get_user(self, name: str) -> tuple[User, str] | None:
        """A person and their password hash."""

    @abstractmethod
    def list_users(self) -> list[User]: ...

    @abstractmethod
    def set_password(self, name: str, password_hash: str) -> bool:
        """Replace a password and end the person's logins; False if there is no such user."""

    @abstractmethod
    def add_login(self, token_hash: str, name: str, now: datetime, expires: datetime) -> None: ...

    @abstractmethod
    def user_of_login(self, token_hash: str, now: datetime) -> User | None:
        """The person a login token belongs to, while it has not expired."""

    @abstractmethod
    def end_login(self, token_hash: str, now: datetime) -> None:
        """Log out; expired logins go at the same time."""

    @abstractmethod
    def live_logins(self, token_hashes: list[str], now: datetime) -> set[str]:
        """Those of these logins that still let their person in: not logged out, not
        expired, the account not disabled (open consoles and views are closed on the
        others)."""

    @abstractmethod
    def disable_user(self, name: str, now: datetime) -> bool:
        """Disable an account and end its logins; False if there is no such user."""

    @abstractmethod
    def login_failed(self, keys: list[str], now: datetime, since: datetime) -> int:
        """Count a failed login under each key (a name, an address); returns the most
        failures any of them has had since `since` (older ones are forgotten)."""

    @abstractmethod
    def login_succeeded(self, keys: list[str]) -> None:
        """Forget the failures counted under these keys."""

    # alerts

    @abstractmethod
    def add_alert(self, session_id: str, now: datetime) -> None:
        """Raise a session's alert (once: a second call changes nothing)."""

    @abstractmethod
    def get_alert(self, session_id: str) -> Alert | None: ...

    @abstractmethod
    def recent_alerts(self, since: datetime) -> list[Alert]:
        """Alerts not closed, and those raised since `since`; newest first."""

    @abstractmethod
    def act_on_alert(self, session_id: str, expected: AlertState, action: AlertAction) -> bool:
        """Move an alert from `expected` to the action's state; False if it was not there."""

    # sessions

    @abstractmethod
    def create_session(self, session: Session, resource_id: str) -> None:
        """A new session (held by `session.node`) and its first WHIP resource, together."""

    @abstractmethod
    def resume_session(
        self,
        session_id: str,
        resource_id: str,
        now: datetime,
        node: str = "",
        held_by: str | None = None,
    ) -> bool:
        """A reconnect within the grace window: live again, one more connection, held by
        `node`. With `held_by`, only while that (dead) node still holds it: a takeover, which
        two nodes cannot both win. True if this call did it."""

    @abstractmethod
    def interrupt_session(self, session_id: str, now: datetime, node: str | None = None) -> bool:
        """The link is lost: interrupted since `now`. With `node`, only while that node
        holds the session (another may have taken it over). True if this call did it."""

    @abstractmethod
    def end_session(
        self, session_id: str, reason: str, ended_at: datetime, node: str | None = None
    ) -> bool:
        """End the session once; with `node`, only while that node holds it. True if this
        call ended it."""

    @abstractmethod
    def rehold_session(self, session_id: str, node: str, held_by: str, state: str) -> bool:
        """A run declared dead but alive after all (it was paused) keeps a session no other
        node took over: held by its new run `node`, in `state` (live, or interrupted), with
        the segments it is writing. True if nobody had taken it."""

    @abstractmethod
    def live_session_of_device(self, device_id: str) -> Session | None:
        """The device's session that has not ended, if any (the latest)."""

    @abstractmethod
    def sessions_held_by(self, nodes: list[str]) -> list[Session]:
        """Sessions not ended that these nodes hold, oldest first."""

    @abstractmethod
    def update_session_media(self, session_id: str, video_codec: str, audio_codec: str) -> None:
        """The codecs of the session's latest connection."""

    @abstractmethod
    def update_session_telemetry(
        self, session_id: str, battery_percent: float | None, invalid_telemetry: int
    ) -> None: ...

    @abstractmethod
    def get_session(self, session_id: str) -> Session | None: ...

    @abstractmethod
    def session_of_resource(self, resource_id: str) -> Session | None:
        """The session a WHIP resource URL belongs to."""

    @abstractmethod
    def list_sessions(self, state: SessionState | None = None) -> list[Session]:
        """Sessions (of one state), oldest first."""

    # segments

    @abstractmethod
    def open_segment(
        self,
        session_id: str,
        started_at: datetime,
        video_codec: str,
        width: int,
        height: int,
        path_for: Callable[[int], str],
        node: str = "",
    ) -> tuple[int, int]:
        """Record a segment `node` is writing; returns (segment id, sequence number).

        `path_for(seq)` names the file, relative to the recordings directory.
        """

    @abstractmethod
    def close_segment(
        self, segment_id: int, ended_at: datetime, size: int, sha256: str, state: str = "closed"
    ) -> str:
        """Seal a segment: its hash, chained to the segment of its session sealed last.

        The chain is in sealing order (`Segment.chain_index`), which is the order of the
        files except when a node takes a session over while the segment another node was
        writing is still open: that one is sealed later, by recovery, and chained then.
        Returns the previous segment's hash. `state` is "closed" for a segment the recorder
        finished, "recovered" or "empty" for one found open after a crash.
        """

    @abstractmethod
    def drop_segment(self, segment_id: int) -> None:
        """Forget a segment that holds no media (its file was removed)."""

    @abstractmethod
    def segments_of(self, session_id: str) -> list[Segment]:
        """A session's segments in order."""

    @abstractmethod
    def open_segments(self, nodes: list[str] | None = None) -> list[Segment]:
        """Segments still being written (by these nodes): after a crash, the ones recovery
        seals."""

    # the nodes: each gateway process says it is alive; the others take over from a dead one

    @abstractmethod
    def heartbeat(self, node: str, name: str, url: str, first: bool = False) -> bool:
        """The gateway process `node` (of the configured node `name`, at `url`) is alive
        (`first`: it starts); False if the others have declared it dead meanwhile, or even
        forgotten it (they are taking over its sessions). Times are the database's clock,
        never a node's."""

    @abstractmethod
    def declare_dead(
        self, after_seconds: float, name: str, alive: str, everyone_else: bool = False
    ) -> list[str]:
        """Declare dead the processes not heard from for `after_seconds`, and the earlier
        runs of node `name` (whose run now is `alive`: one process per node), or with
        `everyone_else` all processes but `alive` (one node per database). Returns those
        declared now. The earlier runs are known gone, the silent ones only presumed."""

    @abstractmethod
    def dead_nodes(self, settled_seconds: float) -> list[str]:
        """The processes known gone, or presumed dead for `settled_seconds` (time for one
        that was only paused to hear it and stop writing), and "" (rows older than nodes):
        whose segments and sessions another node now takes care of."""

    @abstractmethod
    def node_stopped(self, node: str) -> None:
        """The process `node` stopped (cleanly): known gone."""

    @abstractmethod
    def forget_node(self, node: str) -> None:
        """A dead process whose sessions and segments have all been taken care of."""

    @abstractmethod
    def recording_totals(self, session_id: str) -> tuple[int, int]:
        """(number of sealed segments, their total bytes)."""

    # the city: camera registry and places (GeoJSON kept as imported, validated on the way in)

    @abstractmethod
    def replace_cameras(self, features: list[tuple[str, str]]) -> None:
        """The whole registry at once: (camera id, GeoJSON Feature text) pairs."""

    @abstractmethod
    def camera_features(self) -> list[str]: ...

    @abstractmethod
    def replace_places(self, places: list[tuple[str, str, str]]) -> None:
        """All places at once: (kind, name, GeoJSON geometry text) triples."""

    @abstractmethod
    def geo_version(self) -> int:
        """Changes with every import of cameras or places (a running gateway reloads)."""

    @abstractmethod
    def places(self, kind: str) -> list[tuple[str, str]]:
        """(name, GeoJSON geometry text) of every place of a kind."""

    # camera health: one node polls each camera at a time, every node reads the results

    @abstractmethod
    def claim_cameras(
        self, camera_ids: list[str], node: str, now: datetime, until: datetime
    ) -> list[str]:
        """Take (or renew) the polling of these cameras for `node` until `until`, but not
        those another node's claim still covers; returns the ones `node` polls."""

    @abstractmethod
    def record_camera_checks(self, checks: list[CameraCheck], node: str) -> None:
        """What a round of `node`'s polls found, all at once (for the cameras it still
        polls: a claim taken over meanwhile is the other node's to write)."""

    @abstractmethod
    def camera_checks(self) -> list[CameraCheck]:
        """Every camera's last known health, by camera id."""

    # positions

    @abstractmethod
    def add_position(self, session_id: str, position: Position, verdict: str = "kept") -> None:
        """Every fix is kept, with the filter's verdict ('kept', 'jump', …)."""

    @abstractmethod
    def positions_of(self, session_id: str, track_only: bool = False) -> list[Position]:
        """A session's fixes in time order; `track_only`: those the filter kept."""

    # session keys

    @abstractmethod
    def wrapped_key(self, session_id: str) -> bytes | None: ...

    @abstractmethod
    def add_wrapped_key(self, session_id: str, wrapped: bytes) -> None:
        """Keep a session's wrapped key; the first one made wins a race."""

    @abstractmethod
    def destroyed_at(self, session_id: str) -> datetime | None: ...

    # legal holds

    @abstractmethod
    def place_hold(self, hold: Hold, entry: Entry) -> int:
        """Put a session on hold and register it, together; never a destroyed session
        (Conflict). Returns the hold's id."""

    @abstractmethod
    def lift_hold(self, hold_id: int, by: str, reference: str, entry: Entry) -> bool:
        """Lift one hold and register it; False if it was not in force."""

    @abstractmethod
    def holds_of(self, session_id: str) -> list[Hold]: ...

    @abstractmethod
    def held_sessions(self) -> set[str]:
        """Sessions with a hold in force."""

    # destruction, in steps a crash may separate (see evidence.purge)

    @abstractmethod
    def pending_destructions(self) -> list[Destruction]:
        """Ended sessions not yet fully destroyed, oldest first."""

    @abstractmethod
    def shred_key(self, session_id: str, now: datetime) -> bool:
        """Destroy a session's key unless a hold came in meanwhile; True if it is gone."""

    @abstractmethod
    def forget_deleted(self) -> bool:
        """Leave no copy of deleted rows in the database's own files (SQLite's WAL); False
        when a reader kept that from completing (the next purge tries again)."""

    @abstractmethod
    def finish_destruction(self, session_id: str, entry: Entry) -> bool:
        """The files are gone: drop the session's positions and segments, and register it.

        False (and nothing written) when another purge finished it first.
        """

    # the register: an append-only hash chain (evidence.register checks it)

    @abstractmethod
    def record(self, entry: Entry) -> int:
        """Append one entry to the register; returns its number."""

    @abstractmethod
    def record_all(self, entries: list[Entry]) -> None:
        """Append several entries at once: all of them, or none."""

    @abstractmethod
    def register_head(self) -> tuple[int, str]:
        """(number, hash) of the last entry, or of the last checkpoint when all are pruned."""

    @abstractmethod
    def register_checkpoint(self) -> Checkpoint | None:
        """The latest pruning checkpoint, if the register was ever pruned."""

    @abstractmethod
    def register_entries(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        session_id: str | None = None,
        after_seq: int = 0,
        limit: int | None = None,
    ) -> list[dict[str, str]]:
        """Entries in order (from/to inclusive, numbers above `after_seq`), as CSV rows
        (`models.CSV_FIELDS`) with their numbers and hashes."""

    @abstractmethod
    def prune_register(self, before: datetime, now: datetime) -> int:
        """Remove entries older than `before` behind a checkpoint; returns how many went.

        The checkpoint keeps the last removed entry's number and hash, which the first kept
        entry links to, so the rest of the chain still verifies; the pruning is itself an
        entry.
        """

    # statistics

    @abstractmethod
    def monthly_stats(self, year: int) -> dict[str, dict[str, int]]:
        """Per month of `year` ("2026-03"): sessions, live views, recording views, exports,
        requisitions (distinct references of exports and holds)."""

    @abstractmethod
    def yearly_requisitions(self, year: int) -> int:
        """Distinct references over the year (one used in two months counts once)."""


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def paged(fetch: Callable[[int], list[dict[str, str]]], after: int = 0) -> Iterator[dict[str, str]]:
    """Register rows page by page: `fetch(after_seq)` returns the next page (empty at the
    end). Lets a caller stream the register without a cursor crossing threads."""
    while page := fetch(after):
        yield from page
        after = int(page[-1]["seq"])
