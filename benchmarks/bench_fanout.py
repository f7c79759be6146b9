"""Fan-out: one broadcast at a time to a room of 1,000 connections, on uvloop.

    python benchmarks/bench_fanout.py            # 6 rows x 3 rounds: a few minutes (6 on a busy 2-core machine)
    python benchmarks/bench_fanout.py --quick    # about 20 s: 100 connections, a smoke run, not a measurement
    python benchmarks/bench_fanout.py --burst    # the older shape: rounds of 20 broadcasts back to back, deliveries/s

Every row is a server in its own process, on uvloop, with 1,000 connections in
one room, held by a client process (this file with ``--client``). A broadcast
is one ~100-byte JSON text frame to all of them:

- ``websockets.broadcast(connections, message)`` from a plain websockets server: the reference (1.00x);
- a plain picows server looping ``transport.send(...)`` over its connections;
- aiows ``server.broadcast(data, room=...)``, default transport, and ``transport="picows"``;
- aiows with ``RedisBackend`` (when ``redis-server`` is on PATH: one is started on a free loopback
  port): one server holds no connections and broadcasts, a second one in the same process holds
  the 1,000 connections and fans out what it receives through Redis;
- the two aiows rows above again with room history (``MemoryBackend(history_size=100)``,
  ``RedisBackend(..., history_size=100)``): every publication is numbered and stored, and each
  delivery carries ``"room"``, ``"offset"`` and ``"epoch"``;
- python-socketio on aiohttp, ``sio.emit(..., room=...)`` (when python-socketio and aiohttp are installed).

How a broadcast is triggered, the same for every row: this process writes
``go`` to the server process's stdin (a pipe its event loop reads, with the
same code in every row); the server reads the monotonic clock, then calls the
row's broadcast, then writes that time back. The client process counts the
frames and writes the monotonic time at which it has counted all 1,000 (the
clock is the machine's, shared by processes). The next ``go`` is sent only
then: one broadcast at a time. Reported per row:

- server CPU µs per delivery: the server process's CPU time (user + system, from /proc) over all
  the measured broadcasts, divided by the deliveries; for the Redis row, redis-server's own CPU
  is shown apart;
- p50 / p99 reach time: from the broadcast call until the client has counted all deliveries of it
  (200 broadcasts per row and round after 20 of warm-up, at most 30 s; medians over 3 rounds).

The client is cheap on purpose (picows on uvloop when installed, else raw sockets that only frame and
count), and its CPU per delivery is shown: if it approaches the server's, reach times are the client's.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import datetime
import importlib.metadata
import importlib.util
import os
import platform
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import orjson

from aiows import BaseMessage, Router, WebSocket, WebSocketServer
from aiows.broadcast import BroadcastBackend, MemoryBackend, RedisBackend

HERE = Path(__file__).resolve().parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

ROOM = "bench"
#: Publications the rooms of the history rows keep.
HISTORY = 100
#: Every broadcast frame carries it; the client counts the frames that do.
MARKER = b"fanout"
TEXT = "the same line for everyone in the room"
#: The join message every client sends once connected (aiows routes it; the other servers ignore it).
JOIN = b'{"type":"join","room":"bench"}'


def payload(n: int, stamp: int) -> dict[str, Any]:
    """The broadcast message (about 100 bytes as JSON)."""
    return {"type": "fanout", "n": n, "t": stamp, "text": TEXT}


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    needs: tuple[str, ...] = ()
    redis: bool = False
    path: str = "/"
    hello: bytes = JOIN


ROWS = [
    Row("websockets", "websockets.broadcast() (plain websockets server)"),
    Row("picows", "picows: transport.send() in a loop", ("picows",)),
    Row("aiows", "aiows server.broadcast(), default transport"),
    Row("aiows-picows", 'aiows server.broadcast(), transport="picows"', ("picows",)),
    Row("aiows-redis", "aiows + RedisBackend (publisher -> fan-out server)", ("redis",), redis=True),
    Row("aiows-history", "aiows server.broadcast(), MemoryBackend(history_size=100)"),
    Row("aiows-redis-history", "aiows + RedisBackend(history_size=100)", ("redis",), redis=True),
    Row(
        "socketio", "python-socketio sio.emit(room=) (aiohttp)", ("socketio", "aiohttp"),
        path="/socket.io/?EIO=4&transport=websocket", hello=b"40",
    ),  # fmt: skip
]
ROW_BY_KEY = {row.key: row for row in ROWS}
REFERENCE = "websockets"


@dataclass(frozen=True)
class Settings:
    clients: int
    broadcasts: int  # measured broadcasts per round (paced), or rounds of a burst (--burst)
    warmup: int
    max_seconds: float  # per row and round, for the measured broadcasts (or bursts)
    burst: int = 1  # broadcasts per "go"


FULL = Settings(clients=1000, broadcasts=200, warmup=20, max_seconds=30.0)
QUICK = Settings(clients=100, broadcasts=30, warmup=5, max_seconds=5.0)


def raise_file_limit() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def process_cpu(pid: int) -> float:
    """Seconds of CPU (user + system) the process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


