"""``aiows.client``: the Python client against real aiows servers, including a server restart in the middle."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest
from models import Add, Join, Sum
from processes import free_port
from test_broadcast_redis import RedisProcess, needs_redis, redis_server, start_chat, stop  # noqa: F401
from websockets.asyncio.client import connect as websockets_connect

import aiows.client
from aiows import AuthMiddleware, BaseMessage, Router, WebSocket, WebSocketServer
from aiows.broadcast import MemoryBackend
from aiows.exceptions import ConnectionError, RequestError, RequestTimeout
from aiows.testing import TestClient


def make_server(**options: Any) -> WebSocketServer:
    router = Router()

    @router.connect()
    async def on_connect(websocket: WebSocket) -> None:
        await websocket.send_json({"type": "welcome", "user": websocket.context.get("user_id")})

    @router.message("add")
    async def on_add(websocket: WebSocket, message: Add) -> Sum:
        return Sum(total=message.a + message.b)

    @router.message("slow")
    async def on_slow(websocket: WebSocket, message: BaseMessage) -> None:
        await asyncio.sleep(1.0)

    @router.message("ask")
    async def on_ask(websocket: WebSocket, message: BaseMessage) -> Any:
        return await websocket.request({"type": "question", "text": "how much?"}, timeout=5.0)

    @router.message("join")
    async def on_join(websocket: WebSocket, message: Join) -> bool:
        return await websocket.join(message.room, offset=message.offset, epoch=message.epoch)

    @router.message("say")
    async def on_say(websocket: WebSocket, message: BaseMessage) -> None:
        await websocket.server.broadcast({"type": "said", "text": getattr(message, "text", "")}, room="r")

    server = WebSocketServer(broadcast=MemoryBackend(history_size=50), **options)
    server.include_router(router)
    return server


async def test_request_reply_and_errors() -> None:
    async with TestClient(make_server()) as test:
        async with aiows.client.connect(test.url()) as client:
            assert await client.__anext__() == {"type": "welcome", "user": None}
            assert await client.request({"type": "add", "a": 2, "b": 3}) == {"total": 5}
            reply = await client.request(Add(a=1, b=1), reply_model=Sum)
            assert reply == Sum(total=2)
            with pytest.raises(RequestError) as error:
                await client.request({"type": "add", "a": "x", "b": 1})
            assert error.value.code == "validation_error" and error.value.frame["errors"]
            with pytest.raises(RequestError, match="no handler"):
                await client.request({"type": "nope"})
            with pytest.raises(RequestTimeout):
                await client.request({"type": "slow"}, timeout=0.2)
            with pytest.raises(ValueError, match="ref"):
                await client.request({"type": "add", "ref": 1})
            assert client.connected and client.reconnects == 0
        assert not client.connected
        with pytest.raises(ConnectionError):
            await client.send({"type": "add", "a": 1, "b": 1})


async def test_the_server_asks_and_the_client_answers() -> None:
    async with TestClient(make_server()) as test:
        async with aiows.client.connect(test.url()) as client:
            await client.__anext__()  # welcome

            @client.on_request
            async def answer(request: dict[str, Any]) -> dict[str, Any]:
                assert request["type"] == "question"
                return {"amount": 3}

            assert await client.request({"type": "ask"}) == {"amount": 3}
            client.on_request(lambda request: "sync answer")
            assert await client.request({"type": "ask"}) == "sync answer"


async def test_without_a_handler_server_requests_are_frames() -> None:
    async with TestClient(make_server()) as test:
        async with aiows.client.connect(test.url()) as client:
            await client.__anext__()
            asking = asyncio.ensure_future(client.request({"type": "ask"}))
            question = await client.__anext__()
            assert question == {"type": "question", "text": "how much?", "ref": 1}
            await client.send({"type": "reply", "ref": question["ref"], "data": 7})
            assert await asking == 7


async def test_messagepack_when_the_server_agrees_and_json_when_it_does_not() -> None:
    async with TestClient(make_server(codecs=("json", "msgpack"))) as test:
        async with aiows.client.connect(test.url(), codec="msgpack") as client:
            assert client.codec.name == "msgpack"
            assert await client.__anext__() == {"type": "welcome", "user": None}
            assert await client.request({"type": "add", "a": 2, "b": 3}) == {"total": 5}
            with pytest.raises(RequestError) as error:
                await client.request({"type": "add", "a": "x", "b": 1})
            assert error.value.code == "validation_error"
            client.on_request(lambda request: {"amount": 4})
            assert await client.request({"type": "ask"}) == {"amount": 4}
    async with TestClient(make_server()) as test:  # JSON only: the client falls back to it
        async with aiows.client.connect(test.url(), codec="msgpack") as client:
            assert client.codec.name == "json"
            assert await client.request({"type": "add", "a": 1, "b": 1}) == {"total": 2}


async def test_iteration_positions_and_token() -> None:
    server = make_server()
    server.add_middleware(AuthMiddleware("a-secret-long-enough-for-the-warning-to-stay-quiet!"))
    async with TestClient(server) as test:
        token = "ann" + "a-secret-long-enough-for-the-warning-to-stay-quiet!"
        async with aiows.client.connect(test.url(), token=token) as client:
            assert await client.__anext__() == {"type": "welcome", "user": "ann"}
            assert await client.request({"type": "join", "room": "r"}) is True
            await client.send({"type": "say", "text": "one"})
            await client.send({"type": "say", "text": "two"})
            frames = [frame async for frame in take(client, 2)]
            assert [frame["text"] for frame in frames] == ["one", "two"]
            assert client.positions == {"r": {"epoch": frames[1]["epoch"], "offset": 2}}
        async with aiows.client.connect(test.url(), token="mallory") as refused:
            async for _ in refused:  # closed with 4401: a final close, no reconnection
                pytest.fail("no frame expected")
            assert refused.close_code == 4401 and refused.reconnects == 0 and refused.closed


async def take(client: aiows.client.Client, count: int) -> Any:
    """The client's next ``count`` frames (an async generator, in test code only)."""
    for _ in range(count):
        yield await asyncio.wait_for(client.__anext__(), 5)


