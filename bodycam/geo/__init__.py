"""Where the officer is, and which cameras can see them: local metric geometry, sectors and
lines of sight (`geometry`), the camera index and the ranking with reasons (`selection`),
streets (`places`), PTZ aiming (`ptz`), the GPS filter (`track`) and the GeoJSON registry of
cameras and places (`registry`). Mostly pure functions of plain data.

May import: the store (the registry's imports) and the foundations.
"""
