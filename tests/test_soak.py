"""Soak: many connections sending at a steady rate through a server in its own process.

Every message must come back exactly once and in order on its connection, and
the server's resident memory must not grow by more than 50 MB. The full run
(200 connections x 5 msg/s x 30 s) is ``pytest -m soak``; the normal suite runs
a short variant.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import orjson
import pytest
from server_process import ServerProcess
from websockets.asyncio.client import ClientConnection, connect

RSS_GROWTH_LIMIT_MIB = 50.0


@dataclass
class SoakResult:
    received: dict[int, list[int]] = field(default_factory=dict)
    foreign: int = 0  # replies carrying another connection's id
    close_codes: list[int | None] = field(default_factory=list)
    rss_samples: list[float] = field(default_factory=list)
    elapsed: float = 0.0


async def converse(
    ws: ClientConnection, c: int, count: int, rate: float, start: float, result: SoakResult, drain: float
) -> None:
    """Send ``count`` echo messages at ``rate`` per second from ``start``; collect the replies."""
    loop = asyncio.get_running_loop()
    got = result.received[c] = []

    async def read() -> None:
        for _ in range(count):  # bounded: one reply per message sent
            reply = orjson.loads(await ws.recv())
            if reply.get("c") != c:
                result.foreign += 1
            got.append(reply["n"])

    reader = asyncio.ensure_future(read())
    for n in range(count):
        delay = start + n / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        await ws.send(orjson.dumps({"type": "echo", "c": c, "n": n}).decode())
    try:
        await asyncio.wait_for(reader, drain)
    except asyncio.TimeoutError:
        pass  # whatever did not arrive by now counts as lost
    # Anything beyond the expected replies would be a duplicate: give it a moment to show up.
    try:
        extra = await asyncio.wait_for(ws.recv(), 0.2)
        got.append(orjson.loads(extra)["n"])
    except (asyncio.TimeoutError, Exception):
        pass


async def soak(connections: int, rate: float, duration: float) -> tuple[SoakResult, ServerProcess]:
    count = int(rate * duration)
    result = SoakResult()
    async with ServerProcess() as server:
        baseline = server.rss_mib()
        result.rss_samples.append(baseline)
        sampling = True

        async def sample() -> None:
            while sampling:
                result.rss_samples.append(server.rss_mib())
                await asyncio.sleep(0.5)

        sampler = asyncio.ensure_future(sample())
        clients = await asyncio.gather(
            *(connect(server.url, open_timeout=30, ping_interval=None, close_timeout=10) for _ in range(connections))
        )
        loop = asyncio.get_running_loop()
        start = loop.time() + 0.2
        began = time.monotonic()
        # Spread the connections' sends evenly over each 1/rate interval.
        await asyncio.gather(
            *(
                converse(ws, c, count, rate, start + c / (connections * rate), result, drain=30)
                for c, ws in enumerate(clients)
            )
        )
        result.elapsed = time.monotonic() - began
        await asyncio.gather(*(ws.close() for ws in clients))
        result.close_codes = [ws.close_code for ws in clients]
        await asyncio.sleep(0.5)  # let the server finish its disconnect handlers
        result.rss_samples.append(server.rss_mib())
        sampling = False
        await sampler
        assert await server.stop() == 0
    return result, server


def check(result: SoakResult, server: ServerProcess, connections: int, count: int) -> None:
    lost = sum(max(0, count - len(set(got))) for got in result.received.values())
    duplicated = sum(len(got) - len(set(got)) for got in result.received.values())
    out_of_order = sum(1 for got in result.received.values() if got != sorted(got))
    growth = max(result.rss_samples) - result.rss_samples[0]
    print(
        f"\nsoak: {connections} connections x {count} messages in {result.elapsed:.1f} s: "
        f"lost {lost}, duplicated {duplicated}, out of order {out_of_order}; "
        f"server RSS {result.rss_samples[0]:.1f} -> max {max(result.rss_samples):.1f} MiB (+{growth:.1f})"
    )
    assert (lost, duplicated, out_of_order, result.foreign) == (0, 0, 0, 0)
    for got in result.received.values():
        assert got == list(range(count))
    assert result.close_codes == [1000] * connections
    assert growth < RSS_GROWTH_LIMIT_MIB
    # The server saw each message once, and each connection came and went once.
    stats = server.stats
    assert stats["handled"] == connections * count
    assert stats["connects"] == stats["disconnects"] == connections
    assert stats["reasons"] == {"1000": connections}
    assert b"Traceback" not in server.stderr and b"ERROR" not in server.stderr, server.stderr.decode()


async def test_soak_short() -> None:
    """The CI variant: 50 connections x 5 msg/s x 3 s."""
    result, server = await soak(50, 5.0, 3.0)
    check(result, server, 50, 15)


@pytest.mark.soak
async def test_soak_full() -> None:
    """200 connections x 5 msg/s x 30 s: ``pytest -m soak``."""
    result, server = await soak(200, 5.0, 30.0)
    check(result, server, 200, 150)
