"""Failover benchmark: how long an officer's stream is lost when its gateway node dies.

Two real `bodycam serve` processes (nodes A and B) share one PostgreSQL database (made for
the run, dropped after), one Redis (a key prefix of the run's own) and one data folder; a
simulated body camera knows both (`--gateway A,B`). Each round the camera streams to A for
a few seconds, A is killed with SIGKILL, and the bench prints, from the kill:

- ``noticed``: the camera hears no more RTCP from A (its link timeout, 3 s): detection;
- ``taken over``: B holds the session in the store (the camera's new offer reached B);
- ``first frame on B``: the first frame B records (its first segment's start);
- ``media lost``: seconds of the session's media that no node recorded, from the end of
  A's last segment (sealed by B's recovery) to the start of B's first.

Nothing is asserted::

    python -m bench.failover [--rounds 3] [--before 5] [--postgres URL] [--redis URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path

import psycopg
import redis.asyncio

from bodycam import devices
from bodycam.clock import SystemClock
from bodycam.store import PostgresStore, Store
from simulators.axis_bodycam import AxisBodycam
from simulators.media import MediaSettings
from tests.helpers import free_port, serve_process, with_database


class Round:
    def __init__(self) -> None:
        self.noticed = 0.0
        self.taken_over = 0.0
        self.first_frame = 0.0
        self.lost = 0.0


async def poll(check: Callable[[], Awaitable[bool]], within: float) -> float:
    """Seconds until `check()` holds."""
    start = time.monotonic()
    while not await check():
        if time.monotonic() - start > within:
            raise TimeoutError(f"not within {within:.0f} s")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


async def one_round(
    store: Store,
    urls: dict[str, str],
    token: str,
    before: float,
    kill: Callable[[], Awaitable[None]],
) -> Round:
    media = MediaSettings(encode="loop")  # pre-encoded, as the fleet sends: costs no CPU
    camera = AxisBodycam(f"{urls['a']},{urls['b']}", "cam-1", token, media=media)
    result = Round()
    async with camera:
        await camera.press()
        live = await store.run(store.live_session_of_device, "cam-1")
        assert live is not None
        session_id = live.id
        await asyncio.sleep(before)
        killed_wall, killed = time.time(), time.monotonic()
        await kill()

        async def dropped() -> bool:
            return camera.state != "live"

        async def on_b() -> bool:
            held = await store.run(store.get_session, session_id)
            return held is not None and held.node.startswith("node-b~")

        async def recorded_on_b() -> bool:
            segments = await store.run(store.segments_of, session_id)
            return any(g.node.startswith("node-b~") for g in segments)

        result.noticed = await poll(dropped, 30)
        await poll(on_b, 30)
        result.taken_over = time.monotonic() - killed
        await poll(recorded_on_b, 30)

        async def sealed_for_a() -> bool:
            segments = await store.run(store.segments_of, session_id)
            return all(g.state != "open" for g in segments if g.node.startswith("node-a~"))

        await poll(sealed_for_a, 30)
        segments = await store.run(store.segments_of, session_id)
        first_b = min(
            (g for g in segments if g.node.startswith("node-b~")), key=lambda g: g.started_at
        )
        last_a = max(
            (g for g in segments if g.node.startswith("node-a~")), key=lambda g: g.started_at
        )
        result.first_frame = first_b.started_at.timestamp() - killed_wall
        assert last_a.ended_at is not None
        result.lost = (first_b.started_at - last_a.ended_at).total_seconds()
        await camera.press()
    return result


async def run(args: argparse.Namespace) -> None:
    name = f"bodycam_bench_failover_{os.getpid()}"
    with psycopg.connect(args.postgres, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}".encode())
    store_url = with_database(args.postgres, name)
    prefix = f"bodycam-bench:{uuid.uuid4().hex}:"
    store = await asyncio.to_thread(PostgresStore, store_url)
    rounds: list[Round] = []
    processes: dict[str, asyncio.subprocess.Process] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="bodycam-failover-") as tmp:
            data = Path(tmp) / "shared"
            data.mkdir()
            token = await store.run(devices.enroll, store, "cam-1", "", SystemClock().now())
            ports = {"a": free_port(), "b": free_port()}
            urls = {n: f"http://127.0.0.1:{p}" for n, p in ports.items()}
            log = Path(tempfile.gettempdir()) / f"bodycam-failover-{os.getpid()}.log"
            print(f"gateway logs: {log}", flush=True)

            async def start(node: str) -> None:
                processes[node] = await serve_process(
                    data,
                    ports[node],
                    log,
                    BODYCAM_STORE_URL=store_url,
                    BODYCAM_REDIS_URL=args.redis,
                    BODYCAM_REDIS_KEY_PREFIX=prefix,
                    BODYCAM_NODE_ID=f"node-{node}",
                    BODYCAM_NODE_URL=urls[node],
                    BODYCAM_LOG_LEVEL="warning",
                )

            async def kill_a() -> None:
                process = processes.pop("a")
                process.kill()
                await process.wait()

            await start("b")
            for number in range(1, args.rounds + 1):
                await start("a")
                result = await one_round(store, urls, token, args.before, kill_a)
                rounds.append(result)
                print(
                    f"round {number}: noticed {result.noticed:.2f} s, taken over"
                    f" {result.taken_over:.2f} s, first frame on B {result.first_frame:.2f} s,"
                    f" media lost {result.lost:.2f} s",
                    flush=True,
                )
            for process in processes.values():
                process.terminate()
                await process.wait()
    finally:
        await asyncio.to_thread(store.close)
        with psycopg.connect(args.postgres, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())
        client = redis.asyncio.Redis.from_url(args.redis)
        async for key in client.scan_iter(f"{prefix}*"):
            await client.delete(key)
        await client.aclose()
    if rounds:
        for label, values in (
            ("noticed (detection)", [r.noticed for r in rounds]),
            ("taken over", [r.taken_over for r in rounds]),
            ("first frame on B", [r.first_frame for r in rounds]),
            ("media lost", [r.lost for r in rounds]),
        ):
            print(
                f"{label:22} median {statistics.median(values):5.2f} s"
                f"  (min {min(values):.2f}, max {max(values):.2f}, {len(values)} rounds)"
            )
    print(
        f"({datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; a 720p30 H.264 camera,"
        " its link timeout 3 s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--before", type=float, default=5.0, help="seconds streamed to A")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1/postgres"),
    )
    parser.add_argument(
        "--redis", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
