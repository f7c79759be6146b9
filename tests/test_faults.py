"""Faults: failing handlers and middleware, clients that vanish mid-send, mid-handler and mid-handshake.

Each test checks what the client sees, that the disconnect handler runs once
per served connection, that the server's bookkeeping (open connections,
connection-limit slots, connection tasks) is back to zero, and that nothing a
client did is logged as a server error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from aiows import BaseMessage, BaseMiddleware, Router, WebSocket, WebSocketServer
from aiows.exceptions import ConnectionError as ClientGone
from aiows.testing import TestClient, TestConnection
from aiows.types import ConnectHandler


@pytest.fixture
def server_errors(caplog: pytest.LogCaptureFixture) -> Callable[[], list[logging.LogRecord]]:
    """Capture every log record at DEBUG; return the ERROR (or worse) records of aiows and websockets."""
    caplog.set_level(logging.DEBUG)

    def errors() -> list[logging.LogRecord]:
        return [
            record
            for record in caplog.records
            if record.levelno >= logging.ERROR
            and record.name.split(".")[0] in ("aiows", "websockets")
            ]

    return errors


@pytest.mark.usefixtures("transport")
async def test_normal_close_is_not_logged_as_an_error(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    events = Events()
    async with TestClient(fault_server(events)) as client:
        async with client.connect() as ws:
            await ws.send_json({"type": "echo", "n": 1})
            assert await ws.receive_json() == {"type": "echo", "n": 1}
        await all_freed(client)
    assert events.disconnects == ["1000"]
    assert [record for record in caplog.records if record.levelno >= logging.ERROR] == []


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def assert_all_freed(client: TestClient) -> None:
    """Nothing of any connection is left in the running server."""
    dispatcher = client.running.dispatcher
    assert dispatcher.connections == set()
    assert dispatcher.sessions == set()
    limiter = client.running.gate.limiter
    assert limiter is not None
    assert (limiter.slots, limiter.per_ip, limiter.started) == ({}, {}, set())


async def all_freed(client: TestClient) -> None:
    dispatcher = client.running.dispatcher
    limiter = client.running.gate.limiter
    assert limiter is not None
    await wait_until(lambda: not dispatcher.sessions and not limiter.slots)
    assert_all_freed(client)


class Events:
    def __init__(self) -> None:
        self.connects = 0
        self.disconnects: list[str] = []
        self.release = asyncio.Event()  # lets the "slow" handler finish


def fault_server(events: Events, **options: Any) -> WebSocketServer:
    """Echo, a handler that fails on one message, a flood of large frames and a slow handler."""
    router = Router()
    options.setdefault("max_connections", 1000)  # so the limiter's slots are counted

    @router.connect()
    async def on_connect(websocket: WebSocket) -> None:
        events.connects += 1

    @router.message("echo")
    async def on_echo(websocket: WebSocket, message: BaseMessage) -> None:
        await websocket.send_json({"type": "echo", "n": message.model_dump().get("n")})

    @router.message("fail_on")
    async def on_fail(websocket: WebSocket, message: BaseMessage) -> None:
        data = message.model_dump()
        if data["n"] == data["k"]:
            raise RuntimeError(f"handler bug on message {data['k']}")
        await websocket.send_json({"type": "ok", "n": data["n"]})

    @router.message("flood")
    async def on_flood(websocket: WebSocket, message: BaseMessage) -> None:
        chunk = "x" * 2**20
        for n in range(200):  # bounded: 200 MiB at most, far beyond any socket buffer
            await websocket.send_json({"type": "chunk", "n": n, "data": chunk})

    @router.message("slow")
    async def on_slow(websocket: WebSocket, message: BaseMessage) -> None:
        events.disconnects.append("handler started")
        await asyncio.wait_for(events.release.wait(), 10)
        if message.model_dump().get("reply"):
            await websocket.send_json({"type": "late"})

    @router.disconnect()
    async def on_disconnect(websocket: WebSocket, reason: str) -> None:
        events.disconnects.append(reason)

    server = WebSocketServer(**options)
    server.include_router(router)
    return server


@pytest.mark.usefixtures("transport")
@pytest.mark.parametrize("concurrency", [1, 4])
async def test_handler_raising_on_message_k_answers_an_error_and_serves_the_next_100(
    concurrency: int, server_errors: Callable[[], list[logging.LogRecord]]
) -> None:
    k = 7
    events = Events()
    async with TestClient(fault_server(events, max_concurrent_handlers=concurrency)) as client:
        async with client.connect() as ws:
            for n in range(k + 101):
                await ws.send_json({"type": "fail_on", "n": n, "k": k})
            replies = [await ws.receive_json() for _ in range(k + 101)]
            errors = [reply for reply in replies if reply["type"] == "error"]
            served = [reply["n"] for reply in replies if reply["type"] == "ok"]
            assert errors == [{"type": "error", "code": "internal_error", "message": "internal server error"}]
            if concurrency == 1:
                assert served == [n for n in range(k + 101) if n != k]  # in order
            else:
                assert sorted(served) == [n for n in range(k + 101) if n != k]
            await ws.send_json({"type": "echo", "n": -1})  # still open and served
            assert await ws.receive_json() == {"type": "echo", "n": -1}
        await all_freed(client)
    assert events.disconnects == ["1000"]
    # The handler's bug is a server error: logged once, with its traceback.
    logged = server_errors()
    assert len(logged) == 1 and logged[0].exc_info is not None and "handler bug on message 7" in str(logged[0].exc_info[1])


def abort(ws: TestConnection) -> None:
    """Drop the client's TCP connection without a closing handshake (RST)."""
    sock = ws.ws.transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    ws.ws.transport.abort()


