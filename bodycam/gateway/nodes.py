"""The nodes of a cluster keep each other: each says it is alive, and the others take care
of what a dead one leaves.

Every `node.heartbeat_seconds` a node writes its heartbeat in the store (the database's
clock, never a node's). A run of a node not heard from for `node.dead_after_seconds` is
declared dead; so is, at once, an earlier run of the same node (one process per `node.id`),
and on SQLite every other run (one node per database: a restart). Then, on every node:

- its sessions still live in the store are interrupted (since now): each has its grace
  window from there, and the camera that reconnects to any node continues its session
  there (`SessionManager._adopt`); one whose window closes is ended by the first node to
  see it, at the time the window closed;
- once it has been dead for another `dead_after_seconds`, long enough for a run that was
  only paused to hear its heartbeat refused and carry on as a new run (keeping the
  sessions nobody took over, with the files it is writing: `SessionManager.rehold_all`),
  the segments it left open are sealed by recovery (one node at a time);
- a dead run with nothing left is forgotten.

The first round runs at startup, before the gateway serves: a restarted node seals what
its previous run left and minds its sessions' grace windows at once.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from datetime import timedelta

from ..clock import Clock
from ..config import Config
from ..errors import BodycamError
from ..evidence.keyring import Keyring
from ..live.base import Node
from ..logs import ids
from ..media.recovery import recover_segments
from ..models import EndReason, SessionState
from ..store import Store
from .sessions import SessionManager

logger = logging.getLogger(__name__)


class NodeKeeper:
    """This node's heartbeat, and its care of the dead ones."""

    def __init__(
        self,
        config: Config,
        store: Store,
        keyring: Keyring,
        manager: SessionManager,
        node: Node,
        clock: Clock,
    ) -> None:
        self.config = config
        self.store = store
        self.keyring = keyring
        self.manager = manager
        self.node = node
        self.clock = clock
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """The first round (before serving); then a heartbeat and a round of care every
        `heartbeat_seconds`, each in a task of its own (a long recovery must not silence
        this node's heartbeat: the others would judge it dead)."""
        store, node = self.store, self.node
        await store.run(store.heartbeat, self.manager.run, node.id, node.url, True)
        await self.care()
        self._tasks = [
            asyncio.create_task(self._every(self.beat, "heartbeat")),
            asyncio.create_task(self._every(self.care, "care of dead nodes")),
        ]

    async def close(self) -> None:
        """Stop; this run is gone (the next one, or another node, takes care of its
        sessions at once rather than after `dead_after_seconds`)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            await self.store.run(self.store.node_stopped, self.manager.run)
        except BodycamError as err:
            logger.warning("node %s: not written down as stopped: %s", self.manager.run, err)

    async def _every(self, work: Callable[[], Awaitable[None]], what: str) -> None:
        while True:
            await asyncio.sleep(self.config.node.heartbeat_seconds)
            try:
                await work()
            except Exception:  # the next round tries again; a stuck one shows in the logs
                logger.exception("node %s: %s failed", self.manager.run, what)

    async def beat(self) -> None:
        """This run is alive; if the others declared it dead meanwhile (it was paused, or
        cut from the database, for longer than dead_after), carry on as a new run keeping
        what they did not take over (before they seal its files: they wait dead_after more
        for that)."""
        store, node, manager = self.store, self.node, self.manager
        if await store.run(store.heartbeat, manager.run, node.id, node.url):
            return
        run = f"{node.id}~{secrets.token_hex(3)}"
        logger.critical(
            "node %s was declared dead by the other nodes (not heard from for %.0f s);"
            " carrying on as %s with the sessions they did not take over",
            manager.run,
            self.config.node.dead_after_seconds,
            run,
        )
        await store.run(store.heartbeat, run, node.id, node.url, True)
        await manager.rehold_all(run)

    async def care(self) -> None:
        """Declare the silent runs dead; mind their sessions; seal their files once they
        have had time to hear it; forget those with nothing left."""
        store, node, manager = self.store, self.node, self.manager
        dead_after = self.config.node.dead_after_seconds
        declared = await store.run(
            store.declare_dead, dead_after, node.id, manager.run, not store.shared
        )
        for run in declared:
            logger.warning("node %s is dead: its sessions are interrupted", run)
        settled = await store.run(store.dead_nodes, dead_after)
        dead = sorted({*declared, *await store.run(store.dead_nodes, 0.0)})
        await self._mind_sessions(dead)
        if await store.run(store.open_segments, settled):
            recordings = self.config.recordings_dir
            await asyncio.to_thread(recover_segments, store, self.keyring, recordings, settled)
        for run in settled[1:]:  # "" is not a run
            held = await store.run(store.sessions_held_by, [run])
            if not held and not await store.run(store.open_segments, [run]):
                await store.run(store.forget_node, run)

    async def _mind_sessions(self, dead: list[str]) -> None:
        """Interrupt the dead runs' live sessions; end those whose grace window closed."""
        store = self.store
        now = self.clock.now()
        grace = timedelta(seconds=self.config.sessions.grace_seconds)
        for session in await store.run(store.sessions_held_by, ["", *dead]):
            if session.state == SessionState.LIVE:
                if await store.run(store.interrupt_session, session.id, now, session.node):
                    logger.warning(
                        "session %s: its node %s is dead; waiting %.0f s for device %s",
                        session.id,
                        session.node or "(earlier gateway)",
                        grace.total_seconds(),
                        session.device_id,
                        extra=ids(session_id=session.id, device_id=session.device_id),
                    )
                    await self.manager.alerts.announce(session.id)
            elif session.interrupted_at is not None and now - session.interrupted_at >= grace:
                ended_at = session.interrupted_at + grace
                end = store.end_session
                if await store.run(end, session.id, EndReason.LINK_LOST, ended_at, session.node):
                    logger.info(
                        "session %s: ended, its device did not come back",
                        session.id,
                        extra=ids(session_id=session.id, device_id=session.device_id),
                    )
                    await self.manager.alerts.announce(session.id)
