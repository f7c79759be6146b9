"""Peers that break the protocol or the rules, over real sockets, on both transports.

RSV bits, invalid close codes, a second close frame, endless empty fragments,
a client that pings and never reads, a crowd of simultaneous handshakes,
tokens that are not ASCII: each gets the RFC 6455 answer (or a 4401), costs
bounded memory, logs nothing above DEBUG, and leaves the server serving others.
"""

from __future__ import annotations

import asyncio
import logging
import tracemalloc
from typing import Any

import pytest
from rawclient import BINARY, CLOSE, CONTINUATION, PING, TEXT, RawClient, client_frame, close_payload

from aiows import AuthMiddleware, BaseMessage, Router, WebSocket, WebSocketServer
from aiows.testing import TestClient

pytestmark = pytest.mark.usefixtures("transport")


def echo_server(**options: Any) -> WebSocketServer:
    router = Router()

    @router.message("echo")
    async def on_echo(websocket: WebSocket, message: BaseMessage) -> None:
        await websocket.send_json({"type": "echo", "n": getattr(message, "n", None)})

    server = WebSocketServer(**options)
    server.include_router(router)
    return server


def loud_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """What aiows or a transport library logged as a warning or an error (websockets logs each open and close at INFO)."""
    return [
        record
        for record in caplog.records
        if record.levelno >= logging.WARNING and record.name.split(".")[0] in ("aiows", "websockets", "picows")
    ]


async def still_serving(client: TestClient) -> None:
    async with client.connect() as ws:
        await ws.send_json({"type": "echo", "n": 7})
        assert await ws.receive_json() == {"type": "echo", "n": 7}


@pytest.mark.parametrize("rsv", [1, 2, 3, 4, 7])
async def test_rsv_bits_without_an_extension_fail_the_connection_with_1002(
    rsv: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with TestClient(echo_server()) as client:
        async with RawClient(client.url()) as ws:
            ws.send_raw(client_frame(TEXT, b'{"type": "echo", "n": 1}', rsv=rsv))
            assert await ws.wait_closed() == 1002
        async with RawClient(client.url()) as ws:  # on a control frame too (Autobahn 3.7)
            ws.send_raw(client_frame(CLOSE, close_payload(1000), rsv=rsv))
            assert await ws.wait_closed() == 1002
        await still_serving(client)
    assert loud_records(caplog) == []


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1100, 2999, 5000, 65535])
async def test_invalid_close_codes_fail_the_connection_with_1002(code: int) -> None:
    async with TestClient(echo_server()) as client:
        async with RawClient(client.url()) as ws:
            ws.send_raw(client_frame(CLOSE, close_payload(code, "x")))
            assert await ws.wait_closed() == 1002
        await still_serving(client)


@pytest.mark.parametrize("code", [1000, 1001, 1003, 1007, 1011, 1014, 3000, 4999])
async def test_valid_close_codes_are_echoed(code: int) -> None:
    reasons: list[str] = []
    server = echo_server()
    router = Router()

    @router.disconnect()
    async def gone(websocket: WebSocket, reason: str) -> None:
        reasons.append(reason)

    server.include_router(router)
    async with TestClient(server) as client:
        async with RawClient(client.url()) as ws:
            ws.send_raw(client_frame(CLOSE, close_payload(code, "bye")))
            assert await ws.wait_closed() == code
        for _ in range(100):
            if reasons:
                break
            await asyncio.sleep(0.01)
    assert reasons == [f"{code} (bye)"]


async def test_an_empty_close_frame_is_answered_with_an_empty_one() -> None:
    async with TestClient(echo_server()) as client, RawClient(client.url()) as ws:
        ws.send_raw(client_frame(CLOSE))
        await ws.wait_closed()
        close = ws.close_frame
        assert close is not None and int(close.code) == 1005  # websockets' reading of an empty close frame


async def test_a_second_close_frame_is_ignored_and_the_close_is_clean(transport: str) -> None:
    async with TestClient(echo_server()) as client:
        async with RawClient(client.url()) as ws:
            ws.send_raw(client_frame(CLOSE, close_payload(1000)))
            await asyncio.sleep(0.05)  # the server answers the first before the second arrives
            ws.send_raw(client_frame(CLOSE, close_payload(1000)))
            assert await ws.wait_closed() == 1000
        async with RawClient(client.url()) as ws:
            ws.send_raw(client_frame(CLOSE, close_payload(1000)), client_frame(CLOSE, close_payload(1001)))
            expected = 1000 if transport == "websockets" else 1002  # picows: see docs/guides/security.md, Conformance
            assert await ws.wait_closed() == expected
        await still_serving(client)


async def test_endless_empty_fragments_close_1009_with_memory_flat() -> None:
    server = echo_server()  # 1 MiB messages: at most 16,384 fragments each
    async with TestClient(server) as client, RawClient(client.url()) as ws:
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            ws.send_raw(client_frame(TEXT, b"", fin=False))
            empty = client_frame(CONTINUATION, b"", fin=False)
            for _ in range(10):
                ws.send_raw(empty * 2_000)
                await asyncio.sleep(0.01)
            assert await ws.wait_closed(10) == 1009
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
    assert grown < 2 * 2**20, f"{grown} bytes kept for 20,000 empty fragments"


