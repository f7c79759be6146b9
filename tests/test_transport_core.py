"""The shared connection core (``aiows.transports.core``) over real sockets, on both transports.

Pipelined frames (several in one socket write, sent with ``tests.rawclient``)
are answered in order, their replies corked into few writes; frames of every
length arrive whole; invalid UTF-8 and unanswered pings close the connection.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from websockets.asyncio.client import connect

from aiows import ChatMessage, Router, WebSocket, WebSocketServer
from aiows.testing import TestClient

from rawclient import TEXT, RawClient, client_frame


def raw_echo_server(**options: Any) -> WebSocketServer:
    """Answers every frame with its kind and content, in the frame's own type."""
    router = Router()

    @router.raw()
    async def echo(websocket: WebSocket, data: str | bytes) -> None:
        if isinstance(data, str):
            await websocket.send_text(f"text:{data}")
        else:
            await websocket.send_bytes(b"binary:" + data)

    server = WebSocketServer(**options)
    server.include_router(router)
    return server


@pytest.mark.usefixtures("transport")
async def test_pipelined_text_binary_and_fragmented_frames_keep_order_and_type() -> None:
    async with TestClient(raw_echo_server()) as client:
        async with connect(client.url()) as ws:
            expected: list[str | bytes] = []
            for n in range(60):  # sent back to back: the server finds most of them already queued
                if n % 3 == 0:
                    await ws.send(f"t{n}")
                    expected.append(f"text:t{n}")
                elif n % 3 == 1:
                    await ws.send(f"b{n}".encode())
                    expected.append(f"binary:b{n}".encode())
                else:
                    await ws.send(iter([f"f{n}-", "end"]))  # fragmented: handled by recv()
                    expected.append(f"text:f{n}-end")
            replies = [await ws.recv() for _ in expected]
    assert replies == expected


@pytest.mark.usefixtures("transport")
async def test_json_messages_pipelined_are_answered_in_order() -> None:
    router = Router()

    @router.message("chat")
    async def on_chat(websocket: WebSocket, message: ChatMessage) -> None:
        await websocket.send_json({"text": message.text})

    server = WebSocketServer()
    server.include_router(router)
    async with TestClient(server) as client, client.connect() as ws:
        for n in range(200):
            await ws.send_json({"type": "chat", "text": str(n), "user_id": 1})
        replies: list[dict[str, Any]] = [await ws.receive_json() for _ in range(200)]
    assert [reply["text"] for reply in replies] == [str(n) for n in range(200)]


@pytest.mark.usefixtures("transport")
async def test_write_answers_not_now_once_the_connection_is_closed() -> None:
    seen: dict[str, Any] = {}
    router = Router()

    @router.raw()
    async def close_then_try(websocket: WebSocket, data: str | bytes) -> None:
        await websocket.close(1000, "done")
        seen["write"] = websocket.link.write(b"late", True)

    server = WebSocketServer()
    server.include_router(router)
    async with TestClient(server) as client, connect(client.url()) as ws:
        await ws.send("hello")
        await ws.wait_closed()
    assert seen == {"write": False}


@pytest.mark.usefixtures("transport")
async def test_a_handler_that_waits_does_not_hold_back_replies_corked_before_it() -> None:
    released = asyncio.Event()
    router = Router()

    @router.raw()
    async def handle(websocket: WebSocket, data: str | bytes) -> None:
        if data == "wait":
            await released.wait()  # until the client got the reply to "first"
        await websocket.send_text(f"done:{data}")

    server = WebSocketServer()
    server.include_router(router)
    async with TestClient(server) as client, RawClient(client.url()) as ws:
        ws.send_texts("first", "second", "wait", "last")  # one socket write: the server reads them together
        # "second" is answered while "wait" and "last" are queued (corked), then "wait" blocks.
        assert [await asyncio.wait_for(ws.recv(), 5) for _ in range(2)] == ["done:first", "done:second"]
        released.set()
        assert [await asyncio.wait_for(ws.recv(), 5) for _ in range(2)] == ["done:wait", "done:last"]


@pytest.mark.usefixtures("transport")
async def test_replies_held_while_corked_go_out_before_the_close_frame() -> None:
    router = Router()

    @router.raw()
    async def handle(websocket: WebSocket, data: str | bytes) -> None:
        if data == "close":
            await websocket.close(4000, "bye")
        else:
            await websocket.send_text(f"done:{data}")

    server = WebSocketServer()
    server.include_router(router)
    async with TestClient(server) as client, RawClient(client.url()) as ws:
        ws.send_texts("a", "b", "close")  # one socket write: "a" and "b" are answered while corked
        replies = []
        with pytest.raises(ConnectionError):
            for _ in range(3):
                replies.append(await ws.recv())
        assert replies == ["done:a", "done:b"]
        assert ws.close_code == 4000


