"""``RedisBackend`` against a real ``redis-server`` started by the tests on a free loopback port.

Skipped (with the reason) when ``redis-server`` is not on PATH; ``.ci/run`` installs it.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from models import Say
from processes import free_port, wait_for_port
from websockets.asyncio.client import ClientConnection, connect

from aiows import Router, WebSocket, WebSocketServer
from aiows.broadcast import RedisBackend
from aiows.testing import TestClient, TestConnection

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
REDIS_SERVER = shutil.which("redis-server")
needs_redis = pytest.mark.skipif(
    REDIS_SERVER is None, reason="redis-server is not on PATH (apt-get install redis-server): Redis backend untested"
)






class RedisProcess:
    """A throwaway ``redis-server`` (no persistence) that a test can kill and restart on the same port."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert REDIS_SERVER is not None
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        wait_for_port(self.port, self.process)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisProcess]:
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not on PATH (apt-get install redis-server): Redis backend untested")
    server = RedisProcess(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


def start_chat(port: int, redis_url: str) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "simple_chat.py"), str(port), redis_url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    wait_for_port(port, process)
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    assert process.returncode == 0, process.stderr.read().decode() if process.stderr else ""


async def receive(ws: ClientConnection, timeout: float = 5.0) -> Any:
    """The next frame, without the ``"offset"`` and ``"epoch"`` the chat's rooms add (test_history_redis.py)."""
    frame = orjson.loads(await asyncio.wait_for(ws.recv(), timeout))
    if isinstance(frame, dict):
        frame.pop("offset", None)
        frame.pop("epoch", None)
    return frame


async def send(ws: ClientConnection, frame: dict[str, Any]) -> None:
    await ws.send(orjson.dumps(frame).decode())


async def members(ws: ClientConnection, room: str) -> int:
    await send(ws, {"type": "members", "room": room})
    reply = await receive(ws)
    assert reply["type"] == "members"
    count: int = reply["count"]
    return count


async def wait_members(ws: ClientConnection, room: str, expected: int, timeout: float = 10.0) -> int:
    """Ask until the count is ``expected`` (bounded by ``timeout``)."""
    end = time.monotonic() + timeout
    count = await members(ws, room)
    while count != expected and time.monotonic() < end:
        await asyncio.sleep(0.05)
        count = await members(ws, room)
    return count


@needs_redis
async def test_two_processes_on_two_ports_share_rooms(redis_server: RedisProcess) -> None:
    port_a, port_b = free_port(), free_port()
    a = start_chat(port_a, redis_server.url)
    try:
        b = start_chat(port_b, redis_server.url)
        try:
            async with connect(f"ws://127.0.0.1:{port_a}") as ann, connect(f"ws://127.0.0.1:{port_b}") as bob, \
                    connect(f"ws://127.0.0.1:{port_b}") as cid:  # fmt: skip
                for ws in (ann, bob, cid):
                    assert (await receive(ws))["type"] == "welcome"
                await send(ann, {"type": "join", "room": "lobby", "name": "ann"})
                assert (await receive(ann))["type"] == "joined"
                await send(cid, {"type": "join", "room": "kitchen", "name": "cid"})
                assert (await receive(cid))["members"] == 1
                # presence across processes (once both servers are subscribed and registered)
                assert await wait_members(bob, "lobby", 1) == 1
                await send(bob, {"type": "join", "room": "lobby", "name": "bob"})
                joined = {"type": "joined", "room": "lobby", "name": "bob", "members": 2}
                assert await receive(bob) == joined
                assert await receive(ann) == joined  # from process B to a client of process A
                assert await members(ann, "lobby") == 2
                await send(bob, {"type": "say", "room": "lobby", "text": "hello from B"})
                for ws in (ann, bob):
                    line = await receive(ws)
                    assert (line["type"], line["name"], line["text"]) == ("said", "bob", "hello from B")
                await send(ann, {"type": "say", "room": "lobby", "text": "hello from A"})
                for ws in (ann, bob):
                    assert (await receive(ws))["text"] == "hello from A"
                # room isolation: cid (kitchen, on B) got none of it; the next frame he gets is the global chat
                await send(ann, {"type": "chat", "text": "to everyone", "user_id": 1})
                for ws in (cid, ann, bob):
                    line = await receive(ws)
                    assert (line["type"], line["text"]) == ("chat", "to everyone")
            # the clients are gone: every process counts nobody
            async with connect(f"ws://127.0.0.1:{port_b}") as dan:
                assert (await receive(dan))["type"] == "welcome"
                assert await wait_members(dan, "lobby", 0) == 0
                assert await wait_members(dan, "kitchen", 0) == 0
        finally:
            stop(b)
    finally:
        stop(a)