async def test_reconnects_after_a_restart_and_recovers_in_memory() -> None:
    """The same server stops and starts again on its port: the client reconnects by itself, on_reconnect
    joins again from its position, and gets what was published while it was away (one process: the
    server object, and with it its in-memory history, lives on)."""
    server = make_server()
    port = free_port()
    rejoined: asyncio.Queue[bool] = asyncio.Queue()

    async def on_reconnect(client: aiows.client.Client) -> None:
        position = client.positions["r"]
        rejoined.put_nowait(await client.request({"type": "join", "room": "r", **position}))

    running = server.serve("127.0.0.1", port)
    await running.start()
    try:
        async with aiows.client.connect(
            f"ws://127.0.0.1:{port}", on_reconnect=on_reconnect, backoff_min=0.05, backoff_max=0.2
        ) as client:
            await client.__anext__()
            assert await client.request({"type": "join", "room": "r"}) is True
            await server.broadcast({"type": "said", "text": "before"}, room="r")
            assert (await client.__anext__())["text"] == "before"
            await running.shutdown()  # closes with 1001: the client reconnects
            for text in ("while away 1", "while away 2"):
                await server.broadcast({"type": "said", "text": text}, room="r")
            running = server.serve("127.0.0.1", port)
            await running.start()
            assert await asyncio.wait_for(rejoined.get(), 10) is True
            assert client.reconnects == 1
            frames = [frame async for frame in take(client, 3)]
            assert [frame["type"] for frame in frames] == ["welcome", "said", "said"]
            assert [frame["text"] for frame in frames[1:]] == ["while away 1", "while away 2"]
            assert [frame["offset"] for frame in frames[1:]] == [2, 3]
    finally:
        await running.shutdown()


@needs_redis
async def test_reconnects_after_the_server_process_restarts(redis_server: RedisProcess) -> None:
    """``examples/simple_chat.py`` in two processes on one Redis. The client's server process is stopped;
    the other one goes on; the first is started again: the client reconnects and recovers, in order."""
    port_a, port_b = free_port(), free_port()
    a = start_chat(port_a, redis_server.url)
    b = start_chat(port_b, redis_server.url)
    recovered: asyncio.Queue[Any] = asyncio.Queue()

    async def on_reconnect(client: aiows.client.Client) -> None:
        position = client.positions["lobby"]
        recovered.put_nowait(await client.request({"type": "join", "room": "lobby", "name": "py", **position}))

    try:
        async with aiows.client.connect(
            f"ws://127.0.0.1:{port_a}", on_reconnect=on_reconnect, backoff_min=0.1, backoff_max=0.5
        ) as client, websockets_connect(f"ws://127.0.0.1:{port_b}") as other:
            assert (await client.__anext__())["type"] == "welcome"
            assert (await client.request({"type": "join", "room": "lobby", "name": "py"}))["recovered"] is True
            await other.send(orjson.dumps({"type": "join", "room": "lobby", "name": "bob"}).decode())
            texts: list[str] = []

            async def say(text: str) -> None:
                await other.send(orjson.dumps({"type": "say", "room": "lobby", "text": text}).decode())

            await say("m1")
            async for frame in client:
                if frame["type"] == "said":
                    texts.append(frame["text"])
                    break
            stop(a)  # 1001 to the client: it reconnects with backoff, and fails until A is back
            await say("m2")
            await say("m3")
            a = start_chat(port_a, redis_server.url)
            reply = await asyncio.wait_for(recovered.get(), 20)
            assert reply["recovered"] is True
            await say("m4")
            offsets: list[int] = []
            end = time.monotonic() + 10
            async for frame in client:
                offsets.append(frame.get("offset", 0))
                if frame["type"] == "said":
                    texts.append(frame["text"])
                    if frame["text"] == "m4" or time.monotonic() > end:
                        break
            assert texts == ["m1", "m2", "m3", "m4"]
            numbered = [offset for offset in offsets if offset]
            assert numbered == sorted(set(numbered))  # in order, none twice
            assert client.reconnects == 1
    finally:
        for process in (a, b):
            if process.poll() is None:
                stop(process)
