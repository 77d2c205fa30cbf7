"""What bench/ingest.py reads: process and host figures from /proc, Prometheus text.

Linux only. CPU times include every thread of a process; histogram quantiles are
interpolated linearly within a bucket, as Prometheus's ``histogram_quantile`` does.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """utime + stime of a process (all its threads), or of one of its threads, in seconds."""
    path = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    text = Path(path).read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mb(pid: int) -> float:
    """Resident set size of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def family(pid: int) -> list[int]:
    """A process and its children (a gateway's media workers)."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            children += [int(c) for c in (task / "children").read_text().split()]
    return [pid, *children]


def family_cpu_seconds(pid: int) -> float:
    """`cpu_seconds` of a process and its children together."""
    total = 0.0
    for member in family(pid):
        with contextlib.suppress(OSError):  # (a child that just ended)
            total += cpu_seconds(member)
    return total


def family_rss_mb(pid: int) -> float:
    """`rss_mb` of a process and its children together."""
    total = 0.0
    for member in family(pid):
        with contextlib.suppress(OSError):
            total += rss_mb(member)
    return total


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # guest time is already counted in user
    return total - idle, total


def udp_receive_buffer_errors() -> int:
    """Datagrams the kernel dropped for want of socket buffer space (all of this host)."""
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines()]
    header, values = [pair for pair in lines if pair[0] == "Udp:"][:2]
    return int(values[header.index("RcvbufErrors")])


_LINE = re.compile(r"^([A-Za-z_:][\w:]*)(?:\{([^}]*)\})?\s+(\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse_metrics(text: str) -> Samples:
    """Prometheus text exposition → {(name, sorted labels): value}."""
    samples: Samples = {}
    for line in text.splitlines():
        match = _LINE.match(line)
        if match:
            name, labels, value = match.groups()
            key = tuple(sorted(_LABEL.findall(labels or "")))
            samples[name, key] = float(value)
    return samples


def sample(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value (0 when absent)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def bucket_deltas(before: Samples, after: Samples, name: str) -> list[tuple[float, float]]:
    """(upper bound, cumulative count) of a histogram's observations between two scrapes."""
    key = f"{name}_bucket"
    bounds = sorted(
        (float(le), le)
        for (metric, labels) in after
        if metric == key
        for label, le in labels
        if label == "le"
    )
    return [(bound, sample(after, key, le=le) - sample(before, key, le=le)) for bound, le in bounds]


def quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """The q-quantile of a cumulative histogram, interpolated linearly within its bucket."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower  # beyond the last finite bucket: a floor, reported as such
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower
