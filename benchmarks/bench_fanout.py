"""Fan-out: one message to a room of 1,000 connections, in deliveries per second.

    python benchmarks/bench_fanout.py [--clients 1000] [--messages 20] [--rounds 3]

Measures, over real loopback sockets:

- aiows with the in-memory backend: ``server.broadcast(data, room=...)``;
- aiows with the Redis backend (when ``redis-server`` is on PATH; one is started
  on a free port): a server with no connections publishes, a second server
  holding the 1,000 connections receives through Redis and fans out;
- python-socketio (when ``python-socketio`` and ``aiohttp`` are installed):
  ``sio.emit(..., room=...)`` to a room of the same size, on aiohttp.

The clients run in a child process (this script with ``--client``): raw
sockets that do the handshake, then only count the frames that carry the
benchmark's marker, so the client side costs little. A round is timed from the
first broadcast until the child has counted every delivery. The encode count
is how many times the payload was serialized (aiows: ``broadcast_stats.encodes``;
python-socketio: calls to its ``json.dumps``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import importlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiows import COMPILED, BaseMessage, Router, WebSocket, WebSocketServer
from aiows.broadcast import RedisBackend

ROOM = "bench"
#: ``--paced``: one message at a time, as in a chat, rather than back-to-back bursts.
PACED = "--paced" in sys.argv
MARKER = b"fanout"

# -- the child: raw WebSocket clients that count marker frames ------------------


def masked_text_frame(payload: bytes) -> bytes:
    """A client text frame (mask key 0: the payload goes as is)."""
    assert len(payload) < 126
    return bytes([0x81, 0x80 | len(payload)]) + b"\0\0\0\0" + payload


class Counter:
    """Counts marker frames across every connection; prints ``done`` at ``target``."""

    def __init__(self) -> None:
        self.count = 0
        self.target = -1

    def add(self, n: int) -> None:
        self.count += n
        if self.count == self.target:
            print("done", flush=True)


async def client(host: str, port: int, path: str, hello: bytes, counter: Counter, ready: asyncio.Event) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    buffer = await reader.readuntil(b"\r\n\r\n")
    assert buffer.startswith(b"HTTP/1.1 101"), buffer
    writer.write(masked_text_frame(hello))
    ready.set()
    buffer = b""
    while True:
        chunk = await reader.read(65536)
        if not chunk:
            return
        buffer += chunk
        found = 0
        offset = 0
        while len(buffer) - offset >= 2:
            length = buffer[offset + 1] & 0x7F
            start = offset + 2
            if length == 126:
                if len(buffer) - offset < 4:
                    break
                length = int.from_bytes(buffer[offset + 2 : offset + 4], "big")
                start = offset + 4
            elif length == 127:
                if len(buffer) - offset < 10:
                    break
                length = int.from_bytes(buffer[offset + 2 : offset + 10], "big")
                start = offset + 10
            end = start + length
            if end > len(buffer):
                break
            if MARKER in buffer[start:end]:
                found += 1
            offset = end
        buffer = buffer[offset:]
        if found:
            counter.add(found)


async def run_clients(host: str, port: int, path: str, hello: str, clients: int) -> None:
    counter = Counter()
    tasks = []
    for _ in range(clients):
        ready = asyncio.Event()
        tasks.append(asyncio.create_task(client(host, port, path, hello.encode(), counter, ready)))
        await ready.wait()
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    while True:  # the parent writes the number of deliveries to expect, one line per round
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        counter.target = counter.count + int(line)
    for task in tasks:
        task.cancel()


# -- the parent: servers and timing ----------------------------------------------


class Clients:
    """The child process holding the client connections."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, port: int, path: str, hello: str, clients: int) -> Clients:
        process = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--client", str(port), path, hello, str(clients),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        self = cls(process)
        assert await self.line() == "ready"
        return self

    async def line(self) -> str:
        assert self.process.stdout is not None
        return (await asyncio.wait_for(self.process.stdout.readline(), 120)).decode().strip()

    async def expect(self, deliveries: int) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{deliveries}\n".encode())
        await self.process.stdin.drain()

    async def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        await asyncio.wait_for(self.process.wait(), 30)


