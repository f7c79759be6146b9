"""``server.stats()`` and ``health_detail=True``, over real sockets on both transports."""

from __future__ import annotations

import asyncio
import time
import urllib.request

import orjson
import pytest

from aiows import (
    AuthMiddleware,
    BaseMessage,
    ChatMessage,
    RateLimitingMiddleware,
    Router,
    WebSocket,
    WebSocketServer,
)
from aiows.broadcast.hub import BroadcastStats
from aiows.exceptions import AiowsException
from aiows.stats import ServerStats, close_code_label
from aiows.testing import TestClient


def app(**options: object) -> WebSocketServer:
    chat = Router()

    @chat.message("chat")
    async def on_chat(websocket: WebSocket, message: ChatMessage) -> None:
        await websocket.send_json({"type": "chat", "text": message.text})

    everywhere = Router()

    @everywhere.message("ping")
    async def on_ping(websocket: WebSocket, message: BaseMessage) -> None:
        await websocket.send_json({"type": "pong"})

    @everywhere.message("fail")
    async def on_fail(websocket: WebSocket, message: BaseMessage) -> None:
        raise AiowsException("refused")

    @everywhere.message("shout")
    async def on_shout(websocket: WebSocket, message: BaseMessage) -> None:
        await websocket.server.broadcast({"type": "shout"})

    server = WebSocketServer(**options)  # type: ignore[arg-type]
    server.include_router(chat, path="/chat")
    server.include_router(everywhere)
    return server


async def wait_for(check: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_close_code_labels_are_bounded() -> None:
    assert [close_code_label(code) for code in (None, 1000, 1001, 1011, 4401, 4429, 3001, 4000, 4999)] == [
        "1006", "1000", "1001", "1011", "4401", "4429", "3xxx", "4xxx", "4xxx",
    ]  # fmt: skip
    assert len({close_code_label(code) for code in range(3000, 5000)}) == 4


async def test_stats_count_connections_messages_errors_and_broadcasts(transport: str) -> None:
    server = app()
    assert server.stats() == ServerStats()  # not serving yet: all zero
    async with TestClient(server) as client:
        async with client.connect("/chat") as chat, client.connect("/") as other:
            stats = server.stats()
            assert stats.connections == 2
            assert stats.connections_by_path == {"/chat": 1, "*": 1}
            assert stats.connections_by_transport == {transport: 2}
            assert stats.uptime > 0
            for _ in range(3):
                await chat.send_json({"type": "chat", "text": "hi", "user_id": 1})
                assert (await chat.receive_json())["type"] == "chat"
            await chat.send_json({"type": "chat", "text": 5})
            assert (await chat.receive_json())["code"] == "validation_error"
            await other.send_json({"type": "no such type"})
            assert (await other.receive_json())["code"] == "unknown_type"
            await other.send_text("{not json")
            assert (await other.receive_json())["code"] == "invalid_json"
            await other.send_json({"type": "fail"})
            assert (await other.receive_json())["code"] == "internal_error"
            await other.send_json({"type": "shout"})
            assert await other.receive_json() == {"type": "shout"}
            assert await chat.receive_json() == {"type": "shout"}
            stats = server.stats()
            assert stats.messages == 8
            assert stats.messages_by_type == {}  # by type: with metrics_path only
            assert stats.errors == {"validation_error": 1, "unknown_type": 1, "invalid_json": 1, "internal_error": 1}
            assert stats.broadcast.broadcasts == 1 and stats.broadcast.delivered == 2
            await other.close(4000, "bye")
        await wait_for(lambda: server.stats().connections == 0)
        stats = server.stats()
        assert stats.connections_opened == 2
        assert stats.connections_closed == {"1000": 1, "4xxx": 1}
        assert stats.messages == 8  # the connections that ended still count
        assert stats.connections_by_path == {} and stats.connections_by_transport == {}
    assert server.stats().uptime == 0.0  # stopped


async def test_stats_count_auth_failures_and_rate_limiting(transport: str) -> None:
    server = app()
    server.add_middleware(AuthMiddleware("a-long-enough-secret"))
    server.add_middleware(RateLimitingMiddleware(60, burst=2, on_limit="error"))
    async with TestClient(server) as client:
        for _ in range(2):
            async with client.connect("/?token=nope") as refused:
                assert await refused.wait_closed() == 4401
        async with client.connect("/?token=ann" + "a-long-enough-secret") as ws:
            for _ in range(3):
                await ws.send_json({"type": "ping"})
                await ws.receive_json()
        await wait_for(lambda: server.stats().connections == 0)
    stats = server.stats()
    assert stats.auth_failures == 2
    assert stats.rate_limited == {"error": 1}
    assert stats.errors == {"rate_limited": 1}
    assert stats.connections_closed == {"4401": 2, "1000": 1}

    closing = app()
    closing.add_middleware(RateLimitingMiddleware(60, burst=1))
    async with TestClient(closing) as client:
        async with client.connect("/") as ws:
            for _ in range(2):
                await ws.send_json({"type": "ping"})
            assert await ws.wait_closed() == 4429
        await wait_for(lambda: closing.stats().connections == 0)
    assert closing.stats().rate_limited == {"close": 1}
    assert closing.stats().connections_closed == {"4429": 1}


def get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=10) as response:
        return orjson.loads(response.read())


async def test_health_detail_adds_the_stats_to_the_health_endpoint(transport: str) -> None:
    async with TestClient(app(health_detail=True)) as client, client.connect("/chat"):
        health = await asyncio.to_thread(get_json, f"http://127.0.0.1:{client.port}/healthz")
        assert isinstance(health, dict)
        assert health["status"] == "ok" and health["connections"] == 1
        stats = health["stats"]
        assert stats["connections_by_path"] == {"/chat": 1}
        assert stats["connections_by_transport"] == {transport: 1}
        assert set(stats) == set(ServerStats().as_dict())
        assert set(stats["broadcast"]) == set(BroadcastStats().__dict__)
    async with TestClient(app()) as client:  # off by default: no counters for anyone who can reach the port
        health = await asyncio.to_thread(get_json, f"http://127.0.0.1:{client.port}/healthz")
        assert health == {"status": "ok", "connections": 0}


def test_stats_as_dict_is_json() -> None:
    data = app().stats().as_dict()
    assert orjson.loads(orjson.dumps(data)) == data


@pytest.mark.parametrize("name", ["health_path", "metrics_path"])
def test_paths_must_start_with_a_slash(name: str) -> None:
    with pytest.raises(ValueError, match=f"{name} must start with '/'"):
        WebSocketServer(**{name: "metrics"})  # type: ignore[arg-type]
