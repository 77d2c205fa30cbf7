"""The pipe between the main process and a media worker, on a real socket pair."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bodycam.errors import NotFound
from bodycam.gateway.pipe import LENGTH, MAX_MESSAGE_BYTES, Message, Pipe, PipeClosed, RemoteError


class End:
    """One end: what it was told, and how it answers."""

    def __init__(self) -> None:
        self.events: list[Message] = []
        self.release = asyncio.Event()

    async def handle(self, message: Message) -> Any:
        match message["t"]:
            case "echo":
                return message["value"]
            case "missing":
                raise NotFound("no such session")
            case "broken":
                raise ValueError("a bug")
            case "slow":
                await self.release.wait()
                return "late"
            case _:
                self.events.append(message)
                return None


async def pair() -> tuple[Pipe, End, Pipe, End, list[asyncio.Task[None]]]:
    a, b = socket.socketpair()
    ends = []
    for sock, name in ((a, "main"), (b, "worker")):
        reader, writer = await asyncio.open_unix_connection(sock=sock)
        end = End()
        ends.append((Pipe(reader, writer, end.handle, name), end))
    tasks = [asyncio.create_task(pipe.run()) for pipe, _ in ends]
    return ends[0][0], ends[0][1], ends[1][0], ends[1][1], tasks


@pytest.fixture
async def pipes() -> AsyncIterator[tuple[Pipe, End, Pipe, End]]:
    main, main_end, worker, worker_end, tasks = await pair()
    yield main, main_end, worker, worker_end
    main.close()
    worker.close()
    await asyncio.gather(*tasks)


async def test_requests_are_answered_and_errors_keep_their_status(
    pipes: tuple[Pipe, End, Pipe, End],
) -> None:
    main, _, worker, _ = pipes
    assert await main.call("echo", value={"sdp": "v=0", "n": [1, 2]}) == {"sdp": "v=0", "n": [1, 2]}
    assert await worker.call("echo", value="both ways") == "both ways"
    with pytest.raises(RemoteError) as missing:
        await main.call("missing")
    assert (missing.value.status, str(missing.value)) == (404, "no such session")
    with pytest.raises(RemoteError) as broken:
        await main.call("broken")
    assert broken.value.status == 500
    assert "ValueError: a bug" in str(broken.value)


async def test_requests_do_not_wait_for_each_other(pipes: tuple[Pipe, End, Pipe, End]) -> None:
    main, _, _, worker_end = pipes
    slow = asyncio.create_task(main.call("slow"))
    assert await main.call("echo", value=1) == 1  # answered while the slow one waits
    assert not slow.done()
    worker_end.release.set()
    assert await slow == "late"


async def test_an_event_told_before_an_answer_is_handled_first(
    pipes: tuple[Pipe, End, Pipe, End],
) -> None:
    main, main_end, worker, worker_end = pipes
    worker_end.release.set()

    async def answer_after_telling(message: Message) -> Any:
        worker.tell("view_ended", viewer="v1")
        return "done"

    worker._handle = answer_after_telling
    assert await main.call("end_view") == "done"
    assert [e["t"] for e in main_end.events] == ["view_ended"]


async def test_calls_fail_when_the_other_end_goes() -> None:
    main, _, worker, _, tasks = await pair()
    waiting = asyncio.create_task(main.call("slow"))
    await asyncio.sleep(0.05)
    worker.close()
    with pytest.raises(PipeClosed):
        await waiting
    await asyncio.gather(*tasks)
    with pytest.raises(PipeClosed):
        await main.call("echo", value=1)
    main.tell("ignored")  # an event to a closed pipe is dropped, not raised


async def test_a_message_over_the_limit_ends_the_pipe() -> None:
    a, b = socket.socketpair()
    reader, writer = await asyncio.open_unix_connection(sock=a)
    end = End()
    pipe = Pipe(reader, writer, end.handle, "main")
    running = asyncio.create_task(pipe.run())
    b.sendall(LENGTH.pack(MAX_MESSAGE_BYTES + 1))
    await asyncio.wait_for(running, 5)  # it stops reading: no 4 GiB buffer is allocated
    assert pipe.closed
    b.close()


@pytest.mark.parametrize(
    "data",
    [
        b"[1, 2]",
        b"{not json",
        b"\xff\xfe",
        b'{"re": [1], "ok": 1}',
        b'{"re": 1, "err": 5}',
        b'{"re": 1, "err": ["x", "y"]}',
        b'{"t": "echo", "id": "one"}',
    ],
)
async def test_a_message_that_is_not_a_json_object_ends_the_pipe(data: bytes) -> None:
    a, b = socket.socketpair()
    reader, writer = await asyncio.open_unix_connection(sock=a)
    pipe = Pipe(reader, writer, End().handle, "main")
    running = asyncio.create_task(pipe.run())
    b.sendall(LENGTH.pack(len(data)) + data)
    await asyncio.wait_for(running, 5)
    assert pipe.closed
    b.close()
