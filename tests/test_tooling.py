"""The suite's own checks catch what they promise (a check that cannot fail is a defect)."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import time

import pytest

from .fuzzing import REPLAY_CASES, Replay
from .helpers import SlowCallbacks


@pytest.mark.blocks_the_loop
def test_a_callback_that_blocks_the_loop_is_reported() -> None:
    handler = SlowCallbacks()
    logging.getLogger("asyncio").addHandler(handler)
    try:

        async def blocking() -> None:
            time.sleep(0.15)  # noqa: ASYNC251 what the gateway must never do on its loop

        async def polite() -> None:
            await asyncio.sleep(0.15)

        asyncio.run(polite(), debug=True)
        assert handler.seen == []
        asyncio.run(blocking(), debug=True)
    finally:
        logging.getLogger("asyncio").removeHandler(handler)
    [report] = handler.seen
    assert "blocking()" in report
    assert "without garbage collection" in report


def test_only_aiortc_s_frame_step_has_the_longer_budget() -> None:
    handler = SlowCallbacks()
    # the handler takes off what garbage collection held of the time it is told of: no
    # collection may fall in these made-up callbacks' last 0.6 s (an earlier test's did)
    gc.disable()
    time.sleep(0.7)
    try:
        reports(handler)
    finally:
        gc.enable()


def reports(handler: SlowCallbacks) -> None:

    def report(handle: str, seconds: float) -> None:
        message = f"Executing <Task pending name='Task-1' {handle} running at x.py:1> took"
        record = logging.LogRecord("asyncio", logging.WARNING, __file__, 1, "", (), None)
        record.msg = f"{message} {seconds:.3f} seconds"
        handler.emit(record)

    report("coro=<RTCRtpSender._run_rtp()", 0.17)  # one keyframe's packets, a loaded machine
    assert handler.seen == []
    report("coro=<Recorder.write()", 0.17)
    report("coro=<RTCRtpSender._run_rtp()", 0.6)
    assert [("Recorder" in seen, "_run_rtp" in seen) for seen in handler.seen] == [
        (True, False),
        (False, True),
    ]


def test_a_replay_sees_what_a_function_keeps_and_only_that() -> None:
    """The fuzzing's memory bound for a pure function (tests/fuzzing.py's Replay)."""
    replay: Replay[bytes] = Replay()
    for n in range(12_000):  # over REPLAY_CASES: the sample stays a sample
        replay.keep(n.to_bytes(4, "big") * 8)
    assert len(replay.cases) == REPLAY_CASES
    assert replay.seen == 12_000
    kept: list[bytes] = []
    assert replay.retained(lambda case: json.loads(json.dumps({"case": case.hex()}))) < 4096
    leaked = replay.retained(lambda case: kept.append(case + b"!"))
    assert leaked >= REPLAY_CASES * 33  # what the second pass kept, counted
