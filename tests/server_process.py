"""A test server in its own process: for soak runs and memory measurements (``/proc/<pid>/status``).

The child serves on 127.0.0.1 with an ephemeral port, prints the port on its
first stdout line, and on SIGTERM shuts down gracefully and prints one JSON
line of counters (connects, disconnects, messages handled) before exiting 0.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from typing import Any


import orjson


SCRIPT = r"""
import asyncio, signal, sys
import orjson
from aiows import BaseMessage, Router, WebSocket, WebSocketServer

options = orjson.loads(sys.argv[1])
stats = {"connects": 0, "disconnects": 0, "handled": 0, "reasons": {}}
router = Router()

@router.connect()
async def on_connect(websocket: WebSocket) -> None:
    stats["connects"] += 1

@router.message("echo")
async def on_echo(websocket: WebSocket, message: BaseMessage) -> None:
    stats["handled"] += 1
    await websocket.send_json({"type": "echo", "c": getattr(message, "c", None), "n": getattr(message, "n", None)})

@router.disconnect()
async def on_disconnect(websocket: WebSocket, reason: str) -> None:
    stats["disconnects"] += 1
    stats["reasons"][reason] = stats["reasons"].get(reason, 0) + 1

async def main() -> None:
    server = WebSocketServer(**options)
    server.include_router(router)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with server.serve("127.0.0.1", 0) as running:
        print(running.port, flush=True)
        await stop.wait()
    print(orjson.dumps(stats).decode(), flush=True)

asyncio.run(main())
"""


class ServerProcess:
    """``async with ServerProcess(compression="deflate") as server:`` runs the echo server above."""

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.stats: dict[str, Any] = {}
        self.stderr = b""

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def status_kib(self, field: str) -> int:
        """A ``/proc/<pid>/status`` field in KiB: ``VmRSS`` (resident now) or ``VmHWM`` (peak)."""
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise KeyError(field)

    def rss_mib(self) -> float:
        return self.status_kib("VmRSS") / 1024

    def peak_rss_mib(self) -> float:
        return self.status_kib("VmHWM") / 1024

    async def __aenter__(self) -> ServerProcess:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-c", SCRIPT, orjson.dumps(self.options).decode()],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        assert self.process.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(self.process.stdout.readline), 30)
        if not line.strip().isdigit():
            self.process.kill()
            _, err = self.process.communicate(timeout=10)
            raise RuntimeError(f"the server process did not start: {line!r} {err.decode(errors='replace')}")
        self.port = int(line)
        return self

    async def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, wait for the exit, collect the counters and stderr; the exit code."""
        process = self.process
        assert process is not None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        try:
            out, err = await asyncio.to_thread(process.communicate, None, max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate(timeout=10)
        self.stderr = err
        lines = out.decode().splitlines()
        if lines:
            self.stats = orjson.loads(lines[-1])
        return process.returncode

    async def __aexit__(self, *exc_info: object) -> None:
        if self.process is not None and self.process.returncode is None:
            await self.stop()