@pytest.mark.usefixtures("transport")
@pytest.mark.parametrize("concurrency", [1, 4])
async def test_client_vanishing_while_the_server_sends(
    concurrency: int, server_errors: Callable[[], list[logging.LogRecord]]
) -> None:
    events = Events()
    async with TestClient(fault_server(events, max_concurrent_handlers=concurrency)) as client:
        async with client.connect() as other:
            for _ in range(3):  # bounded: three clients vanish one after the other
                async with client.connect(max_size=None) as leaving:
                    await leaving.send_json({"type": "flood"})
                    assert (await leaving.receive_json())["type"] == "chunk"  # the server is sending
                    abort(leaving)
                    # Others are served while the server notices.
                    await other.send_json({"type": "echo", "n": 1})
                    assert await other.receive_json() == {"type": "echo", "n": 1}
                    with contextlib.suppress(Exception):
                        await leaving.ws.wait_closed()
            await wait_until(lambda: len(events.disconnects) == 3)
            assert events.disconnects == ["1006"] * 3
            assert client.running.dispatcher.connections != set()  # `other` is still served
            await other.send_json({"type": "echo", "n": 2})
            assert await other.receive_json() == {"type": "echo", "n": 2}
        await all_freed(client)
    await asyncio.sleep(0.05)
    assert events.disconnects == ["1006"] * 3 + ["1000"]  # once per connection
    assert server_errors() == []


class FailingConnect(BaseMiddleware):
    """Raises in ``on_connect`` for connections with ``?fail=1``."""

    async def on_connect(self, handler: ConnectHandler, websocket: WebSocket) -> Any:
        if websocket.query_params.get("fail"):
            raise RuntimeError("middleware bug")
        return await handler(websocket)


async def test_middleware_raising_in_on_connect_closes_1011_frees_everything_and_others_are_served(
    server_errors: Callable[[], list[logging.LogRecord]],
) -> None:
    events = Events()
    server = fault_server(events, max_connections_per_ip=3)
    server.add_middleware(FailingConnect())
    async with TestClient(server) as client:
        async with client.connect() as steady:
            for n in range(10):  # more failures than the per-IP cap: a leaked slot would refuse with 429
                async with client.connect("/?fail=1") as failing:
                    assert await failing.wait_closed() == 1011
                await steady.send_json({"type": "echo", "n": n})
                assert await steady.receive_json() == {"type": "echo", "n": n}
            await wait_until(lambda: len(server_errors()) == 10)
            async with client.connect() as later, client.connect() as third:
                for ws in (later, third):
                    await ws.send_json({"type": "echo", "n": 0})
                    assert await ws.receive_json() == {"type": "echo", "n": 0}
        await all_freed(client)
    # Only the admitted connections ran handlers; each failure was logged once as a server error.
    assert events.connects == 3
    assert sorted(events.disconnects) == ["1000"] * 3
    assert len(server_errors()) == 10
    assert all(record.exc_info is not None for record in server_errors())


