"""Reading what a request carries: JSON bodies and bounded numbers, with errors that name the
field. Every API handler parses through here, so bad input gets the same clear answer
(400/415) everywhere."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from ..errors import BadRequest, UnsupportedMediaType

PREFIX = "/api/v1"
# WHIP and WHEP answers (and errors) let a page on another origin read them
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "Location, Accept-Post, Link, ETag",
}


async def json_body(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object (the size limit is aiohttp's `client_max_size`)."""
    if request.content_type != "application/json":
        raise UnsupportedMediaType(f"expected application/json, got {request.content_type}")
    try:
        body = await request.json()
    except ValueError as err:
        raise BadRequest(f"the body is not JSON: {err}") from None
    except RecursionError:  # `[[[…` ten thousand deep fits in the size limit
        raise BadRequest("the body is JSON nested too deeply") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


def number(
    values: Mapping[str, Any],
    name: str,
    low: float,
    high: float,
    default: float | None = None,
    integer: bool = False,
) -> float:
    """A bounded number from a query string or a JSON body, or BadRequest naming it."""
    raw = values.get(name)
    if raw is None:
        if default is None:
            raise BadRequest(f"{name}: required")
        return default
    try:
        value = float(raw) if not isinstance(raw, bool) else math.nan
    except (TypeError, ValueError, OverflowError):  # OverflowError: a JSON integer of 400 digits
        value = math.nan
    if not (math.isfinite(value) and low <= value <= high) or (integer and value != int(value)):
        kind = "an integer" if integer else "a number"
        raise BadRequest(f"{name}: {kind} between {low:g} and {high:g} is required, got {raw!r}")
    return value


def strings(body: Mapping[str, Any], *names: str, default: str | None = "") -> dict[str, str]:
    """Several text fields of a JSON body; BadRequest naming them if one is not text."""
    found: dict[str, str] = {}
    for name in names:
        value = body.get(name, default)
        if not isinstance(value, str):
            raise BadRequest(f"{', '.join(names)}: text is required ({name} is not)")
        found[name] = value
    return found
