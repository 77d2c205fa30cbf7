"""Structured logs: the ids a line is about are fields of its JSON object."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from bodycam.logs import JsonFormatter, bind, ids
from bodycam.models import SessionState
from simulators.axis_bodycam import AxisBodycam

from .helpers import Gateway, small_media, wait_for_session


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_bound_logger_puts_its_ids_in_every_json_line() -> None:
    logger = logging.getLogger("bodycam.test")
    handler = Collect()
    logger.addHandler(handler)
    try:
        log = bind(logger, session_id="s1", device_id="cam-17")
        log.warning("session %s: link lost", "s1", extra=ids(camera_id="ptz-2"))
    finally:
        logger.removeHandler(handler)
    line = json.loads(JsonFormatter().format(handler.records[0]))
    assert line["message"] == "session s1: link lost"
    assert line["session_id"] == "s1"
    assert line["device_id"] == "cam-17"
    assert line["camera_id"] == "ptz-2"
    assert "viewer_id" not in line  # absent ids are left out, not null


def test_an_unknown_id_is_refused_rather_than_lost() -> None:
    with pytest.raises(ValueError, match="log fields"):
        ids(sesion_id="s1")


async def test_every_line_about_a_session_carries_its_id(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    token = await gateway.enroll("cam-1")
    with caplog.at_level(logging.INFO, logger="bodycam"):
        async with AxisBodycam(gateway.url, "cam-1", token, media=small_media()) as camera:
            await camera.press()
            [session] = await gateway.store.run(gateway.store.list_sessions)
            await asyncio.sleep(1.5)  # a segment opens on the first keyframe
            await camera.press()
        await wait_for_session(gateway.store, session.id, SessionState.ENDED)
    about = [r for r in caplog.records if session.id in r.getMessage()]
    assert len(about) >= 3  # live, segment sealed, ended at least
    missing = [r.getMessage() for r in about if r.__dict__.get("session_id") != session.id]
    assert not missing, missing
    assert all(r.__dict__.get("device_id") == "cam-1" for r in about if "device" in r.msg)
