"""The suite's own checks catch what they promise (a check that cannot fail is a defect)."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

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
