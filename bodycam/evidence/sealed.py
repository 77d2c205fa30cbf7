"""Recording segments encrypted at rest, chunk by chunk, with AES-256-GCM.

The recorder's muxer writes through a `SealedWriter`: each `write` is encrypted and handed
to the OS at once, so a `kill -9` leaves every chunk written so far readable, and only the
final marker missing (`finish_truncated` adds it back). Each session has its own key,
stored only wrapped by the master key: destroying it makes every copy unreadable.

File format (integers big-endian):

    header  MAGIC (8 bytes) + random nonce prefix (8)
    chunk   ciphertext length (4) + flag (1: 1 = final, else 0) + ciphertext (with 16-byte tag)

Chunk i is sealed with nonce = prefix + i (4 bytes, top bit set for the final chunk) and
associated data MAGIC + prefix +
label (UTF-8) + i (4) + flag, so chunks cannot be reordered, moved to another file (the
label names the segment, e.g. "session-id/seq") or have the final flag forged. The last
chunk is the only one with the final flag, and has an empty plaintext: a file that lacks it
was cut short. Random 64-bit prefixes keep nonces unique across a session's segments.
"""

from __future__ import annotations

import hashlib
import os
import struct
import sys
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import BodycamError

MAGIC = b"BCSEAL01"
CHUNK_MAX = 1 << 20  # plaintext bytes per chunk at most
KEY_BYTES = 32
PREFIX_BYTES = 8
HEADER_BYTES = len(MAGIC) + PREFIX_BYTES
TAG_BYTES = 16
CHUNK_HEAD = struct.Struct(">IB")  # ciphertext length, flag
FINAL = 1
MAX_CHUNKS = 1 << 31  # the counter is 31 bits: the top bit marks the final chunk
WRAP_NONCE_BYTES = 12


class SealedError(BodycamError):
    """A sealed file or wrapped key cannot be written or read back as it should."""


class SealedTruncated(SealedError):
    """The file was cut short (a crash mid-recording); `finish_truncated` repairs it."""

    def __init__(self, message: str, index: int, offset: int) -> None:
        super().__init__(message)
        self.index = index  # the chunk that is missing or incomplete
        self.offset = offset  # where it starts: the file is whole up to here


def _aead(key: bytes, what: str) -> AESGCM:
    if not isinstance(key, bytes | bytearray) or len(key) != KEY_BYTES:
        got = f"{len(key)} bytes" if isinstance(key, bytes | bytearray) else type(key).__name__
        raise SealedError(f"{what} must be {KEY_BYTES} bytes (AES-256), got {got}")
    return AESGCM(bytes(key))


def _nonce(prefix: bytes, index: int, flag: int) -> bytes:
    # The final chunk has a nonce of its own (top bit set): recovery seals a final chunk at
    # the index of a torn data chunk, and a nonce must never serve twice under one key.
    return prefix + (index | (0x8000_0000 if flag & FINAL else 0)).to_bytes(4, "big")


def _aad(prefix: bytes, label: bytes, index: int, flag: int) -> bytes:
    return MAGIC + prefix + label + index.to_bytes(4, "big") + bytes((flag,))


def _seal(
    aead: AESGCM, prefix: bytes, label: bytes, index: int, flag: int, data: bytes | memoryview
) -> bytes:
    nonce = _nonce(prefix, index, flag)
    ciphertext = aead.encrypt(nonce, data, _aad(prefix, label, index, flag))
    return CHUNK_HEAD.pack(len(ciphertext), flag) + ciphertext


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:  # a regular file takes it all in one write unless the disk is failing
        view = view[os.write(fd, view) :]


def new_key() -> bytes:
    """A fresh random AES-256 key, one per session, so that it can be destroyed alone."""
    return AESGCM.generate_key(256)


def wrap_key(master: bytes, key: bytes, label: str) -> bytes:
    """`key` sealed by the master key, bound to `label`, for storing beside its session."""
    aead = _aead(master, "the master key")
    _aead(key, "the key to wrap")
    nonce = os.urandom(WRAP_NONCE_BYTES)
    return nonce + aead.encrypt(nonce, key, b"bodycam key:" + label.encode())


