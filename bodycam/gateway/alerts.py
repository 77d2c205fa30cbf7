"""Alerts: an officer going live raises one; operators acknowledge, dispatch, close it.

The state only moves forward (nouvelle → prise en compte → renforts envoyés → clôturée);
each move records who and when, in the same transaction as the state. The node that holds
the session publishes the alert (`alert` events, `Alerts.announce`) whenever anything in it
changes, with what it knows best (`LiveFacts`: the session's state, the battery, the
street); another node (on the same database) gives the same from the store and the live
positions. The HTTP side is in `api_live`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from ..clock import Clock, iso
from ..errors import Conflict, NotFound
from ..live.base import EventStream, Positions
from ..logs import ids
from ..models import Alert, AlertAction, AlertState, SessionState, User
from ..store import Store

logger = logging.getLogger(__name__)

ALERTS_IN_VIEW = timedelta(hours=12)  # closed alerts stay listed for a shift

# action in the URL → the state it moves to, and the states it may start from
ACTIONS: dict[str, tuple[AlertState, frozenset[AlertState]]] = {
    "ack": (AlertState.ACKNOWLEDGED, frozenset({AlertState.NEW})),
    "dispatch": (AlertState.DISPATCHED, frozenset({AlertState.NEW, AlertState.ACKNOWLEDGED})),
    "close": (
        AlertState.CLOSED,
        frozenset({AlertState.NEW, AlertState.ACKNOWLEDGED, AlertState.DISPATCHED}),
    ),
}
LABELS = {
    AlertState.NEW: "nouvelle",
    AlertState.ACKNOWLEDGED: "prise en compte",
    AlertState.DISPATCHED: "renforts envoyés",
    AlertState.CLOSED: "clôturée",
}


@dataclass(frozen=True)
class LiveFacts:
    """What the node holding a session knows of it as it happens, for its alert."""

    session_state: SessionState = SessionState.ENDED
    battery_percent: float | None = None
    address: str | None = None


def transition(alert: Alert, action: str) -> AlertState:
    """The state `action` moves the alert to, or why it cannot."""
    if action not in ACTIONS:
        raise NotFound(f"no alert action {action!r}: ack, dispatch or close")
    target, sources = ACTIONS[action]
    if alert.state not in sources:
        raise Conflict(
            f"alert {alert.session_id} is {LABELS[alert.state]}: cannot move to {LABELS[target]}"
        )
    return target


def alert_json(alert: Alert, live: LiveFacts) -> dict[str, Any]:
    """An alert as the console gets it."""
    return {
        "session_id": alert.session_id,
        "device_id": alert.device_id,
        "officer": alert.officer,
        "raised_at": iso(alert.raised_at),
        "state": alert.state.value,
        "session_state": live.session_state.value,
        "battery_percent": live.battery_percent,
        "address": live.address,
        "actions": [
            {
                "state": a.state.value,
                "user": a.user,
                "role": a.role,
                "service": a.service,
                "at": iso(a.at),
            }
            for a in alert.actions
        ],
    }


class Alerts:
    """This node's view of the alerts: listed, acted on, announced to every console."""

    def __init__(
        self,
        store: Store,
        events: EventStream,
        positions: Positions,
        clock: Clock,
        facts: Callable[[str], LiveFacts | None],
    ) -> None:
        self._store = store
        self._events = events
        self._positions = positions
        self._clock = clock
        self._local_facts = facts  # None: not a session of this node

    async def _facts(self, session_id: str) -> LiveFacts:
        """The holder's facts; on another node, the same from the store and live state."""
        local = self._local_facts(session_id)
        if local is not None:
            return local
        session = await self._store.run(self._store.get_session, session_id)
        if session is None or session.state == SessionState.ENDED:
            return LiveFacts(battery_percent=session.battery_percent if session else None)
        position = await self._positions.get(session_id)
        address = position.address if position else None
        return LiveFacts(session.state, session.battery_percent, address)

    async def in_view(self) -> list[dict[str, Any]]:
        """Open alerts, and those raised within the last shift; newest first."""
        since = self._clock.now() - ALERTS_IN_VIEW
        alerts = await self._store.run(self._store.recent_alerts, since)
        return [alert_json(a, await self._facts(a.session_id)) for a in alerts]

    async def act(self, alert: Alert, action: str, person: User) -> dict[str, Any]:
        """Move an alert forward for `person`; returns it as announced."""
        target = transition(alert, action)
        done = AlertAction(
            target, person.name, person.role.value, person.service, self._clock.now()
        )
        store = self._store
        if not await store.run(store.act_on_alert, alert.session_id, alert.state, done):
            raise Conflict(f"alert {alert.session_id} changed meanwhile: reload and try again")
        logger.info(
            "session %s: alert %s by %s",
            alert.session_id,
            target,
            person.name,
            extra=ids(session_id=alert.session_id),
        )
        published = await self.announce(alert.session_id)
        if published is None:
            raise NotFound(f"no alert for session {alert.session_id}")
        return published

    async def announce(self, session_id: str) -> dict[str, Any] | None:
        """Publish the session's alert as it stands (after any change); returns it."""
        try:
            alert = await self._store.run(self._store.get_alert, session_id)
            if alert is None:
                return None
            data = alert_json(alert, await self._facts(session_id))
            self._events.publish("alert", data)
        except Exception:  # the console misses one update; the camera must not fail for it
            logger.exception(
                "session %s: alert not announced", session_id, extra=ids(session_id=session_id)
            )
            return None
        return data
