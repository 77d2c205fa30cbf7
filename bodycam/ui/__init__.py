"""The CSU operator console: the page (`static/`, plain HTML, CSS and ES modules, French
first), its routes (`routes`), its live updates over a WebSocket (`ws`) and the fixed
cameras' MJPEG relayed to its tiles (`feeds`). `docs/console.md` is the contract between
the page and the server.

Part of the running server. May import: the gateway (its auth, AppKeys, VAPIX client and
live state) and everything below it. Only `gateway.app` imports this package, to mount it.
"""
