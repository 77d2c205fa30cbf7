"""Typed application keys: how handlers reach the gateway's long-lived objects."""

from __future__ import annotations

from aiohttp import web

from ..clock import Clock
from ..config import Config
from ..metrics import Metrics
from ..store import Store
from .sessions import SessionManager

config_key = web.AppKey("config", Config)
clock_key = web.AppKey("clock", Clock)
store_key = web.AppKey("store", Store)
metrics_key = web.AppKey("metrics", Metrics)
sessions_key = web.AppKey("sessions", SessionManager)
