"""Rooms and broadcast on the default in-memory backend: real sockets, one process."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import BaseModel

from aiows import BaseMessage, Router, WebSocket, WebSocketServer
from aiows.broadcast import MemoryBackend
from aiows.testing import TestClient, TestConnection
from aiows.options import ServerOptions
from aiows.transports.base import HandshakeRequest
from aiows.transports.core import LinkLimits, SocketLink


class RoomMessage(BaseMessage):
    room: str = ""
    text: str = ""
    others: bool = False


class Note(BaseModel):
    type: str
    text: str


def make_server(**options: Any) -> WebSocketServer:
    router = Router()

    @router.message("join")
    async def on_join(websocket: WebSocket, message: RoomMessage) -> None:
        await websocket.join(message.room)
        await websocket.send_json({"type": "rooms", "rooms": sorted(websocket.rooms)})

    @router.message("leave")
    async def on_leave(websocket: WebSocket, message: RoomMessage) -> None:
        await websocket.leave(message.room)
        await websocket.send_json({"type": "rooms", "rooms": sorted(websocket.rooms)})

    @router.message("say")
    async def on_say(websocket: WebSocket, message: RoomMessage) -> None:
        exclude = websocket if message.others else None
        await websocket.server.broadcast(
            {"type": "said", "room": message.room, "text": message.text}, room=message.room or None, exclude=exclude
        )

    @router.message("note")
    async def on_note(websocket: WebSocket, message: RoomMessage) -> None:
        await websocket.server.broadcast(Note(type="note", text=message.text))

    @router.message("members")
    async def on_members(websocket: WebSocket, message: RoomMessage) -> None:
        count = await websocket.server.room_members(message.room)
        await websocket.send_json({"type": "members", "room": message.room, "count": count})

    server = WebSocketServer(**options)
    server.include_router(router)
    return server


async def join(ws: TestConnection, room: str) -> list[str]:
    await ws.send_json({"type": "join", "room": room})
    reply = await ws.receive_json()
    assert reply["type"] == "rooms"
    rooms: list[str] = reply["rooms"]
    return rooms


async def test_join_leave_and_rooms() -> None:
    async with TestClient(make_server()) as client, client.connect() as ws:
        assert await join(ws, "a") == ["a"]
        assert await join(ws, "b") == ["a", "b"]
        assert await join(ws, "a") == ["a", "b"]  # joining twice is harmless
        await ws.send_json({"type": "leave", "room": "a"})
        assert (await ws.receive_json())["rooms"] == ["b"]
        await ws.send_json({"type": "leave", "room": "nowhere"})
        assert (await ws.receive_json())["rooms"] == ["b"]
        await ws.send_json({"type": "members", "room": "b"})
        assert await ws.receive_json() == {"type": "members", "room": "b", "count": 1}


async def test_room_broadcast_reaches_members_only() -> None:
    server = make_server()
    async with TestClient(server) as client:
        async with client.connect() as alice, client.connect() as bob, client.connect() as carol:
            await join(alice, "red")
            await join(bob, "red")
            await join(carol, "blue")
            await alice.send_json({"type": "say", "room": "red", "text": "hi reds"})
            for ws in (alice, bob):
                assert await ws.receive_json() == {"type": "said", "room": "red", "text": "hi reds"}
            # carol is not in "red": the next frame she gets is the broadcast to everyone
            await alice.send_json({"type": "say", "text": "hi all"})
            for ws in (carol, alice, bob):
                assert await ws.receive_json() == {"type": "said", "room": "", "text": "hi all"}
            await ws.send_json({"type": "members", "room": "red"})
            assert (await ws.receive_json())["count"] == 2


async def test_exclude_and_pydantic_models_encoded_once() -> None:
    server = make_server()
    async with TestClient(server) as client:
        async with client.connect() as alice, client.connect() as bob, client.connect() as carol:
            for ws in (alice, bob, carol):
                await join(ws, "room")
            encodes = server.broadcast_stats.encodes
            await alice.send_json({"type": "say", "room": "room", "text": "not to me", "others": True})
            for ws in (bob, carol):
                assert (await ws.receive_json())["text"] == "not to me"
            await bob.send_json({"type": "note", "text": "model"})
            for ws in (alice, bob, carol):
                assert await ws.receive_json() == {"type": "note", "text": "model"}
            assert server.broadcast_stats.encodes == encodes + 2  # three recipients, one encode each


async def test_model_dumped_once_for_many_recipients() -> None:
    dumps = 0

    class Counted(BaseModel):
        text: str

        def model_dump(self, **kwargs: Any) -> dict[str, Any]:
            nonlocal dumps
            dumps += 1
            return super().model_dump(**kwargs)

    server = make_server()
    async with TestClient(server) as client:
        async with client.connect() as a, client.connect() as b, client.connect() as c:
            for ws in (a, b, c):
                await join(ws, "x")
            assert await server.broadcast(Counted(text="once"), room="x") == 3
            for ws in (a, b, c):
                assert await ws.receive_json() == {"text": "once"}
    assert dumps == 1


@pytest.mark.usefixtures("transport")
async def test_broadcasts_back_to_back_arrive_complete_and_in_order() -> None:
    """200 broadcasts in a row: each member's frames go out corked, none lost or reordered."""
    server = make_server()
    async with TestClient(server) as client:
        async with client.connect() as a, client.connect() as b, client.connect() as c:
            for ws in (a, b, c):
                await join(ws, "x")
            for n in range(200):  # the memory backend never suspends: every member's queue fills up first
                await server.broadcast({"n": n}, room="x")
            for ws in (a, b, c):
                assert [(await ws.receive_json())["n"] for _ in range(200)] == list(range(200))
    assert server.broadcast_stats.delivered == 600