@pytest.mark.usefixtures("transport")
@pytest.mark.parametrize("concurrency", [1, 4])
@pytest.mark.parametrize("how", ["close", "abort"])
@pytest.mark.parametrize("reply", [True, False])
async def test_client_leaving_mid_handler_is_cleaned_up_quietly(
    concurrency: int, how: str, reply: bool, server_errors: Callable[[], list[logging.LogRecord]]
) -> None:
    events = Events()
    server = fault_server(events, max_concurrent_handlers=concurrency)
    async with TestClient(server) as client:
        async with client.connect() as ws:
            await ws.send_json({"type": "slow", "reply": reply})
            await wait_until(lambda: "handler started" in events.disconnects)
            if how == "close":
                await ws.close()
            else:
                abort(ws)
            await asyncio.sleep(0.1)
            events.release.set()  # the handler resumes (and may send) after the client left
            await wait_until(lambda: len(events.disconnects) == 2)
        await all_freed(client)
    await asyncio.sleep(0.05)
    assert events.disconnects == ["handler started", "1000" if how == "close" else "1006"]
    assert server_errors() == []


HANDSHAKE = (
    "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
).encode()


@pytest.mark.parametrize(
    "sent",
    [b"", HANDSHAKE[:20], HANDSHAKE[:-2], HANDSHAKE],
    ids=["nothing", "request-line", "headers-unfinished", "whole-request"],
)
@pytest.mark.parametrize("how", ["close", "reset"])
async def test_client_leaving_mid_handshake_is_cleaned_up_quietly(
    sent: bytes, how: str, server_errors: Callable[[], list[logging.LogRecord]]
) -> None:
    events = Events()
    async with TestClient(fault_server(events, max_connections_per_ip=2)) as client:
        for _ in range(10):  # more than the per-IP cap: a leaked slot would refuse with 429
            with socket.create_connection(("127.0.0.1", client.port)) as sock:
                sock.sendall(sent)
                if how == "reset":
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            await asyncio.sleep(0.01)
        await all_freed(client)
        async with client.connect() as ws, client.connect() as other:  # the full per-IP budget is free
            for connection in (ws, other):
                await connection.send_json({"type": "echo", "n": 1})
                assert await connection.receive_json() == {"type": "echo", "n": 1}
        await all_freed(client)
    # A connection whose connect handler ran gets exactly one disconnect.
    assert events.connects == len(events.disconnects)
    assert server_errors() == []


async def test_client_leaving_during_the_connect_handler_gets_one_disconnect(
    server_errors: Callable[[], list[logging.LogRecord]],
) -> None:
    events = Events()
    entered = asyncio.Event()
    release = asyncio.Event()
    router = Router()

    @router.connect()
    async def slow_connect(websocket: WebSocket) -> None:
        events.connects += 1
        entered.set()
        await asyncio.wait_for(release.wait(), 10)
        with contextlib.suppress(ClientGone):
            await websocket.send_json({"type": "welcome"})

    @router.disconnect()
    async def on_disconnect(websocket: WebSocket, reason: str) -> None:
        events.disconnects.append(reason)

    server = WebSocketServer(max_connections=10)
    server.include_router(router)
    async with TestClient(server) as client:
        async with client.connect() as ws:
            await asyncio.wait_for(entered.wait(), 5)
            abort(ws)
            with contextlib.suppress(ConnectionClosed):
                await ws.ws.wait_closed()
        await asyncio.sleep(0.1)
        release.set()
        await all_freed(client)
    await asyncio.sleep(0.05)
    assert events.connects == 1
    assert events.disconnects == ["1006"]
    assert server_errors() == []
