"""End-to-end load benchmark: each server in its own process, driven from another process.

    python benchmarks/load.py            # the full run (about 7 minutes with every row installed, 3 rounds)
    python benchmarks/load.py --quick    # under a minute: a smoke run, not a measurement

The traffic: 50 connections, each with 1, 2 or 8 requests in flight (three
measurements per row; "1 in flight" is lockstep: a connection sends its next
request only when the reply has arrived), every request the ~100-byte JSON
``ChatMessage`` of ``bench_app.PAYLOAD`` and every reply the same size. The
``aiows-ref`` row sends the same message as a request (``bench_app.REQUEST``:
type ``ask`` and ``"ref": 1``, 108 bytes) whose handler returns the reply,
sent as ``{"type": "reply", "ref": 1, "data": ...}`` (about 120 bytes): what
request/reply costs against the ``aiows`` row's plain send and receive.

For every row, a fresh server process (``servers.py``) listens on 127.0.0.1
and a fresh client process (this file with ``--client``) measures, in order:

- idle memory: the server's RSS growth over N idle connections (2,000; 50 quick), per connection;
- latency: p50/p99 of request/response round trips on one connection, one at a time
  (the best of three rounds, since a burst of other work on the machine spoils a round);
- throughput: the 50 connections at each window (1, 2, 8 in flight), for a bounded time and
  message count each; the server process's CPU time per message (user + system, from /proc:
  the headline, and the steadiest figure on a shared machine) and msg/s. "server CPU" is the
  share of one core the server used meanwhile: below 100%, msg/s was limited by the client
  or by other work on the machine, not by the server.

The client uses picows on uvloop when installed (a cheap client keeps the server the
bottleneck), else ``websockets``. While it measures throughput it does not copy or parse
replies (they were checked before), and it answers the replies that arrived in one read with
one write of as many requests (at 1 in flight, one request per write). Rows whose packages
are missing are skipped with a note. Each row runs on the event loop it names (the server
reports the loop it really ran on); ratios are by CPU per message against the raw
``websockets`` echo on the same loop (and, for the picows rows, against the raw picows
native echo), at the same window; higher is better. The issue's targets are printed at the
end, computed from the run.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

HERE = Path(__file__).resolve().parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

#: The request every row answers (the same bytes as ``bench_app.PAYLOAD``).
PAYLOAD = b'{"type":"chat","text":"hello, this is a benchmark message of ordinary size","user_id":42}'


#: The loop uvicorn picks with its defaults (``loop="auto"``): uvloop when installed.
UVICORN_LOOP = "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"


@dataclass(frozen=True)
class Row:
    """One line of the table: a server kind, how it is labelled, and what it needs."""

    key: str  # unique: what --only names and the targets refer to
    kind: str  # the server kind in servers.py
    name: str
    loop: str  # the event loop the server runs on (the server reports it; a mismatch is noted)
    transport: str
    needs: tuple[str, ...] = ()
    pure: bool = False
    protocol: str = "json"  # or "socketio"
    path: str = "/"  # the WebSocket URL's path


ROWS = [
    Row("raw", "raw", "raw websockets echo", "asyncio", "websockets"),
    Row("aiows", "aiows", "aiows default", "asyncio", "default"),
    Row("aiows-ref", "aiows", 'aiows request/reply ("ref", the return value)', "asyncio", "default", protocol="ref"),
    Row("aiows-mw3", "aiows-mw3", "aiows + 3 middlewares", "asyncio", "default"),
    Row(
        "aiows-metrics", "aiows-metrics", 'aiows + metrics_path="/metrics"', "asyncio", "default",
        ("prometheus_client",),
    ),  # fmt: skip
    Row("aiows-pure", "aiows", "aiows pure build", "asyncio", "default", pure=True),
    Row("naive", "naive", "naive (json, model_validate, chain/msg)", "asyncio", "websockets"),
    Row("raw-uvloop", "raw-uvloop", "raw websockets echo", "uvloop", "websockets", ("uvloop",)),
    Row("aiows-uvloop", "aiows-uvloop", "aiows default", "uvloop", "default", ("uvloop",)),
    Row("raw-picows-native", "raw-picows-native", "raw picows native echo", "uvloop", "picows", ("picows", "uvloop")),
    Row("aiows-picows", "aiows-picows", 'aiows transport="picows"', "uvloop", "picows", ("picows", "uvloop")),
    Row("aiows-picows-asyncio", "aiows-picows-asyncio", 'aiows transport="picows"', "asyncio", "picows", ("picows",)),
    Row("fastapi", "fastapi", "FastAPI + uvicorn (defaults)", UVICORN_LOOP, "uvicorn's", ("fastapi", "uvicorn")),
    Row(
        "aiows-fastapi", "aiows-fastapi", "aiows mounted in FastAPI + uvicorn (defaults)", UVICORN_LOOP, "uvicorn's",
        ("fastapi", "uvicorn"), path="/ws/",
    ),  # fmt: skip
    Row(
        "socketio", "socketio", "python-socketio + uvicorn (defaults)", UVICORN_LOOP, "uvicorn's",
        ("socketio", "uvicorn"), protocol="socketio",
    ),  # fmt: skip
]
ROW_BY_KEY = {row.key: row for row in ROWS}

#: The raw ``websockets`` echo on each loop: every row's baseline on its own loop.
RAW_ON = {"asyncio": "raw", "uvloop": "raw-uvloop"}
#: Rows measured against another aiows row (what the option they turn on costs).
COMPARED_TO = {"aiows-metrics": "aiows"}
#: The baseline of the picows rows, besides raw websockets.
PICOWS_NATIVE = "raw-picows-native"

#: Requests in flight per connection: one throughput measurement each.
WINDOWS = (1, 2, 8)


@dataclass(frozen=True)
class Settings:
    """How much each client does."""

    idle: int
    round_trips: int
    warmup: float
    duration: float  # per window
    max_messages: int  # per window
    connections: int = 50
    windows: tuple[int, ...] = WINDOWS


FULL = Settings(idle=2000, round_trips=6000, warmup=0.5, duration=2.0, max_messages=1_000_000)
QUICK = Settings(idle=50, round_trips=150, warmup=0.05, duration=0.2, max_messages=20_000)


# ---------------------------------------------------------------- the client process


def server_cpu(pid: int) -> float:
    """Seconds of CPU (user + system) the process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def server_rss(pid: int) -> int:
    """Resident memory of the process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


#: The ``aiows-ref`` row's request: the same message with a ``"ref"`` (the same bytes as ``bench_app.REQUEST``).
REQUEST = b'{"type":"ask","text":"hello, this is a benchmark message of ordinary size","user_id":42,"ref":1}'


def frame_for(protocol: str) -> bytes:
    if protocol == "ref":
        return REQUEST
    return b'42["chat",' + PAYLOAD + b"]" if protocol == "socketio" else PAYLOAD


def check_reply(payload: bytes, protocol: str) -> None:
    """The reply must be the chat answer (a raw echo sends the request back, which also fits)."""
    if protocol == "socketio":
        event, data = json.loads(payload[2:])
        assert event == "chat", payload
    elif protocol == "ref":
        reply = json.loads(payload)
        assert reply["type"] == "reply" and reply["ref"] == 1, payload
        data = reply["data"]
    else:
        data = json.loads(payload)
    assert data["type"] == "chat" and data["user_id"] == 42, payload


class Peer:
    """One client connection: ``send()`` a request; ``on_reply`` is called for each answer.

    ``pump(window)`` is the throughput mode: ``window`` requests go out, and each reply is counted
    in ``received`` and answered with the next request at once, until ``running`` is cleared
    (then ``in_flight`` falls to 0 as the last replies come in).
    """

    # Class-level defaults: picows builds its listener without calling Peer.__init__.
    pumping = False
    running = False
    received = 0
    in_flight = 0

    def __init__(self) -> None:
        self.on_reply: Callable[[bytes], None] = lambda payload: None

    def pump(self, window: int) -> None:
        self.received = 0
        self.in_flight = window
        self.running = True
        self.on_reply = self.pumped
        self.pumping = True
        for _ in range(window):
            self.send()

    def pumped(self, payload: bytes) -> None:
        self.received += 1
        if self.running:
            self.send()
        else:
            self.in_flight -= 1

    def send(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


async def open_picows(url: str, protocol: str) -> Peer:
    from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect  # type: ignore[import-not-found,unused-ignore]

    request = frame_for(protocol)
    plain = protocol != "socketio"  # every text frame is a reply
    masked = bytes([0x81, 0x80 | len(request)]) + b"\0\0\0\0" + request  # the request framed, mask key 0
    assert len(request) < 126
    ready = asyncio.get_running_loop().create_future()

    class Listener(WSListener, Peer):  # type: ignore[misc,unused-ignore]
        transport: WSTransport
        owed = 0

        def on_ws_connected(self, transport: WSTransport) -> None:
            self.transport = transport
            if protocol != "socketio":
                ready.set_result(None)

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if self.pumping and plain and frame.msg_type == WSMsgType.TEXT:
                # Throughput: Peer.pumped() inlined, the payload never copied, and the requests answering
                # replies that came in one read go out in one write: the client stays cheap.
                self.received += 1
                if not self.running:
                    self.in_flight -= 1
                    return
                self.owed += 1
                if frame.last_in_buffer:
                    if self.owed == 1:
                        transport.send(WSMsgType.TEXT, request)
                    else:
                        transport.underlying_transport.write(masked * self.owed)
                    self.owed = 0
                return
            if frame.msg_type != WSMsgType.TEXT and frame.msg_type != WSMsgType.BINARY:
                return
            payload = frame.get_payload_as_bytes()
            if protocol == "socketio" and not payload.startswith(b"42"):
                if payload.startswith(b"0"):
                    transport.send(WSMsgType.TEXT, b"40")
                elif payload.startswith(b"40"):
                    ready.set_result(None)
                elif payload == b"2":
                    transport.send(WSMsgType.TEXT, b"3")
                return
            self.on_reply(payload)

        def send(self) -> None:
            self.transport.send(WSMsgType.TEXT, request)

        def close(self) -> None:
            self.transport.send_close(WSCloseCode.OK)
            self.transport.disconnect()

    _, listener = await ws_connect(Listener, url)
    await ready
    peer: Peer = cast(Peer, listener)
    return peer


async def open_websockets(url: str, protocol: str) -> Peer:
    from websockets.asyncio.client import connect

    request = frame_for(protocol)
    websocket = await connect(url, compression=None, max_queue=None)
    if protocol == "socketio":
        await websocket.recv()
        await websocket.send("40")
        await websocket.recv()

    class WebsocketsPeer(Peer):
        def __init__(self) -> None:
            super().__init__()
            self.reader = asyncio.ensure_future(self.read())

        async def read(self) -> None:
            async for message in websocket:
                payload = message.encode() if isinstance(message, str) else message
                if protocol == "socketio" and not payload.startswith(b"42"):
                    if payload == b"2":
                        await websocket.send("3")
                    continue
                self.on_reply(payload)

        def send(self) -> None:
            asyncio.ensure_future(websocket.send(request.decode()))

        def close(self) -> None:
            self.reader.cancel()
            asyncio.ensure_future(websocket.close())

    return WebsocketsPeer()


async def settle(pid: int, timeout: float = 15.0) -> None:
    """Wait until the server is idle (done closing connections): under 2 ms of CPU in 100 ms."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        cpu = server_cpu(pid)
        await asyncio.sleep(0.1)
        if server_cpu(pid) - cpu < 0.002:
            return