def unwrap_key(master: bytes, wrapped: bytes, label: str) -> bytes:
    """The key that `wrap_key` sealed for `label`; refuses a wrong master key or label."""
    aead = _aead(master, "the master key")
    failure = SealedError(
        f"key for {label} does not unwrap: wrong master key, or the key was altered"
    )
    if len(wrapped) != WRAP_NONCE_BYTES + KEY_BYTES + TAG_BYTES:  # cut short or padded
        raise failure
    nonce, sealed = wrapped[:WRAP_NONCE_BYTES], wrapped[WRAP_NONCE_BYTES:]
    try:
        return aead.decrypt(nonce, sealed, b"bodycam key:" + label.encode())
    except InvalidTag:
        raise failure from None


class SealedWriter:
    """A write-only, non-seekable file object for PyAV that encrypts each write at once."""

    def __init__(self, path: Path, key: bytes, label: str) -> None:
        self.path = path
        self.plaintext_bytes = 0
        self._aead = _aead(key, "the session key")
        self._label = label.encode()
        self._prefix = os.urandom(PREFIX_BYTES)
        self._index = 0
        self._sha = hashlib.sha256()
        self._result: tuple[int, str] | None = None
        self._failed = False
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # like "xb"
        try:
            _write_all(self._fd, MAGIC + self._prefix)
        except BaseException:
            os.close(self._fd)
            path.unlink()  # ours, created just now, and holding nothing yet
            raise

    @property
    def closed(self) -> bool:
        """PyAV skips writing the trailer into a closed file."""
        return self._fd < 0

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def flush(self) -> None:
        """Nothing to do: every write is already with the OS."""

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Encrypt `data` into one chunk per CHUNK_MAX bytes and write them to the file now."""
        view = memoryview(data).cast("B")
        if self._fd < 0 or self._failed:
            raise SealedError(f"{self.path.name}: write after close or after a failed write")
        for start in range(0, len(view), CHUNK_MAX):
            piece = view[start : start + CHUNK_MAX]
            if self._index + 1 >= MAX_CHUNKS:  # keep the last counter for the final chunk
                raise SealedError(f"{self.path.name}: more than {MAX_CHUNKS} chunks")
            chunk = _seal(self._aead, self._prefix, self._label, self._index, 0, piece)
            try:
                _write_all(self._fd, chunk)
            except BaseException:
                # The chunk may be half on disk: nothing may follow it but recovery.
                self._failed = True
                raise
            self._index += 1
            self.plaintext_bytes += len(piece)
            self._sha.update(piece)
        return len(view)

    def close(self) -> tuple[int, str]:
        """Write the final chunk, fsync and close; return (plaintext bytes, sha256 hex)."""
        if self._result is not None:
            return self._result
        if self._fd < 0:
            raise SealedError(f"{self.path.name}: closing failed earlier; run recovery")
        fd, self._fd = self._fd, -1
        try:
            if self._failed:
                raise SealedError(f"{self.path.name}: a write failed; run recovery")
            _write_all(fd, _seal(self._aead, self._prefix, self._label, self._index, FINAL, b""))
            os.fsync(fd)
        finally:
            os.close(fd)
        self._result = (self.plaintext_bytes, self._sha.hexdigest())
        return self._result


def _chunks(
    f: BinaryIO, name: str, key: bytes, label: str
) -> Iterator[tuple[int, int, int, bytes]]:
    """(index, offset, flag, plaintext) of each chunk, checked; SealedError on any fault."""
    aead = _aead(key, "the session key")
    header = f.read(HEADER_BYTES)
    if len(header) < HEADER_BYTES:
        raise SealedError(f"{name}: shorter than a sealed file's header ({len(header)} bytes)")
    if not header.startswith(MAGIC):
        raise SealedError(f"{name}: not a sealed recording (bad magic at byte 0)")
    prefix, label_bytes = header[len(MAGIC) :], label.encode()
    index, offset = 0, HEADER_BYTES
    while True:
        where = f"{name}: chunk {index} at byte {offset}"
        crash = "cut off by a crash? run recovery"
        head = f.read(CHUNK_HEAD.size)
        if not head:
            raise SealedTruncated(
                f"{where}: file ends without its final chunk: {crash}",
                index,
                offset,
            )
        if len(head) < CHUNK_HEAD.size:
            raise SealedTruncated(f"{where}: truncated chunk header: {crash}", index, offset)
        length, flag = CHUNK_HEAD.unpack(head)
        if flag not in (0, FINAL) or not TAG_BYTES <= length <= CHUNK_MAX + TAG_BYTES:
            raise SealedError(f"{where}: damaged chunk header (length {length}, flag {flag})")
        ciphertext = f.read(length)
        if len(ciphertext) < length:
            raise SealedTruncated(
                f"{where}: truncated chunk ({len(ciphertext)} of {length} bytes): {crash}",
                index,
                offset,
            )
        try:
            plaintext = aead.decrypt(
                _nonce(prefix, index, flag), ciphertext, _aad(prefix, label_bytes, index, flag)
            )
        except InvalidTag:
            raise SealedError(
                f"{where} does not authenticate: altered, or not encrypted with this "
                f"session's key (label {label})"
            ) from None
        yield index, offset, flag, plaintext
        if flag == FINAL:
            if f.read(1):
                end = offset + CHUNK_HEAD.size + length
                raise SealedError(f"{where} is the final one, yet bytes follow it at byte {end}")
            return
        index, offset = index + 1, offset + CHUNK_HEAD.size + length


def read_plaintext(path: Path, key: bytes, label: str) -> Generator[bytes, None, None]:
    """The plaintext, chunk by chunk, each authenticated before it is given out."""
    with open(path, "rb") as f:
        for _index, _offset, _flag, plaintext in _chunks(f, path.name, key, label):
            if plaintext:
                yield plaintext


class SealedReader:
    """A read-only, non-seekable file object over a sealed file, for `av.open(reader)`."""

    def __init__(self, path: Path, key: bytes, label: str) -> None:
        self.path = path
        self._chunks = read_plaintext(path, key, label)
        self._buffer = b""
        self._pos = 0
        self._closed = False
        self._error: SealedError | None = None  # given again: a later read is not an EOF

    @property
    def closed(self) -> bool:
        return self._closed

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def read(self, n: int = -1) -> bytes:
        """Up to `n` plaintext bytes (all that is left if n < 0); b"" at the end."""
        if self._closed:
            raise SealedError(f"{self.path.name}: read after close")
        if self._error is not None:
            raise self._error
        parts: list[bytes] = []
        left = n if n >= 0 else sys.maxsize
        try:
            while left > 0:
                if self._pos == len(self._buffer):
                    self._buffer, self._pos = next(self._chunks, b""), 0
                    if not self._buffer:
                        break
                part = self._buffer[self._pos : self._pos + left]
                parts.append(part)
                self._pos += len(part)
                left -= len(part)
        except SealedError as err:
            self._error = err
            raise
        return b"".join(parts)

    def close(self) -> None:
        self._closed = True
        self._buffer = b""
        self._chunks.close()  # closes the file now rather than at garbage collection


def digest(path: Path, key: bytes, label: str) -> tuple[int, str]:
    """(plaintext bytes, sha256 hex) of a sealed file, to check it against the catalogue."""
    sha, size = hashlib.sha256(), 0
    for plaintext in read_plaintext(path, key, label):
        sha.update(plaintext)
        size += len(plaintext)
    return size, sha.hexdigest()


def finish_truncated(path: Path, key: bytes, label: str) -> tuple[int, str, int]:
    """Close a file a crash cut short: drop a torn last chunk and add the final one.

    Returns (plaintext bytes, sha256 hex, data chunks kept). A complete file is left as is.
    Anything but a cut-off end (a chunk that does not authenticate, a damaged chunk header,
    a file shorter than its header) raises SealedError and the file is not touched.
    """
    sha, size, kept = hashlib.sha256(), 0, 0
    with open(path, "r+b") as f:
        try:
            for _index, _offset, flag, plaintext in _chunks(f, path.name, key, label):
                sha.update(plaintext)
                size += len(plaintext)
                kept += flag != FINAL
            return size, sha.hexdigest(), kept
        except SealedTruncated as cut:
            f.seek(HEADER_BYTES - PREFIX_BYTES)
            prefix = f.read(PREFIX_BYTES)
            f.truncate(cut.offset)
            f.seek(cut.offset)
            f.write(
                _seal(_aead(key, "the session key"), prefix, label.encode(), cut.index, FINAL, b"")
            )
            f.flush()
            os.fsync(f.fileno())
            return size, sha.hexdigest(), kept
