"""What the law requires of recordings (CSI L241-2, R241-10 to R241-14): sealed segments
(`sealed`: AES-256-GCM chunks), the keys (`keyring`: a session key per session, wrapped by
a master key kept out of the database, and the signing key of bundles), the access register
(`register`: verify, CSV), retention (`retention`, pure decisions on dates) and the purge
that destroys expired sessions (`purge`), legal holds (`holds`), reading recordings back
(`recordings`: verify, remux, search), viewing them without a copy (`viewing`: signed
grants, chunks for the console's player) and signed export bundles (`bundle`: build and
verify).

The command line and the API call these same functions. May import: the store and the
foundations. Never the media path, the gateway or aiohttp.
"""