# ---------------------------------------------------------------- the server process


async def commands(broadcast: Callable[[int, int], Awaitable[None]], members: Callable[[], Awaitable[int]]) -> None:
    """Serve the orchestrator's commands from stdin: ``members``, and ``go K`` (K broadcasts back to back)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    n = 0
    while line := await reader.readline():
        command = line.split()
        if command[0] == b"go":
            stamp = time.monotonic_ns()
            for _ in range(int(command[1])):
                n += 1
                await broadcast(n, stamp)
            sys.stdout.write(f"t0 {stamp}\n")
        elif command[0] == b"members":
            sys.stdout.write(f"members {await members()}\n")
        sys.stdout.flush()


def announce(port: int) -> None:
    print(f"PORT {port}", flush=True)


async def serve_websockets() -> None:
    from websockets.asyncio.server import ServerConnection, broadcast, serve

    connections: set[ServerConnection] = set()

    async def handler(websocket: ServerConnection) -> None:
        connections.add(websocket)
        try:
            async for _ in websocket:
                pass
        finally:
            connections.discard(websocket)

    async def send(n: int, stamp: int) -> None:
        broadcast(connections, orjson.dumps(payload(n, stamp)).decode())

    async def members() -> int:
        return len(connections)

    async with serve(handler, "127.0.0.1", 0, compression=None, ping_interval=None) as server:
        announce(server.sockets[0].getsockname()[1])
        await commands(send, members)


async def serve_picows() -> None:
    from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server  # type: ignore[import-not-found,unused-ignore]

    transports: set[WSTransport] = set()

    class Listener(WSListener):  # type: ignore[misc,unused-ignore]
        def on_ws_connected(self, transport: WSTransport) -> None:
            transports.add(transport)

        def on_ws_disconnected(self, transport: WSTransport) -> None:
            transports.discard(transport)

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type == WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code())
                transport.disconnect()

    async def send(n: int, stamp: int) -> None:
        data = orjson.dumps(payload(n, stamp))
        for transport in transports:
            transport.send(WSMsgType.TEXT, data)

    async def members() -> int:
        return len(transports)

    server = await ws_create_server(lambda request: Listener(), "127.0.0.1", 0)
    announce(server.sockets[0].getsockname()[1])
    await commands(send, members)


class Join(BaseMessage):
    room: str


def aiows_app(transport: str, backend: BroadcastBackend | None) -> WebSocketServer:
    """An aiows server whose clients join the room with their first message; no pings, as in every row."""
    router = Router()

    @router.message("join")
    async def on_join(websocket: WebSocket, message: Join) -> None:
        await websocket.join(message.room)

    server = WebSocketServer(broadcast=backend, ping_interval=None, transport=transport)
    server.include_router(router)
    return server


async def serve_aiows(transport: str, redis_url: str | None, history: int = 0) -> None:
    """The aiows rows; ``history``: the rooms keep that many publications (0: no history)."""
    backends = [RedisBackend(redis_url, history_size=history) for _ in range(2)] if redis_url else []
    receiver = aiows_app(transport, backends[0] if backends else MemoryBackend(history_size=history))
    # With Redis: a second server that holds no connections and only publishes.
    sender = aiows_app(transport, backends[1]) if backends else receiver

    async def send(n: int, stamp: int) -> None:
        await sender.broadcast(payload(n, stamp), room=ROOM)

    async def members() -> int:
        if not all(backend.connected for backend in backends):
            return 0
        # The fan-out server's own count. (Counted from the publisher through Redis, it sometimes stayed
        # short after a burst of joins: each join writes its count to Redis, and the writes can land out of
        # order over the connection pool.) The warm-up broadcasts check the path through Redis.
        return await receiver.room_members(ROOM)

    async with receiver.serve("127.0.0.1", 0) as running:
        if sender is receiver:
            announce(running.port)
            await commands(send, members)
            return
        async with sender.serve("127.0.0.1", 0):
            announce(running.port)
            await commands(send, members)


async def serve_socketio() -> None:
    import socketio  # type: ignore[import-untyped,import-not-found,unused-ignore]
    from aiohttp import web  # type: ignore[import-not-found,unused-ignore]

    sio = socketio.AsyncServer(async_mode="aiohttp")
    joined: set[str] = set()

    async def connect(sid: str, environ: Any) -> None:
        await sio.enter_room(sid, ROOM)
        joined.add(sid)

    async def disconnect(sid: str, *args: Any) -> None:
        joined.discard(sid)

    sio.on("connect", connect)
    sio.on("disconnect", disconnect)
    application = web.Application()
    sio.attach(application)
    runner = web.AppRunner(application, access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    site = web.SockSite(runner, sock)
    await site.start()

    async def send(n: int, stamp: int) -> None:
        await sio.emit("fanout", payload(n, stamp), room=ROOM)

    async def members() -> int:
        return len(joined)

    announce(sock.getsockname()[1])
    await commands(send, members)
    await runner.cleanup()


def server_main(kind: str, redis_url: str | None) -> None:
    import uvloop  # type: ignore[import-not-found,unused-ignore]

    raise_file_limit()
    servers: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {
        "websockets": serve_websockets,
        "picows": serve_picows,
        "aiows": lambda: serve_aiows("websockets", None),
        "aiows-picows": lambda: serve_aiows("picows", None),
        "aiows-redis": lambda: serve_aiows("websockets", redis_url),
        "aiows-history": lambda: serve_aiows("websockets", None, HISTORY),
        "aiows-redis-history": lambda: serve_aiows("websockets", redis_url, HISTORY),
        "socketio": serve_socketio,
    }
    uvloop.run(servers[kind]())


# ---------------------------------------------------------------- the client process


class Counter:
    """Counts broadcast frames over every connection; writes ``done <monotonic ns>`` at each ``step``."""

    def __init__(self, step: int) -> None:
        self.count = 0
        self.step = step
        self.target = step

    def add(self) -> None:
        self.count += 1
        if self.count == self.target:
            self.target += self.step
            sys.stdout.write(f"done {time.monotonic_ns()}\n")
            sys.stdout.flush()


def masked_text_frame(data: bytes) -> bytes:
    """A client text frame (mask key 0: the payload goes as is)."""
    assert len(data) < 126
    return bytes([0x81, 0x80 | len(data)]) + b"\0\0\0\0" + data


async def open_picows(url: str, hello: bytes, counter: Counter) -> Any:
    from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect  # type: ignore[import-not-found,unused-ignore]

    class Listener(WSListener):  # type: ignore[misc,unused-ignore]
        def on_ws_connected(self, transport: WSTransport) -> None:
            transport.send(WSMsgType.TEXT, hello)

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            data = frame.get_payload_as_bytes()
            if MARKER in data:
                counter.add()
            elif data == b"2":  # an engine.io ping (python-socketio)
                transport.send(WSMsgType.TEXT, b"3")

    transport, _ = await ws_connect(Listener, url)
    return transport


class RawClient(asyncio.Protocol):
    """The fallback client without picows: a handshake, then frames parsed only as far as counting needs."""

    def __init__(self, host: str, port: int, path: str, hello: bytes, counter: Counter) -> None:
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        self.hello = hello
        self.counter = counter
        self.buffer = b""
        self.upgraded = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is one, without the subclass
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        buffer = self.buffer + data
        if not self.upgraded.done():
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = buffer
                return
            if not buffer.startswith(b"HTTP/1.1 101"):
                self.upgraded.set_exception(RuntimeError(buffer[:200].decode(errors="replace")))
                return
            self.upgraded.set_result(None)
            self.transport.write(masked_text_frame(self.hello))
            buffer = buffer[end + 4 :]
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
            frame = buffer[start:end]
            if MARKER in frame:
                self.counter.add()
            elif frame == b"2":  # an engine.io ping (python-socketio)
                self.transport.write(masked_text_frame(b"3"))
            offset = end
        self.buffer = buffer[offset:]


async def open_raw(host: str, port: int, path: str, hello: bytes, counter: Counter) -> asyncio.Transport:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_connection(lambda: RawClient(host, port, path, hello, counter), host, port)
    await protocol.upgraded
    return transport


async def run_clients(port: int, path: str, hello: bytes, clients: int, step: int) -> None:
    """Open ``clients`` connections, write ``ready``, count; stop when stdin closes."""
    counter = Counter(step)
    use_picows = importlib.util.find_spec("picows") is not None
    connections: list[Any] = []

    async def connect() -> Any:
        if use_picows:
            return await open_picows(f"ws://127.0.0.1:{port}{path}", hello, counter)
        return await open_raw("127.0.0.1", port, path, hello, counter)

    for start in range(0, clients, 50):
        connections += await asyncio.gather(*(connect() for _ in range(min(50, clients - start))))
    print(f"ready {'picows' if use_picows else 'raw'}", flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    await reader.read()  # until the orchestrator closes stdin
    for connection in connections:
        if use_picows:
            connection.disconnect()
        else:
            connection.close()


def client_main(port: int, path: str, hello: bytes, clients: int, step: int) -> None:
    import uvloop  # type: ignore[import-not-found,unused-ignore]

    raise_file_limit()
    uvloop.run(run_clients(port, path, hello, clients, step))


# ---------------------------------------------------------------- the orchestrator


class Child:
    """A child process whose stdout is read line by line with a timeout."""

    def __init__(self, command: list[str]) -> None:
        self.process = subprocess.Popen(
            command, cwd=HERE, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.stdin = self.process.stdin
        self.fd = self.process.stdout.fileno()
        self.buffer = b""

    @property
    def pid(self) -> int:
        return self.process.pid

    def write(self, line: str) -> None:
        self.stdin.write(line.encode() + b"\n")
        self.stdin.flush()

    def line(self, timeout: float) -> str | None:
        """The next line, or None if none came within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self.fd], [], [], remaining)[0]:
                return None
            chunk = os.read(self.fd, 65536)
            if not chunk:
                raise RuntimeError(f"child process {self.pid} exited (code {self.process.poll()})")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode()

    def expect(self, prefix: str, timeout: float) -> str:
        line = self.line(timeout)
        if line is None or not line.startswith(prefix):
            raise RuntimeError(f"expected {prefix!r} from process {self.pid}, got {line!r}")
        return line[len(prefix) :].strip()

    def stop(self) -> None:
        """Close stdin (the client and servers stop by themselves), then kill whatever is still running."""
        try:
            self.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()


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