PRESENCE_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from aiows.broadcast import RedisBackend

    async def main():
        backend = RedisBackend(sys.argv[1], presence_ttl=1.0)
        await backend.start(lambda room, payload: None)
        while not backend.connected:
            await asyncio.sleep(0.02)
        await backend.set_members("lobby", 3)
        print("ready", flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


@needs_redis
async def test_presence_of_a_crashed_process_expires(redis_server: RedisProcess) -> None:
    crashing = subprocess.Popen([sys.executable, "-c", PRESENCE_SCRIPT, redis_server.url], stdout=subprocess.PIPE)
    try:
        assert crashing.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(crashing.stdout.readline), 20)
        assert line.strip() == b"ready"
        backend = RedisBackend(redis_server.url, presence_ttl=1.0)
        await backend.start(lambda room, payload: None)
        try:
            await backend.set_members("lobby", 1)
            end = time.monotonic() + 10
            while not backend.connected and time.monotonic() < end:
                await asyncio.sleep(0.02)
            assert await backend.count_members("lobby", 1) == 4
            crashing.kill()  # no goodbye: its members must disappear after presence_ttl
            crashing.wait(timeout=10)
            end = time.monotonic() + 10
            while await backend.count_members("lobby", 1) != 1 and time.monotonic() < end:
                await asyncio.sleep(0.1)
            assert await backend.count_members("lobby", 1) == 1
        finally:
            await backend.stop()
    finally:
        crashing.kill()
        crashing.wait(timeout=10)


def room_server(redis_url: str) -> WebSocketServer:
    router = Router()

    @router.message("join")
    async def on_join(websocket: WebSocket, message: Say) -> None:
        await websocket.join(message.room)
        await websocket.send_json({"type": "joined"})

    @router.message("say")
    async def on_say(websocket: WebSocket, message: Say) -> None:
        await websocket.server.broadcast({"type": "said", "text": message.text}, room=message.room, exclude=websocket)
        await websocket.send_json({"type": "sent", "text": message.text})

    server = WebSocketServer(broadcast=RedisBackend(redis_url, backoff_min=0.05, backoff_max=0.5))
    server.include_router(router)
    return server


def backend_of(server: WebSocketServer) -> RedisBackend:
    backend = server.hub.backend
    assert isinstance(backend, RedisBackend)
    return backend


async def wait_connected(*servers: WebSocketServer, timeout: float = 15.0) -> bool:
    end = time.monotonic() + timeout
    while not all(backend_of(server).connected for server in servers) and time.monotonic() < end:
        await asyncio.sleep(0.05)
    return all(backend_of(server).connected for server in servers)


async def relay_until_received(sender: TestConnection, receiver: TestConnection, tag: str, tries: int = 100) -> str:
    """Say numbered lines until ``receiver`` hears one (bounded); return the text it heard."""
    for n in range(tries):
        await sender.send_json({"type": "say", "room": "r", "text": f"{tag}{n}"})
        assert (await sender.receive_json())["text"] == f"{tag}{n}"  # the handler never failed
        try:
            heard = await receiver.receive_json(timeout=0.2)
        except asyncio.TimeoutError:
            continue
        text: str = heard["text"]
        return text
    raise AssertionError(f"nothing relayed after {tries} tries")


@needs_redis
async def test_redis_restart_while_messages_flow(redis_server: RedisProcess, caplog: pytest.LogCaptureFixture) -> None:
    one, two = room_server(redis_server.url), room_server(redis_server.url)
    async with TestClient(one) as client_one, TestClient(two) as client_two:
        async with client_one.connect() as ann, client_two.connect() as bob:
            for ws in (ann, bob):
                await ws.send_json({"type": "join", "room": "r", "text": ""})
                assert (await ws.receive_json())["type"] == "joined"
            assert await wait_connected(one, two)
            assert (await relay_until_received(ann, bob, "before")).startswith("before")
            assert await one.room_members("r") == 2

            redis_server.kill()
            for n in range(20):  # messages keep flowing into the outage: handlers never fail
                await ann.send_json({"type": "say", "room": "r", "text": f"down{n}"})
                assert (await ann.receive_json())["text"] == f"down{n}"
                await asyncio.sleep(0.01)
            assert backend_of(one).lost_publications > 0
            assert await one.room_members("r") == 1  # Redis is unreachable: the local count

            redis_server.start()  # same port, empty: the servers reconnect and re-register
            assert await wait_connected(one, two)
            heard = await relay_until_received(ann, bob, "after")
            while heard.startswith("down"):  # a late line from before the outage was noticed
                heard = (await bob.receive_json())["text"]
            assert heard.startswith("after")
            assert await relay_until_received(bob, ann, "back") == "back0"
            end = time.monotonic() + 15
            while await two.room_members("r") != 2 and time.monotonic() < end:
                await asyncio.sleep(0.05)
            assert await two.room_members("r") == 2
            assert backend_of(one).disconnections >= 1
    assert "lost the connection to Redis" in caplog.text
    assert "reconnected to Redis" in caplog.text


async def test_an_unreachable_redis_never_breaks_local_rooms() -> None:
    server = room_server(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    async with TestClient(server) as client, client.connect() as ann, client.connect() as bob:
        for ws in (ann, bob):
            await ws.send_json({"type": "join", "room": "r", "text": ""})
            assert (await ws.receive_json())["type"] == "joined"
        await ann.send_json({"type": "say", "room": "r", "text": "local"})
        assert await ann.receive_json() == {"type": "sent", "text": "local"}
        assert await bob.receive_json() == {"type": "said", "text": "local"}
        assert await server.room_members("r") == 2
        assert backend_of(server).lost_publications == 1
        assert not backend_of(server).connected


def test_redis_backend_names_the_extra_when_redis_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    with pytest.raises(ImportError, match=r"aiows\[redis\]"):
        RedisBackend("redis://localhost:6379/0")
