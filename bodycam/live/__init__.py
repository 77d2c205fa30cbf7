"""Live, shared state: what several gateway nodes must share while sessions are live (the
event stream, officers' current positions, which node holds which session). DESIGN, "State".

`base` is the interface (`LiveState`), with two implementations that behave alike: in this
process (`memory`: one node, the demo, the default) and in Redis (`redis`, whose docstring
gives the key layout: several nodes on one server, chosen by `redis.url`). One test suite
(`tests/test_live_state.py`) runs against both, the Redis run on a real server.
`open_live(config, clock)` gives the one the configuration asks for.

May import: the foundations (`config`, `clock`, `errors`, `logs`). Nothing durable lives
here: that is the store's.
"""

from __future__ import annotations

from ..clock import Clock
from ..config import Config
from .base import LiveState, this_node
from .memory import MemoryLive
from .redis import RedisLive


async def open_live(config: Config, clock: Clock) -> LiveState:
    """The live state `config` asks for: Redis at `redis.url`, or in process."""
    node = this_node(config)
    position_ttl = config.geo.position_ttl_seconds
    claim_ttl = config.sessions.claim_ttl_seconds
    if not config.redis.url:
        return MemoryLive(node, clock, position_ttl=position_ttl, claim_ttl=claim_ttl)
    return await RedisLive.connect(
        config.redis.url,
        node,
        clock,
        prefix=config.redis.key_prefix,
        max_events=config.redis.max_events,
        position_ttl=position_ttl,
        claim_ttl=claim_ttl,
    )


__all__ = ["LiveState", "open_live"]
