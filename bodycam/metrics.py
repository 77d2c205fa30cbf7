"""Prometheus metrics of one gateway, in a registry of its own (no process-global state)."""

from __future__ import annotations

import re
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

Change = tuple[str, dict[str, Any], float]  # sample name, its labels, what it gained

# Glass-to-gateway delay buckets: fine where loopback and LAN latencies fall.
DELAY_BUCKETS = (
    0.005,
    0.01,
    0.015,
    0.02,
    0.025,
    0.03,
    0.035,
    0.04,
    0.045,
    0.05,
    0.06,
    0.07,
    0.08,
    0.09,
    0.1,
    0.125,
    0.15,
    0.2,
    0.3,
    0.5,
    1.0,
    2.0,
)


# A worker's label values: short words only (a kind, a reason, a path), so that it cannot
# make the main process keep an unbounded number of series.
LABEL_VALUE = re.compile(r"[a-z_]{1,32}|\+Inf|[0-9.]{1,12}")


def _known(labels: dict[str, Any]) -> bool:
    return len(labels) <= 3 and all(
        isinstance(v, str) and LABEL_VALUE.fullmatch(v) for v in labels.values()
    )


class Metrics:
    """The gateway's counters, gauges and histograms."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.sessions_live = Gauge("bodycam_sessions_live", "Sessions currently live", registry=r)
        self.sessions_started = Counter("bodycam_sessions_started", "Sessions started", registry=r)
        self.reconnects = Counter(
            "bodycam_session_reconnects", "Reconnects that continued a session", registry=r
        )
        self.takeovers = Counter(
            "bodycam_session_takeovers",
            "Sessions taken over from another node (dead, or that the camera could not reach)",
            registry=r,
        )
        self.whip_requests = Counter(
            "bodycam_whip_requests", "WHIP requests by outcome", ["method", "status"], registry=r
        )
        self.frames = Counter(
            "bodycam_ingest_frames", "Encoded frames received", ["kind"], registry=r
        )
        self.frames_incomplete = Counter(
            "bodycam_ingest_incomplete_frames",
            "Video frames given up on: a packet lost and not retransmitted in time",
            registry=r,
        )
        self.rtp_packets = Counter(
            "bodycam_ingest_rtp_packets",
            # lean: bodycam's receive path; aiortc: aiortc's (a stream's first packets,
            # retransmissions, and all of them with [media] receive = "aiortc")
            "RTP packets received, by the path that parsed them",
            ["path"],
            registry=r,
        )
        self.frames_recorded = Counter(
            "bodycam_recorded_frames", "Frames written to segments", ["kind"], registry=r
        )
        self.frames_dropped = Counter(
            "bodycam_recording_dropped_frames",
            # before_keyframe, writer_behind (a slow disk), disk_full (under the floor),
            # write_failed (the file system refused a write)
            "Frames not recorded, by reason",
            ["reason"],
            registry=r,
        )
        self.disk_free = Gauge(
            "bodycam_disk_free_bytes", "Free bytes on the recordings' filesystem", registry=r
        )
        self.recording_stopped = Gauge(
            "bodycam_recording_stopped",
            "1 while recording is stopped (free space under recording.min_free_bytes)",
            registry=r,
        )
        self.recording_errors = Counter(
            "bodycam_recording_errors", "Failures of the recording writer (see the log)", registry=r
        )
        self.segments = Counter("bodycam_segments_sealed", "Segments closed and hashed", registry=r)
        self.bytes_recorded = Counter(
            "bodycam_recorded_bytes", "Bytes of sealed segments", registry=r
        )
        self.keyframe_requests = Counter(
            "bodycam_keyframe_requests", "PLIs sent to cameras", registry=r
        )
        self.telemetry = Counter(
            "bodycam_telemetry_messages", "Telemetry messages by type", ["type"], registry=r
        )
        self.telemetry_invalid = Counter(
            "bodycam_telemetry_invalid", "Telemetry messages rejected", registry=r
        )
        self.positions = Counter(
            "bodycam_gps_fixes",
            "GPS fixes of live sessions, by filter verdict",
            ["verdict"],
            registry=r,
        )
        self.selection_changes = Counter(
            "bodycam_selection_changes", "Changes of an officer's camera selection", registry=r
        )
        self.ptz_commands = Counter(
            "bodycam_ptz_commands", "Automatic PTZ moves, by outcome", ["outcome"], registry=r
        )
        self.cameras = Gauge(
            "bodycam_cameras", "Cameras of the registry by health state", ["state"], registry=r
        )
        self.viewers = Gauge("bodycam_viewers", "Live views (WHEP) open", registry=r)
        self.event_loop_tasks = Gauge(
            "bodycam_event_loop_tasks", "Tasks of the gateway's event loop", registry=r
        )
        self.heap_in_use = Gauge(
            "bodycam_heap_in_use_bytes", "C heap bytes the process holds (glibc)", registry=r
        )
        self.heap_free = Gauge(
            "bodycam_heap_free_bytes",
            "C heap bytes free but kept by the allocator, not yet trimmed (glibc)",
            registry=r,
        )
        self.frame_delay = Histogram(
            "bodycam_ingest_frame_delay_seconds",
            "Capture (sender clock) to frame complete at the gateway, video",
            buckets=DELAY_BUCKETS,
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # A media worker counts in a `Metrics` of its own and sends what changed; the main
    # process adds it to its own (one /metrics for the gateway, whatever runs where).

    def changes(self, sent: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> list[Change]:
        """What the counters and histogram buckets gained since `sent` (updated)."""
        changes: list[Change] = []
        for family in self.registry.collect():
            if family.type not in ("counter", "histogram"):
                continue
            for sample in family.samples:
                if not sample.name.endswith(("_total", "_bucket", "_sum")):
                    continue
                key = (sample.name, tuple(sorted(sample.labels.items())))
                gained = sample.value - sent.get(key, 0.0)
                if gained:
                    sent[key] = sample.value
                    changes.append((sample.name, sample.labels, gained))
        return changes

    def add(self, changes: list[Change]) -> None:
        """Add a worker's `changes` to these counters and to the frame delay histogram
        (unknown names are ignored: a worker of another version)."""
        counters = self._counters()
        delay = self.frame_delay
        buckets: dict[float, float] = {}
        for change in changes:
            try:
                name, labels, gained = change
                gained = float(gained)
            except (TypeError, ValueError):
                continue  # one bad item, not the batch
            if not gained > 0 or not isinstance(labels, dict) or not _known(labels):
                continue
            if name.endswith("_total") and name[: -len("_total")] in counters:
                counter = counters[name[: -len("_total")]]
                try:
                    (counter.labels(**labels) if labels else counter).inc(gained)
                except ValueError:  # labels this counter does not have
                    continue
            elif name == f"{delay._name}_bucket" and "le" in labels:
                buckets[float(labels["le"])] = gained
            elif name == f"{delay._name}_sum":
                delay._sum.inc(gained)  # prometheus_client's own fields: no public way
        # the buckets came cumulative (le), prometheus_client keeps each bucket's own count
        below = 0.0
        for index, bound in enumerate(delay._upper_bounds):
            if bound in buckets:
                delay._buckets[index].inc(buckets[bound] - below)
                below = buckets[bound]

    def _counters(self) -> dict[str, Counter]:
        return {c._name: c for c in vars(self).values() if isinstance(c, Counter)}
