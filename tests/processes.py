"""Helpers for tests that run a program in its own process: free ports, waiting, the examples."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """Poll until ``process`` listens on ``port`` (bounded by ``timeout``)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if process.poll() is not None:
            raise RuntimeError(f"process exited early: {process.stderr.read().decode() if process.stderr else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listened on {port} within {timeout} s")


def run_example(name: str, *args: str, exit_codes: tuple[int, ...] = (0,)) -> Iterator[int]:
    """Run ``python examples/<name> PORT *args`` until the generator is closed; yield the port.

    The example is stopped with SIGTERM and must exit with one of ``exit_codes``.
    """
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLES / name), str(port), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        wait_for_port(port, process)
        yield port
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
            raise
        assert process.returncode in exit_codes, process.stderr.read().decode() if process.stderr else ""
