"""Sealed recordings: round trips, PyAV through the file objects, tampering, crash recovery."""

from __future__ import annotations

import hashlib
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from bodycam.errors import BodycamError
from bodycam.evidence.sealed import (
    CHUNK_MAX,
    MAGIC,
    SealedError,
    SealedReader,
    SealedWriter,
    digest,
    finish_truncated,
    new_key,
    read_plaintext,
    unwrap_key,
    wrap_key,
)

LABEL = "0f3c-session/1"
MARKER = b"PLAINTEXT-MARKER-must-never-reach-the-disk."


def layout(path: Path) -> list[tuple[int, int, int]]:
    """(offset, ciphertext length, flag) of each chunk, parsed without the key."""
    raw = path.read_bytes()
    chunks, offset = [], len(MAGIC) + 8
    while offset + 5 <= len(raw):
        length, flag = struct.unpack(">IB", raw[offset : offset + 5])
        chunks.append((offset, length, flag))
        offset += 5 + length
    return chunks


def seal(path: Path, key: bytes, pieces: list[bytes], label: str = LABEL) -> tuple[int, str]:
    writer = SealedWriter(path, key, label)
    for piece in pieces:
        assert writer.write(piece) == len(piece)
    return writer.close()


def plaintext(path: Path, key: bytes, label: str = LABEL) -> bytes:
    return b"".join(read_plaintext(path, key, label))


