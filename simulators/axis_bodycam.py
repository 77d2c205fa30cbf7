"""Simulated Axis W110 body camera: push button, WHIP uplink, GPS and battery telemetry, link loss.

As a library (tests, fleets)::

    async with AxisBodycam("http://127.0.0.1:8080", "cam-17", token) as cam:
        await cam.run_timeline([(0.0, "press"), (5.0, "drop", 3.0), (12.0, "press")])

As a program::

    python -m simulators.axis_bodycam --gateway http://127.0.0.1:8080 --device cam-17 --token T

The button toggles: idle → live (WHIP POST); live → idle (a `button` telemetry message, then
DELETE). A link drop makes the camera vanish silently and come back with a new WHIP POST, as a
real camera on 4G does. Telemetry is one JSON object per data channel message: `hello` and
`battery` on open, `position` every second, `battery` every ten.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import functools
import hashlib
import json
import logging
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from simulators import configure_logging
from simulators.gps import RUNNING_SPEED, WALKING_SPEED, Walk, load_route
from simulators.media import (
    EncodedLoop,
    LiveVideoTrack,
    LoopCache,
    LoopTrack,
    MediaClock,
    MediaCounters,
    MediaSettings,
    encode_audio_loop,
    encode_video_loop,
)
from simulators.whip import WhipError, WhipPublisher, default_ice_addresses, whip_endpoint

logger = logging.getLogger(__name__)

MODEL = "AXIS W110"
DEFAULT_FIRMWARE = "10.12.3"
BUTTON_GRACE = 0.2  # seconds for the button message to go out before the DELETE


def _ice_addresses_for(endpoints: Sequence[str]) -> list[str]:
    """Loopback when every gateway is on this host, else every interface (empty list)."""
    found = [default_ice_addresses(url) for url in endpoints]
    return [] if [] in found else sorted({a for addresses in found for a in addresses})


def axis_serial(device_id: str) -> str:
    """A stable Axis-like serial number (vendor prefix ACCC8E) derived from the device id."""
    return "ACCC8E" + hashlib.sha256(device_id.encode()).hexdigest()[:6].upper()


def device_seed(device_id: str) -> int:
    """A stable seed for the device's GPS noise."""
    return int.from_bytes(hashlib.sha256(b"gps:" + device_id.encode()).digest()[:4], "big")


@dataclass
class Battery:
    """A battery that drains faster while streaming (or trying to) and stops at empty."""

    percent: float = 100.0
    drain_live: float = 1.0  # percent per minute
    drain_idle: float = 0.1
    since: float = 0.0
    live: bool = False

    def level(self, now: float) -> float:
        """Charge in percent at monotonic time `now`."""
        rate = self.drain_live if self.live else self.drain_idle
        return max(0.0, self.percent - rate * (now - self.since) / 60.0)

    def switch(self, live: bool, now: float) -> None:
        """Start draining at the live or idle rate from `now`."""
        self.percent, self.since, self.live = self.level(now), now, live


