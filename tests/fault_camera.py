"""A simulated body camera for the network fault tests, run inside its own network
namespace: `python -m tests.fault_camera GATEWAY DEVICE TOKEN SECONDS ADDRESS [IMPAIR]`.

IMPAIR (`loss,delay,jitter`, e.g. `0.05,0.1,0.1`) makes the camera's network lossy in user
space, for a kernel without netem: see `lossy_network`.

It waits for the gateway, goes live, streams for SECONDS in live mode (so that each PLI
the gateway sends forces a keyframe, and is counted), stops, and prints one JSON line:
frames sent, keyframes forced, reconnects, its state when it stopped, and the gateway's
ingest counters read from its /metrics just before.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from simulators.axis_bodycam import AxisBodycam
from simulators.media import MediaSettings

IMPAIRED = {"datagrams": 0, "dropped": 0}


def lossy_network(loss: float, delay: float, jitter: float, seed: int = 13) -> None:
    """This process's UDP as `tc netem loss L delay D J distribution normal` on its link
    would make it, both ways: each datagram sent or received (ICE, DTLS, SRTP, SRTCP alike)
    is dropped with probability `loss`, else handed on after a normal delay(D, J) clipped
    at 0, which reorders some. For a kernel without sch_netem (the machine's, here); the
    gateway on the other side is untouched: it sees a lossy network, nothing else."""
    rng = random.Random(seed)
    loop = asyncio.get_running_loop()
    create = loop.create_datagram_endpoint

    def later(fn: Callable[..., object], *args: object) -> None:
        IMPAIRED["datagrams"] += 1
        if rng.random() < loss:
            IMPAIRED["dropped"] += 1
        else:
            loop.call_later(max(0.0, rng.gauss(delay, jitter)), fn, *args)

    async def lossy_endpoint(factory: Callable[[], Any], *args: Any, **kwargs: Any) -> Any:
        def lossy_factory() -> Any:
            protocol = factory()
            received = protocol.datagram_received
            protocol.datagram_received = lambda data, addr: later(received, data, addr)
            return protocol

        transport, protocol = await create(lossy_factory, *args, **kwargs)
        send = transport.sendto

        def deliver(data: bytes, addr: Any) -> None:
            if not transport.is_closing():
                send(data, addr)

        transport.sendto = lambda data, addr=None: later(deliver, data, addr)  # type: ignore[method-assign]
        return transport, protocol

    loop.create_datagram_endpoint = lossy_endpoint  # type: ignore[method-assign, assignment]


async def main(
    gateway: str, device: str, token: str, seconds: float, address: str, impair: str = ""
) -> None:
    if impair:
        loss, delay, jitter = (float(v) for v in impair.split(","))
        lossy_network(loss, delay, jitter)
    deadline = time.monotonic() + 20
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(f"{gateway}/healthz") as response:
                    if response.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"gateway {gateway} did not answer")
            await asyncio.sleep(0.1)
    # live mode: a PLI forces an IDR (loops ignore them), 2 s between keyframes otherwise
    media = MediaSettings(codec="h264", width=320, height=240, fps=15, encode="live")
    camera = AxisBodycam(gateway, device, token, media=media, ice_addresses=[address])
    async with camera:
        await camera.press()
        states = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            await asyncio.sleep(0.5)
            states.append(camera.state)
        final = camera.state
        ingest = await _ingest_metrics(gateway)
        if final == "live":
            await camera.press()
        print(  # noqa: T201 the test reads this line
            json.dumps(
                {
                    "frames_sent": camera.frames_sent,
                    "keyframes_forced": camera.counters.keyframes_forced,
                    "reconnects": camera.reconnects,
                    "state": final,
                    "states": states,
                    "impaired": IMPAIRED,
                    "gateway": ingest,
                }
            ),
            flush=True,
        )


async def _ingest_metrics(gateway: str) -> dict[str, float]:
    """The gateway's ingest counters (`bodycam_ingest_*` of its /metrics), while live."""
    async with aiohttp.ClientSession() as http, http.get(f"{gateway}/metrics") as response:
        text = await response.text()
    return {
        name: float(value)
        for name, _, value in (line.rpartition(" ") for line in text.splitlines())
        if name.startswith("bodycam_ingest_") and name.split("{")[0].endswith("_total")
    }


if __name__ == "__main__":
    url, device_id, device_token, duration, ice = sys.argv[1:6]
    impairment = sys.argv[6] if len(sys.argv) > 6 else ""
    asyncio.run(main(url, device_id, device_token, float(duration), ice, impairment))
