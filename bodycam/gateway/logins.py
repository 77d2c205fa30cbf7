"""Open consoles and live views end with the login they were opened with.

A console's WebSocket and a live view (WHEP) outlive the request that opened them; the
login behind each is held here. Every `WATCH_SECONDS` the logins held are looked up in the
store (one query for all of them), and what was opened with a login that no longer lets its
person in is closed: logged out, expired, its password changed, its account disabled,
whichever node or command line did it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable

from ..clock import Clock
from ..errors import BodycamError
from ..store import Store
from ..users import login_hash

logger = logging.getLogger(__name__)

WATCH_SECONDS = 0.5

Close = Callable[[], Awaitable[object]]


class LoginWatch:
    """What each login holds open, closed when the login ends."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._held: dict[str, dict[int, Close]] = {}  # by login hash
        self._numbers = itertools.count()
        self._task = asyncio.create_task(self._loop())

    def hold(self, token: str, close: Close) -> Callable[[], None]:
        """`close` runs when the login of `token` ends; call the result to let go first."""
        key, number = login_hash(token), next(self._numbers)
        self._held.setdefault(key, {})[number] = close

        def release() -> None:
            held = self._held.get(key)
            if held is not None:
                held.pop(number, None)
                if not held:
                    del self._held[key]

        return release

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(WATCH_SECONDS)
            if not self._held:
                continue
            try:
                alive = await self._store.run(
                    self._store.live_logins, list(self._held), self._clock.now()
                )
            except BodycamError as err:  # the database away: nothing is closed for it
                logger.warning("open consoles and views not checked: %s", err)
                continue
            for key in [k for k in self._held if k not in alive]:
                closes = list(self._held.pop(key).values())
                logger.info("a login ended: %d console(s) and view(s) closed", len(closes))
                results = await asyncio.gather(*(c() for c in closes), return_exceptions=True)
                for result in results:
                    if isinstance(result, Exception):
                        logger.error("closing after a login ended failed", exc_info=result)
