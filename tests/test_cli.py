"""The ``aiows`` command, run for real in a subprocess against a small app module in a temp dir."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, WebSocketException

import aiows
from certs import make_certs
from processes import free_port

APP = """
import multiprocessing
import os

from aiows import BaseMessage, Router, WebSocket, WebSocketServer

if os.environ.get("APP_CRASH_IN_WORKERS") and multiprocessing.parent_process() is not None:
    raise SystemExit(3)

router = Router()

@router.message("whoami")
async def whoami(websocket: WebSocket, message: BaseMessage) -> None:
    await websocket.send_json({"type": "pid", "pid": os.getpid()})

server = WebSocketServer(close_timeout=2)
server.include_router(router)
not_a_server = router
"""

#: Bound on every wait for the CLI (start-up, a worker restart, shutdown): a hang fails instead of blocking.
WAIT = 30.0

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="--workers needs Linux SO_REUSEPORT")




class Cli:
    """``python -m aiows run app:server ...`` in a temp dir; stderr goes to a file."""

    def __init__(self, tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> None:
        (tmp_path / "app.py").write_text(APP)
        self.port = free_port()
        #: The client's TLS context: set it to talk wss:// to a server run with --certfile.
        self.ssl: ssl.SSLContext | None = None
        self.log = tmp_path / "stderr.txt"
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "aiows", "run", "app:server", "--port", str(self.port), *args],
                cwd=tmp_path,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
            )

    @property
    def output(self) -> str:
        return self.log.read_text()

    async def whoami(self) -> int:
        """The pid of the process that serves one new connection."""
        scheme = "ws" if self.ssl is None else "wss"
        async with connect(f"{scheme}://127.0.0.1:{self.port}/", open_timeout=5, ssl=self.ssl) as ws:
            await ws.send(orjson.dumps({"type": "whoami"}).decode())
            reply: dict[str, Any] = orjson.loads(await asyncio.wait_for(ws.recv(), 5))
            pid: int = reply["pid"]
            return pid

    async def wait_ready(self) -> int:
        deadline = time.monotonic() + WAIT
        while True:
            assert self.process.poll() is None, self.output
            try:
                return await self.whoami()
            except (OSError, WebSocketException):  # not listening yet, or a worker stopping
                assert time.monotonic() < deadline, f"not serving after {WAIT} s:\n{self.output}"
                await asyncio.sleep(0.1)

    async def pids(self, want: int, exclude: set[int] = frozenset()) -> set[int]:  # type: ignore[assignment]
        """Connect (at most 1000 times, for ``WAIT`` s) until ``want`` distinct pids outside ``exclude`` answered."""
        seen: set[int] = set()
        deadline = time.monotonic() + WAIT
        for _ in range(1000):
            seen.add(await self.wait_ready())
            if len(seen - exclude) >= want or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.01)  # a (re)starting worker joins the port within a second or so
        return seen - exclude

    def stop(self, signum: int = signal.SIGTERM) -> int:
        self.process.send_signal(signum)
        return self.process.wait(WAIT)

    def wait_output(self, text: str) -> None:
        deadline = time.monotonic() + WAIT
        while text not in self.output:
            assert time.monotonic() < deadline, f"{text!r} not printed within {WAIT} s:\n{self.output}"
            time.sleep(0.05)


@pytest.fixture
def cli_factory(tmp_path: Path) -> Iterator[Any]:
    started: list[Cli] = []

    def factory(*args: str, env: dict[str, str] | None = None) -> Cli:
        cli = Cli(tmp_path, *args, env=env)
        started.append(cli)
        return cli

    yield factory
    for cli in started:  # a failed test must not leave servers behind
        if cli.process.poll() is None:
            cli.process.kill()
            cli.process.wait(WAIT)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_version_prints_every_version_and_the_build() -> None:
    script = Path(sys.executable).with_name("aiows")  # the console script
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=WAIT)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"aiows {aiows.__version__} (compiled: {'yes' if aiows.COMPILED else 'no'})"
    assert [line.split()[0] for line in lines] == ["aiows", "websockets", "pydantic", "orjson", "Python"]
    assert lines[-1].startswith(f"Python {sys.version_info.major}.{sys.version_info.minor}.")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("app", "'app' is not 'module:attribute' (for example 'myapp:server')"),
        ("missing_module:server", "could not import module 'missing_module'"),
        ("app:nothing", "module 'app' has no attribute 'nothing'"),
        ("app:not_a_server", "app:not_a_server is a Router, not a WebSocketServer"),
    ],
)
def test_bad_app_gives_a_clear_error(tmp_path: Path, spec: str, message: str) -> None:
    (tmp_path / "app.py").write_text(APP)
    result = subprocess.run(
        [sys.executable, "-m", "aiows", "run", spec], cwd=tmp_path, capture_output=True, text=True, timeout=WAIT
    )
    assert result.returncode == 1
    assert f"aiows: error: {message}" in result.stderr
    assert "Traceback" not in result.stderr


def test_port_in_use_gives_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(APP)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = subprocess.run(
            [sys.executable, "-m", "aiows", "run", "app:server", "--port", port],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=WAIT,
        )
    assert result.returncode == 1
    assert f"aiows: error: cannot listen on 127.0.0.1:{port}" in result.stderr


async def test_single_process_serves_until_ctrl_c(cli_factory: Any) -> None:
    cli = cli_factory("--log-level", "warning")
    assert await cli.wait_ready() == cli.process.pid  # no worker processes
    compiled = "yes" if aiows.COMPILED else "no"
    line = f"aiows: listening on ws://127.0.0.1:{cli.port} (workers: 1, compiled: {compiled}, transport: websockets)"
    assert line in cli.output.splitlines()
    assert "rooms do not span workers" not in cli.output
    assert cli.stop(signal.SIGINT) == 0


@linux_only
async def test_workers_share_the_port_and_stop_gracefully_on_sigterm(cli_factory: Any) -> None:
    cli = cli_factory("--workers", "2")
    pids = await cli.pids(2)
    assert len(pids) == 2 and cli.process.pid not in pids
    compiled = "yes" if aiows.COMPILED else "no"
    output = cli.output.splitlines()
    assert f"aiows: listening on ws://127.0.0.1:{cli.port} (workers: 2, compiled: {compiled}, transport: websockets)" in output
    assert sum(line.startswith("aiows: listening on") for line in output) == 1  # one line per listener, not per worker
    assert any("use the Redis backend" in line for line in output)

    async with connect(f"ws://127.0.0.1:{cli.port}/", open_timeout=5) as ws:
        cli.process.send_signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), WAIT)
        assert ws.close_code == 1001  # going away: closed by the server, not dropped
    assert cli.process.wait(WAIT) == 0, cli.output
    assert all(gone(pid) for pid in pids)
    assert "stopping 2 worker(s)" in cli.output


@linux_only
async def test_a_killed_worker_is_reported_and_restarted(cli_factory: Any) -> None:
    cli = cli_factory("--workers", "2")
    pids = await cli.pids(2)
    victim = min(pids)
    os.kill(victim, signal.SIGKILL)
    cli.wait_output(f"(pid {victim}) was killed by SIGKILL; restarting it")
    assert len(await cli.pids(1, exclude=pids)) == 1  # a new worker answers
    assert cli.process.poll() is None
    assert cli.stop() == 0


@linux_only
def test_workers_that_keep_dying_make_the_cli_give_up(cli_factory: Any) -> None:
    cli = cli_factory("--workers", "2", env={"APP_CRASH_IN_WORKERS": "1"})
    assert cli.process.wait(WAIT) == 1
    assert "exited with status 3; restarting it" in cli.output
    assert "aiows: error: workers died 5 times within 60 s: giving up" in cli.output


async def test_reload_restarts_the_server_when_a_file_changes(cli_factory: Any, tmp_path: Path) -> None:
    pytest.importorskip("watchfiles")
    cli = cli_factory("--reload", "--log-level", "warning")
    first = await cli.wait_ready()
    assert first != cli.process.pid  # served by a child that watchfiles restarts
    (tmp_path / "app.py").write_text(APP + "\n# edited\n")
    cli.wait_output("file(s) changed: restarting")
    deadline = time.monotonic() + WAIT
    while (pid := await cli.wait_ready()) == first and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert pid != first
    assert cli.stop() == 0


@linux_only
async def test_tls_with_workers_serves_wss_from_every_worker(cli_factory: Any, tmp_path: Path) -> None:
    certs = make_certs(tmp_path)
    cli = cli_factory("--workers", "2", "--certfile", str(certs.server), "--keyfile", str(certs.server_key))
    cli.ssl = certs.client_context()
    pids = await cli.pids(2)
    assert len(pids) == 2 and cli.process.pid not in pids
    assert f"aiows: listening on wss://127.0.0.1:{cli.port} (workers: 2" in cli.output
    with pytest.raises(ssl.SSLCertVerificationError):  # a client that does not trust the certificate
        await connect(f"wss://127.0.0.1:{cli.port}/", open_timeout=5, ssl=ssl.create_default_context())
    assert await cli.whoami() in pids  # the workers keep serving
    assert cli.stop() == 0, cli.output


async def test_tls_client_certificates_with_ca_certs(cli_factory: Any, tmp_path: Path) -> None:
    certs = make_certs(tmp_path)
    cli = cli_factory(
        "--certfile", str(certs.server), "--keyfile", str(certs.server_key), "--ca-certs", str(certs.ca),
        "--log-level", "warning",
    )  # fmt: skip
    cli.ssl = certs.client_context(with_certificate=True)
    assert await cli.wait_ready() == cli.process.pid
    cli.ssl = certs.client_context()  # no client certificate
    with pytest.raises((OSError, EOFError, WebSocketException)):
        await cli.whoami()
    assert cli.stop() == 0, cli.output


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--certfile", "missing.pem"], "cannot load the TLS certificate and key from missing.pem: No such file"),
        (["--keyfile", "key.pem"], "--keyfile and --ca-certs need --certfile"),
    ],
)
def test_unusable_tls_flags_give_a_clear_error(tmp_path: Path, flags: list[str], message: str) -> None:
    (tmp_path / "app.py").write_text(APP)
    result = subprocess.run(
        [sys.executable, "-m", "aiows", "run", "app:server", *flags],
        cwd=tmp_path, capture_output=True, text=True, timeout=WAIT,
    )  # fmt: skip
    assert result.returncode == 1
    assert f"aiows: error: {message}" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
