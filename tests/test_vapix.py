"""The gateway's VAPIX client against the Axis camera simulator, errors included."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bodycam.errors import ConfigError
from bodycam.gateway.vapix import (
    CameraAuthFailed,
    CameraNotConfigured,
    CameraRefused,
    CameraUnreachable,
    Login,
    Vapix,
    load_credentials,
)
from bodycam.geo.ptz import Aim
from bodycam.models import Camera, CameraKind
from simulators.axis_camera import AxisCameraSimulator, SimCamera


@pytest.fixture
async def sim() -> AsyncIterator[AxisCameraSimulator]:
    cameras = [
        SimCamera("ptz-1", "Place de la Comédie", kind="ptz", password="s3cret"),
        SimCamera("fixed-1", "Rue Serpenoise", kind="fixed", password="s3cret"),
    ]
    async with AxisCameraSimulator(cameras) as simulator:
        yield simulator


@pytest.fixture
async def vapix() -> AsyncIterator[Vapix]:
    client = Vapix({"csu": Login("root", "s3cret"), "old": Login("root", "wrong")}, 2.0)
    yield client
    await client.close()


def camera(sim: AxisCameraSimulator, cid: str, ref: str = "csu", **kwargs: str) -> Camera:
    kind = CameraKind(sim.camera(cid).kind)
    url = kwargs.pop("vapix_url", sim.base_url(cid).rstrip("/"))  # the slash is optional
    return Camera(cid, cid, kind, 49.1, 6.1, 0, 60, 100, vapix_url=url, credentials_ref=ref)


async def test_device_info(sim: AxisCameraSimulator, vapix: Vapix) -> None:
    info = await vapix.device_info(camera(sim, "ptz-1"))
    assert info.serial == sim.camera("ptz-1").serial
    assert info.model == "Q6075-E"
    assert info.firmware


async def test_move_then_read_back_the_position(sim: AxisCameraSimulator, vapix: Vapix) -> None:
    ptz = camera(sim, "ptz-1")
    await vapix.move(ptz, Aim(-123.45, -12.5, 2500))
    assert sim.camera("ptz-1").moves == [(-123.45, -12.5, 2500.0)]
    assert await vapix.position(ptz) == Aim(-123.45, -12.5, 2500)


async def test_wrong_password(sim: AxisCameraSimulator, vapix: Vapix) -> None:
    with pytest.raises(CameraAuthFailed, match="camera ptz-1: credentials 'old' refused"):
        await vapix.device_info(camera(sim, "ptz-1", ref="old"))


async def test_offline_camera(sim: AxisCameraSimulator, vapix: Vapix) -> None:
    sim.set_online("ptz-1", False)
    with pytest.raises(
        CameraUnreachable, match=r"camera ptz-1: no answer from http://127\.0\.0\.1"
    ):
        await vapix.move(camera(sim, "ptz-1"), Aim(0, 0, 1))
    sim.set_online("ptz-1", True)
    await vapix.move(camera(sim, "ptz-1"), Aim(0, 0, 1))


async def test_nothing_listens(vapix: Vapix, unused_tcp_port: int) -> None:
    dead = Camera(
        "gone", "gone", CameraKind.PTZ, 49.1, 6.1, 0, 60, 100,
        vapix_url=f"http://127.0.0.1:{unused_tcp_port}/", credentials_ref="csu",
    )  # fmt: skip
    with pytest.raises(CameraUnreachable, match="camera gone: no answer"):
        await vapix.device_info(dead)


async def test_a_fixed_camera_refuses_ptz(sim: AxisCameraSimulator, vapix: Vapix) -> None:
    with pytest.raises(CameraRefused, match=r"camera fixed-1: axis-cgi/com/ptz\.cgi answered 400"):
        await vapix.move(camera(sim, "fixed-1"), Aim(10, 0, 1))


@pytest.mark.parametrize(
    ("ref", "url", "message"),
    [
        ("nobody", None, "camera ptz-1: no credentials named 'nobody'"),
        ("csu", "", "camera ptz-1: no VAPIX URL in the registry"),
    ],
)
async def test_not_configured(
    sim: AxisCameraSimulator, vapix: Vapix, ref: str, url: str | None, message: str
) -> None:
    cam = camera(sim, "ptz-1", ref=ref, **({} if url is None else {"vapix_url": url}))
    with pytest.raises(CameraNotConfigured, match=message):
        await vapix.device_info(cam)


def test_credentials_file(tmp_path: Path) -> None:
    path = tmp_path / "camera-credentials.toml"
    assert load_credentials(path) == {}  # none yet: cameras are "not configured"
    path.write_text('[csu-metz]\nusername = "root"\npassword = "p"\n')
    assert load_credentials(path) == {"csu-metz": Login("root", "p")}
    path.write_text('[csu-metz]\nusername = "root"\n')
    with pytest.raises(ConfigError, match=r"\[csu-metz\] needs username and password"):
        load_credentials(path)
    path.write_text("[csu-metz\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_credentials(path)
