"""Authentication: signed tokens, plain tokens turned off, verify callables, first-message auth."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import re
import time
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from aiows import AuthMiddleware, BaseMessage, Router, WebSocket, WebSocketServer
from aiows.auth import InvalidToken, decode_token, issue_token, verify_token
from aiows.testing import TestClient, TestConnection

SECRET = "0123456789abcdef0123456789abcdef-test-secret"  # 44 bytes: no short-secret warning
SHORT_SECRET = "your-secret-key"


def app(auth: AuthMiddleware) -> tuple[WebSocketServer, list[str]]:
    """A server that records which handlers ran; the connect handler reports the context."""
    calls: list[str] = []
    router = Router()

    @router.connect()
    async def on_connect(websocket: WebSocket) -> None:
        calls.append("connect")
        await websocket.send_json(
            {
                "type": "hello",
                "user_id": websocket.context.get("user_id"),
                "authenticated": websocket.context.get("authenticated"),
                "claims": websocket.context.get("claims"),
            }
        )

    @router.message("ping")
    async def on_ping(websocket: WebSocket, message: BaseMessage) -> None:
        calls.append("message")
        await websocket.send_json({"type": "pong"})

    @router.message()
    async def on_anything(websocket: WebSocket, message: BaseMessage) -> None:
        calls.append(f"message:{message.type}")

    @router.disconnect()
    async def on_disconnect(websocket: WebSocket, reason: str) -> None:
        calls.append("disconnect")

    server = WebSocketServer()
    server.add_middleware(auth)
    server.include_router(router)
    return server, calls


async def assert_rejected(ws: TestConnection) -> None:
    """The server closes with 4401; a message sent meanwhile must not be handled."""
    with contextlib.suppress(ConnectionClosed):
        await ws.send_json({"type": "ping"})
    assert await ws.wait_closed() == 4401


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# --- aiows.auth, without sockets -------------------------------------------------------------


def test_issue_and_verify_round_trip_url_safe() -> None:
    token = issue_token("user/42 é", SECRET, expires_in=60)
    assert re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", token)
    assert verify_token(token, SECRET) == "user/42 é"
    claims = decode_token(token, SECRET)
    assert claims["sub"] == "user/42 é" and isinstance(claims["exp"], int)
    assert verify_token(token, SECRET.encode()) == "user/42 é"  # bytes secrets too
    assert verify_token(token, SECRET + "x") is None  # another secret
    assert SECRET not in token


def test_extra_claims_and_reserved_names() -> None:
    token = issue_token(7, SECRET, claims={"role": "admin"})
    assert decode_token(token, SECRET)["role"] == "admin"
    assert verify_token(token, SECRET) == "7"
    with pytest.raises(ValueError):
        issue_token("u", SECRET, claims={"sub": "other"})
    with pytest.raises(ValueError):
        issue_token("u", SECRET, expires_in=0)
    with pytest.raises(ValueError):
        issue_token("", SECRET)
    with pytest.raises(ValueError):
        issue_token("u", "")


def test_tampered_tokens_are_refused() -> None:
    token = issue_token("alice", SECRET, expires_in=60)
    payload, signature = token.split(".")
    forged_payload = b64(json.dumps({"exp": int(time.time()) + 60, "sub": "admin"}).encode())
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    for bad in [
        f"{forged_payload}.{signature}",  # another user under alice's signature
        f"{payload}.{flipped}",  # one character of the signature changed
        f"{payload}.",
        f"{payload}.{signature}.x",
        f"{payload}{signature}",
        f"{payload}.{signature}==",
        f"{payload}.{signature[:-4]}",
        "",
        ".",
        "not a token",
        "a" * 5000,
    ]:
        assert verify_token(bad, SECRET) is None, bad
    with pytest.raises(InvalidToken) as info:
        decode_token(f"{payload}.{flipped}", SECRET)
    assert info.value.reason == "bad signature"


def test_a_signed_but_malformed_payload_is_refused() -> None:
    import hashlib
    import hmac

    for payload in [b"[]", b'{"sub": "u"}', b'{"sub": 1, "exp": 9999999999}', b'{"sub": "", "exp": 9999999999}', b"{"]:
        encoded = b64(payload)
        signature = b64(hmac.new(SECRET.encode(), encoded.encode(), hashlib.sha256).digest())
        with pytest.raises(InvalidToken) as info:
            decode_token(f"{encoded}.{signature}", SECRET)
        assert info.value.reason == "malformed"


def test_expiry_has_no_leeway_by_default() -> None:
    now = 1_700_000_000.0
    token = issue_token("u", SECRET, expires_in=60, now=now)
    assert verify_token(token, SECRET, now=now + 59.9) == "u"
    assert verify_token(token, SECRET, now=now + 60) is None  # from the exp second on
    assert verify_token(token, SECRET, now=now + 65, leeway=10) == "u"
    with pytest.raises(InvalidToken) as info:
        decode_token(token, SECRET, now=now + 61)
    assert info.value.reason == "expired"


# --- AuthMiddleware over real sockets ------------------------------------------------------------


@pytest.mark.parametrize("where", ["query", "header"])
async def test_signed_token_admits_the_user(where: str) -> None:
    server, calls = app(AuthMiddleware(SECRET))
    token = issue_token("alice", SECRET, expires_in=60)
    path, headers = ("/?token=" + token, None) if where == "query" else ("/", {"Authorization": f"Bearer {token}"})
    async with TestClient(server) as client, client.connect(path, headers=headers) as ws:
        hello = await ws.receive_json()
        assert (hello["user_id"], hello["authenticated"]) == ("alice", True)
        await ws.send_json({"type": "ping"})
        assert await ws.receive_json() == {"type": "pong"}
    await asyncio.sleep(0.05)
    assert calls == ["connect", "message", "disconnect"]


async def test_plain_tokens_accepted_by_default_and_refused_when_turned_off() -> None:
    forged = f"admin{SECRET}"  # anyone who saw one plain token can write this
    server, calls = app(AuthMiddleware(SECRET))
    async with TestClient(server) as client, client.connect(f"/?token={forged}") as ws:
        assert (await ws.receive_json())["user_id"] == "admin"

    server, calls = app(AuthMiddleware(SECRET, allow_plain_tokens=False))
    async with TestClient(server) as client:
        async with client.connect(f"/?token={forged}") as ws:
            await assert_rejected(ws)
        async with client.connect(headers={"Authorization": f"Bearer {forged}"}) as ws:
            await assert_rejected(ws)
        async with client.connect(f"/?token={issue_token('admin', SECRET)}") as ws:
            assert (await ws.receive_json())["user_id"] == "admin"
    await asyncio.sleep(0.05)
    assert calls == ["connect", "disconnect"]  # only the signed token got in


async def test_tampered_expired_or_foreign_tokens_close_4401_and_run_no_handler() -> None:
    server, calls = app(AuthMiddleware(SECRET, allow_plain_tokens=False))
    good = issue_token("alice", SECRET, expires_in=60)
    payload, signature = good.split(".")
    forged_payload = b64(json.dumps({"exp": int(time.time()) + 60, "sub": "admin"}).encode())
    bad_tokens = [
        f"{forged_payload}.{signature}",
        f"{payload}.{signature[::-1]}",
        issue_token("alice", SECRET, expires_in=60, now=time.time() - 120),  # expired a minute ago
        issue_token("alice", "another-secret-of-at-least-32-bytes!!", expires_in=60),
        f"{payload}.",
    ]
    async with TestClient(server) as client:
        for token in bad_tokens:
            async with client.connect(f"/?token={token}") as ws:
                await assert_rejected(ws)
    await asyncio.sleep(0.05)
    assert calls == []


async def test_replaying_a_token_after_it_expired_is_refused() -> None:
    server, calls = app(AuthMiddleware(SECRET))
    token = issue_token("alice", SECRET, expires_in=1.5)
    expiry = decode_token(token, SECRET)["exp"]
    async with TestClient(server) as client:
        async with client.connect(f"/?token={token}") as ws:
            assert (await ws.receive_json())["user_id"] == "alice"
        await asyncio.sleep(max(0.0, expiry - time.time()) + 0.05)
        async with client.connect(f"/?token={token}") as ws:
            await assert_rejected(ws)
    await asyncio.sleep(0.05)
    assert calls == ["connect", "disconnect"]


async def test_verify_callable_sync_and_async_user_id_or_claims() -> None:
    seen: list[str] = []

    def sync_verify(token: str) -> str | None:
        seen.append(token)
        return "bob" if token == "let-bob-in" else None

    async def async_verify(token: str) -> dict[str, Any] | None:
        await asyncio.sleep(0)
        return {"sub": "carol", "role": "admin"} if token == "let-carol-in" else None

    server, calls = app(AuthMiddleware(verify=sync_verify))
    async with TestClient(server) as client:
        async with client.connect("/?token=let-bob-in") as ws:
            assert (await ws.receive_json())["user_id"] == "bob"
        async with client.connect("/?token=nope") as ws:
            await assert_rejected(ws)
    assert seen == ["let-bob-in", "nope"]

    server, calls = app(AuthMiddleware(verify=async_verify))
    async with TestClient(server) as client:
        async with client.connect(headers={"Authorization": "Bearer let-carol-in"}) as ws:
            hello = await ws.receive_json()
            assert hello["user_id"] == "carol" and hello["claims"] == {"sub": "carol", "role": "admin"}
        async with client.connect("/?token=let-bob-in") as ws:
            await assert_rejected(ws)


async def test_verify_callable_that_raises_closes_4401_without_logging_the_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(token: str) -> str:
        raise RuntimeError(f"cannot parse {token}")

    server, calls = app(AuthMiddleware(verify=broken))
    with caplog.at_level(logging.DEBUG):
        async with TestClient(server) as client, client.connect("/?token=sekrit-token-value") as ws:
            await assert_rejected(ws)
        await asyncio.sleep(0.05)
    assert calls == []
    assert any("RuntimeError" in record.getMessage() for record in caplog.records)
    assert "sekrit-token-value" not in caplog.text


def test_constructor_rules() -> None:
    with pytest.raises(ValueError):
        AuthMiddleware()
    with pytest.raises(ValueError):
        AuthMiddleware("")
    with pytest.raises(ValueError):
        AuthMiddleware(SECRET, verify=lambda token: token)
    with pytest.raises(ValueError):
        AuthMiddleware(SECRET, first_message_auth=True, auth_timeout=0)


def test_short_secret_warns_on_the_aiows_logger_without_the_secret(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="aiows"):
        AuthMiddleware(SHORT_SECRET)
    warnings = [record for record in caplog.records if record.name == "aiows" and record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "15 bytes" in warnings[0].getMessage() and "32" in warnings[0].getMessage()
    assert SHORT_SECRET not in caplog.text and SHORT_SECRET not in repr(warnings[0].args)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="aiows"):
        AuthMiddleware(SECRET)
        AuthMiddleware(verify=lambda token: None)
    assert caplog.records == []


# --- first-message authentication -------------------------------------------------------------


async def test_first_message_auth_replies_auth_ok_then_runs_connect_handlers() -> None:
    server, calls = app(AuthMiddleware(SECRET, first_message_auth=True))
    token = issue_token("dave", SECRET)
    async with TestClient(server) as client, client.connect() as ws:
        await ws.send_json({"type": "auth", "token": token})
        await ws.send_json({"type": "ping"})  # sent before auth_ok: handled after it
        assert await ws.receive_json() == {"type": "auth_ok", "user_id": "dave"}
        assert (await ws.receive_json())["user_id"] == "dave"
        assert await ws.receive_json() == {"type": "pong"}
    await asyncio.sleep(0.05)
    assert calls == ["connect", "message", "disconnect"]


async def test_first_message_auth_still_takes_a_url_token_without_auth_ok() -> None:
    server, calls = app(AuthMiddleware(SECRET, first_message_auth=True))
    async with TestClient(server) as client:
        async with client.connect(f"/?token={issue_token('erin', SECRET)}") as ws:
            assert (await ws.receive_json())["type"] == "hello"
        async with client.connect("/?token=forged-token") as ws:  # a bad URL token does not fall back
            with contextlib.suppress(ConnectionClosed):
                await ws.send_json({"type": "auth", "token": issue_token("erin", SECRET)})
            assert await ws.wait_closed() == 4401
    await asyncio.sleep(0.05)
    assert calls == ["connect", "disconnect"]


async def test_first_message_auth_times_out_with_4401() -> None:
    server, calls = app(AuthMiddleware(SECRET, first_message_auth=True, auth_timeout=0.2))
    async with TestClient(server) as client, client.connect() as ws:
        assert await ws.wait_closed() == 4401
    await asyncio.sleep(0.05)
    assert calls == []


@pytest.mark.parametrize(
    "first",
    [
        {"type": "ping"},  # not an auth message: closed, and never dispatched
        {"type": "auth"},
        {"type": "auth", "token": 123},
        {"type": "auth", "token": ""},
        {"type": "auth", "token": "forged"},
        {"type": "auth", "token": f"mallory{SECRET}"},  # plain tokens are off below
        ["auth"],
        "not json",
    ],
)
async def test_first_message_auth_failures_close_4401_and_dispatch_nothing(first: Any) -> None:
    server, calls = app(AuthMiddleware(SECRET, allow_plain_tokens=False, first_message_auth=True))
    async with TestClient(server) as client, client.connect() as ws:
        if first == "not json":
            await ws.send_text("{nope")
        else:
            await ws.send_json(first)
        with contextlib.suppress(ConnectionClosed):
            await ws.send_json({"type": "ping"})
            await ws.send_json({"type": "auth", "token": issue_token("mallory", SECRET)})
        assert await ws.wait_closed() == 4401
    await asyncio.sleep(0.05)
    assert calls == []


async def test_first_message_auth_with_a_verify_callable() -> None:
    async def verify(token: str) -> dict[str, Any] | None:
        return {"user_id": 99, "scope": "chat"} if token == "ok" else None

    server, calls = app(AuthMiddleware(verify=verify, first_message_auth=True))
    async with TestClient(server) as client, client.connect() as ws:
        await ws.send_json({"type": "auth", "token": "ok"})
        assert await ws.receive_json() == {"type": "auth_ok", "user_id": 99}
        assert (await ws.receive_json())["claims"] == {"user_id": 99, "scope": "chat"}
