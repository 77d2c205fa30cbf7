"""Typed application keys: how handlers reach the gateway's long-lived objects."""

from __future__ import annotations

from aiohttp import web

from ..clock import Clock
from ..config import Config
from ..evidence.keyring import Keyring
from ..live.base import LiveState
from ..metrics import Metrics
from ..store import Store
from .health import HealthMonitor
from .logins import LoginWatch
from .sessions import SessionManager
from .tracking import Tracker
from .vapix import Vapix

config_key = web.AppKey("config", Config)
clock_key = web.AppKey("clock", Clock)
store_key = web.AppKey("store", Store)
metrics_key = web.AppKey("metrics", Metrics)
sessions_key = web.AppKey("sessions", SessionManager)
live_key = web.AppKey("live", LiveState)  # events, live positions, session holders
vapix_key = web.AppKey("vapix", Vapix)
tracker_key = web.AppKey("tracker", Tracker)
health_key = web.AppKey("health", HealthMonitor)
keyring_key = web.AppKey("keyring", Keyring)  # session keys (wrapped), the signing key
login_watch_key = web.AppKey("login_watch", LoginWatch)  # consoles, views by their login
