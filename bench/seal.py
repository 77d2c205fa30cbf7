"""Encryption at rest benchmark: what sealing segments as they are written costs.

In one process, the same stream of Matroska-cluster-sized writes (default: 720p30 at
2.5 Mbit/s, one write per half-second cluster, cut by PyAV's 32 KiB I/O buffer) goes to a
plain file and through `bodycam.sealed.SealedWriter`, then is read back through
`read_plaintext`. It prints the CPU time of each, the ratio to the plain file, and the CPU
share of one core a stream costs to seal, with the file size overhead. Nothing is asserted::

    python -m bench.seal [--seconds 600] [--mbps 2.5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from bodycam.evidence import sealed

AV_BUFFER = 32 * 1024  # PyAV's write buffer: a larger cluster arrives as several writes


def writes(seconds: float, mbps: float) -> list[bytes]:
    cluster = int(mbps * 1e6 / 8 / 2)  # bytes per half second
    data = os.urandom(cluster)
    out: list[bytes] = []
    for _ in range(int(seconds * 2)):
        out.extend(data[i : i + AV_BUFFER] for i in range(0, cluster, AV_BUFFER))
    return out


def plain(path: Path, chunks: list[bytes]) -> float:
    start = time.process_time()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    for chunk in chunks:
        os.write(fd, chunk)
    os.fsync(fd)
    os.close(fd)
    return time.process_time() - start


def seal(path: Path, chunks: list[bytes], key: bytes) -> float:
    start = time.process_time()
    writer = sealed.SealedWriter(path, key, "bench/1")
    for chunk in chunks:
        writer.write(chunk)
    writer.close()
    return time.process_time() - start


def unseal(path: Path, key: bytes) -> float:
    start = time.process_time()
    for _ in sealed.read_plaintext(path, key, "bench/1"):
        pass
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="stream seconds per round")
    parser.add_argument("--mbps", type=float, default=2.5, help="stream bit rate")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    chunks = writes(args.seconds, args.mbps)
    size = sum(len(c) for c in chunks)
    key = sealed.new_key()
    best = {"plain": float("inf"), "seal": float("inf"), "unseal": float("inf")}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            a, b = Path(tmp) / f"plain{r}", Path(tmp) / f"sealed{r}"
            best["plain"] = min(best["plain"], plain(a, chunks))
            best["seal"] = min(best["seal"], seal(b, chunks, key))
            best["unseal"] = min(best["unseal"], unseal(b, key))
            overhead = b.stat().st_size / a.stat().st_size - 1
            a.unlink()
            b.unlink()
    print(
        f"{args.seconds:.0f} s of a {args.mbps} Mbit/s stream: {size / 1e6:.0f} MB in "
        f"{len(chunks)} writes; best of {args.rounds} rounds, CPU seconds"
    )
    for name, cpu in best.items():
        ratio = cpu / best["plain"]
        print(f"  {name:7} {cpu:6.3f} s  {size / cpu / 1e6:7.0f} MB/s  {ratio:5.2f}x plain")
    per_stream = (best["seal"] - best["plain"]) / args.seconds
    print(
        f"  sealing costs {per_stream * 1000:.2f} ms of CPU per stream-second "
        f"({per_stream * 100:.3f} % of a core per stream); size +{overhead * 100:.3f} %"
    )


if __name__ == "__main__":
    main()
