"""The demo city holds together: it imports, fits the officers' routes, and covers them."""

from __future__ import annotations

import pytest

from simulators.data.metz import check
from simulators.data.metz.make_city import HERE


def test_the_demo_city_covers_the_routes(capsys: pytest.CaptureFixture[str]) -> None:
    assert check.check(HERE), capsys.readouterr().out
