"""End-to-end load benchmark: each server in its own process, driven from another process.

    python benchmarks/load.py            # the full run (about five minutes with every row installed)
    python benchmarks/load.py --quick    # a few seconds: a smoke run, not a measurement

For every row, a fresh server process (``servers.py``) listens on 127.0.0.1
and a fresh client process (this file with ``--client``) measures, in order:

- idle memory: the server's RSS growth over N idle connections (2,000; 50 quick), per connection;
- latency: p50/p99 of request/response round trips on one connection, one at a time
  (the best of three rounds, since a burst of other work on the machine spoils a round);
- throughput: 8 connections with 8 requests in flight each, for a bounded time and
  message count; msg/s, and the server process's CPU time per message (user + system,
  from /proc: the steadiest figure on a shared machine). "server CPU" is the share of one
  core the server used meanwhile: below 100%, msg/s was limited by the client or by other
  work on the machine, not by the server.

The client uses picows on uvloop when installed (a cheap client keeps the server the
bottleneck), else ``websockets``. Rows whose packages are missing are skipped with a note.
Ratios are against raw ``websockets`` echo on asyncio (``raw``); higher is better.
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


@dataclass(frozen=True)
class Row:
    """One line of the table: a server kind, how it is labelled, and what it needs."""

    kind: str
    label: str
    needs: tuple[str, ...] = ()
    pure: bool = False
    protocol: str = "json"  # or "socketio"


ROWS = [
    Row("raw", "raw websockets echo (asyncio)"),
    Row("aiows", "aiows default (asyncio)"),
    Row("aiows-mw3", "aiows + 3 middlewares"),
    Row("aiows", "aiows pure build", pure=True),
    Row("naive", "naive (json, model_validate, chain/msg)"),
    Row("raw-uvloop", "raw websockets echo (uvloop)", ("uvloop",)),
    Row("aiows-uvloop", "aiows on uvloop", ("uvloop",)),
    Row("raw-picows", "raw picows.websockets echo (uvloop)", ("picows", "uvloop")),
    Row("raw-picows-native", "raw picows native echo (uvloop)", ("picows", "uvloop")),
    Row("aiows-picows", 'aiows transport="picows" (uvloop)', ("picows", "uvloop")),
    Row("aiows-picows-asyncio", 'aiows transport="picows" (asyncio)', ("picows",)),
    Row("fastapi", "FastAPI + uvicorn (defaults)", ("fastapi", "uvicorn")),
    Row("socketio", "python-socketio + uvicorn (defaults)", ("socketio", "uvicorn"), protocol="socketio"),
]


@dataclass(frozen=True)
class Settings:
    """How much each client does."""

    idle: int
    round_trips: int
    warmup: float
    duration: float
    max_messages: int
    connections: int = 8
    window: int = 8


FULL = Settings(idle=2000, round_trips=6000, warmup=0.5, duration=3.0, max_messages=1_000_000)
QUICK = Settings(idle=50, round_trips=150, warmup=0.1, duration=0.3, max_messages=20_000)


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


def frame_for(protocol: str) -> bytes:
    return b'42["chat",' + PAYLOAD + b"]" if protocol == "socketio" else PAYLOAD


def check_reply(payload: bytes, protocol: str) -> None:
    """The reply must be the chat answer (a raw echo sends the request back, which also fits)."""
    if protocol == "socketio":
        event, data = json.loads(payload[2:])
        assert event == "chat", payload
    else:
        data = json.loads(payload)
    assert data["type"] == "chat" and data["user_id"] == 42, payload


class Peer:
    """One client connection: ``send()`` a request; ``on_reply`` is called for each answer."""

    def __init__(self) -> None:
        self.on_reply: Callable[[bytes], None] = lambda payload: None

    def send(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


async def open_picows(url: str, protocol: str) -> Peer:
    from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect  # type: ignore[import-not-found,unused-ignore]

    request = frame_for(protocol)
    ready = asyncio.get_running_loop().create_future()

    class Listener(WSListener, Peer):  # type: ignore[misc,unused-ignore]
        transport: WSTransport

        def on_ws_connected(self, transport: WSTransport) -> None:
            self.transport = transport
            if protocol != "socketio":
                ready.set_result(None)

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
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


async def client(args: argparse.Namespace) -> dict[str, Any]:
    settings = QUICK if args.quick else FULL
    if args.idle is not None:
        settings = dataclasses.replace(settings, idle=args.idle)
    url = f"ws://127.0.0.1:{args.port}/"
    if args.protocol == "socketio":
        url += "socket.io/?EIO=4&transport=websocket"
    use_picows = importlib.util.find_spec("picows") is not None
    opener = open_picows if use_picows else open_websockets

    async def connect() -> Peer:
        return await opener(url, args.protocol)

    async def round_trip(peer: Peer) -> bytes:
        reply: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        peer.on_reply = reply.set_result
        peer.send()
        return await asyncio.wait_for(reply, 10)

    # Warm up: the first connections import and build what the server builds lazily.
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

    # Throughput: connections x window requests in flight, bounded in time and count.
    peers = [await connect() for _ in range(settings.connections)]
    received = 0
    running = True

    def on_reply(owner: Peer) -> Callable[[bytes], None]:
        def reply(payload: bytes) -> None:
            nonlocal received
            received += 1
            if running:
                owner.send()

        return reply

    for peer in peers:
        peer.on_reply = on_reply(peer)
        for _ in range(settings.window):
            peer.send()
    await asyncio.sleep(settings.warmup)
    counted, cpu, started = received, server_cpu(args.server_pid), time.perf_counter()
    own_cpu = time.process_time()
    deadline = started + settings.duration
    while time.perf_counter() < deadline and received - counted < settings.max_messages:
        await asyncio.sleep(0.05)
    messages = received - counted
    elapsed = time.perf_counter() - started
    cpu = server_cpu(args.server_pid) - cpu
    own_cpu = time.process_time() - own_cpu
    running = False
    for peer in peers:
        peer.close()
    return {
        "client": "picows" if use_picows else "websockets",
        "msgs_per_s": messages / elapsed,
        "cpu_us_per_msg": cpu / max(messages, 1) * 1e6,
        "p50_us": min(rtts[len(rtts) // 2] for rtts in rounds) * 1e6,
        "p99_us": min(rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))] for rtts in rounds) * 1e6,
        "idle_bytes_per_conn": per_connection,
        "server_cpu_share": cpu / elapsed,
        "client_cpu_share": own_cpu / elapsed,
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


def start_server(row: Row, env: dict[str, str]) -> tuple[subprocess.Popen[str], int]:
    server = subprocess.Popen(
        [sys.executable, str(HERE / "servers.py"), row.kind],
        cwd=HERE, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        preexec_fn=raise_file_limit,
    )  # fmt: skip
    assert server.stdout is not None
    ready, _, _ = select.select([server.stdout], [], [], 60)
    line = server.stdout.readline() if ready else ""
    if not line.startswith("PORT "):
        server.kill()
        raise RuntimeError(f"server {row.kind} did not start")
    return server, int(line.split()[1])


def raise_file_limit() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def measure(row: Row, env: dict[str, str], quick: bool, idle: int | None) -> dict[str, Any]:
    server, port = start_server(row, env)
    try:
        command = [
            sys.executable, str(HERE / "load.py"), "--client", "--port", str(port),
            "--server-pid", str(server.pid), "--protocol", row.protocol, *(["--quick"] if quick else []),
            *([] if idle is None else ["--idle", str(idle)]),
        ]  # fmt: skip
        done = subprocess.run(command, cwd=HERE, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"client for {row.label} failed:\n{done.stderr[-2000:]}")
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return result
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait()


def version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few seconds in all: a smoke run, not a measurement")
    parser.add_argument("--only", help="comma-separated row kinds to run (raw is always run)")
    parser.add_argument("--repeat", type=int, help="rounds over all rows; each figure is the median (default 3; 1 quick)")
    parser.add_argument("--idle", type=int, help="idle connections for the memory figure (default 2,000; 50 quick)")
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--server-pid", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--protocol", default="json", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        client_main(args)
        return
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3

    import aiows

    settings = QUICK if args.quick else FULL
    only = set(args.only.split(",")) | {"raw"} if args.only else None
    print(
        f"# {datetime.date.today()} | {platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()} | "
        f"Python {platform.python_version()} | aiows {aiows.__version__} (compiled={aiows.COMPILED}), "
        f"websockets {version('websockets')}, picows {version('picows')}, uvloop {version('uvloop')}, "
        f"pydantic {version('pydantic')}, orjson {version('orjson')}, fastapi {version('fastapi')}, "
        f"uvicorn {version('uvicorn')}, python-socketio {version('python-socketio')}"
    )
    print(
        f"# {settings.idle} idle connections; {settings.round_trips} round trips; "
        f"{settings.connections}x{settings.window} in flight for {settings.duration:g} s; "
        f"median of {args.repeat} round(s)"
        f"{' [--quick: a smoke run, not a measurement]' if args.quick else ''}",
        flush=True,
    )
    header = (
        f"| {'server':<40} | {'msg/s':>8} | {'server CPU':>10} | {'CPU µs/msg':>10} | {'p50 µs':>7} | {'p99 µs':>7} "
        f"| {'idle KiB/conn':>13} | {'vs raw (msg/s)':>14} | {'vs raw (CPU)':>12} |"
    )
    print(header)
    print("|" + "|".join("-" * (len(cell)) for cell in header.split("|")[1:-1]) + "|", flush=True)
    notes: list[str] = []
    runs: dict[str, list[dict[str, Any]]] = {}
    rows = [row for row in ROWS if only is None or row.kind in only]
    with tempfile.TemporaryDirectory() as tmp:
        pure_path = str(pure_sources(Path(tmp)))
        for repeat in range(args.repeat):  # round after round, so a busy spell on the machine hits every row
            for row in rows:
                absent = missing(row)
                if absent:
                    if repeat == 0:
                        notes.append(f"skipped {row.label}: {', '.join(absent)} not installed")
                    continue
                env = dict(os.environ)
                if row.pure:
                    env["PYTHONPATH"] = os.pathsep.join(filter(None, [pure_path, env.get("PYTHONPATH", "")]))
                idle = args.idle if repeat == 0 else 0  # memory is measured in the first round only
                try:
                    runs.setdefault(row.label, []).append(measure(row, env, args.quick, idle))
                except Exception as exc:
                    notes.append(f"failed {row.label}: {exc}")
                    continue
                if args.repeat > 1:
                    print(f"# round {repeat + 1}/{args.repeat}: {row.label}", file=sys.stderr, flush=True)
    results = {label: median_result(values) for label, values in runs.items()}
    raw = results.get(ROWS[0].label)
    for label, result in results.items():
        base = raw or result
        print(
            f"| {label:<40} | {result['msgs_per_s']:>8.0f} | {result['server_cpu_share']:>9.0%} "
            f"| {result['cpu_us_per_msg']:>10.1f} "
            f"| {result['p50_us']:>7.0f} | {result['p99_us']:>7.0f} "
            f"| {result['idle_bytes_per_conn'] / 1024:>13.1f} "
            f"| {result['msgs_per_s'] / base['msgs_per_s']:>13.2f}x "
            f"| {base['cpu_us_per_msg'] / result['cpu_us_per_msg']:>11.2f}x |",
            flush=True,
        )
    clients = {result["client"] for result in results.values()}
    if clients == {"websockets"}:
        notes.append("client: websockets (install picows for a cheaper client; msg/s may be client-bound)")
    for note in notes:
        print(f"# {note}")
    print_targets(results)
    if any(note.startswith("failed") for note in notes):
        raise SystemExit(1)


def median_result(values: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's median over the rounds (memory: from the first round, the only one that measures it)."""
    result = dict(values[0])
    for key in ("msgs_per_s", "cpu_us_per_msg", "p50_us", "p99_us", "server_cpu_share", "client_cpu_share"):
        result[key] = statistics.median(value[key] for value in values)
    return result