class AxisBodycam:
    """One simulated body camera; its state is `idle`, `live` or `dropped`."""

    model = MODEL

    def __init__(
        self,
        gateway: str,
        device_id: str,
        token: str,
        *,
        media: MediaSettings | None = None,
        walk: Walk | None = None,
        firmware: str = DEFAULT_FIRMWARE,
        battery: Battery | None = None,
        ice_addresses: Sequence[str] | None = None,
        loop_cache: LoopCache | None = None,
        label: str | None = None,
        position_interval: float = 1.0,
        battery_every: int = 10,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # A real device has a primary gateway and backups: the next is tried when the link
        # to one fails (a comma-separated list, or one URL).
        self.endpoints = [whip_endpoint(url.strip()) for url in gateway.split(",") if url.strip()]
        if not self.endpoints:
            raise ValueError("no gateway URL")
        self._gateway = 0
        self.device_id = device_id
        self.serial = axis_serial(device_id)
        self.firmware = firmware
        self.media = media or MediaSettings()
        self.walk = walk or Walk(seed=device_seed(device_id))
        self.ice_addresses = (
            list(ice_addresses) if ice_addresses is not None else _ice_addresses_for(self.endpoints)
        )
        self.counters = MediaCounters()
        self.reconnects = 0
        self.last_error: str | None = None
        self.session_url: str | None = None
        self._token = token
        # A fleet passes a shared label and cache so identical loops are encoded once.
        self._label = label or device_id
        self._cache = loop_cache or LoopCache()
        self._position_interval = position_interval
        self._battery_every = battery_every
        self._clock = clock
        self._epoch = clock()
        self._switched_on = time.time()
        self._battery = battery or Battery()
        self._battery.since = self._epoch
        self._state = "idle"
        self._lock = asyncio.Lock()
        self._http: aiohttp.ClientSession | None = None
        self._publisher: WhipPublisher | None = None
        self._telemetry: asyncio.Task[None] | None = None
        self._reconnect: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()

    @property
    def endpoint(self) -> str:
        """The WHIP endpoint the camera publishes to now."""
        return self.endpoints[self._gateway]

    def _next_gateway(self) -> None:
        if len(self.endpoints) > 1:
            self._gateway = (self._gateway + 1) % len(self.endpoints)
            logger.info("%s: trying gateway %s", self.device_id, self.endpoint)

    @property
    def user_agent(self) -> str:
        """The User-Agent of the camera's HTTP requests."""
        return f"{MODEL}/{self.firmware} bodycam-simulator"

    @property
    def state(self) -> str:
        """`idle`, `live` or `dropped` (link lost, reconnecting)."""
        return self._state

    @property
    def battery(self) -> float:
        """Battery charge in percent."""
        return self._battery.level(self._clock())

    @property
    def frames_sent(self) -> int:
        """Video frames handed to the network, over all sessions."""
        return self.counters.video_frames

    def _set_state(self, state: str) -> None:
        if state != self._state:
            logger.info("%s: %s -> %s", self.device_id, self._state, state)
            self._state = state
            self._battery.switch(state != "idle", self._clock())

    async def __aenter__(self) -> AxisBodycam:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def prepare(self) -> None:
        """Encode the loops this camera needs now, so a press goes live at once."""
        await self._audio_loop()
        if self.media.encode == "loop":
            await self._video_loop()

    async def _audio_loop(self) -> EncodedLoop:
        media = self.media
        # The sound depends on none of the picture settings: one loop serves a whole fleet.
        key = ("audio", media.flash_interval, media.flash_offset, media.fps, media.audio_bitrate)
        return await self._cache.get(key, functools.partial(encode_audio_loop, media))

    async def _video_loop(self) -> EncodedLoop:
        key = ("video", self._label, self.media)
        return await self._cache.get(
            key, functools.partial(encode_video_loop, self._label, self.media)
        )

    async def press(self) -> None:
        """Press the button: go live when idle, stop when live or reconnecting."""
        async with self._lock:
            if self._state == "idle":
                for attempt in range(len(self.endpoints)):
                    try:
                        await self._publish()
                        break
                    except WhipError as err:
                        self.last_error = str(err)
                        away = err.status is None or err.status >= 500
                        if not away or attempt == len(self.endpoints) - 1:
                            raise
                        logger.warning("%s: %s", self.device_id, err)
                        self._next_gateway()
            elif self._state == "live":
                await self._stop()
            else:
                await self._cancel_reconnect()
                self._set_state("idle")

    async def drop_link(self, seconds: float) -> None:
        """Lose the network for `seconds` (silence, no goodbye), then publish anew."""
        async with self._lock:
            if self._state != "live" or self._publisher is None:
                raise RuntimeError(f"{self.device_id} is {self._state}: no link to drop")
            publisher, self._publisher = self._publisher, None
            self._set_state("dropped")
            self._stop_telemetry()
            await publisher.vanish()
            self._reconnect = back = asyncio.create_task(
                self._come_back(seconds, publisher.release)
            )
        # Waiting on the task, not awaiting it, lets a press cancel it without raising here.
        await asyncio.wait({back})

    async def run_timeline(self, steps: Sequence[tuple[Any, ...]]) -> None:
        """Run `(at_seconds, action, *args)` steps: press, drop (seconds), wait."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        for at, action, *args in sorted(steps, key=lambda step: step[0]):
            await asyncio.sleep(max(0.0, start + at - loop.time()))
            if action == "press":
                await self.press()
            elif action == "drop":
                await self.drop_link(float(args[0]))
            elif action != "wait":
                raise ValueError(f"unknown timeline action {action!r}")

    async def close(self) -> None:
        """Switch the camera off: stop streaming cleanly if live, release everything."""
        async with self._lock:
            if self._state == "live":
                await self._stop()
            await self._cancel_reconnect()
            self._set_state("idle")
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.wait(list(self._background))
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def _tracks(self) -> tuple[LiveVideoTrack | LoopTrack, LoopTrack]:
        clock = MediaClock()
        audio = LoopTrack("audio", await self._audio_loop(), clock, self.counters)
        if self.media.encode == "loop":
            video = LoopTrack("video", await self._video_loop(), clock, self.counters)
            return video, audio
        live = LiveVideoTrack(self._label, self.media, clock, self.counters, self._switched_on)
        return live, audio

    async def _publish(self) -> None:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
        video, audio = await self._tracks()
        publisher = WhipPublisher(
            self._http,
            self.endpoint,
            self._token,
            self.user_agent,
            self.ice_addresses,
            name=self.device_id,
            on_open=self._channel_open,
        )
        publisher.on_lost = self._link_lost
        try:
            await publisher.publish(video, audio, self.media.codec)
        except BaseException:
            video.stop()
            audio.stop()
            raise
        self._publisher = publisher
        self.session_url = publisher.location
        self._set_state("live")

    async def _stop(self) -> None:
        publisher, self._publisher = self._publisher, None
        assert publisher is not None
        channel = publisher.channel
        if channel is not None and channel.readyState == "open":
            self._send(channel, {"type": "button", "action": "press"})
            # SCTP sends asynchronously: give the message time to leave before the teardown.
            await asyncio.sleep(BUTTON_GRACE)
        self._stop_telemetry()
        self._set_state("idle")
        try:
            await publisher.unpublish()
        except WhipError as err:
            self.last_error = str(err)
            logger.warning("%s: %s", self.device_id, err)

    async def _come_back(self, delay: float, release: Callable[[], None]) -> None:
        try:
            await asyncio.sleep(delay)
        finally:
            release()
        backoff = 1.0
        while True:
            async with self._lock:
                if self._state != "dropped":
                    return
                try:
                    await self._publish()
                except WhipError as err:
                    self.last_error = str(err)
                    logger.warning("%s: reconnect failed: %s", self.device_id, err)
                    if err.status is None or err.status >= 500:  # that gateway is away
                        self._next_gateway()
                else:
                    self.reconnects += 1
                    return
            await asyncio.sleep(backoff)
            backoff = min(2 * backoff, 15.0)

    async def _cancel_reconnect(self) -> None:
        task, self._reconnect = self._reconnect, None
        if task is not None and not task.done():
            task.cancel()
            # Let it run its cleanup (closing the sockets a vanished link kept) before going on.
            await asyncio.wait({task})

    def _link_lost(self, publisher: WhipPublisher, reason: str) -> None:
        if publisher is not self._publisher:
            return
        logger.warning("%s: %s", self.device_id, reason)
        self.last_error = reason
        self._publisher = None
        self._stop_telemetry()
        if reason == "closed by gateway":
            # The gateway ended the session (an operator closed it): nothing to resume.
            self._set_state("idle")
            return
        # A failed connection (ICE consent lost, or the gateway silent: see WhipPublisher)
        # is a link loss the camera notices itself; a backup gateway is tried first.
        self._set_state("dropped")
        self._next_gateway()
        self._spawn(publisher.close())
        # a backup gateway is another machine: no reason to wait before trying it
        delay = 0.0 if len(self.endpoints) > 1 else 1.0
        self._reconnect = asyncio.create_task(self._come_back(delay, publisher.release))

    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _channel_open(self, channel: Any) -> None:
        self._stop_telemetry()
        self._telemetry = asyncio.create_task(self._send_telemetry(channel))

    def _stop_telemetry(self) -> None:
        if self._telemetry is not None:
            self._telemetry.cancel()
            self._telemetry = None

    def _send(self, channel: Any, message: dict[str, Any]) -> None:
        channel.send(json.dumps(message, separators=(",", ":")))

    def position(self) -> dict[str, Any]:
        """The position telemetry message the camera would send now."""
        fix = self.walk.fix(self._clock() - self._epoch, datetime.datetime.now(datetime.UTC))
        return fix.message()

    async def _send_telemetry(self, channel: Any) -> None:
        hello = {"type": "hello", "serial": self.serial, "model": MODEL, "firmware": self.firmware}
        self._send(channel, hello)
        loop = asyncio.get_running_loop()
        start, tick = loop.time(), 0
        while channel.readyState == "open":
            if tick % self._battery_every == 0:
                self._send(channel, {"type": "battery", "percent": round(self.battery, 1)})
            self._send(channel, self.position())
            tick += 1
            await asyncio.sleep(max(0.0, start + tick * self._position_interval - loop.time()))


def _size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    return int(width), int(height)


def _speed(text: str) -> float:
    named = {"walk": WALKING_SPEED, "run": RUNNING_SPEED}
    return named[text] if text in named else float(text)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options of the simulator."""
    parser = argparse.ArgumentParser(
        prog="python -m simulators.axis_bodycam", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--gateway",
        required=True,
        help="gateway base URL (or its /whip URL); several, comma-separated, are tried in turn"
        " when the link to one fails (a primary and its backups)",
    )
    parser.add_argument("--device", required=True, help="device id, as enrolled")
    parser.add_argument("--token", required=True, help="device bearer token")
    parser.add_argument("--duration", type=float, help="seconds live (default: until Ctrl-C)")
    parser.add_argument("--codec", choices=("h264", "vp8"), default="h264")
    parser.add_argument("--size", type=_size, default=(1280, 720), help="WIDTHxHEIGHT")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--bitrate", type=int, help="video bit/s (default scales with size)")
    parser.add_argument("--encode", choices=("live", "loop"), default="live")
    parser.add_argument("--loop-seconds", type=int, default=9)
    parser.add_argument("--route", help="GeoJSON LineString file, or a demo route name")
    parser.add_argument("--speed", type=_speed, default=WALKING_SPEED, help="walk, run or m/s")
    parser.add_argument("--end", choices=("loop", "bounce"), default="loop")
    parser.add_argument("--firmware", default=DEFAULT_FIRMWARE)
    parser.add_argument(
        "--ice-address",
        nargs="*",
        action="extend",
        dest="ice_addresses",
        help="addresses/interfaces/networks ICE may offer (none given: all interfaces)",
    )
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> int:
    """Press, stay live for the duration (or until interrupted), press again."""
    try:
        media = MediaSettings(
            codec=args.codec,
            width=args.size[0],
            height=args.size[1],
            fps=args.fps,
            bitrate=args.bitrate,
            encode=args.encode,
            loop_seconds=args.loop_seconds,
        )
        route = load_route(args.route) if args.route else None
    except (OSError, ValueError) as err:
        logger.error("%s: bad options: %s", args.device, err)
        return 2
    walk = Walk(route=route, speed=args.speed, end=args.end, seed=device_seed(args.device))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    try:
        return await _run_camera(args, media, walk, stop)
    finally:
        for signum in signals:
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(signum)


async def _run_camera(
    args: argparse.Namespace, media: MediaSettings, walk: Walk, stop: asyncio.Event
) -> int:
    async with AxisBodycam(
        args.gateway,
        args.device,
        args.token,
        media=media,
        walk=walk,
        firmware=args.firmware,
        ice_addresses=args.ice_addresses,
    ) as cam:
        await cam.prepare()
        try:
            await cam.press()
        except (WhipError, ValueError) as err:
            logger.error("%s: cannot go live: %s", args.device, err)
            return 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), args.duration)
        logger.info(
            "%s: %d frames sent, %d reconnects", args.device, cam.frames_sent, cam.reconnects
        )
        await cam.press()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m simulators.axis_bodycam`."""
    args = parse_args(argv)
    configure_logging(args.log_level)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