@pytest.mark.usefixtures("transport")
async def test_a_broadcast_queued_while_the_writer_waits_for_a_slow_reader_still_goes_out() -> None:
    """Frames queued while a connection's socket is full go out, in order, once the client reads again."""
    server = make_server()
    big = "x" * 512 * 1024
    async with TestClient(server) as client, client.connect() as ws:
        await join(ws, "r")
        ws.ws.transport.pause_reading()  # the client stops reading
        for _ in range(20):  # 10 MiB in one corked write: more than loopback buffers take, so the writer waits
            await server.broadcast({"text": big}, room="r")
        (outbox,) = server.hub.outboxes.values()  # the socket took what it could; the rest waits in the queue
        assert outbox.queue and outbox.task is not None
        await server.broadcast({"text": "last"}, room="r")
        ws.ws.transport.resume_reading()
        texts = [(await asyncio.wait_for(ws.receive_json(), 10))["text"] for _ in range(21)]
        assert texts == [big] * 20 + ["last"]


async def test_exclude_several_from_outside_a_handler() -> None:
    server = make_server()
    seen: list[WebSocket] = []
    router = Router()

    @router.connect()
    async def on_connect(websocket: WebSocket) -> None:
        seen.append(websocket)

    server.include_router(router)
    async with TestClient(server) as client:
        async with client.connect() as a, client.connect() as b, client.connect() as c:
            await join(a, "r")
            await join(b, "r")
            await join(c, "r")
            assert len(seen) == 3
            assert await server.broadcast({"n": 1}, exclude=seen[:2]) == 1
            assert await server.broadcast({"n": 2}, room="r", exclude=set(seen[1:])) == 1
            assert await c.receive_json() == {"n": 1}
            assert await a.receive_json() == {"n": 2}


async def wait_members(server: WebSocketServer, room: str, expected: int) -> int:
    """Poll ``room_members`` until it is ``expected`` (bounded: 5 s)."""
    count = -1
    for _ in range(500):
        count = await server.room_members(room)
        if count == expected:
            break
        await asyncio.sleep(0.01)
    return count


async def test_disconnect_leaves_every_room() -> None:
    server = make_server()
    async with TestClient(server) as client:
        async with client.connect() as stay:
            await join(stay, "a")
            async with client.connect() as gone:
                await join(gone, "a")
                await join(gone, "b")
                assert await server.room_members("a") == 2
            assert await wait_members(server, "b", 0) == 0
            assert await wait_members(server, "a", 1) == 1
            assert "b" not in server.hub.rooms
            assert await server.broadcast({"type": "after"}, room="a") == 1
            assert await stay.receive_json() == {"type": "after"}


async def test_room_must_be_a_non_empty_string() -> None:
    async with TestClient(make_server()) as client, client.connect() as ws:
        await ws.send_json({"type": "join", "room": ""})
        assert (await ws.receive_json())["code"] == "internal_error"


def test_a_websocket_outside_a_server_has_no_server() -> None:
    async def make() -> WebSocket:
        return WebSocket(FakeSocket().link())

    websocket = asyncio.run(make())
    with pytest.raises(RuntimeError, match="not served"):
        websocket.server
    assert websocket.rooms == frozenset()


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="outgoing_overflow"):
        WebSocketServer(outgoing_overflow="explode")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="outgoing_queue_size"):
        WebSocketServer(outgoing_queue_size=0)
    assert isinstance(WebSocketServer().hub.backend, MemoryBackend)


