"""Structured logs: one JSON object per line (or plain text for a terminal).

The ids a line is about (session, device, camera, viewer) are fields of the JSON object, not
only words of the message, so a log store can select every line of one session:

    log = bind(logger, session_id=live.id, device_id=device.id)
    log.info("session %s: segment %d sealed", live.id, seq)

or, for one line, ``logger.info(..., extra=ids(session_id=sid))``.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

from .clock import iso, utc_from_timestamp

FIELDS = ("session_id", "device_id", "camera_id", "viewer_id")


class JsonFormatter(logging.Formatter):
    """time, level, logger, message, the ids the line is about, and exc when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": iso(utc_from_timestamp(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value:
                entry[name] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class Bound(logging.LoggerAdapter[logging.Logger]):
    """A logger whose every line carries the same ids (`bind`); a line's own `extra` adds
    to them."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**(self.extra or {}), **(kwargs.get("extra") or {})}
        return msg, kwargs


def bind(logger: logging.Logger, **found: str) -> Bound:
    """`logger`, with these ids on every line."""
    return Bound(logger, ids(**found))


def ids(**found: str) -> Mapping[str, str]:
    """The ids of one line, for `extra=` (unknown names are refused: a typo would vanish)."""
    unknown = set(found) - set(FIELDS)
    if unknown:
        raise ValueError(f"log fields must be among {FIELDS}, not {sorted(unknown)}")
    return found


def setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiortc and aioice narrate every packet at debug and every state change at info.
    for noisy in ("aioice", "aiortc"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
