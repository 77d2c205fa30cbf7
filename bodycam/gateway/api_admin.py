"""The REST API of administration (`/api/v1/users`, `/api/v1/devices`): people and body
cameras. Thin handlers over `users` and `devices`; every act is a register entry."""

from __future__ import annotations

import asyncio

from aiohttp import web

from .. import access, devices, users
from ..clock import iso
from ..models import Action
from . import auth
from .appkeys import clock_key, store_key
from .params import PREFIX, json_body, strings


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get(f"{PREFIX}/users", list_users)
    r.add_post(f"{PREFIX}/users", add_user)
    r.add_get(f"{PREFIX}/devices", list_devices)
    r.add_post(f"{PREFIX}/devices", add_device)
    r.add_post(f"{PREFIX}/devices/{{device_id}}/revoke", revoke_device)


async def list_users(request: web.Request) -> web.Response:
    auth.require(request, access.ADMINISTRATION, "administer accounts")
    store = request.app[store_key]
    return web.json_response([u.to_json() for u in await store.run(store.list_users)])


async def add_user(request: web.Request) -> web.Response:
    """POST {"name", "role", "service", "password"}: a supervisor's act only (an account
    made by an admin could give its maker rights the admin role does not have)."""
    person = auth.require(request, access.USER_ADMINISTRATION, "create accounts")
    body = await json_body(request)
    fields = strings(body, "name", "role", "service", "password")
    store, now = request.app[store_key], request.app[clock_key].now()
    made, password_hash = await asyncio.to_thread(
        users.new_account,
        fields["name"],
        fields["role"],
        fields["password"],
        fields["service"],
        now,
    )
    await store.run(users.keep_account, store, made, password_hash)
    await auth.record(
        request,
        Action.USER_ADDED,
        person,
        detail=f"{made.name} ({made.role}, {made.service or 'no service'})",
    )
    return web.json_response(made.to_json(), status=201)


async def list_devices(request: web.Request) -> web.Response:
    auth.require(request, access.ADMINISTRATION, "administer devices")
    store = request.app[store_key]
    return web.json_response(
        [
            {
                "id": d.id,
                "officer": d.officer,
                "created_at": iso(d.created_at),
                "revoked_at": iso(d.revoked_at) if d.revoked_at else None,
                "serial": d.serial,
                "model": d.model,
            }
            for d in await store.run(store.list_devices)
        ]
    )


async def add_device(request: web.Request) -> web.Response:
    """POST {"id", "officer"}: enrol a body camera; its token is in this answer only."""
    person = auth.require(request, access.ADMINISTRATION, "administer devices")
    body = await json_body(request)
    fields = strings(body, "id", "officer")
    device_id, officer = fields["id"], fields["officer"]
    store, now = request.app[store_key], request.app[clock_key].now()
    token = await store.run(devices.enroll, store, device_id, officer, now)
    await auth.record(request, Action.DEVICE_ADDED, person, detail=f"{device_id} ({officer})")
    return web.json_response({"id": device_id, "officer": officer, "token": token}, status=201)


async def revoke_device(request: web.Request) -> web.Response:
    person = auth.require(request, access.ADMINISTRATION, "administer devices")
    device_id = request.match_info["device_id"]
    store, now = request.app[store_key], request.app[clock_key].now()
    await store.run(devices.revoke, store, device_id, now)
    await auth.record(request, Action.DEVICE_REVOKED, person, detail=device_id)
    return web.Response(status=204)
