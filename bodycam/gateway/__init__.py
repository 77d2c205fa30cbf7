"""The running server: the aiohttp application (`app`: `create_app`, every long-lived
resource a cleanup context, AppKeys in `appkeys`), people's logins and the access checks
(`auth`), WHIP ingest (`whip`, `connection`, `telemetry`) and the sessions it feeds
(`sessions`), WHEP live views (`whep`, `viewers`), alerts (`alerts`), live geolocation and
PTZ aiming (`tracking`), the fixed cameras over VAPIX (`vapix`, `health`), and the REST API
as thin handlers (`api_live`, `api_evidence`, `api_admin`; `params` reads requests,
`streaming` sends what a thread produces).

May import: the domains (media, evidence, live, geo, users, devices), the store and the
foundations; `app` alone imports the console (`ui`) to mount it.
"""
