"""The access matrix of DESIGN.md as data: which roles may do each act (CSI L241-2,
R241-10 to R241-14). Plain data, no HTTP: the API (`gateway.auth.require`) and the command
line check the same sets. A role missing from a set is refused (403 from the API), and the
refusal registered.
"""

from __future__ import annotations

from .models import Role

LIVE_VIEW = frozenset({Role.OPERATOR, Role.SUPERVISOR, Role.POLICE_NATIONALE})
CAMERA_VIEW = LIVE_VIEW
ALERT_ACTION = frozenset({Role.OPERATOR, Role.SUPERVISOR})
# The CIC (police_nationale) may steer a PTZ camera after giving notice, for a limited time.
CAMERA_CONTROL = frozenset({Role.OPERATOR, Role.SUPERVISOR, Role.POLICE_NATIONALE})
RECORDING_VIEW = frozenset({Role.OPERATOR, Role.SUPERVISOR})  # with a stated reason
EXPORT = frozenset({Role.SUPERVISOR})  # on requisition, with its reference
LEGAL_HOLD = frozenset({Role.SUPERVISOR})
REGISTER_READ = frozenset({Role.SUPERVISOR, Role.AUDITOR})
STATS_READ = frozenset({Role.SUPERVISOR, Role.AUDITOR, Role.ADMIN})
ADMINISTRATION = frozenset({Role.SUPERVISOR, Role.ADMIN})  # devices; the list of people
USER_ADMINISTRATION = frozenset({Role.SUPERVISOR})  # creating accounts: no rights gained
CAMERA_HEALTH = LIVE_VIEW | {Role.ADMIN}