class FakeSocket:
    """The socket under a real ``SocketLink``: records writes and the close frame; ``paused`` is set by hand.

    Whether a real client's socket buffers fill after exactly N messages depends on the kernel, so the
    overflow policy's exact drops are checked here, with the rest of the path real.
    """

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.close_code: int | None = None

    def link(self) -> SocketLink:
        link = SocketLink(self, self, LinkLimits(ServerOptions()), HandshakeRequest("/", {}), ("127.0.0.9", 1))
        link.opened()
        return link

    # the asyncio transport
    def write(self, data: bytes) -> None:
        while data:  # short text frames: 2 header bytes each
            size = data[1]
            self.sent.append(data[2 : 2 + size])
            data = data[2 + size :]

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def abort(self) -> None:
        pass

    # the front-end's wire
    def send_close(self, code: int, reason: str) -> None:
        self.close_code = code

    def fail(self, code: int, reason: str) -> None:
        self.close_code = code

    def send_ping(self, data: bytes) -> None:
        pass

    def encode(self, payload: bytes, text: bool) -> bytes:
        raise NotImplementedError


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


@pytest.mark.parametrize("overflow", ["close", "drop_oldest"])
async def test_a_slow_recipient_never_delays_the_others(overflow: str) -> None:
    server = WebSocketServer(outgoing_queue_size=4, outgoing_overflow=overflow)  # type: ignore[arg-type]
    slow_socket, fast_socket = FakeSocket(), FakeSocket()
    slow_link = slow_socket.link()
    slow, fast = WebSocket(slow_link, server=server), WebSocket(fast_socket.link(), server=server)
    await slow.join("room")
    await fast.join("room")
    slow_link.pause_writing()  # the slow client's socket buffer is full: it does not read
    for n in range(10):
        await server.broadcast({"n": n}, room="room")
        await settle()
    assert [m.decode() for m in fast_socket.sent] == [f'{{"n":{n}}}' for n in range(10)]  # written at once
    assert slow_socket.sent == []
    stats = server.broadcast_stats
    if overflow == "close":
        assert slow_socket.close_code == 1013
        assert stats.overflow_closes == 1 and stats.overflow_drops == 0
    else:
        assert slow_socket.close_code is None
        assert stats.overflow_drops == 6 and stats.overflow_closes == 0
        slow_link.resume_writing()  # the client reads again: its queue goes out, oldest dropped
        await settle()
        assert [m.decode() for m in slow_socket.sent] == [f'{{"n":{n}}}' for n in (6, 7, 8, 9)]
    await server.hub.disconnected(slow)
    await server.hub.disconnected(fast)
    assert server.hub.rooms == {} and server.hub.outboxes == {}


async def test_a_client_that_stops_reading_is_closed_with_1013(caplog: pytest.LogCaptureFixture) -> None:
    server = make_server(outgoing_queue_size=32)
    big = "x" * 65536
    async with TestClient(server) as client:
        async with client.connect(max_queue=1) as slow, client.connect() as fast:
            await join(slow, "r")
            await join(fast, "r")
            received = 0

            async def read_fast() -> None:
                nonlocal received
                while (await fast.receive_json())["text"] != "done":
                    received += 1

            reader = asyncio.create_task(read_fast())
            sent = 0
            for _ in range(2000):  # loopback buffers hold a few MiB: the slow queue overflows long before
                await server.broadcast({"text": big}, room="r")
                sent += 1
                await asyncio.sleep(0)
                if server.broadcast_stats.overflow_closes:
                    break
            assert server.broadcast_stats.overflow_closes == 1
            await server.broadcast({"text": "done"}, room="r")
            await asyncio.wait_for(reader, 30)
            assert received == sent  # the fast client got everything
            assert await slow.wait_closed(30) == 1013
    assert "closing it with 1013" in caplog.text


@pytest.mark.usefixtures("transport")
async def test_bytes_are_broadcast_as_they_are_and_anything_else_is_encoded() -> None:
    server = make_server()
    async with TestClient(server) as client, client.connect() as a, client.connect() as b:
        await join(a, "r")
        await join(b, "r")
        encoded = b'{"type": "pre", "spacing": "kept as is"}'
        assert await server.broadcast(encoded, room="r") == 2
        assert [await a.receive(), await b.receive()] == [encoded.decode()] * 2  # text frames, byte for byte
        assert await server.broadcast(memoryview(b'{"n":1}'), room="r") == 2
        assert await a.receive() == '{"n":1}'
        assert await server.broadcast("a str", room="r") == 2  # still a JSON string, as before
        assert await a.receive() == '"a str"'
        with pytest.raises(ValueError, match="UTF-8"):
            await server.broadcast(b"\xff\xfe", room="r")
        assert server.broadcast_stats.encodes == 3  # the refused one is not counted