async def throughput(peers: list[Peer], window: int, settings: Settings, server_pid: int) -> dict[str, float]:
    """``window`` requests in flight on every connection, for a bounded time and message count."""
    for peer in peers:
        peer.pump(window)  # with a window of 1, lockstep: the next request only when the reply is in
    await asyncio.sleep(settings.warmup)
    counted, cpu, started = sum(peer.received for peer in peers), server_cpu(server_pid), time.perf_counter()
    own_cpu = time.process_time()
    deadline = started + settings.duration
    received = counted
    while time.perf_counter() < deadline and received - counted < settings.max_messages:
        await asyncio.sleep(0.02)
        received = sum(peer.received for peer in peers)
    messages = received - counted
    elapsed = time.perf_counter() - started
    cpu = server_cpu(server_pid) - cpu
    own_cpu = time.process_time() - own_cpu
    for peer in peers:
        peer.running = False
    deadline = time.perf_counter() + 10
    while any(peer.in_flight for peer in peers) and time.perf_counter() < deadline:  # so the next window starts clean
        await asyncio.sleep(0.01)
    missing = sum(peer.in_flight for peer in peers)
    if missing:
        raise RuntimeError(f"{missing} replies missing after {window} in flight")
    for peer in peers:
        peer.pumping = False
    await settle(server_pid)
    return {
        "msgs_per_s": messages / elapsed,
        "cpu_us_per_msg": cpu / max(messages, 1) * 1e6,
        "server_cpu_share": cpu / elapsed,
        "client_cpu_share": own_cpu / elapsed,
    }


