"""A simulated body camera for the network fault tests, run inside its own network
namespace: `python -m tests.fault_camera GATEWAY DEVICE TOKEN SECONDS ADDRESS`.

It waits for the gateway, goes live, streams for SECONDS in live mode (so that each PLI
the gateway sends forces a keyframe, and is counted), stops, and prints one JSON line:
frames sent, keyframes forced, reconnects, its state when it stopped.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import aiohttp

from simulators.axis_bodycam import AxisBodycam
from simulators.media import MediaSettings


async def main(gateway: str, device: str, token: str, seconds: float, address: str) -> None:
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
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    url, device_id, device_token, duration, ice = sys.argv[1:6]
    asyncio.run(main(url, device_id, device_token, float(duration), ice))