@pytest.mark.usefixtures("transport")
async def test_pipelined_replies_of_every_frame_length_and_compressed_ones_arrive_whole() -> None:
    sizes = [0, 1, 125, 126, 65535, 65536, 200_000]  # 2-, 4- and 10-byte frame headers
    for compression in (None, "deflate"):
        server = raw_echo_server(compression=compression)
        async with TestClient(server) as client:
            async with connect(client.url(), compression=compression, max_size=None) as ws:
                for n, size in enumerate(sizes * 2):  # sent back to back, before any reply is read
                    payload = bytes([n]) * size
                    await (ws.send(payload) if n % 2 else ws.send(payload.decode()))
                replies = [await asyncio.wait_for(ws.recv(), 5) for _ in range(len(sizes) * 2)]
        expected = [
            b"binary:" + bytes([n]) * size if n % 2 else "text:" + (bytes([n]) * size).decode()
            for n, size in enumerate(sizes * 2)
        ]
        assert replies == expected


@pytest.mark.usefixtures("transport")
async def test_invalid_utf8_in_a_pipelined_text_frame_closes_1007_after_the_earlier_replies() -> None:
    async with TestClient(raw_echo_server()) as client, RawClient(client.url()) as ws:
        ws.send_raw(client_frame(TEXT, b"fine"), client_frame(TEXT, b"\xff\xfe"))  # the second is not UTF-8
        assert await ws.recv() == "text:fine"
        with pytest.raises(ConnectionError):
            await ws.recv()
        assert ws.close_code == 1007


@pytest.mark.usefixtures("transport")
async def test_a_client_that_never_answers_pings_is_closed_with_1011() -> None:
    picows = pytest.importorskip("picows")  # its client can leave pings unanswered
    reasons: list[str] = []
    router = Router()

    @router.disconnect()
    async def gone(websocket: WebSocket, reason: str) -> None:
        reasons.append(reason)

    server = WebSocketServer(ping_interval=0.05, ping_timeout=0.05)
    server.include_router(router)
    frames: list[tuple[int, int | None]] = []

    class Silent(picows.WSListener):  # type: ignore[misc,name-defined]
        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            closing = frame.msg_type == picows.WSMsgType.CLOSE
            frames.append((int(frame.msg_type), int(frame.get_close_code()) if closing else None))

    async with TestClient(server) as client:
        transport, _ = await picows.ws_connect(Silent, client.url(), enable_auto_pong=False)
        await asyncio.wait_for(transport.wait_disconnected(), 5)
        for _ in range(100):
            if reasons:
                break
            await asyncio.sleep(0.01)
    assert frames[0] == (int(picows.WSMsgType.PING), None)
    assert frames[-1] == (int(picows.WSMsgType.CLOSE), 1011)
    assert reasons == ["1006"]  # the client sent no close frame back: the same on both transports


@pytest.mark.usefixtures("transport")
async def test_many_pipelining_clients_get_every_reply_once_in_order() -> None:
    """20 clients x 300 messages sent back to back; some handlers yield, some answer twice."""
    router = Router()

    @router.raw()
    async def answer(websocket: WebSocket, data: str | bytes) -> None:
        client, n = map(int, str(data).split())
        if n % 7 == 0:
            await asyncio.sleep(0)  # suspends in the middle of a corked batch
        await websocket.send_text(f"{client} {n}")
        if n % 11 == 0:
            await websocket.send_text(f"{client} {n} again")

    async def converse(url: str, client: int, count: int) -> list[str]:
        async with RawClient(url) as ws:
            for start in range(0, count, 50):  # bursts of 50 frames per socket write
                ws.send_texts(*(f"{client} {n}" for n in range(start, min(start + 50, count))))
            expected = sum(2 if n % 11 == 0 else 1 for n in range(count))
            return [str(await ws.recv(10)) for _ in range(expected)]

    server = WebSocketServer()
    server.include_router(router)
    count = 300
    async with TestClient(server) as client:
        replies = await asyncio.gather(*(converse(client.url(), c, count) for c in range(20)))
    for c, got in enumerate(replies):
        want: list[str] = []
        for n in range(count):
            want.append(f"{c} {n}")
            if n % 11 == 0:
                want.append(f"{c} {n} again")
        assert got == want


class WriteCounter:
    """Stands in for a link's asyncio transport: counts the socket writes, passes everything on."""

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        self.transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


@pytest.mark.usefixtures("transport")
async def test_replies_to_messages_read_together_go_out_in_one_socket_write() -> None:
    async with TestClient(raw_echo_server()) as client, RawClient(client.url()) as ws:
        ws.send_texts("warm-up")
        assert await ws.recv() == "text:warm-up"
        (websocket,) = client.running.dispatcher.connections
        counter = WriteCounter(websocket.link.transport)  # type: ignore[attr-defined]
        websocket.link.transport = counter  # type: ignore[attr-defined]
        ws.send_texts(*(f"m{n}" for n in range(20)))  # one socket write: the server reads them together
        assert [await ws.recv() for _ in range(20)] == [f"text:m{n}" for n in range(20)]
        assert counter.writes == 1
