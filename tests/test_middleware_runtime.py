"""Middleware at runtime: auth, logging, rate limiting, order, and failures."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from aiows import (
    AuthMiddleware,
    BaseMessage,
    BaseMiddleware,
    LoggingMiddleware,
    RateLimitingMiddleware,
    Router,
    WebSocket,
    WebSocketServer,
)
from aiows.testing import TestClient
from aiows.types import ConnectHandler, DisconnectHandler, JSONObject, MessageNext

SECRET = "your-secret-key"

#: Every test here runs once per transport (see the ``transport`` fixture in conftest.py).
pytestmark = pytest.mark.usefixtures("transport")


def auth_server() -> tuple[WebSocketServer, list[str]]:
    calls: list[str] = []
    router = Router()

    @router.connect()
    async def on_connect(websocket: WebSocket) -> None:
        calls.append("connect")
        await websocket.send_json(
            {"user_id": websocket.context.get("user_id"), "authenticated": websocket.context.get("authenticated")}
        )

    @router.message("ping")
    async def on_ping(websocket: WebSocket, message: BaseMessage) -> None:
        calls.append("message")
        await websocket.send_json({"type": "pong"})

    @router.disconnect()
    async def on_disconnect(websocket: WebSocket, reason: str) -> None:
        calls.append("disconnect")

    server = WebSocketServer()
    server.add_middleware(AuthMiddleware(SECRET))
    server.include_router(router)
    return server, calls


async def test_auth_by_query_parameter() -> None:
    server, calls = auth_server()
    async with TestClient(server) as client, client.connect(f"/?token=user123{SECRET}") as ws:
        assert await ws.receive_json() == {"user_id": "user123", "authenticated": True}


async def test_auth_by_bearer_header() -> None:
    server, calls = auth_server()
    async with TestClient(server) as client:
        async with client.connect(headers={"Authorization": f"Bearer user456{SECRET}"}) as ws:
            assert await ws.receive_json() == {"user_id": "user456", "authenticated": True}
            await ws.send_json({"type": "ping"})
            assert await ws.receive_json() == {"type": "pong"}
    await asyncio.sleep(0.05)
    assert calls == ["connect", "message", "disconnect"]


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/", None),
        ("/?token=", None),
        ("/?token=wrong", None),
        (f"/?token={SECRET}", None),  # no user id
        (f"/?token=user1{SECRET}x", None),
        ("/", {"Authorization": "Bearer nope"}),
        ("/", {"Authorization": f"Basic user1{SECRET}"}),
    ],
)
async def test_bad_or_missing_token_closes_4401_and_runs_no_handler(
    path: str, headers: dict[str, str] | None, caplog: pytest.LogCaptureFixture
) -> None:
    server, calls = auth_server()
    with caplog.at_level(logging.DEBUG):
        async with TestClient(server) as client, client.connect(path, headers=headers) as ws:
            with contextlib.suppress(ConnectionClosed):  # the server may have closed already
                await ws.send_json({"type": "ping"})
            assert await ws.wait_closed() == 4401
        await asyncio.sleep(0.05)
    assert calls == []
    aiows_lines = [record.getMessage() for record in caplog.records if record.name.startswith("aiows")]
    assert not any(SECRET in line for line in aiows_lines)


async def test_logging_middleware_lines(caplog: pytest.LogCaptureFixture) -> None:
    server, _ = auth_server()
    server.add_middleware(LoggingMiddleware("myapp.websocket"))
    token = f"user123{SECRET}"
    with caplog.at_level(logging.INFO, logger="myapp.websocket"):
        async with TestClient(server) as client, client.connect(f"/?token={token}") as ws:
            await ws.receive_json()
            await ws.send_json({"type": "ping"})
            await ws.receive_json()
            await ws.close(1000, "done")
        await asyncio.sleep(0.05)
    lines = [record.getMessage() for record in caplog.records if record.name == "myapp.websocket"]
    assert len(lines) == 3, lines
    connect, message, disconnect = lines
    assert "connect from 127.0.0.1:" in connect and "user=user123" in connect
    ping_size = len(b'{"type":"ping"}')
    assert "type=ping" in message and f"size={ping_size}B" in message and " ms" in message
    assert "code=1000" in disconnect and "1000 (done)" in disconnect
    assert not any(token in line or "token=" in line or SECRET in line for line in lines)


async def test_rate_limit_closes_4429_and_the_extra_message_is_not_handled() -> None:
    handled: list[int] = []
    router = Router()

    @router.message("count")
    async def on_count(websocket: WebSocket, message: BaseMessage) -> None:
        handled.append(message.model_dump()["n"])
        await websocket.send_json({"n": handled[-1]})

    server = WebSocketServer()
    server.add_middleware(RateLimitingMiddleware(max_messages_per_minute=3))
    server.include_router(router)
    async with TestClient(server) as client:
        async with client.connect() as ws:
            for n in range(3):
                await ws.send_json({"type": "count", "n": n})
                assert await ws.receive_json() == {"n": n}
            await ws.send_json({"type": "count", "n": 3})
            await ws.send_json({"type": "count", "n": 4})
            assert await ws.wait_closed() == 4429
        # The budget is per connection: a new connection starts afresh.
        async with client.connect() as other:
            await other.send_json({"type": "count", "n": 10})
            assert await other.receive_json() == {"n": 10}
    assert handled == [0, 1, 2, 10]


class Recorder(BaseMiddleware):
    """Records the order in which hooks run, before and after the rest of the chain."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    async def on_connect(self, handler: ConnectHandler, websocket: WebSocket) -> Any:
        self.log.append(f"{self.name}:connect")
        return await handler(websocket)

    async def on_message(self, handler: MessageNext, websocket: WebSocket, message: JSONObject) -> Any:
        self.log.append(f"{self.name}:message")
        result = await handler(websocket, message)
        self.log.append(f"{self.name}:after")
        return result

    async def on_disconnect(self, handler: DisconnectHandler, websocket: WebSocket, reason: str) -> Any:
        self.log.append(f"{self.name}:disconnect")
        return await handler(websocket, reason)


