"""RateLimitingMiddleware: token bucket, burst, keys (connection, user, IP), over-limit modes, memory."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from websockets.exceptions import ConnectionClosed

from aiows import AuthMiddleware, BaseMessage, RateLimitingMiddleware, Router, WebSocket, WebSocketServer
from aiows.testing import TestClient, TestConnection

SECRET = "rate-limit-test-secret-0123456789abcdef"
RATE_LIMITED_FRAME = {"type": "error", "code": "rate_limited", "message": "rate limit exceeded: message dropped"}


def app(limiter: RateLimitingMiddleware, auth: bool = False) -> tuple[WebSocketServer, list[tuple[str, int]]]:
    handled: list[tuple[str, int]] = []
    router = Router()

    @router.message("count")
    async def on_count(websocket: WebSocket, message: BaseMessage) -> None:
        n = message.model_dump()["n"]
        handled.append((str(websocket.context.get("user_id")), n))
        await websocket.send_json({"n": n})

    server = WebSocketServer()
    if auth:
        server.add_middleware(AuthMiddleware(SECRET))
    server.add_middleware(limiter)
    server.include_router(router)
    return server, handled


async def send(ws: TestConnection, n: int) -> object:
    await ws.send_json({"type": "count", "n": n})
    return await ws.receive_json()


async def test_burst_then_close_4429_by_default() -> None:
    server, handled = app(RateLimitingMiddleware(60, burst=2))
    async with TestClient(server) as client, client.connect() as ws:
        assert await send(ws, 1) == {"n": 1}
        assert await send(ws, 2) == {"n": 2}
        with contextlib.suppress(ConnectionClosed):
            await ws.send_json({"type": "count", "n": 3})
            await ws.send_json({"type": "count", "n": 4})
        assert await ws.wait_closed() == 4429
    assert [n for _, n in handled] == [1, 2]


async def test_error_frame_mode_drops_the_message_and_keeps_the_connection() -> None:
    server, handled = app(RateLimitingMiddleware(60, burst=2, on_limit="error"))
    async with TestClient(server) as client, client.connect() as ws:
        assert await send(ws, 1) == {"n": 1}
        assert await send(ws, 2) == {"n": 2}
        assert await send(ws, 3) == RATE_LIMITED_FRAME
        assert await send(ws, 4) == RATE_LIMITED_FRAME
        assert not ws.ws.close_code
    assert [n for _, n in handled] == [1, 2]


async def test_per_user_budget_is_shared_across_that_users_connections() -> None:
    limiter = RateLimitingMiddleware(60, burst=3, per="user", on_limit="error")
    server, handled = app(limiter, auth=True)
    async with TestClient(server) as client:
        async with (
            client.connect(f"/?token=alice{SECRET}") as alice1,
            client.connect(f"/?token=alice{SECRET}") as alice2,
            client.connect(f"/?token=bob{SECRET}") as bob,
        ):
            assert await send(alice1, 1) == {"n": 1}
            assert await send(alice1, 2) == {"n": 2}
            assert await send(alice2, 3) == {"n": 3}
            assert await send(alice2, 4) == RATE_LIMITED_FRAME  # alice's budget is spent on both connections
            assert await send(alice1, 5) == RATE_LIMITED_FRAME
            assert await send(bob, 6) == {"n": 6}  # bob has his own
        # Alice's budget outlives her connections: reconnecting does not reset it.
        async with client.connect(f"/?token=alice{SECRET}") as alice3:
            assert await send(alice3, 7) == RATE_LIMITED_FRAME
    assert handled == [("alice", 1), ("alice", 2), ("alice", 3), ("bob", 6)]


async def test_per_ip_budget_is_shared_by_connections_from_one_address() -> None:
    server, handled = app(RateLimitingMiddleware(60, burst=2, per="ip", on_limit="error"))
    async with TestClient(server) as client, client.connect() as first, client.connect() as second:
        assert await send(first, 1) == {"n": 1}
        assert await send(second, 2) == {"n": 2}
        assert await send(first, 3) == RATE_LIMITED_FRAME
        assert await send(second, 4) == RATE_LIMITED_FRAME


async def test_per_connection_budgets_are_separate_and_forgotten_on_disconnect() -> None:
    limiter = RateLimitingMiddleware(60, burst=1, on_limit="error")
    server, handled = app(limiter)
    async with TestClient(server) as client:
        async with client.connect() as first, client.connect() as second:
            assert await send(first, 1) == {"n": 1}
            assert await send(second, 2) == {"n": 2}
            assert await send(first, 3) == RATE_LIMITED_FRAME
            assert limiter.tracked_keys == 2
        await asyncio.sleep(0.1)
        assert limiter.tracked_keys == 0


async def test_user_keys_in_memory_stay_bounded_over_real_connections() -> None:
    limiter = RateLimitingMiddleware(60, burst=5, per="user", max_keys=3)
    server, handled = app(limiter, auth=True)
    async with TestClient(server) as client:
        for user in range(8):
            async with client.connect(f"/?token=user{user}{SECRET}") as ws:
                assert await send(ws, user) == {"n": user}
                assert limiter.tracked_keys <= 3
    assert limiter.tracked_keys == 3
    assert len(handled) == 8


def test_token_bucket_refills_at_the_sustained_rate() -> None:
    limiter = RateLimitingMiddleware(60, burst=2)  # one message per second sustained
    assert [limiter.allow("k", 100.0) for _ in range(3)] == [True, True, False]
    assert limiter.allow("k", 100.5) is False  # half a token
    assert limiter.allow("k", 101.0) is True
    assert limiter.allow("k", 101.0) is False
    assert [limiter.allow("k", 200.0) for _ in range(3)] == [True, True, False]  # never more than the burst


def test_default_burst_is_the_per_minute_rate() -> None:
    limiter = RateLimitingMiddleware(max_messages_per_minute=5)
    assert limiter.burst == 5
    assert [limiter.allow("k", 0.0) for _ in range(6)] == [True] * 5 + [False]


def test_keys_expire_once_refilled_and_eviction_is_least_recently_used() -> None:
    limiter = RateLimitingMiddleware(60, burst=2, max_keys=3)  # a budget refills in 2 s
    for key in ("a", "b", "c"):
        assert limiter.allow(key, 0.0)
    assert limiter.allow("a", 0.5)  # a is now the most recently used
    assert limiter.allow("d", 0.6)  # full: the least recently used (b) goes
    assert limiter.tracked_keys == 3
    assert [limiter.allow("b", 0.7), limiter.allow("b", 0.7)] == [True, True]  # b starts afresh
    assert limiter.tracked_keys == 3
    assert limiter.allow("e", 10.0)  # everything else has refilled by now: forgotten
    assert limiter.tracked_keys == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_messages_per_minute": 0},
        {"burst": 0},
        {"per": "session"},
        {"on_limit": "drop"},
        {"max_keys": 0},
    ],
)
def test_bad_options_raise(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RateLimitingMiddleware(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("trusted", [True, False])
async def test_per_ip_budgets_follow_client_ip_behind_a_trusted_proxy(trusted: bool) -> None:
    router = Router()

    @router.message("count")
    async def on_count(websocket: WebSocket, message: BaseMessage) -> None:
        await websocket.send_json({"n": message.model_dump()["n"], "ip": websocket.client_ip})

    server = WebSocketServer(trusted_proxies=["127.0.0.1"] if trusted else [])
    server.add_middleware(RateLimitingMiddleware(60, burst=1, per="ip", on_limit="error"))
    server.include_router(router)
    async with TestClient(server) as client:
        async with (
            client.connect(headers={"X-Forwarded-For": "203.0.113.7"}) as first,
            client.connect(headers={"X-Forwarded-For": "203.0.113.8"}) as second,
        ):
            assert await send(first, 1) == {"n": 1, "ip": "203.0.113.7" if trusted else "127.0.0.1"}
            reply = await send(second, 2)
    if trusted:  # two clients behind the proxy: two budgets
        assert reply == {"n": 2, "ip": "203.0.113.8"}
    else:  # a spoofed header from an untrusted peer changes nothing: one budget
        assert reply == RATE_LIMITED_FRAME
