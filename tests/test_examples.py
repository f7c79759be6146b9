"""The shipped examples, run as a user runs them: ``python examples/<name>.py PORT``."""

from __future__ import annotations

import asyncio
import signal
import urllib.request
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from processes import run_example
from websockets.asyncio.client import connect


@pytest.fixture
def chat_port() -> Iterator[int]:
    yield from run_example("simple_chat.py")


@pytest.fixture
def middleware_port() -> Iterator[int]:
    yield from run_example("middleware_example.py")


async def test_simple_chat_broadcasts_to_every_client(chat_port: int) -> None:
    url = f"ws://127.0.0.1:{chat_port}"
    async with connect(url) as alice, connect(url) as bob:
        assert orjson.loads(await alice.recv())["type"] == "welcome"
        assert orjson.loads(await bob.recv())["type"] == "welcome"
        await alice.send(orjson.dumps({"type": "chat", "text": "hi bob", "user_id": 1}).decode())
        for ws in (alice, bob):
            line = orjson.loads(await asyncio.wait_for(ws.recv(), 5))
            assert line["type"] == "chat" and line["text"] == "hi bob" and line["user_id"] == 1
        await bob.send(orjson.dumps({"type": "chat", "text": "no user"}).decode())
        assert orjson.loads(await bob.recv())["code"] == "validation_error"


async def test_middleware_example_requires_a_token_and_echoes(middleware_port: int) -> None:
    url = f"ws://127.0.0.1:{middleware_port}"
    async with connect(f"{url}?token=user123your-secret-key") as ws:
        assert orjson.loads(await ws.recv()) == {"type": "welcome", "user_id": "user123", "authenticated": True}
        await ws.send(orjson.dumps({"type": "echo", "text": "hello"}).decode())
        echo = orjson.loads(await ws.recv())
        assert echo["data"]["text"] == "hello" and echo["count"] == 1
    async with connect(url) as anonymous:
        await asyncio.wait_for(anonymous.wait_closed(), 5)
        assert anonymous.close_code == 4401


async def test_simple_chat_rooms(chat_port: int) -> None:
    url = f"ws://127.0.0.1:{chat_port}"

    positions: list[tuple[str, int]] = []

    async def receive(ws: Any) -> Any:
        frame = orjson.loads(await asyncio.wait_for(ws.recv(), 5))
        if "offset" in frame:  # the room's history numbers every publication
            positions.append((frame.pop("epoch"), frame.pop("offset")))
        return frame

    async def send(ws: Any, frame: dict[str, Any]) -> None:
        await ws.send(orjson.dumps(frame).decode())

    async with connect(url) as ann, connect(url) as bob, connect(url) as cid:
        for ws in (ann, bob, cid):
            assert (await receive(ws))["type"] == "welcome"
        await send(ann, {"type": "join", "room": "lobby", "name": "ann"})
        assert await receive(ann) == {"type": "joined", "room": "lobby", "name": "ann", "members": 1}
        await send(bob, {"type": "join", "room": "lobby", "name": "bob"})
        for ws in (ann, bob):
            assert await receive(ws) == {"type": "joined", "room": "lobby", "name": "bob", "members": 2}
        assert [offset for _, offset in positions] == [1, 2, 2] and len({epoch for epoch, _ in positions}) == 1
        await send(cid, {"type": "say", "room": "lobby", "text": "let me in"})
        error = await receive(cid)
        assert error["type"] == "error" and error["code"] == "not_in_room"
        await send(cid, {"type": "join", "room": ""})
        assert (await receive(cid))["code"] == "validation_error"
        await send(ann, {"type": "say", "room": "lobby", "text": "hi bob"})
        for ws in (ann, bob):
            line = await receive(ws)
            assert (line["type"], line["room"], line["name"], line["text"]) == ("said", "lobby", "ann", "hi bob")
        await send(cid, {"type": "members", "room": "lobby"})
        assert await receive(cid) == {"type": "members", "room": "lobby", "count": 2}
        await send(bob, {"type": "leave", "room": "lobby"})
        left = {"type": "left", "room": "lobby", "name": "bob", "members": 1}
        assert await receive(ann) == left
        assert await receive(bob) == left
        await send(bob, {"type": "leave", "room": "lobby"})
        assert (await receive(bob))["code"] == "not_in_room"
        # bob comes back from the last position he saw: his own "left" was not sent to him (he had left)
        epoch, offset = positions[-1]
        await send(bob, {"type": "join", "room": "lobby", "name": "bob", "offset": offset - 1, "epoch": epoch, "ref": 1})
        assert (await receive(bob))["type"] == "left"  # recovered
        assert (await receive(bob))["members"] == 2  # live
        assert await receive(bob) == {"type": "reply", "ref": 1, "data": {"room": "lobby", "recovered": True, "members": 2}}
        assert (await receive(ann))["members"] == 2
    # the three are gone: the server stays up and counts nobody
    async with connect(url) as dan:
        assert (await receive(dan))["type"] == "welcome"
        for _ in range(100):  # bounded: the disconnects are handled asynchronously
            await send(dan, {"type": "members", "room": "lobby"})
            if (await receive(dan))["count"] == 0:
                break
            await asyncio.sleep(0.02)
        await send(dan, {"type": "members", "room": "lobby"})
        assert (await receive(dan))["count"] == 0


