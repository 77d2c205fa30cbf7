"""Encoded media, never decoded: the tap that takes encoded frames out of aiortc's receivers
(`tap`), just enough bitstream parsing to know keyframes and picture sizes (`bitstream`),
audio/video alignment from RTCP sender reports (`timeline`), the segmented recorder that
seals as it writes (`recorder`), the relay of frames to live viewers (`relay`), crash
recovery of open segments (`recovery`), the free-space floor under which recording stops
(`disk`) and which addresses ICE offers (`ice`).

The hot path lives here: per frame, a few dict and queue operations on the event loop; file
I/O, fsync, hashing and encryption on writer threads. May import: evidence (the sealed
format, session keys), the store and the foundations. Never the gateway.
"""
