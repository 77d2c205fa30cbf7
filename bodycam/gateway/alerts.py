"""Alerts: an officer going live raises one; operators acknowledge, dispatch, close it.

The state only moves forward (nouvelle → prise en compte → renforts envoyés → clôturée);
each move records who and when, in the same transaction as the state. The node that holds
the session publishes the alert (`alert` events, `SessionManager.announce`) whenever
anything in it changes, with what only that node knows: the session's state, the battery,
the street. The HTTP side is in `api`.
"""

from __future__ import annotations

from typing import Any

from ..clock import iso
from ..errors import Conflict, NotFound
from ..models import Alert, AlertState

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


def alert_json(alert: Alert, live: dict[str, Any]) -> dict[str, Any]:
    """An alert as the console gets it; `live` adds session_state, battery, address."""
    return {
        "session_id": alert.session_id,
        "device_id": alert.device_id,
        "officer": alert.officer,
        "raised_at": iso(alert.raised_at),
        "state": alert.state.value,
        "session_state": live.get("session_state", "ended"),
        "battery_percent": live.get("battery_percent"),
        "address": live.get("address"),
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
