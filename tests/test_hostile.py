"""Hostile input: fuzzed frames, deep JSON, a deflate bomb, half-open handshakes, per-IP caps."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any, Literal

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from server_process import ServerProcess
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from aiows import BaseMessage, Router, WebSocket, WebSocketServer
from aiows.testing import TestClient, TestConnection

#: The fuzzed server's message size limit: generated frames go up to it.
LIMIT = 64 * 1024
ERROR_CODES = {"invalid_json", "invalid_message", "unknown_type", "validation_error"}


class Typed(BaseMessage):
    type: Literal["typed"] = "typed"
    count: int
    tags: list[str] = []


def hostile_server(**options: Any) -> WebSocketServer:
    router = Router()

    @router.message("echo")
    async def on_echo(websocket: WebSocket, message: BaseMessage) -> None:
        await websocket.send_json({"type": "echo", "sentinel": getattr(message, "sentinel", None)})

    @router.message("typed")
    async def on_typed(websocket: WebSocket, message: Typed) -> None:
        await websocket.send_json({"type": "typed", "count": message.count, "tags": len(message.tags)})

    server = WebSocketServer(**options)
    server.include_router(router)
    return server


def server_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.levelno >= logging.ERROR
        and record.name.split(".")[0] in ("aiows", "websockets")
    ]


async def exchange(ws: TestConnection, frame: str | bytes, sentinel: int) -> dict[str, Any]:
    """Send ``frame`` then a sentinel; the one frame answering ``frame`` (the sentinel's reply must follow it)."""
    await ws.ws.send(frame)
    await ws.send_json({"type": "echo", "sentinel": sentinel})
    answer = await ws.receive_json(timeout=5)
    assert isinstance(answer, dict), answer
    if answer == {"type": "echo", "sentinel": sentinel}:
        raise AssertionError(f"no answer to {frame[:200]!r}")
    assert await ws.receive_json(timeout=5) == {"type": "echo", "sentinel": sentinel}, "more than one answer"
    return answer


def check_answer(answer: dict[str, Any]) -> None:
    """A reply from a handler, or an error frame the client caused: never an internal error."""
    if answer.get("type") == "error":
        assert answer["code"] in ERROR_CODES, answer
    else:
        assert answer.get("type") in ("echo", "typed"), answer


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=10), children, max_size=6),
    max_leaves=40,
)
messages = st.fixed_dictionaries(
    {"type": st.sampled_from(["echo", "typed", "unknown"]) | st.text(max_size=8) | json_values},
    optional={"count": json_values, "tags": json_values, "timestamp": json_values, "sentinel": json_values},
)


@st.composite
def padded_messages(draw: st.DrawFn) -> str:
    """A message object padded to a drawn size up to the limit."""
    document = draw(messages)
    size = draw(st.integers(0, LIMIT))
    text = json.dumps(document)
    pad = max(0, size - len(text) - 12)
    return json.dumps({**document, "pad": "x" * pad})[:LIMIT] if pad else text


frames = st.one_of(
    st.binary(max_size=2048),
    st.text(st.characters(codec="utf-8"), max_size=2048),
    json_values.map(json.dumps),
    messages.map(json.dumps),
    messages.map(lambda document: json.dumps(document).encode()),  # JSON in a binary frame
    padded_messages(),
)


