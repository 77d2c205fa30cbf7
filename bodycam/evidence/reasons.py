"""The free texts the law asks for: why a recording is viewed, a hold placed or lifted, an
export made, and the reference of the requisition or decision behind it (R241-14: every
access says who, when, what and why). Checked here for the API and the command line alike.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import BadRequest
from ..models import Actor

MIN_TEXT = 3
MAX_REFERENCE = 100
MAX_REASON = 500


def required_text(value: object, name: str, what: str, limit: int = MAX_REASON) -> str:
    """A required free text (a reason, a reference): at least 3 characters, bounded."""
    if not isinstance(value, str) or len(value.strip()) < MIN_TEXT:
        raise BadRequest(f"{name}: required: {what} (at least {MIN_TEXT} characters)")
    if len(value) > limit:
        raise BadRequest(f"{name}: at most {limit} characters")
    return value.strip()


def reference(value: object, what: str = "the requisition's reference") -> str:
    return required_text(value, "reference", what, MAX_REFERENCE)


def reason(value: object, what: str) -> str:
    return required_text(value, "reason", what, MAX_REASON)


@dataclass(frozen=True)
class Requisition:
    """Why and for whom an export is made: the reference is mandatory, the reason says what
    it is for."""

    reference: str
    reason: str
    actor: Actor

    @classmethod
    def checked(cls, reference_text: object, reason_text: object, actor: Actor) -> Requisition:
        return cls(
            reference(reference_text), reason(reason_text, "say what the export is for"), actor
        )
