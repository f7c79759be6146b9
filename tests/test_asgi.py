"""aiows as an ASGI app: mounted in FastAPI, Starlette and Litestar, served by uvicorn, hypercorn and granian.

Every server runs in its own process on 127.0.0.1 (``tests/asgi_apps/``). Each test checks that the host's
HTTP route and aiows' health endpoint answer, the quick start's chat exchange, an error frame, ``receive_json()``
inside a handler, ``AuthMiddleware`` refusing a bad token with 4401, a broadcast to two connections in one
room, request/reply, a server-to-client request and recovery of a room's history, the browser client at ``/aiows.js``, a message over ``max_message_size`` closing with 1009, and that SIGTERM closes an open connection with 1001
(aiows holds the signal while it drains: see ``aiows/asgi.py``; on granian only mostly) and the server exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ormsgpack
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from processes import free_port, wait_for_port

APPS = Path(__file__).resolve().parent / "asgi_apps"
SECRET = "a-test-secret-that-is-long-enough-for-aiows"

#: id -> (command after the interpreter, with {module} and {port}; the host app's module; the mount prefix)
SERVERS: dict[str, tuple[list[str], str, str]] = {
    "uvicorn-websockets-fastapi": (["-m", "uvicorn", "{module}:app", "--port", "{port}", "--ws", "websockets"], "fastapi_app", "/ws"),
    "uvicorn-wsproto-fastapi": (["-m", "uvicorn", "{module}:app", "--port", "{port}", "--ws", "wsproto"], "fastapi_app", "/ws"),
    "uvicorn-starlette": (["-m", "uvicorn", "{module}:app", "--port", "{port}"], "starlette_app", "/ws"),
    "uvicorn-litestar": (["-m", "uvicorn", "{module}:app", "--port", "{port}"], "litestar_app", "/ws"),
    "uvicorn-aiows-alone": (["-m", "uvicorn", "{module}:app", "--port", "{port}"], "bare_app", ""),
    # --workers 0: hypercorn serves in its own process, which gets the SIGTERM (with workers, hypercorn's
    # parent process takes it and its worker never sees a signal: see the table in docs/guides/asgi.md).
    "hypercorn-fastapi": (
        ["-m", "hypercorn", "{module}:app", "--bind", "127.0.0.1:{port}", "--workers", "0", "--graceful-timeout", "10"],
        "fastapi_app", "/ws",
    ),  # fmt: skip
    "granian-fastapi": (
        ["-m", "granian", "--interface", "asgi", "{module}:app", "--host", "127.0.0.1", "--port", "{port}"],
        "fastapi_app", "/ws",
    ),  # fmt: skip
}

#: What each server and app needs installed.
NEEDS = {
    "uvicorn": ["uvicorn"],
    "hypercorn": ["hypercorn"],
    "granian": ["granian"],
    "fastapi_app": ["fastapi"],
    "starlette_app": ["starlette"],
    "litestar_app": ["litestar"],
    "wsproto": ["wsproto"],
}


def missing(name: str) -> list[str]:
    command, module, _ = SERVERS[name]
    wanted = NEEDS[command[1]] + NEEDS.get(module, []) + (NEEDS["wsproto"] if "wsproto" in command else [])
    return [package for package in wanted if importlib.util.find_spec(package) is None]


class Served:
    def __init__(self, process: subprocess.Popen[bytes], port: int, prefix: str, racy_shutdown: bool) -> None:
        self.process = process
        self.port = port
        self.prefix = prefix
        self.racy_shutdown = racy_shutdown

    def url(self, path: str, scheme: str = "ws") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{self.prefix}{path}"


@pytest.fixture(params=list(SERVERS))
def served(request: pytest.FixtureRequest) -> Iterator[Served]:
    name: str = request.param
    absent = missing(name)
    if absent:
        pytest.skip(f"{', '.join(absent)} not installed")
    command, module, prefix = SERVERS[name]
    yield from serve(command, module, prefix, racy_shutdown=name.startswith("granian"))


def serve(command: list[str], module: str, prefix: str, racy_shutdown: bool = False) -> Iterator[Served]:
    """Serve ``tests/asgi_apps/<module>.py`` with ``command`` in a process of its own until closed."""
    port = free_port()
    argv = [sys.executable, *(part.format(module=module, port=port) for part in command)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(APPS), os.environ.get("PYTHONPATH")])))
    # Its own process group: whatever the test does, no worker process (granian's, hypercorn's) outlives it.
    process = subprocess.Popen(
        argv, cwd=APPS, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        wait_for_port(port, process, timeout=30)
        yield Served(process, port, prefix, racy_shutdown)
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=10)


def http_get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def read_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        text: str = response.read().decode()
        return text


async def receive(ws: ClientConnection) -> Any:
    return json.loads(await asyncio.wait_for(ws.recv(), 10))


async def open_chat(served: Served, user: str) -> ClientConnection:
    ws = await connect(served.url(f"/chat?token={user}{SECRET}"), open_timeout=10)
    assert await receive(ws) == {"type": "welcome", "user_id": user, "path": "/chat"}
    return ws


async def exchange(served: Served) -> None:
    ann = await open_chat(served, "ann")
    await ann.send(json.dumps({"type": "chat", "text": "hi", "user_id": 1}))
    assert await receive(ann) == {"type": "chat_response", "echo": {"type": "chat", "text": "hi", "user_id": 1}}

    await ann.send(json.dumps({"type": "chat", "text": 5}))
    error = await receive(ann)
    assert error["type"] == "error" and error["code"] == "validation_error"
    await ann.send("not json")
    assert (await receive(ann))["code"] == "invalid_json"
    await ann.send(json.dumps({"type": "nope"}))
    assert (await receive(ann))["code"] == "unknown_type"

    await ann.send(json.dumps({"type": "ask"}))
    assert await receive(ann) == {"type": "question"}
    await ann.send(json.dumps({"answer": 42}))
    assert await receive(ann) == {"type": "answered", "answer": {"answer": 42}}

    bob = await open_chat(served, "bob")
    await ann.send(json.dumps({"type": "join", "room": "lobby"}))
    assert await receive(ann) == {"type": "joined", "room": "lobby", "members": 1}
    await bob.send(json.dumps({"type": "join", "room": "lobby"}))
    assert await receive(bob) == {"type": "joined", "room": "lobby", "members": 2}
    await bob.send(json.dumps({"type": "say", "room": "lobby", "text": "hello room"}))
    said = await receive(ann)
    assert said == {"type": "said", "text": "hello room", "room": "lobby", "offset": 1, "epoch": said["epoch"]}
    assert await receive(bob) == said
    await bob.close()
    await delivery(served, ann, said["epoch"])
    await messagepack(served, ann)
    await ann.close()

    forged = await connect(served.url("/chat?token=mallory"), open_timeout=10)
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(forged.recv(), 10)
    assert forged.close_code == 4401

    big = await open_chat(served, "dan")  # over max_message_size (1 MiB): 1009, as on the built-in transports
    await big.send(json.dumps({"type": "chat", "text": "x" * 2**20, "user_id": 1}))
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(big.recv(), 10)
    assert big.close_code == 1009

    with pytest.raises(InvalidStatus) as refused:  # nothing serves that path: refused at the handshake
        await connect(served.url("/elsewhere"), open_timeout=10)
    assert refused.value.response.status_code in (403, 404)


async def delivery(served: Served, ann: ClientConnection, epoch: str) -> None:
    """Request/reply, a server-to-client request and recovery of a room's history, as over the built-in transports.

    ``ann`` is in room ``lobby``, whose last publication (offset 1, ``epoch``) she has seen; bob has left.
    """
    await ann.send(json.dumps({"type": "add", "a": 2, "b": 3, "ref": "r1"}))
    assert await receive(ann) == {"type": "reply", "ref": "r1", "data": {"sum": 5}}
    await ann.send(json.dumps({"type": "nope", "ref": 2}))
    error = await receive(ann)
    assert (error["type"], error["code"], error["ref"]) == ("error", "unknown_type", 2)
    await ann.send(json.dumps({"type": "confirm", "ref": 3}))
    asked = await receive(ann)
    assert asked["type"] == "sure?" and isinstance(asked["ref"], int)
    await ann.send(json.dumps({"type": "reply", "ref": asked["ref"], "data": "yes"}))
    assert await receive(ann) == {"type": "reply", "ref": 3, "data": "yes"}
    await ann.send(json.dumps({"type": "reply", "ref": asked["ref"], "data": "again"}))
    assert (await receive(ann))["code"] == "unknown_ref"

    for text in ("m2", "m3"):  # said while bob is away
        await ann.send(json.dumps({"type": "say", "room": "lobby", "text": text}))
        assert (await receive(ann))["text"] == text
    bob = await open_chat(served, "bob")
    await bob.send(json.dumps({"type": "rejoin", "room": "lobby", "offset": 1, "epoch": epoch, "ref": 4}))
    missed = [await receive(bob), await receive(bob)]
    assert [(frame["text"], frame["offset"], frame["epoch"]) for frame in missed] == [("m2", 2, epoch), ("m3", 3, epoch)]
    assert await receive(bob) == {"type": "reply", "ref": 4, "data": {"recovered": True, "position": {"epoch": epoch, "offset": 3}}}
    await bob.close()


async def messagepack(served: Served, ann: ClientConnection) -> None:
    """A client that offers ``aiows.msgpack`` gets binary MessagePack frames both ways; ``ann`` (JSON) is in ``lobby``."""
    pat = await connect(served.url(f"/chat?token=pat{SECRET}"), subprotocols=[Subprotocol("aiows.msgpack")], open_timeout=10)
    assert pat.subprotocol == "aiows.msgpack"

    async def unpacked() -> Any:
        frame = await asyncio.wait_for(pat.recv(), 10)
        assert isinstance(frame, bytes)
        return ormsgpack.unpackb(frame)

    assert await unpacked() == {"type": "welcome", "user_id": "pat", "path": "/chat"}
    await pat.send(ormsgpack.packb({"type": "add", "a": 1, "b": 2, "ref": 1}))
    assert await unpacked() == {"type": "reply", "ref": 1, "data": {"sum": 3}}
    await pat.send(b"\xc1")
    assert (await unpacked())["code"] == "invalid_msgpack"
    await pat.send(ormsgpack.packb({"type": "join", "room": "lobby"}))
    assert (await unpacked())["type"] == "joined"
    await ann.send(json.dumps({"type": "say", "room": "lobby", "text": "to both"}))
    said = await unpacked()
    assert (said["text"], said["room"]) == ("to both", "lobby")
    assert await receive(ann) == said  # the same publication, in JSON
    await pat.close()


def test_mounted_app_serves_chat_http_auth_rooms_and_closes_with_1001_on_sigterm(served: Served) -> None:
    status, body = http_get(f"http://127.0.0.1:{served.port}/")
    assert status == 200 and body["hello"], body
    status, body = http_get(served.url("/healthz", "http"))
    assert status == 200 and body["status"] == "ok", body
    with urllib.request.urlopen(served.url("/aiows.js", "http"), timeout=10) as response:  # the browser client
        assert response.headers["Content-Type"].startswith("text/javascript") and b"aiows" in response.read()
    status, body = http_get(served.url("/asyncapi.json", "http"))  # the contract, under the mount's prefix too
    assert status == 200 and body["asyncapi"] == "3.0.0" and body["channels"]["chat"]["address"] == "/chat", body
    with urllib.request.urlopen(served.url("/docs", "http"), timeout=10) as response:
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
        assert b'<a href="asyncapi.json">' in response.read()

    async def scenario() -> tuple[int | None, str | None, float]:
        await exchange(served)
        last = await open_chat(served, "carol")
        served.process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(last.recv(), 15)
        return last.close_code, last.close_reason, time.monotonic() - started

    code, reason, took = asyncio.run(scenario())
    if served.racy_shutdown:
        # granian runs its own signal handler from the event loop's signal wake-up, which aiows cannot hold:
        # its shutdown races aiows' 1001 (aiows wins most runs) and may drop the connection first.
        assert code in (1001, 1006)
    else:
        assert (code, reason) == (1001, "server shutting down")
    assert took < 5
    try:
        returncode = served.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("the server did not exit after SIGTERM")
    # uvicorn re-raises the signal it handled once it has shut down: it ends by SIGTERM, as without aiows.
    assert returncode in (0, -signal.SIGTERM)


def test_options_the_asgi_server_owns_are_refused_by_name() -> None:
    from aiows import WebSocketServer

    with pytest.raises(ValueError) as refused:
        WebSocketServer(ping_interval=5.0, compression="deflate").asgi()
    message = str(refused.value)
    assert "ping_interval=5.0" in message and "--ws-ping-interval" in message
    assert "compression='deflate'" in message and "--ws-per-message-deflate" in message
    for name in ("ping_timeout", "open_timeout", "transport", "loop"):
        assert name not in message
    with pytest.raises(ValueError, match="transport='picows'"):
        WebSocketServer(transport="picows").asgi()
    # Everything else is aiows' own and works under ASGI.
    WebSocketServer(
        max_message_size=4096, max_queue=4, idle_timeout=30.0, send_timeout=5.0, close_timeout=2.0,
        max_connections=10, max_connections_per_ip=2, origins=["https://app.example"], shutdown_grace=1.0,
    ).asgi()  # fmt: skip


def test_every_send_runs_in_a_task_of_its_own_in_order() -> None:
    """ASGI servers' ``send()`` may need a task (uvicorn's ``--ws websockets`` closes under ``asyncio.timeout()``).

    This plays an ASGI server whose ``send()`` waits twice and checks, each time, that it runs in a task that is
    not the handler's: a send resumed from a callback (no task), or run in the handler's task (whose timeout
    would cancel the handler), failed it, and the client then waited ``close_timeout`` for its close.
    """
    from aiows import Router, WebSocket, WebSocketServer

    router = Router()
    handler_tasks: list[asyncio.Task[Any] | None] = []

    @router.connect()
    async def greet(websocket: WebSocket) -> None:
        handler_tasks.append(asyncio.current_task())
        for n in range(3):
            await websocket.send_json({"n": n})  # queued behind a send that waits
        await websocket.close(4000, "done")

    server = WebSocketServer()
    server.include_router(router)
    app = server.asgi(handle_signals=False)
    sent: list[dict[str, Any]] = []
    wrong: list[str] = []

    async def scenario() -> None:
        incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        await incoming.put({"type": "websocket.connect"})

        async def receive() -> dict[str, Any]:
            return await incoming.get()

        async def send(message: dict[str, Any]) -> None:
            for _ in range(2):
                task = asyncio.current_task()
                if task is None or task in handler_tasks:
                    wrong.append(f"{message['type']} ran in {'no task' if task is None else 'the handler task'}")
                await asyncio.sleep(0)
            sent.append(message)
            if message["type"] == "websocket.close":
                await incoming.put({"type": "websocket.disconnect", "code": message["code"]})

        scope = {"type": "websocket", "path": "/", "query_string": b"", "headers": [], "client": ("127.0.0.1", 1)}
        await asyncio.wait_for(app(scope, receive, send), 5)
        await app.shutdown()

    asyncio.run(scenario())
    assert wrong == []
    assert [message["type"] for message in sent] == ["websocket.accept"] + ["websocket.send"] * 3 + ["websocket.close"]
    assert [json.loads(message["text"])["n"] for message in sent[1:4]] == [0, 1, 2]
    assert sent[-1]["code"] == 4000


def test_stats_and_metrics_count_asgi_connections_and_their_bytes() -> None:
    """Under uvicorn: the health endpoint's stats and the Prometheus scrape (an ``http`` scope through the gate)
    count the connection under transport ``asgi``, its message by type and its payload bytes in and out."""
    parser = pytest.importorskip("prometheus_client.parser")
    if importlib.util.find_spec("uvicorn") is None:
        pytest.skip("uvicorn not installed")
    served = serve(["-m", "uvicorn", "{module}:app", "--port", "{port}"], "metered_app", "")
    with contextlib.closing(served) as running:
        app = next(running)
        request = json.dumps({"type": "chat", "text": "hi", "user_id": 1})
        reply = json.dumps({"type": "chat", "text": "hi"}, separators=(",", ":"))

        async def chat() -> None:
            async with connect(app.url("/chat"), open_timeout=10) as ws:
                await ws.send(request)
                assert await asyncio.wait_for(ws.recv(), 10) == reply
                status, health = await asyncio.to_thread(http_get, app.url("/healthz", "http"))
                assert status == 200, health
                stats = health["stats"]
                assert stats["connections_by_transport"] == {"asgi": 1}
                assert stats["connections_by_path"] == {"/chat": 1}
                assert stats["messages_by_type"] == {"chat": 1} and stats["uptime"] > 0
                text = await asyncio.to_thread(read_text, app.url("/metrics", "http"))
                samples = {
                    (sample.name, tuple(sorted(sample.labels.items()))): sample.value
                    for family in parser.text_string_to_metric_families(text)
                    for sample in family.samples
                }
                assert samples[("aiows_connections_open", (("path", "/chat"), ("transport", "asgi")))] == 1
                assert samples[("aiows_messages_received_total", (("type", "chat"),))] == 1
                assert samples[("aiows_received_bytes_total", ())] == len(request)
                assert samples[("aiows_sent_bytes_total", ())] == len(reply)

        asyncio.run(chat())