def flip(path: Path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x01
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("size", [0, 1, 4000, CHUNK_MAX, CHUNK_MAX + 1, 2 * CHUNK_MAX + 77])
def test_round_trip(tmp_path: Path, size: int) -> None:
    key, path = new_key(), tmp_path / "seg.mkv.sealed"
    data = os.urandom(size)
    size_sha = seal(path, key, [data])
    assert size_sha == (size, hashlib.sha256(data).hexdigest())
    assert plaintext(path, key) == data
    assert digest(path, key, LABEL) == size_sha
    chunks = layout(path)
    assert [flag for _, _, flag in chunks] == [0] * -(-size // CHUNK_MAX) + [1]
    assert all(length <= CHUNK_MAX + 16 for _, length, _ in chunks)
    assert sum(length - 16 for _, length, _ in chunks) == size


def test_writes_reach_the_disk_at_once_encrypted(tmp_path: Path) -> None:
    key, path = new_key(), tmp_path / "seg.mkv.sealed"
    writer = SealedWriter(path, key, LABEL)
    assert path.stat().st_size == 16
    assert path.read_bytes().startswith(MAGIC)
    pieces: list[bytes | bytearray | memoryview] = [
        MARKER * 10,
        bytearray(MARKER * 3),
        memoryview(MARKER * 5),
    ]
    size = 16
    for piece in pieces:
        assert writer.write(piece) == len(piece)
        size += 5 + len(piece) + 16
        assert path.stat().st_size == size  # no buffering in Python
    assert writer.write(b"") == 0
    assert path.stat().st_size == size  # an empty write adds no chunk
    # What a crash would leave: every chunk readable, then the missing end reported.
    got: list[bytes] = []
    with pytest.raises(SealedError, match="ends without its final chunk"):
        got.extend(read_plaintext(path, key, LABEL))
    assert b"".join(got) == MARKER * 18
    assert writer.seekable() is False
    assert not is_closed(writer)
    result = writer.close()
    assert is_closed(writer)
    assert writer.close() == result
    assert result == (len(MARKER) * 18, hashlib.sha256(MARKER * 18).hexdigest())
    assert MARKER[:16] not in path.read_bytes()
    with pytest.raises(SealedError):
        writer.write(b"late")


def test_writer_creates_exclusively(tmp_path: Path) -> None:
    path = tmp_path / "seg.mkv.sealed"
    path.write_bytes(b"earlier evidence")
    with pytest.raises(FileExistsError):
        SealedWriter(path, new_key(), LABEL)
    assert path.read_bytes() == b"earlier evidence"


def test_pyav_matroska_through_writer_and_reader(tmp_path: Path) -> None:
    key, path = new_key(), tmp_path / "seg.mkv.sealed"
    writer = SealedWriter(path, key, LABEL)
    options = {"cluster_time_limit": "500", "flush_packets": "1"}
    rng = np.random.default_rng(7)
    muxed = 0
    with av.open(writer, "w", format="matroska", container_options=options) as container:
        stream = container.add_stream("mpeg4", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(30):
            image = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
                muxed += 1
        for packet in stream.encode():
            container.mux(packet)
            muxed += 1
    size, sha = writer.close()
    assert muxed == 30
    assert len(layout(path)) >= 4  # header, clusters, trailer: several chunks
    assert digest(path, key, LABEL) == (size, sha)
    assert b"matroska" in b"".join(read_plaintext(path, key, LABEL))
    assert b"matroska" not in path.read_bytes()
    reader = SealedReader(path, key, LABEL)
    assert reader.readable()
    assert not reader.seekable()
    with av.open(reader, "r") as container:
        video = container.streams.video[0]
        assert (video.codec_context.name, video.width, video.height) == ("mpeg4", 64, 48)
        packets = [packet for packet in container.demux(video) if packet.size]
    reader.close()
    assert len(packets) == 30


def test_pyav_reports_a_wrong_key(tmp_path: Path) -> None:
    key, path = new_key(), tmp_path / "seg.mkv.sealed"
    seal(path, key, [os.urandom(5000)])
    with (
        pytest.raises(SealedError, match="chunk 0 at byte 16"),
        av.open(SealedReader(path, new_key(), LABEL)),
    ):
        pass


def test_reader_reads_across_chunks(tmp_path: Path) -> None:
    key, path = new_key(), tmp_path / "seg.mkv.sealed"
    data = os.urandom(10_000)
    seal(path, key, [data[:3000], data[3000:3001], data[3001:]])
    reader = SealedReader(path, key, LABEL)
    assert reader.read(0) == b""
    assert reader.read(2999) == data[:2999]
    assert reader.read(5000) == data[2999:7999]
    assert reader.read() == data[7999:]
    assert reader.read(10) == b""
    reader.close()
    with pytest.raises(SealedError):
        reader.read(1)


def test_flipped_byte_names_the_chunk_and_recovery_refuses(tmp_path: Path) -> None:
    key, path = new_key(), tmp_path / "seg.mkv.sealed"
    seal(path, key, [os.urandom(1000), os.urandom(2000), os.urandom(3000)])
    offset, _, _ = layout(path)[1]
    flip(path, offset + 5 + 700)
    damaged = path.read_bytes()
    message = f"seg.mkv.sealed: chunk 1 at byte {offset} does not authenticate: altered"
    with pytest.raises(SealedError, match=re.escape(message)):
        plaintext(path, key)
    with pytest.raises(SealedError, match="chunk 1"):
        digest(path, key, LABEL)
    with pytest.raises(SealedError, match="chunk 1"):
        finish_truncated(path, key, LABEL)  # damage in the middle is no torn write
    assert path.read_bytes() == damaged  # evidence left as it was


def test_forged_final_flag_is_refused(tmp_path: Path) -> None:
    key, path = new_key(), tmp_path / "seg.mkv.sealed"
    seal(path, key, [os.urandom(1000), os.urandom(1000), os.urandom(1000)])
    offset, length, _ = layout(path)[1]
    raw = bytearray(path.read_bytes()[: offset + 5 + length])  # drop chunk 2 and the end
    raw[offset + 4] = 1  # claim chunk 1 was the last
    path.write_bytes(bytes(raw))
    with pytest.raises(SealedError, match=f"chunk 1 at byte {offset} does not authenticate"):
        plaintext(path, key)


def test_chunks_cannot_move_between_files_or_be_reordered(tmp_path: Path) -> None:
    key = new_key()
    one, two = tmp_path / "one.sealed", tmp_path / "two.sealed"
    seal(one, key, [os.urandom(500), os.urandom(500)], label="s/1")
    seal(two, key, [os.urandom(500), os.urandom(500)], label="s/2")
    (a0, length, _), (a1, _, _), _ = layout(one)
    (b0, _, _), _, _ = layout(two)
    raw_one, raw_two = one.read_bytes(), two.read_bytes()
    # Chunk 0 of file two put into file one: same key, same size, other file.
    one.write_bytes(raw_one[:a0] + raw_two[b0:a1] + raw_one[a1:])
    with pytest.raises(SealedError, match=re.escape("one.sealed: chunk 0")):
        plaintext(one, key, "s/1")
    # Chunks 0 and 1 of the same file swapped (same size).
    one.write_bytes(
        raw_one[:a0] + raw_one[a1 : a1 + 5 + length] + raw_one[a0:a1] + raw_one[a1 + 5 + length :]
    )
    with pytest.raises(SealedError, match="chunk 0"):
        plaintext(one, key, "s/1")
    # The whole file presented as another segment.
    one.write_bytes(raw_one)
    with pytest.raises(SealedError, match="chunk 0"):
        plaintext(one, key, "s/2")
    assert len(plaintext(one, key, "s/1")) == 1000


def test_wrong_key(tmp_path: Path) -> None:
    key, path = new_key(), tmp_path / "seg.mkv.sealed"
    seal(path, key, [MARKER])
    with pytest.raises(SealedError, match="not encrypted with this session's key"):
        plaintext(path, new_key())
    with pytest.raises(SealedError, match="32 bytes"):
        plaintext(path, key[:16])
    with pytest.raises(SealedError, match="32 bytes"):
        SealedWriter(tmp_path / "other.sealed", b"short", LABEL)
    assert plaintext(path, key) == MARKER


def test_bytes_after_the_final_chunk(tmp_path: Path) -> None:
    key, path = new_key(), tmp_path / "seg.mkv.sealed"
    seal(path, key, [MARKER])
    with open(path, "ab") as f:
        f.write(b"\0")
    offset, length, _ = layout(path)[-1]
    end = offset + 5 + length
    message = f"chunk 1 at byte {offset} is the final one, yet bytes follow it at byte {end}"
    with pytest.raises(SealedError, match=message):
        plaintext(path, key)
    with pytest.raises(SealedError, match=message):
        finish_truncated(path, key, LABEL)
    assert path.read_bytes().endswith(b"\0")


def test_not_a_sealed_file(tmp_path: Path) -> None:
    key, path = new_key(), tmp_path / "seg.mkv.sealed"
    path.write_bytes(MAGIC[:5])
    with pytest.raises(SealedError, match="shorter than"):
        finish_truncated(path, key, LABEL)
    assert path.read_bytes() == MAGIC[:5]
    path.write_bytes(b"\x1a\x45\xdf\xa3" + os.urandom(100))  # a plain Matroska file
    with pytest.raises(SealedError, match="bad magic"):
        plaintext(path, key)


# Cut points relative to chunk 2: at its start, inside its head, inside its ciphertext.
@pytest.mark.parametrize("into", [0, 3, 5 + 1000])
def test_truncated_file_and_recovery(tmp_path: Path, into: int) -> None:
    key, path = new_key(), tmp_path / "seg.mkv.sealed"
    pieces = [os.urandom(1000), os.urandom(2000), os.urandom(3000)]
    seal(path, key, pieces)
    cut = layout(path)[2][0] + into
    with open(path, "r+b") as f:
        f.truncate(cut)
    expected = "ends without its final chunk" if into == 0 else "truncated chunk"
    with pytest.raises(SealedError, match=f"chunk 2 at byte {cut - into}: .*{expected}"):
        plaintext(path, key)
    kept = pieces[0] + pieces[1]
    result = finish_truncated(path, key, LABEL)
    assert result == (len(kept), hashlib.sha256(kept).hexdigest(), 2)
    assert plaintext(path, key) == kept
    assert [flag for _, _, flag in layout(path)] == [0, 0, 1]
    repaired = path.read_bytes()
    assert finish_truncated(path, key, LABEL) == result  # complete now: left as is
    assert path.read_bytes() == repaired


def test_recovery_of_a_cut_final_chunk_and_of_a_bare_header(tmp_path: Path) -> None:
    key, path = new_key(), tmp_path / "seg.mkv.sealed"
    data = os.urandom(4000)
    seal(path, key, [data])
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size - 1)
    assert finish_truncated(path, key, LABEL) == (4000, hashlib.sha256(data).hexdigest(), 1)
    assert plaintext(path, key) == data
    bare = tmp_path / "bare.sealed"
    bare.write_bytes(path.read_bytes()[:16])
    assert finish_truncated(bare, key, LABEL) == (0, hashlib.sha256().hexdigest(), 0)
    assert plaintext(bare, key) == b""


def test_kill_9_leaves_every_written_chunk(tmp_path: Path) -> None:
    key, path = new_key(), tmp_path / "seg.mkv.sealed"
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from bodycam.evidence.sealed import SealedWriter\n"
        "w = SealedWriter(Path(sys.argv[1]), bytes.fromhex(sys.argv[2]), sys.argv[3])\n"
        "for i in range(5):\n"
        "    w.write(bytes([65 + i]) * 700)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script, str(path), key.hex(), LABEL],
        cwd=Path(__file__).resolve().parents[1],
        check=False,
    )
    assert run.returncode == -9
    expected = b"".join(bytes([65 + i]) * 700 for i in range(5))
    assert finish_truncated(path, key, LABEL) == (3500, hashlib.sha256(expected).hexdigest(), 5)
    assert plaintext(path, key) == expected


def test_wrap_and_unwrap(tmp_path: Path) -> None:
    master, key = new_key(), new_key()
    assert len(key) == 32
    assert key != new_key()
    wrapped = wrap_key(master, key, "session-1")
    assert key not in wrapped
    assert wrapped != wrap_key(master, key, "session-1")
    assert unwrap_key(master, wrapped, "session-1") == key
    message = "key for session-1 does not unwrap: wrong master key, or the key was altered"
    with pytest.raises(SealedError, match=message):
        unwrap_key(new_key(), wrapped, "session-1")
    with pytest.raises(SealedError, match="key for session-2 does not unwrap"):
        unwrap_key(master, wrapped, "session-2")
    altered = bytearray(wrapped)
    altered[20] ^= 0x80
    for bad in (bytes(altered), wrapped[:-1], wrapped[:8], b""):
        with pytest.raises(SealedError, match="does not unwrap"):
            unwrap_key(master, bad, "session-1")
    with pytest.raises(SealedError, match="32 bytes"):
        wrap_key(master[:31], key, "session-1")


def test_sealed_error_is_a_bodycam_error() -> None:
    assert issubclass(SealedError, BodycamError)
    assert SealedError.status == 500


def is_closed(writer: SealedWriter) -> bool:
    """(A function, so that the type checker does not take `closed` for a constant.)"""
    return writer.closed