async def test_order_server_then_outer_router_then_inner_router() -> None:
    log: list[str] = []
    outer, inner = Router(), Router()
    outer.include_router(inner)
    outer.add_middleware(Recorder("outer", log))
    inner.add_middleware(Recorder("inner", log))

    @inner.connect()
    async def on_connect(websocket: WebSocket) -> None:
        log.append("handler:connect")

    @inner.message("go")
    async def on_go(websocket: WebSocket, message: BaseMessage) -> None:
        log.append("handler:message")
        await websocket.send_json({"ok": True})

    @inner.disconnect()
    async def on_disconnect(websocket: WebSocket, reason: str) -> None:
        log.append("handler:disconnect")

    server = WebSocketServer()
    server.add_middleware(Recorder("s1", log))
    server.add_middleware(Recorder("s2", log))
    server.include_router(outer)
    async with TestClient(server) as client, client.connect() as ws:
        await ws.send_json({"type": "go"})
        assert await ws.receive_json() == {"ok": True}
        assert log == [
            "s1:connect", "s2:connect", "outer:connect", "inner:connect", "handler:connect",
            "s1:message", "s2:message", "outer:message", "inner:message", "handler:message",
            "inner:after", "outer:after", "s2:after", "s1:after",
        ]  # fmt: skip
    await asyncio.sleep(0.05)
    assert log[-5:] == ["s1:disconnect", "s2:disconnect", "outer:disconnect", "inner:disconnect", "handler:disconnect"]


class DropOdd(BaseMiddleware):
    """Does not call ``handler`` for odd numbers: the event stops there."""

    async def on_message(self, handler: MessageNext, websocket: WebSocket, message: JSONObject) -> Any:
        if message.get("n", 0) % 2:
            return None
        return await handler(websocket, message)