async def wait_until(condition: Callable[[], Awaitable[bool]], timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > end:
            raise TimeoutError("the benchmark setup did not settle")
        await asyncio.sleep(0.05)


async def timed_rounds(
    clients: Clients, send: Callable[[int], Awaitable[None]], count: int, messages: int, rounds: int
) -> tuple[float, float]:
    """Of ``rounds`` rounds of ``messages`` broadcasts: the best rate in deliveries per second,
    and the least server CPU time per delivery in microseconds (this process: servers, not clients)."""
    best = 0.0
    cpu = float("inf")
    for _ in range(rounds):
        await clients.expect(count * messages)
        cpu_start = time.process_time()
        start = time.perf_counter()
        for n in range(messages):
            await send(n)
            if PACED:
                await asyncio.sleep(0.001)  # let each message go out before the next
        assert await clients.line() == "done"
        best = max(best, count * messages / (time.perf_counter() - start))
        cpu = min(cpu, (time.process_time() - cpu_start) * 1e6 / (count * messages))
    return best, cpu


class Join(BaseMessage):
    room: str


def bench_app(backend: RedisBackend | None) -> WebSocketServer:
    router = Router()

    @router.message("join")
    async def on_join(websocket: WebSocket, message: Join) -> None:
        await websocket.join(message.room)

    server = WebSocketServer(broadcast=backend, ping_interval=None, outgoing_queue_size=1024)
    server.include_router(router)
    return server


PAYLOAD: dict[str, Any] = {"type": "fanout", "text": "the same line for everyone", "n": 0}
JOIN = json.dumps({"type": "join", "room": ROOM})


async def bench_aiows(count: int, messages: int, rounds: int, redis_url: str | None) -> tuple[float, float, int]:
    receiver = bench_app(RedisBackend(redis_url) if redis_url else None)
    sender = bench_app(RedisBackend(redis_url)) if redis_url else receiver
    async with receiver.serve("127.0.0.1", 0) as running:
        running_sender = sender.serve("127.0.0.1", 0) if sender is not receiver else None
        if running_sender is not None:
            await running_sender.start()
        try:
            clients = await Clients.start(running.port, "/", JOIN, count)

            async def settled() -> bool:
                return await sender.room_members(ROOM) == count and all(
                    not isinstance(app.hub.backend, RedisBackend) or app.hub.backend.connected
                    for app in (sender, receiver)
                )

            await wait_until(settled)

            async def send(n: int) -> None:
                await sender.broadcast({**PAYLOAD, "n": n}, room=ROOM)

            encodes = sender.broadcast_stats.encodes
            rate, cpu = await timed_rounds(clients, send, count, messages, rounds)
            await clients.stop()
            return rate, cpu, sender.broadcast_stats.encodes - encodes
        finally:
            if running_sender is not None:
                await running_sender.close()


class CountingJson:
    """python-socketio's ``json=`` module, counting ``dumps`` calls."""

    dumps_calls = 0

    @staticmethod
    def dumps(*args: Any, **kwargs: Any) -> str:
        CountingJson.dumps_calls += 1
        return json.dumps(*args, **kwargs)

    @staticmethod
    def loads(*args: Any, **kwargs: Any) -> Any:
        return json.loads(*args, **kwargs)


async def bench_socketio(count: int, messages: int, rounds: int) -> tuple[float, float, int] | None:
    try:
        socketio: Any = importlib.import_module("socketio")
        web: Any = importlib.import_module("aiohttp.web")
    except ImportError:
        return None
    sio = socketio.AsyncServer(async_mode="aiohttp", json=CountingJson)
    members: set[str] = set()

    async def connect(sid: str, environ: Any) -> None:
        await sio.enter_room(sid, ROOM)
        members.add(sid)

    sio.on("connect", connect)
    app = web.Application()
    sio.attach(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        clients = await Clients.start(port, "/socket.io/?EIO=4&transport=websocket", "40", count)

        async def settled() -> bool:
            return len(members) == count

        await wait_until(settled)

        async def send(n: int) -> None:
            await sio.emit("fanout", {**PAYLOAD, "n": n}, room=ROOM)

        encodes = CountingJson.dumps_calls
        rate, cpu = await timed_rounds(clients, send, count, messages, rounds)
        await clients.stop()
        return rate, cpu, CountingJson.dumps_calls - encodes
    finally:
        await runner.cleanup()


class RedisServer:
    """A throwaway ``redis-server`` on a free loopback port, if one is on PATH."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.url: str | None = None
        self.directory = tempfile.TemporaryDirectory()

    def __enter__(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            return self
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", self.directory.name],
            stdout=subprocess.DEVNULL,
        )
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        self.url = f"redis://127.0.0.1:{port}/0"
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
        self.directory.cleanup()


async def main(count: int, messages: int, rounds: int) -> None:
    pacing = "1 ms apart" if PACED else "back to back"
    print(f"fan-out of {messages} messages ({pacing}) to a room of {count} connections, best of {rounds} rounds")
    print(f"aiows compiled={COMPILED}")
    print(f"{'server':<38} {'deliveries/s':>12} {'CPU us/delivery':>16} {'encodes':>8}  (of {messages * rounds} broadcasts)")
    row = "{:<38} {:>12,.0f} {:>16.1f} {:>8}"
    print(row.format("aiows, in-memory", *await bench_aiows(count, messages, rounds, None)))
    with RedisServer() as redis:
        if redis.url is None:
            print(f"{'aiows, Redis':<38} skipped: no redis-server on PATH")
        else:
            print(row.format("aiows, Redis (publisher -> receiver)", *await bench_aiows(count, messages, rounds, redis.url)))
    result = await bench_socketio(count, messages, rounds)
    if result is None:
        print(f"{'python-socketio':<38} skipped: python-socketio or aiohttp not installed")
    else:
        print(row.format("python-socketio (aiohttp)", *result))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        _, _, client_port, client_path, client_hello, client_count = sys.argv
        asyncio.run(run_clients("127.0.0.1", int(client_port), client_path, client_hello, int(client_count)))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--paced", action="store_true", help="sleep 1 ms after each broadcast")
    options = parser.parse_args()
    asyncio.run(main(options.clients, options.messages, options.rounds))