def print_targets(results: dict[str, dict[str, Any]]) -> None:
    """The issue's targets, from this run's figures (CPU per message, then msg/s)."""

    def ratio(label: str, baseline: str) -> str:
        if label not in results or baseline not in results:
            return "n/a"
        row, base = results[label], results[baseline]
        return (
            f"{base['cpu_us_per_msg'] / row['cpu_us_per_msg']:.2f}x by CPU, "
            f"{row['msgs_per_s'] / base['msgs_per_s']:.2f}x by msg/s"
        )

    raw, raw_uv = "raw websockets echo (asyncio)", "raw websockets echo (uvloop)"
    print("# targets:")
    print(f"#   aiows vs raw websockets (>= 0.90x): {ratio('aiows default (asyncio)', raw)}")
    print(f"#   aiows + 3 middlewares vs raw (>= 0.85x): {ratio('aiows + 3 middlewares', raw)}")
    print(f"#   aiows on uvloop vs raw on uvloop (>= 0.90x): {ratio('aiows on uvloop', raw_uv)}")
    picows = 'aiows transport="picows" (uvloop)'
    print(f"#   picows transport vs raw on asyncio (>= 2x): {ratio(picows, raw)}")
    print(f"#   picows transport vs FastAPI + uvicorn (>= 1.5x): {ratio(picows, 'FastAPI + uvicorn (defaults)')}")
    if raw in results and "aiows default (asyncio)" in results:
        extra = results["aiows default (asyncio)"]["idle_bytes_per_conn"] - results[raw]["idle_bytes_per_conn"]
        print(f"#   idle memory, aiows minus raw (<= 2 KiB): {extra / 1024:.1f} KiB per connection")


if __name__ == "__main__":
    main()