async def client(args: argparse.Namespace) -> dict[str, Any]:
    settings = QUICK if args.quick else FULL
    if args.idle is not None:
        settings = dataclasses.replace(settings, idle=args.idle)
    url = f"ws://127.0.0.1:{args.port}{args.path}"
    if args.protocol == "socketio":
        url += "socket.io/?EIO=4&transport=websocket"
    use_picows = importlib.util.find_spec("picows") is not None
    opener = open_picows if use_picows else open_websockets

    async def connect() -> Peer:
        return await asyncio.wait_for(opener(url, args.protocol), 30)

    async def round_trip(peer: Peer) -> bytes:
        reply: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        peer.on_reply = reply.set_result
        peer.send()
        return await asyncio.wait_for(reply, 10)

    # Warm up: the first connections import and build what the server builds lazily.
    for attempt in range(50):  # uvicorn announces its port from the lifespan startup, just before it listens
        try:
            (await connect()).close()
            break
        except OSError:
            await asyncio.sleep(0.1)
    for _ in range(3):
        peer = await connect()
        check_reply(await round_trip(peer), args.protocol)
        peer.close()
    await asyncio.sleep(0.3)

    # Idle memory.
    before = server_rss(args.server_pid)
    idle: list[Peer] = []
    for start in range(0, settings.idle, 50):
        idle += await asyncio.gather(*(connect() for _ in range(min(50, settings.idle - start))))
    if settings.idle:
        await asyncio.sleep(0.5)
    per_connection = (server_rss(args.server_pid) - before) / max(settings.idle, 1)
    for peer in idle:
        peer.close()
    if idle:
        idle.clear()
        await settle(args.server_pid)

    # Latency: one connection, one request at a time.
    peer = await connect()
    for _ in range(20):
        await round_trip(peer)
    rounds: list[list[float]] = []
    for _ in range(3):  # the best of three rounds: a burst of another process's work spoils one round
        rtts: list[float] = []
        for _ in range(settings.round_trips // 3):
            started = time.perf_counter()
            await round_trip(peer)
            rtts.append(time.perf_counter() - started)
        rounds.append(sorted(rtts))
    peer.close()

    # Throughput: the same connections at each window in turn.
    peers: list[Peer] = await asyncio.gather(*(connect() for _ in range(settings.connections)))
    for peer in peers:
        check_reply(await round_trip(peer), args.protocol)
    windows = {str(window): await throughput(peers, window, settings, args.server_pid) for window in settings.windows}
    for peer in peers:
        peer.close()
    return {
        "client": "picows" if use_picows else "websockets",
        "windows": windows,
        "p50_us": min(rtts[len(rtts) // 2] for rtts in rounds) * 1e6,
        "p99_us": min(rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))] for rtts in rounds) * 1e6,
        "idle_bytes_per_conn": per_connection,
    }