@pytest.fixture
def echo_port() -> Iterator[int]:
    yield from run_example("echo.py")


async def test_echo_example_echoes_every_frame_on_every_path_with_large_messages(echo_port: int) -> None:
    big = bytes(range(256)) * (12 * 4096)  # 12 MiB of binary
    for path in ("/", "/any/path?x=1"):
        async with connect(f"ws://127.0.0.1:{echo_port}{path}", max_size=None) as ws:
            await ws.send("not json, just text")
            assert await ws.recv() == "not json, just text"
            await ws.send(b"\x00\x01binary")
            assert await ws.recv() == b"\x00\x01binary"
        async with connect(f"ws://127.0.0.1:{echo_port}{path}", max_size=None) as ws:
            await ws.send(big)
            assert await asyncio.wait_for(ws.recv(), 20) == big


@pytest.fixture
def deflate_echo_port() -> Iterator[int]:
    pytest.importorskip("picows")
    yield from run_example("echo.py", "--transport", "picows", "--compression", "deflate")


async def test_echo_example_flags_pick_the_transport_and_compression(deflate_echo_port: int) -> None:
    async with connect(f"ws://127.0.0.1:{deflate_echo_port}/", compression="deflate") as ws:
        assert "permessage-deflate" in (ws.response.headers.get("Sec-WebSocket-Extensions") or "")
        await ws.send("text " * 1000)
        assert await ws.recv() == "text " * 1000
        await ws.send(b"\x00" * 5000)
        assert await ws.recv() == b"\x00" * 5000


@pytest.fixture
def fastapi_mount_port() -> Iterator[int]:
    """``examples/fastapi_mount.py`` under uvicorn; uvicorn ends by the SIGTERM it handled (it re-raises it)."""
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    yield from run_example("fastapi_mount.py", exit_codes=(0, -signal.SIGTERM))


async def test_fastapi_mount_example_serves_http_and_the_mounted_chat(fastapi_mount_port: int) -> None:
    base = f"127.0.0.1:{fastapi_mount_port}"
    secret = "example-secret-key-that-is-long-enough"

    async def receive(ws: Any) -> Any:
        return orjson.loads(await asyncio.wait_for(ws.recv(), 5))

    index = await asyncio.to_thread(lambda: urllib.request.urlopen(f"http://{base}/", timeout=5).read())
    assert orjson.loads(index)["health"] == "/ws/healthz"
    async with connect(f"ws://{base}/ws/chat?token=ann{secret}") as ann, connect(
        f"ws://{base}/ws/chat?token=bob{secret}"
    ) as bob:
        assert await receive(ann) == {"type": "welcome", "user_id": "ann"}
        assert await receive(bob) == {"type": "welcome", "user_id": "bob"}
        await ann.send(orjson.dumps({"type": "join", "room": "lobby"}).decode())
        assert await receive(ann) == {"type": "joined", "room": "lobby", "members": 1}
        await bob.send(orjson.dumps({"type": "say", "room": "lobby", "text": "hi"}).decode())
        assert (await receive(bob))["code"] == "not_in_room"
        await bob.send(orjson.dumps({"type": "join", "room": "lobby"}).decode())
        assert await receive(bob) == {"type": "joined", "room": "lobby", "members": 2}
        rooms = await asyncio.to_thread(lambda: urllib.request.urlopen(f"http://{base}/rooms/lobby", timeout=5).read())
        assert orjson.loads(rooms) == {"room": "lobby", "members": 2}
        await bob.send(orjson.dumps({"type": "say", "room": "lobby", "text": "hi ann"}).decode())
        for ws in (ann, bob):
            assert await receive(ws) == {"type": "said", "room": "lobby", "user_id": "bob", "text": "hi ann"}
    async with connect(f"ws://{base}/ws/chat") as anonymous:
        await asyncio.wait_for(anonymous.wait_closed(), 5)
        assert anonymous.close_code == 4401
