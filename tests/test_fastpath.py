"""The direct read/write path on ``websockets`` connections (``aiows.fastpath``), over real sockets."""

from __future__ import annotations

import asyncio
from typing import Any

from websockets.asyncio.client import connect

from aiows import ChatMessage, Router, WebSocket, WebSocketServer
from aiows.fastpath import DirectLink
from aiows.testing import TestClient


def raw_echo_server() -> WebSocketServer:
    """Answers every frame with its kind and content, in the frame's own type."""
    router = Router()

    @router.raw()
    async def echo(websocket: WebSocket, data: str | bytes) -> None:
        if isinstance(data, str):
            await websocket.send_text(f"text:{data}")
        else:
            await websocket.send_bytes(b"binary:" + data)

    server = WebSocketServer()
    server.include_router(router)
    return server


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


async def test_json_messages_pipelined_are_answered_in_order_on_the_direct_path() -> None:
    router = Router()

    @router.message("chat")
    async def on_chat(websocket: WebSocket, message: ChatMessage) -> None:
        await websocket.send_json({"text": message.text, "direct": websocket.link is not None})

    server = WebSocketServer()
    server.include_router(router)
    async with TestClient(server) as client, client.connect() as ws:
        for n in range(200):
            await ws.send_json({"type": "chat", "text": str(n), "user_id": 1})
        replies: list[dict[str, Any]] = [await ws.receive_json() for _ in range(200)]
    assert [reply["text"] for reply in replies] == [str(n) for n in range(200)]
    assert all(reply["direct"] is True for reply in replies)


async def test_write_answers_not_now_once_the_connection_is_closed() -> None:
    seen: dict[str, Any] = {}
    router = Router()

    @router.raw()
    async def close_then_try(websocket: WebSocket, data: str | bytes) -> None:
        await websocket.close(1000, "done")
        assert websocket.link is not None
        seen["write"] = websocket.link.write("late", True)

    server = WebSocketServer()
    server.include_router(router)
    async with TestClient(server) as client, connect(client.url()) as ws:
        await ws.send("hello")
        await ws.wait_closed()
    assert seen == {"write": False}


def test_only_websockets_connections_take_the_direct_path() -> None:
    assert DirectLink.attach(object()) is None
    assert DirectLink.attach(None) is None


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
    async with TestClient(server) as client, connect(client.url()) as ws:
        for text in ("first", "second", "wait", "last"):  # one socket write: the server reads them together
            ws.protocol.send_text(text.encode())
        ws.send_data()
        # "second" is answered while "wait" and "last" are queued (corked), then "wait" blocks.
        assert [await asyncio.wait_for(ws.recv(), 5) for _ in range(2)] == ["done:first", "done:second"]
        released.set()
        assert [await asyncio.wait_for(ws.recv(), 5) for _ in range(2)] == ["done:wait", "done:last"]