class Explode(BaseMiddleware):
    async def on_message(self, handler: MessageNext, websocket: WebSocket, message: JSONObject) -> Any:
        if message.get("explode"):
            raise ValueError("middleware failure")
        return await handler(websocket, message)


class RewriteMessage(BaseMiddleware):
    """Middleware see the decoded object before validation and may change it."""

    async def on_message(self, handler: MessageNext, websocket: WebSocket, message: JSONObject) -> Any:
        message.setdefault("n", 100)
        return await handler(websocket, message)


async def test_middleware_can_stop_rewrite_or_fail_an_event() -> None:
    handled: list[int] = []
    router = Router()

    @router.message("num")
    async def on_num(websocket: WebSocket, message: BaseMessage) -> None:
        handled.append(message.model_dump()["n"])
        await websocket.send_json({"n": handled[-1]})

    server = WebSocketServer()
    server.add_middleware(Explode())
    server.add_middleware(RewriteMessage())
    router.add_middleware(DropOdd())
    server.include_router(router)
    async with TestClient(server) as client, client.connect() as ws:
        for n in (1, 2, 3):
            await ws.send_json({"type": "num", "n": n})
        assert await ws.receive_json() == {"n": 2}
        await ws.send_json({"type": "num", "explode": True, "n": 4})
        assert (await ws.receive_json())["code"] == "internal_error"
        await ws.send_json({"type": "num"})
        assert await ws.receive_json() == {"n": 100}
    assert handled == [2, 100]


class RefuseConnect(BaseMiddleware):
    async def on_connect(self, handler: ConnectHandler, websocket: WebSocket) -> Any:
        return None  # never calls handler


class FailConnect(BaseMiddleware):
    async def on_connect(self, handler: ConnectHandler, websocket: WebSocket) -> Any:
        raise RuntimeError("connect middleware failure")


@pytest.mark.parametrize(("middleware", "code"), [(RefuseConnect(), 1008), (FailConnect(), 1011)])
@pytest.mark.parametrize("level", ["server", "router"])
async def test_connect_refused_or_failing_runs_no_handlers(middleware: BaseMiddleware, code: int, level: str) -> None:
    calls: list[str] = []
    router = Router()

    @router.connect()
    async def on_connect(websocket: WebSocket) -> None:
        calls.append("connect")

    @router.message("x")
    async def on_x(websocket: WebSocket, message: BaseMessage) -> None:
        calls.append("message")

    @router.disconnect()
    async def on_disconnect(websocket: WebSocket, reason: str) -> None:
        calls.append("disconnect")

    server = WebSocketServer()
    if level == "server":
        server.add_middleware(middleware)
    else:
        router.add_middleware(middleware)
    server.include_router(router)
    async with TestClient(server) as client, client.connect() as ws:
        with contextlib.suppress(ConnectionClosed):  # the server may have closed already
            await ws.send_json({"type": "x"})
        assert await ws.wait_closed() == code
    await asyncio.sleep(0.05)
    assert calls == []


async def test_user_middleware_with_state_and_no_super_init() -> None:
    class Counter(BaseMiddleware):
        def __init__(self) -> None:
            self.count = 0

        async def on_message(self, handler: MessageNext, websocket: WebSocket, message: JSONObject) -> Any:
            self.count += 1
            websocket.context["count"] = self.count
            return await handler(websocket, message)

    counter = Counter()
    router = Router()

    @router.message("hit")
    async def on_hit(websocket: WebSocket, message: BaseMessage) -> None:
        await websocket.send_json({"count": websocket.context["count"]})

    server = WebSocketServer()
    server.add_middleware(counter)
    server.include_router(router)
    async with TestClient(server) as client, client.connect() as ws:
        for expected in (1, 2, 3):
            await ws.send_json({"type": "hit"})
            assert await ws.receive_json() == {"count": expected}
    assert counter.count == 3