def measure(row: Row, settings: Settings, redis: RedisServer) -> dict[str, Any]:
    """One round of one row: a fresh server and client process."""
    command = [sys.executable, str(HERE / "bench_fanout.py"), "--server", row.key]
    if row.redis:
        assert redis.url is not None
        command += ["--redis", redis.url]
    server = Child(command)
    client: Child | None = None
    try:
        port = int(server.expect("PORT", 60))
        step = settings.clients * settings.burst
        client = Child([
            sys.executable, str(HERE / "bench_fanout.py"), "--client", str(port), row.path, row.hello.decode(),
            str(settings.clients), str(step),
        ])  # fmt: skip
        client_kind = client.expect("ready", 180)
        deadline = time.monotonic() + 60
        while True:  # every connection in the room (and, with Redis, both servers connected to it)
            server.write("members")
            members = int(server.expect("members", 10))
            if members == settings.clients:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the room did not fill: {members} members of {settings.clients}")
            time.sleep(0.05)

        def go() -> int:
            server.write(f"go {settings.burst}")
            return int(server.expect("t0", 30))

        # Warm-up; a broadcast that reaches no one (a Redis subscription not yet active) is sent again.
        for _ in range(settings.warmup):
            for _attempt in range(20 if row.redis else 1):
                go()
                if client.line(2.0 if row.redis else 30.0) is not None:
                    break
            else:
                raise RuntimeError("warm-up broadcasts did not arrive")
        time.sleep(0.2)
        if client.line(0.3) is not None:
            raise RuntimeError("a warm-up broadcast arrived late: the count is off")

        reach: list[float] = []
        cpu = process_cpu(server.pid)
        client_cpu = process_cpu(client.pid)
        redis_cpu = process_cpu(redis.process.pid) if row.redis and redis.process else 0.0
        ends = time.monotonic() + settings.max_seconds
        while len(reach) < settings.broadcasts and time.monotonic() < ends:
            started = go()
            done = client.line(30)
            if done is None or not done.startswith("done"):
                raise RuntimeError(f"broadcast {len(reach) + 1} did not reach every client: {done!r}")
            reach.append((int(done.split()[1]) - started) / 1e6)
        deliveries = len(reach) * step
        cpu = process_cpu(server.pid) - cpu
        client_cpu = process_cpu(client.pid) - client_cpu
        redis_cpu = (process_cpu(redis.process.pid) if row.redis and redis.process else 0.0) - redis_cpu
        ordered = sorted(reach)
        return {
            "client": client_kind,
            "broadcasts": len(reach),
            "cpu_us": cpu / deliveries * 1e6,
            "client_cpu_us": client_cpu / deliveries * 1e6,
            "redis_cpu_us": redis_cpu / deliveries * 1e6,
            "p50_ms": ordered[len(ordered) // 2],
            "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
            "rate": deliveries / (sum(reach) / 1e3),
        }
    finally:
        if client is not None:
            client.stop()
        server.stop()


def missing(row: Row, redis: RedisServer) -> list[str]:
    absent = [name for name in row.needs if importlib.util.find_spec(name) is None]
    if row.redis and redis.url is None:
        absent.append("redis-server")
    return absent


def version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="seconds: 100 connections, 30 broadcasts, one round")
    parser.add_argument("--burst", action="store_true", help="20 broadcasts back to back per round (deliveries/s)")
    parser.add_argument("--clients", type=int, help="connections in the room (default 1,000; 100 quick)")
    parser.add_argument("--broadcasts", type=int, help="measured broadcasts per row and round (default 200)")
    parser.add_argument("--repeat", type=int, help="rounds over all rows; figures are medians (default 3; 1 quick)")
    parser.add_argument(
        "--only", help="comma-separated rows (the websockets reference is always run): " + ", ".join(ROW_BY_KEY)
    )
    parser.add_argument("--client", nargs=5, metavar="ARG", help=argparse.SUPPRESS)
    parser.add_argument("--server", help=argparse.SUPPRESS)
    parser.add_argument("--redis", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        port, path, hello, clients, step = args.client
        client_main(int(port), path, hello.encode(), int(clients), int(step))
        return
    if args.server:
        server_main(args.server, args.redis)
        return
    if importlib.util.find_spec("uvloop") is None:
        raise SystemExit("bench_fanout.py runs every row on uvloop: pip install uvloop")

    import aiows

    began = time.perf_counter()
    settings = QUICK if args.quick else FULL
    if args.burst:
        settings = dataclasses.replace(settings, burst=20, broadcasts=3 if args.quick else 10, warmup=2)
    if args.clients:
        settings = dataclasses.replace(settings, clients=args.clients)
    if args.broadcasts:
        settings = dataclasses.replace(settings, broadcasts=args.broadcasts)
    repeat = args.repeat or (1 if args.quick else 3)
    rows = ROWS
    if args.only:
        names = set(args.only.split(",")) | {REFERENCE}
        if names - set(ROW_BY_KEY):
            raise SystemExit(f"--only: unknown rows {', '.join(sorted(names - set(ROW_BY_KEY)))}")
        rows = [row for row in ROWS if row.key in names]
    print(
        f"# {datetime.date.today()} | {platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()} | "
        f"Python {platform.python_version()} | aiows {aiows.__version__} "
        f"({'compiled' if aiows.COMPILED else 'not compiled'}), websockets {version('websockets')}, "
        f"picows {version('picows')}, uvloop {version('uvloop')}, orjson {version('orjson')}, "
        f"redis-py {version('redis')}, python-socketio {version('python-socketio')}, aiohttp {version('aiohttp')}"
    )
    size = len(orjson.dumps(payload(1, time.monotonic_ns())))
    if args.burst:
        shape = (
            f"{settings.broadcasts} rounds of {settings.burst} broadcasts back to back (one 'go' each) to "
            f"{settings.clients} connections in one room; 'reach' is a whole round's"
        )
    else:
        shape = (
            f"one broadcast at a time to {settings.clients} connections in one room, {settings.broadcasts} measured "
            f"(after {settings.warmup} warm-up; at most {settings.max_seconds:g} s)"
        )
    print(
        f"# traffic: {shape}; ~{size}-byte JSON text frame; every server on uvloop, in its own process; "
        f"trigger: 'go' on the server's stdin, clock read just before the broadcast call; median of {repeat} "
        f"round(s){' [--quick: a smoke run, not a measurement]' if args.quick else ''}",
        flush=True,
    )
    notes: list[str] = []
    runs: dict[str, list[dict[str, Any]]] = {}
    with RedisServer() as redis:
        for round_ in range(repeat):
            for row in rows:
                absent = missing(row, redis)
                if absent:
                    if round_ == 0:
                        notes.append(f"skipped {row.label}: {', '.join(absent)} not installed")
                    continue
                try:
                    result = measure(row, settings, redis)
                except Exception as exc:
                    notes.append(f"failed {row.key}: {exc}")
                    continue
                runs.setdefault(row.key, []).append(result)
                print(f"# round {round_ + 1}/{repeat}: {row.key}", file=sys.stderr, flush=True)
    results = {key: median_result(values) for key, values in runs.items()}
    print_table(results, args.burst)
    if any(result["broadcasts"] < settings.broadcasts for result in results.values()):
        notes.append(f"some rows hit the {settings.max_seconds:g} s bound before {settings.broadcasts} broadcasts")
    if {result["client"] for result in results.values()} == {"raw"}:
        notes.append("client: raw sockets (install picows for a cheaper client)")
    client_bound = [key for key, result in results.items() if result["client_cpu_us"] >= result["cpu_us"]]
    if client_bound:
        notes.append(
            f"the client used as much CPU per delivery as the server, or more, for {', '.join(client_bound)}: "
            "their reach times are partly the client's (CPU per delivery is the server's alone)"
        )
    for note in notes:
        print(f"# {note}")
    if args.burst:
        print("# targets: not printed for --burst (they are for one broadcast at a time, the default)")
    else:
        print_targets(results, settings.clients)
    print(f"# took {time.perf_counter() - began:.0f} s")
    if any(note.startswith("failed") for note in notes):
        raise SystemExit(1)


def median_result(values: list[dict[str, Any]]) -> dict[str, Any]:
    result = dict(values[0])
    for key in ("cpu_us", "client_cpu_us", "redis_cpu_us", "p50_ms", "p99_ms", "rate", "broadcasts"):
        result[key] = statistics.median(value[key] for value in values)
    return result


def print_table(results: dict[str, dict[str, Any]], burst: bool) -> None:
    reference = results.get(REFERENCE)
    header = [
        "server (uvloop)", "CPU µs/delivery", "vs websockets.broadcast() (CPU)", "p50 reach ms", "p99 reach ms",
        "deliveries/s" if burst else "deliveries/s (while reaching)", "client CPU µs/delivery", "broadcasts",
    ]  # fmt: skip
    lines = []
    for key, result in results.items():
        ratio = f"{result['cpu_us'] / reference['cpu_us']:.2f}x" if reference else "-"
        cpu = f"{result['cpu_us']:.2f}"
        if result["redis_cpu_us"]:
            cpu += f" (+{result['redis_cpu_us']:.2f} redis-server)"
        lines.append([
            ROW_BY_KEY[key].label, cpu, ratio, f"{result['p50_ms']:.2f}", f"{result['p99_ms']:.2f}",
            f"{result['rate']:,.0f}", f"{result['client_cpu_us']:.2f}", f"{result['broadcasts']:.0f}",
        ])  # fmt: skip
    widths = [max(len(cell) for cell in column) for column in zip(header, *lines)]

    def render(cells: list[str]) -> str:
        padded = [
            cell.rjust(width) if index else cell.ljust(width)
            for index, (cell, width) in enumerate(zip(cells, widths))
        ]
        return "| " + " | ".join(padded) + " |"

    print(render(header))
    print("|" + "|".join("-" * (width + 1) + ("-" if index == 0 else ":") for index, width in enumerate(widths)) + "|")
    for line in lines:
        print(render(line), flush=True)


def print_targets(results: dict[str, dict[str, Any]], clients: int) -> None:
    """The issue's targets, from this run's figures."""
    reference = results.get(REFERENCE)
    print(
        f"# targets (one broadcast at a time to {clients} connections in one room, uvloop; CPU ratio = the row's "
        "µs/delivery / websockets.broadcast()'s, lower is better):"
    )
    for key, target in (("aiows", 1.0), ("aiows-picows", 0.6)):
        claim = f"{ROW_BY_KEY[key].label}: CPU per delivery <= {target:g}x"
        if key in results and reference:
            ratio = results[key]["cpu_us"] / reference["cpu_us"]
            print(f"#   {claim}: {ratio:.2f}x  {'met' if ratio <= target else 'missed'}")
        else:
            print(f"#   {claim}: n/a (a row was not run)")
    for key, base in (("aiows-history", "aiows"), ("aiows-redis-history", "aiows-redis")):
        claim = f"history costs < 10% more server CPU per delivery ({key} vs {base})"
        if key in results and base in results:
            ratio = results[key]["cpu_us"] / results[base]["cpu_us"]
            print(f"#   {claim}: {ratio:.2f}x  {'met' if ratio < 1.1 else 'missed'}")
        else:
            print(f"#   {claim}: n/a (a row was not run)")
    for key in ("aiows", "aiows-picows"):
        claim = f"{ROW_BY_KEY[key].label}: p99 reach <= websockets.broadcast()'s"
        if key in results and reference:
            row_p99, base_p99 = results[key]["p99_ms"], reference["p99_ms"]
            print(f"#   {claim}: {row_p99:.2f} vs {base_p99:.2f} ms  {'met' if row_p99 <= base_p99 else 'missed'}")
        else:
            print(f"#   {claim}: n/a (a row was not run)")


if __name__ == "__main__":
    main()
