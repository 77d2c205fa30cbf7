"""Legal holds: a session kept past its retention for a judicial procedure.

Placed and lifted by a supervisor with a reference; each is a register entry written in
the same transaction as the hold. These functions run on the store's thread, for the API
(`store.run`) and the command line (`store.call`) alike.
"""

from __future__ import annotations

import logging
from datetime import datetime

from ..errors import Conflict, NotFound
from ..logs import ids
from ..models import Action, Actor, Entry, Hold
from ..store import Store
from . import reasons

logger = logging.getLogger(__name__)


def place(
    store: Store, session_id: str, actor: Actor, reference: object, reason: object, now: datetime
) -> Hold:
    """Hold a session (live or ended, not destroyed) until the hold is lifted."""
    reference = reasons.reference(reference)
    reason = reasons.reason(reason, "say what the hold is for")
    session = store.get_session(session_id)
    if session is None:
        raise NotFound(f"session {session_id} does not exist")
    if session.destroyed_at is not None:
        raise Conflict(f"session {session_id} was destroyed at the end of its retention")
    entry = Entry(
        Action.HOLD_PLACED,
        actor,
        now,
        session_id=session_id,
        time_from=session.started_at,
        time_to=session.ended_at,
        reason=reason,
        reference=reference,
    )
    hold = Hold(0, session_id, reference, reason, actor.user, now)
    hold_id = store.place_hold(hold, entry)
    logger.info(
        "session %s: legal hold %d placed by %s (%s)",
        session_id,
        hold_id,
        actor.user,
        reference,
        extra=ids(session_id=session_id),
    )
    return _find(store, session_id, hold_id)


def lift(
    store: Store,
    session_id: str,
    hold_id: int,
    actor: Actor,
    reference: object,
    reason: object,
    now: datetime,
) -> Hold:
    """Lift one hold in force; the purge may then take the session if it has expired."""
    reference = reasons.reference(reference, "the decision's reference")
    reason = reasons.reason(reason, "say why the hold is lifted")
    current = _find(store, session_id, hold_id)
    entry = Entry(
        Action.HOLD_LIFTED,
        actor,
        now,
        session_id=session_id,
        reason=reason,
        reference=reference,
        detail=f"hold {hold_id} ({current.reference})",
    )
    if not store.lift_hold(hold_id, actor.user, reference, entry):
        raise Conflict(f"hold {hold_id} was already lifted")
    logger.info(
        "session %s: legal hold %d lifted by %s (%s)",
        session_id,
        hold_id,
        actor.user,
        reference,
        extra=ids(session_id=session_id),
    )
    return _find(store, session_id, hold_id)


def _find(store: Store, session_id: str, hold_id: int) -> Hold:
    for hold in store.holds_of(session_id):
        if hold.id == hold_id:
            return hold
    raise NotFound(f"session {session_id} has no hold {hold_id}")