async def test_fragments_beyond_the_message_size_close_1009() -> None:
    async with TestClient(echo_server(max_message_size=1000)) as client, RawClient(client.url()) as ws:
        ws.send_raw(client_frame(BINARY, b"x" * 600, fin=False), client_frame(CONTINUATION, b"x" * 600))
        assert await ws.wait_closed() == 1009


async def test_a_client_that_pings_and_never_reads_is_paused_and_bounded() -> None:
    server = echo_server()
    async with TestClient(server) as client, RawClient(client.url()) as ws:
        assert ws.reader is not None and ws.writer is not None
        ws.writer.transport.pause_reading()  # never reads what the server sends
        (link,) = [websocket.link for websocket in client.running.dispatcher.connections]
        ping = client_frame(PING, b"p" * 125)  # each answered with a 127-byte pong
        sent = 0
        for _ in range(400):  # bounded: up to 400,000 pings (52 MB), as long as the server keeps reading
            try:
                ws.send_raw(ping * 1000)
                await asyncio.wait_for(ws.writer.drain(), 0.2)
            except asyncio.TimeoutError:
                break  # the server stopped reading: this client's pings pile up on its side, not the server's
            sent += 1000
        transport: Any = link.transport  # type: ignore[attr-defined]
        assert link.paused
        assert transport.get_write_buffer_size() < 2 * 2**20  # pongs held for it: bounded
        assert sent < 400_000
        await still_serving(client)


async def test_a_stalled_client_is_closed_after_send_timeout() -> None:
    reasons: list[str] = []
    server = echo_server(send_timeout=0.3, close_timeout=0.5)
    router = Router()

    @router.disconnect()
    async def gone(websocket: WebSocket, reason: str) -> None:
        reasons.append(reason)

    server.include_router(router)
    async with TestClient(server) as client, RawClient(client.url()) as ws:
        assert ws.writer is not None
        ws.writer.transport.pause_reading()
        ping = client_frame(PING, b"1234")
        for _ in range(400):
            if reasons:
                break
            ws.send_raw(ping * 1000)
            await asyncio.sleep(0.01)
        for _ in range(300):
            if reasons:
                break
            await asyncio.sleep(0.01)
    assert reasons == ["1006"]  # the server gave up on it (its close frame was never read)


async def test_max_connections_holds_under_sixty_simultaneous_handshakes() -> None:
    async with TestClient(echo_server(max_connections=5)) as client:

        async def handshake() -> int:
            reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
            writer.write(
                b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            status = int((await asyncio.wait_for(reader.readline(), 5)).split()[1])
            statuses.append((status, writer))
            return status

        statuses: list[tuple[int, asyncio.StreamWriter]] = []
        results = await asyncio.gather(*(handshake() for _ in range(60)))
        assert results.count(101) == 5
        assert results.count(503) == 55
        for _, writer in statuses:
            writer.close()


@pytest.mark.parametrize(
    "path, headers",
    [
        ("/?token=%C3%A9t%C3%A9", {}),
        ("/?token=%FF%FE", {}),
        ("/?token=" + "x" * 5000, {}),
        ("/", {"Authorization": "Bearer caf\u00e9"}),
        ("/", {"Authorization": "Basic nothing"}),
    ],
)
async def test_a_malformed_or_non_ascii_token_is_refused_with_4401_quietly(
    path: str, headers: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    server = echo_server()
    server.add_middleware(AuthMiddleware("a-long-enough-secret-for-the-test-suite-x"))
    async with TestClient(server) as client:
        async with RawClient(client.url(path), headers) as ws:
            assert await ws.wait_closed() == 4401
        await still_serving_with_token(client)
    assert [record for record in caplog.records if record.levelno >= logging.ERROR] == []


async def test_a_header_token_that_is_not_utf8_is_refused_with_4401_quietly(caplog: pytest.LogCaptureFixture) -> None:
    server = echo_server()
    server.add_middleware(AuthMiddleware("a-long-enough-secret-for-the-test-suite-x"))
    async with TestClient(server) as client:
        reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
        writer.write(
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            b"Authorization: Bearer \xff\xfe\x80\r\n\r\n"
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 101")
        frame = await asyncio.wait_for(reader.readexactly(4), 5)  # a close frame: 0x88, length, code
        assert frame[0] == 0x88 and int.from_bytes(frame[2:4], "big") == 4401
        writer.close()
        await still_serving_with_token(client)
    assert [record for record in caplog.records if record.levelno >= logging.ERROR] == []


async def still_serving_with_token(client: TestClient) -> None:
    async with client.connect("/?token=alicea-long-enough-secret-for-the-test-suite-x") as ws:
        await ws.send_json({"type": "echo", "n": 1})
        assert await ws.receive_json() == {"type": "echo", "n": 1}


async def test_malformed_frames_are_logged_at_debug_only(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    broken = [
        bytes((0x83, 0x80, 0, 0, 0, 0)),  # reserved opcode
        bytes((0x81, 0x05)) + b"hello",  # not masked
        client_frame(PING, b"x" * 126),  # control frame over 125 bytes
        client_frame(PING, b"x", fin=False),  # fragmented control frame
        client_frame(CONTINUATION, b"x"),  # continuation of nothing
        client_frame(TEXT, b"a", fin=False) + client_frame(TEXT, b"b"),  # a new message inside a fragmented one
    ]
    async with TestClient(echo_server()) as client:
        for frame in broken:
            async with RawClient(client.url()) as ws:
                ws.send_raw(frame)
                assert await ws.wait_closed() == 1002, frame
        await still_serving(client)
    assert loud_records(caplog) == []