def test_fuzzed_frames_get_a_reply_or_an_error_frame_and_the_connection_stays(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    with asyncio.Runner() as runner:
        client = TestClient(hostile_server(max_message_size=LIMIT))
        runner.run(client.__aenter__())
        ws = runner.run(client.connect().__aenter__())
        sentinel = iter(range(10**6))

        @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(frame=frames)
        def one_frame(frame: str | bytes) -> None:
            size = len(frame.encode() if isinstance(frame, str) else frame)
            assert size <= LIMIT
            check_answer(runner.run(exchange(ws, frame, next(sentinel))))

        try:
            one_frame()
            assert client.running.dispatcher.connections != set()
        finally:
            runner.run(ws.__aexit__(None, None, None))
            runner.run(client.__aexit__(None, None, None))
    assert server_errors(caplog) == []


@pytest.mark.parametrize("depth", [100, 500, 1000, 1023, 1024, 2000])
async def test_deeply_nested_json_gets_an_error_frame_or_a_reply_and_the_connection_stays(
    depth: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    documents = [
        "[" * depth + "]" * depth,
        '{"a":' * depth + "1" + "}" * depth,
        '{"type":"echo","nested":' + "[" * depth + "]" * depth + "}",
        '{"type":"typed","count":1,"tags":' + "[" * depth + "]" * depth + "}",
    ]
    async with TestClient(hostile_server()) as client, client.connect() as ws:
        answers = [await exchange(ws, document, n) for n, document in enumerate(documents)]
    for answer in answers:
        check_answer(answer)
    if depth >= 2000:
        assert [answer["code"] for answer in answers] == ["invalid_json"] * len(documents)
    assert answers[0]["type"] == "error"  # a list is never a message
    assert server_errors(caplog) == []


@pytest.mark.parametrize("transport", ["websockets", "picows"])
async def test_deflate_bomb_closes_1009_and_server_memory_stays_flat(transport: str) -> None:
    if transport != "websockets":
        pytest.importorskip(transport)
    bomb = bytes(10 * 2**20)  # 10 MiB of zeros: about 10 KiB once compressed
    async with ServerProcess(compression="deflate", transport=transport) as server:  # default max_message_size: 1 MiB
        async with connect(server.url, compression="deflate") as warm:  # warm up the server's allocations
            for n in range(20):
                await warm.send(orjson.dumps({"type": "echo", "n": n, "pad": "y" * 50_000}).decode())
                assert orjson.loads(await warm.recv())["n"] == n
        await asyncio.sleep(0.2)
        peak_before, rss_before = server.peak_rss_mib(), server.rss_mib()
        codes = []
        for _ in range(2):
            async with connect(server.url, compression="deflate", close_timeout=5) as ws:
                with contextlib.suppress(ConnectionClosed):
                    await ws.send(bomb)
                    await asyncio.wait_for(ws.recv(), 10)
                await asyncio.wait_for(ws.wait_closed(), 10)
                codes.append(ws.close_code)
        async with connect(server.url, compression="deflate") as after:  # still serving
            await after.send('{"type": "echo", "n": 1}')
            assert orjson.loads(await after.recv())["n"] == 1
        await asyncio.sleep(0.2)
        peak_after, rss_after = server.peak_rss_mib(), server.rss_mib()
        assert await server.stop() == 0
    print(f"\ndeflate bomb: RSS {rss_before:.1f} -> {rss_after:.1f} MiB, peak {peak_before:.1f} -> {peak_after:.1f} MiB")
    assert codes == [1009] * 2
    # Inflating even one bomb raises the peak by 10 MiB at least (about 20 MiB measured, with a 16 MiB
    # limit); refusing it costs about 1.3 MiB per bomb of allocator growth, which levels off.
    assert peak_after - peak_before < 8
    assert rss_after - rss_before < 8
    assert server.stats["disconnects"] == 4
    assert b"Traceback" not in server.stderr and b"ERROR" not in server.stderr


async def test_half_open_handshakes_are_dropped_after_open_timeout_and_others_still_connect() -> None:
    # max_connections is below the number of half-open sockets: they must not take connection slots.
    server = hostile_server(open_timeout=1.0, max_connections=50)
    async with TestClient(server) as client:
        stalled = []
        for n in range(200):
            reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
            if n % 2:
                writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")  # never finished
            stalled.append((reader, writer))
        started = time.monotonic()
        async with client.connect() as ws:
            await ws.send_json({"type": "echo", "sentinel": 1})
            assert await ws.receive_json() == {"type": "echo", "sentinel": 1}
            connected_in = time.monotonic() - started
            # Each stalled socket is closed by the server (EOF), after the handshake timeout.
            eofs = await asyncio.gather(*(asyncio.wait_for(reader.read(), 10) for reader, _ in stalled))
            dropped_in = time.monotonic() - started
            await ws.send_json({"type": "echo", "sentinel": 2})  # the legitimate client is still served
            assert await ws.receive_json() == {"type": "echo", "sentinel": 2}
        for _, writer in stalled:
            writer.close()
        limiter = client.running.gate.limiter
        for _ in range(100):  # bounded: the legitimate client's slot is freed once its close completes
            if not limiter.slots:
                break
            await asyncio.sleep(0.01)
        assert limiter.slots == {}
    print(f"\nhalf-open: legitimate client served in {connected_in:.3f} s; 200 stalled dropped by {dropped_in:.2f} s")
    assert eofs == [b""] * 200
    assert connected_in < 1.0


async def refusal(url: str, source: str) -> int:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, open_timeout=5, local_addr=(source, 0)):
            pass
    return refused.value.response.status_code


async def test_per_ip_cap_counts_each_source_address_separately() -> None:
    addresses = [f"127.0.0.{n}" for n in range(2, 10)]  # 8 addresses x 3 = 24 connections
    server = hostile_server(max_connections_per_ip=3, max_connections=25)
    async with TestClient(server) as client:
        limiter = client.running.gate.limiter
        stack = contextlib.AsyncExitStack()
        async with stack:
            opened: dict[str, list[TestConnection]] = {}
            for address in addresses:
                opened[address] = [
                    await stack.enter_async_context(client.connect(local_addr=(address, 0))) for _ in range(3)
                ]
                assert await refusal(client.url(), address) == 429  # the 4th from this address
            assert limiter.per_ip == dict.fromkeys(addresses, 3)
            for address, connections in opened.items():
                await connections[0].send_json({"type": "echo", "sentinel": address})
                assert (await connections[0].receive_json())["sentinel"] == address
            # A fresh address has its own per-IP budget but the server is now at its total (25).
            last = await stack.enter_async_context(client.connect(local_addr=("127.0.0.10", 0)))
            assert await refusal(client.url(), "127.0.0.10") == 503
            assert await refusal(client.url(), "127.0.0.11") == 503
            # Closing one connection of an address frees exactly its slot.
            await opened["127.0.0.2"][0].close()
            await last.close()
            await asyncio.sleep(0.1)
            assert limiter.per_ip["127.0.0.2"] == 2
            async with client.connect(local_addr=("127.0.0.2", 0)) as again:
                await again.send_json({"type": "echo", "sentinel": 0})
                assert (await again.receive_json())["sentinel"] == 0
                assert await refusal(client.url(), "127.0.0.2") == 429
        await asyncio.sleep(0.1)
        assert (limiter.per_ip, limiter.slots) == ({}, {})


async def test_nested_objects_echoed_back_leave_the_server_process_running() -> None:
    """A peer's nested list of objects, echoed with send_json: orjson 3.10.6-3.11.5 corrupt the heap writing it.

    The server runs in its own process (the abort would end pytest's); the client encodes with the json module.
    """
    async with ServerProcess() as server:
        try:
            async with connect(server.url) as ws:
                nested: list[Any] = []
                for depth in range(1, 101):
                    nested = [{"a": depth, "": nested}]
                    await ws.send(json.dumps({"type": "echo", "c": nested, "n": depth}, separators=(",", ":")))
                    assert json.loads(await ws.recv()) == {"type": "echo", "c": nested, "n": depth}
        except ConnectionClosed:
            code = await server.stop()
            raise AssertionError(f"the server process ended (exit status {code}) {server.stderr[-300:]!r}") from None
        assert await server.stop() == 0
