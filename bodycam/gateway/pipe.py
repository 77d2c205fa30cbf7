"""The pipe between the main process and a media worker: JSON messages, each a 4-byte
big-endian length and a UTF-8 JSON object, over a Unix socket pair.

Both ends are a `Pipe`. A message is a request (`{"t": kind, "id": n, ...}`, answered by
`{"re": n, "ok": value}` or `{"re": n, "err": [status, message]}`) or an event (`{"t":
kind, ...}`, no answer). Requests are handled in tasks of their own, in any order; events
are handled in the order they came, before the next message is read, so an event sent
before an answer is handled before the caller sees the answer (a view's end is in the
register when `end_view` returns). An event handler must therefore not wait on the pipe.

JSON, not pickle, from the worker up: a worker holds the parsers of untrusted media, and
whatever it sends is data to the main process, never code. The message set is in
docs/media-internals.md ("Media workers").
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import struct
from collections.abc import Awaitable, Callable
from typing import Any

from ..errors import BodycamError

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 4 * 1024 * 1024  # an SDP is at most server.max_sdp_bytes (64 KiB)
LENGTH = struct.Struct("!I")

Message = dict[str, Any]
Handler = Callable[[Message], Awaitable[Any]]


class PipeClosed(BodycamError):
    """The other end of the pipe is gone (its process died, or it was stopped)."""

    status = 503


class PipeBroken(BodycamError):
    """The other end sent what the protocol does not allow: the pipe is closed."""


class RemoteError(BodycamError):
    """An error the other end raised on purpose, with its status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Pipe:
    """One end of the pipe: requests and events out, the other end's handled."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        handle: Handler,
        name: str,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._handle = handle
        self.name = name
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.closed = False

    async def call(self, kind: str, **fields: Any) -> Any:
        """A request; its answer, or the other end's error raised here."""
        if self.closed:
            raise PipeClosed(f"{self.name} is gone")
        number = next(self._ids)
        answer = asyncio.get_running_loop().create_future()
        self._waiting[number] = answer
        try:
            self._send({"t": kind, "id": number, **fields})
            return await answer
        finally:
            self._waiting.pop(number, None)

    def tell(self, kind: str, **fields: Any) -> None:
        """An event (no answer); dropped if the other end is gone."""
        if not self.closed:
            self._send({"t": kind, **fields})

    async def run(self) -> None:
        """Read and handle messages until the other end goes; then every call waiting
        fails with PipeClosed."""
        try:
            while True:
                try:
                    head = await self._reader.readexactly(LENGTH.size)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                (size,) = LENGTH.unpack(head)
                if size > MAX_MESSAGE_BYTES:
                    logger.error("%s: a message of %d bytes, over the limit", self.name, size)
                    return
                try:
                    message = json.loads(await self._reader.readexactly(size))
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                except ValueError as err:  # not JSON, or not UTF-8
                    logger.error("%s: a message that is not JSON: %s", self.name, err)
                    return
                if not isinstance(message, dict):
                    logger.error("%s: a message that is not an object", self.name)
                    return
                try:
                    await self._dispatch(message)
                except PipeBroken as err:  # the other end is not to be trusted any more
                    logger.error("%s", err)
                    return
        finally:
            self.close()

    def close(self) -> None:
        self._close()
        self._writer.close()

    async def _dispatch(self, message: Message) -> None:
        if "re" in message:
            number, error = message["re"], message.get("err")
            if not isinstance(number, int) or not (
                error is None
                or (
                    isinstance(error, list)
                    and len(error) == 2
                    and isinstance(error[0], int)
                    and isinstance(error[1], str)
                )
            ):
                raise PipeBroken(f"{self.name}: a malformed answer")
            answer = self._waiting.get(number)
            if answer is not None and not answer.done():
                if error is not None:
                    answer.set_exception(RemoteError(error[0], error[1]))
                else:
                    answer.set_result(message.get("ok"))
        elif "id" in message:
            if not isinstance(message["id"], int):
                raise PipeBroken(f"{self.name}: a request without a number")
            task = asyncio.create_task(self._answer(message))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            try:
                await self._handle(message)
            except Exception:  # one event's failure must not stop the pipe
                logger.exception("%s: event %r failed", self.name, message.get("t"))

    async def _answer(self, message: Message) -> None:
        number = message["id"]
        try:
            result = await self._handle(message)
        except BodycamError as err:
            self._answer_with({"re": number, "err": [err.status, str(err)]})
        except Exception as err:  # said to the caller, and logged here
            logger.exception("%s: request %r failed", self.name, message.get("t"))
            self._answer_with({"re": number, "err": [500, f"{type(err).__name__}: {err}"]})
        else:
            self._answer_with({"re": number, "ok": result})

    def _answer_with(self, message: Message) -> None:
        if not self.closed:
            self._send(message)

    def _send(self, message: Message) -> None:
        data = json.dumps(message, separators=(",", ":")).encode()
        self._writer.write(LENGTH.pack(len(data)) + data)

    def _close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for answer in self._waiting.values():
            if not answer.done():
                answer.set_exception(PipeClosed(f"{self.name} is gone"))
        for task in self._tasks:
            task.cancel()