def client_main(args: argparse.Namespace) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if importlib.util.find_spec("uvloop") is not None:
        import uvloop  # type: ignore[import-not-found,unused-ignore]

        result = uvloop.run(client(args))
    else:
        result = asyncio.run(client(args))
    print(json.dumps(result), flush=True)


# ---------------------------------------------------------------- the orchestrator


def missing(row: Row) -> list[str]:
    return [name for name in row.needs if importlib.util.find_spec(name) is None]


def pure_sources(destination: Path) -> Path:
    """A copy of aiows' ``.py`` sources without extension modules (the pure build of the same code)."""
    source = HERE.parent / "aiows"
    if not (source / "__init__.py").exists():
        import aiows

        source = Path(aiows.__file__).parent
    shutil.copytree(source, destination / "aiows", ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"))
    return destination


def start_server(row: Row, env: dict[str, str]) -> tuple[subprocess.Popen[str], int, str]:
    """The row's server process, its port and the event loop it reports."""
    server = subprocess.Popen(
        [sys.executable, str(HERE / "servers.py"), row.kind],
        cwd=HERE, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        preexec_fn=raise_file_limit,
    )  # fmt: skip
    assert server.stdout is not None
    ready, _, _ = select.select([server.stdout], [], [], 60)
    line = server.stdout.readline().split() if ready else []
    if len(line) != 4 or line[0] != "PORT" or line[2] != "LOOP":
        server.kill()
        server.wait()
        raise RuntimeError(f"server {row.kind} did not start")
    return server, int(line[1]), line[3]


def raise_file_limit() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def measure(row: Row, env: dict[str, str], quick: bool, idle: int | None) -> dict[str, Any]:
    server, port, loop = start_server(row, env)
    try:
        command = [
            sys.executable, str(HERE / "load.py"), "--client", "--port", str(port),
            "--server-pid", str(server.pid), "--protocol", row.protocol, "--path", row.path,
            *(["--quick"] if quick else []),
            *([] if idle is None else ["--idle", str(idle)]),
        ]  # fmt: skip
        done = subprocess.run(command, cwd=HERE, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"client for {row.key} failed:\n{done.stderr[-2000:]}")
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        result["loop"] = loop
        return result
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait()


def version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def selected_rows(only: str | None) -> list[Row]:
    """The rows to run: those ``--only`` names (keys or server kinds), and the baselines their ratios need."""
    if not only:
        return list(ROWS)
    names = set(only.split(","))
    unknown = names - {row.key for row in ROWS} - {row.kind for row in ROWS}
    if unknown:
        raise SystemExit(f"--only: unknown rows {', '.join(sorted(unknown))} (rows: {', '.join(ROW_BY_KEY)})")
    keys = {row.key for row in ROWS if row.key in names or row.kind in names}
    for key in list(keys):
        row = ROW_BY_KEY[key]
        keys.add(RAW_ON[row.loop])
        if key in COMPARED_TO:
            keys.add(COMPARED_TO[key])
        if row.transport == "picows":
            keys.add(PICOWS_NATIVE)
        if key == "aiows-fastapi":
            keys.add("fastapi")  # the baseline of its target
    return [row for row in ROWS if row.key in keys]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="under a minute in all: a smoke run, not a measurement")
    parser.add_argument(
        "--only", help="comma-separated rows to run, by key or server kind (their baselines are always run): "
        + ", ".join(ROW_BY_KEY),
    )  # fmt: skip
    parser.add_argument(
        "--repeat", type=int, help="rounds over all rows; each figure is the median (default 3; 1 quick)"
    )
    parser.add_argument("--idle", type=int, help="idle connections for the memory figure (default 2,000; 50 quick)")
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--server-pid", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--protocol", default="json", help=argparse.SUPPRESS)
    parser.add_argument("--path", default="/", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        client_main(args)
        return
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3

    import aiows

    began = time.perf_counter()
    settings = QUICK if args.quick else FULL
    rows = selected_rows(args.only)
    client_kind = "picows on uvloop" if importlib.util.find_spec("picows") and importlib.util.find_spec("uvloop") else (
        "picows on asyncio" if importlib.util.find_spec("picows") else "websockets"
    )
    print(
        f"# {datetime.date.today()} | {platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()} | "
        f"Python {platform.python_version()} | aiows {aiows.__version__} "
        f"({'compiled' if aiows.COMPILED else 'not compiled'}), "
        f"websockets {version('websockets')}, picows {version('picows')}, uvloop {version('uvloop')}, "
        f"pydantic {version('pydantic')}, orjson {version('orjson')}, fastapi {version('fastapi')}, "
        f"uvicorn {version('uvicorn')}, python-socketio {version('python-socketio')}"
    )
    windows = " / ".join(str(window) for window in settings.windows)
    print(
        f"# traffic: {settings.connections} connections x {windows} requests in flight each (1 = lockstep), "
        f"{len(PAYLOAD)}-byte JSON ChatMessage request and reply; {settings.duration:g} s per window after "
        f"{settings.warmup:g} s warm-up; loop and transport per row (transport \"default\": WebSocketServer()'s); "
        f"client: {client_kind}, its own process"
    )
    print(
        f"# latency: one connection, one request at a time, {settings.round_trips} round trips (best of 3 rounds); "
        f"memory: RSS growth over {args.idle or settings.idle} idle connections; median of {args.repeat} round(s)"
        f"{' [--quick: a smoke run, not a measurement]' if args.quick else ''}",
        flush=True,
    )
    notes: list[str] = []
    runs: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        pure_path = str(pure_sources(Path(tmp)))
        for repeat in range(args.repeat):  # round after round, so a busy spell on the machine hits every row
            for row in rows:
                absent = missing(row)
                if absent:
                    if repeat == 0:
                        notes.append(f"skipped {row.name} ({row.loop}): {', '.join(absent)} not installed")
                    continue
                env = dict(os.environ)
                if row.pure:
                    env["PYTHONPATH"] = os.pathsep.join(filter(None, [pure_path, env.get("PYTHONPATH", "")]))
                idle = args.idle if repeat == 0 else 0  # memory is measured in the first round only
                try:
                    runs.setdefault(row.key, []).append(measure(row, env, args.quick, idle))
                except Exception as exc:
                    notes.append(f"failed {row.key}: {exc}")
                    continue
                print(f"# round {repeat + 1}/{args.repeat}: {row.key}", file=sys.stderr, flush=True)
    results = {key: median_result(values) for key, values in runs.items()}
    for key, result in results.items():
        if result["loop"] != ROW_BY_KEY[key].loop:
            notes.append(f"{key} ran on {result['loop']}, not {ROW_BY_KEY[key].loop}")
    print_table(results, settings.windows)
    starved = [
        key for key, result in results.items()
        if any(figures["server_cpu_share"] < 0.9 for figures in result["windows"].values())
    ]  # fmt: skip
    if starved:
        notes.append(
            f"server CPU below 90% at some window for {len(starved)} of {len(results)} rows: msg/s there is not "
            "the server's ceiling (other work on the machine had the cores, or the client was the bottleneck); "
            "CPU µs/msg is still comparable"
        )
    client_heavy = [
        f"{key} at {window}"
        for key, result in results.items()
        for window, figures in result["windows"].items()
        if figures["client_cpu_share"] >= figures["server_cpu_share"] * 0.9
    ]
    if client_heavy:
        notes.append(
            "the client spent about as much CPU per message as the server, or more, for "
            f"{', '.join(client_heavy)} in flight: on an idle machine those are client-bound (msg/s is the "
            "client's; the server's CPU µs/msg is measured at less than full load)"
        )
    clients = {result["client"] for result in results.values()}
    if clients == {"websockets"}:
        notes.append("client: websockets (install picows for a cheaper client; msg/s may be client-bound)")
    for note in notes:
        print(f"# {note}")
    print_targets(results)
    print(f"# took {time.perf_counter() - began:.0f} s")
    if any(note.startswith("failed") for note in notes):
        raise SystemExit(1)


def median_result(values: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's median over the rounds (memory: from the first round, the only one that measures it)."""
    result = dict(values[0])
    for key in ("p50_us", "p99_us"):
        result[key] = statistics.median(value[key] for value in values)
    result["windows"] = {
        window: {key: statistics.median(value["windows"][window][key] for value in values) for key in figures}
        for window, figures in values[0]["windows"].items()
    }
    return result


def label(key: str, results: dict[str, dict[str, Any]] | None = None) -> str:
    """A row's name with the loop it ran on."""
    row = ROW_BY_KEY[key]
    loop = results[key]["loop"] if results and key in results else row.loop
    return f"{row.name} ({loop})"


def cpu_ratio(results: dict[str, dict[str, Any]], key: str, baseline: str, window: str) -> float | None:
    """The baseline's CPU per message over the row's, at one window (higher is better); None if either is missing."""
    if key not in results or baseline not in results:
        return None
    base_cpu: float = results[baseline]["windows"][window]["cpu_us_per_msg"]
    row_cpu: float = results[key]["windows"][window]["cpu_us_per_msg"]
    return base_cpu / row_cpu


def rate_ratio(results: dict[str, dict[str, Any]], key: str, baseline: str, window: str) -> float | None:
    if key not in results or baseline not in results:
        return None
    row_rate: float = results[key]["windows"][window]["msgs_per_s"]
    base_rate: float = results[baseline]["windows"][window]["msgs_per_s"]
    return row_rate / base_rate


def print_table(results: dict[str, dict[str, Any]], windows: tuple[int, ...]) -> None:
    """One line per row: CPU per message and ratios at each window, then msg/s, latency and memory."""
    per_window = " / ".join(str(window) for window in windows)

    def cells(values: list[float | None], form: str) -> str:
        return " / ".join("-" if value is None else format(value, form) for value in values)

    header = [
        "server (loop)", "transport", f"CPU µs/msg ({per_window} in flight)", "vs raw websockets, same loop (CPU)",
        "vs raw picows native (CPU)", "msg/s", "server CPU", "client CPU", "p50 µs", "p99 µs", "idle KiB/conn",
    ]  # fmt: skip
    lines = []
    for key, result in results.items():
        row = ROW_BY_KEY[key]
        figures = [result["windows"][str(window)] for window in windows]
        raw = RAW_ON.get(result["loop"], "raw")
        lines.append([
            label(key, results),
            row.transport,
            cells([figure["cpu_us_per_msg"] for figure in figures], ".1f"),
            cells([cpu_ratio(results, key, raw, str(window)) for window in windows], ".2f") + "x",
            cells([cpu_ratio(results, key, PICOWS_NATIVE, str(window)) for window in windows], ".2f") + "x"
            if row.transport == "picows" else "",
            cells([figure["msgs_per_s"] for figure in figures], ".0f"),
            cells([figure["server_cpu_share"] * 100 for figure in figures], ".0f") + "%",
            cells([figure["client_cpu_share"] * 100 for figure in figures], ".0f") + "%",
            f"{result['p50_us']:.0f}",
            f"{result['p99_us']:.0f}",
            f"{result['idle_bytes_per_conn'] / 1024:.1f}",
        ])  # fmt: skip
    widths = [max(len(cell) for cell in column) for column in zip(header, *lines)]
    numeric = [False] + [False] + [True] * (len(header) - 2)

    def render(cells_: list[str]) -> str:
        padded = [
            cell.rjust(width) if right else cell.ljust(width) for cell, width, right in zip(cells_, widths, numeric)
        ]
        return "| " + " | ".join(padded) + " |"

    print(render(header))
    print("|" + "|".join("-" * (width + 1) + (":" if right else "-") for width, right in zip(widths, numeric)) + "|")
    for line in lines:
        print(render(line), flush=True)


def print_targets(results: dict[str, dict[str, Any]]) -> None:
    """The issue's targets, from this run's figures, each with its traffic shape."""

    def verdict(ok: bool | None) -> str:
        return "n/a (a row was not run)" if ok is None else ("met" if ok else "missed")

    print(
        "# targets (ratio = the baseline's server CPU per message / the row's, higher is better; "
        "msg/s ratio for reference):"
    )
    ratio_targets = [
        ("1", "aiows", "raw", 1.3),
        ("1", "aiows-uvloop", "raw-uvloop", 1.3),
        ("1", "aiows-mw3", "raw", 1.2),
        ("1", "aiows-picows", PICOWS_NATIVE, 0.5),
        ("1", "aiows-picows", "fastapi", 2.0),
        ("8", "aiows", "raw", 1.8),
        ("8", "aiows-uvloop", "raw-uvloop", 1.8),
        ("8", "aiows-picows", PICOWS_NATIVE, 0.85),
        ("1", "aiows-fastapi", "fastapi", 1.3),
        ("8", "aiows-fastapi", "fastapi", 1.3),
    ]
    for window, key, baseline, target in ratio_targets:
        ratio = cpu_ratio(results, key, baseline, window)
        rate = rate_ratio(results, key, baseline, window)
        measured = "-" if ratio is None else f"{ratio:.2f}x (msg/s {rate:.2f}x)"
        print(
            f"#   50 conns x {window} in flight: {label(key, results)} >= {target:g}x {label(baseline, results)}: "
            f"{measured}  {verdict(None if ratio is None else ratio >= target)}"
        )
    for key, baseline in COMPARED_TO.items():  # metrics on: server CPU per message grows by less than 5%
        for window in ("1", "8"):
            ratio = cpu_ratio(results, baseline, key, window)  # the row's CPU per message over the baseline's
            measured = "-" if ratio is None else f"{ratio:.3f}x ({(ratio - 1) * 100:+.1f}%)"
            print(
                f"#   50 conns x {window} in flight: {label(key, results)} CPU per message <= 1.05x "
                f"{label(baseline, results)}: {measured}  {verdict(None if ratio is None else ratio <= 1.05)}"
            )
    for key in ("aiows", "aiows-picows"):
        kib = results[key]["idle_bytes_per_conn"] / 1024 if key in results else None
        measured = "-" if kib is None else f"{kib:.1f} KiB"
        print(
            f"#   idle memory, {ROW_BY_KEY[key].transport} transport: {label(key, results)} <= 10 KiB per connection: "
            f"{measured}  {verdict(None if kib is None else kib <= 10)}"
        )
    for key, baseline in (("aiows", "raw"), ("aiows-uvloop", "raw-uvloop")):
        if key in results and baseline in results:
            row_p99, base_p99 = results[key]["p99_us"], results[baseline]["p99_us"]
            measured, ok = f"{row_p99:.0f} vs {base_p99:.0f} µs", bool(row_p99 <= base_p99)
        else:
            measured, ok = "-", None
        print(
            f"#   p99 round trip, 1 connection x 1 in flight: {label(key, results)} <= {label(baseline, results)}: "
            f"{measured}  {verdict(ok)}"
        )


if __name__ == "__main__":
    main()
