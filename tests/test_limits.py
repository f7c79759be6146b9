"""Limits and refusals at the handshake and on open connections: exact close codes and HTTP statuses."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from aiows import BaseMessage, Router, WebSocket, WebSocketServer
from aiows.exceptions import ConnectionError as ClientGone
from aiows.http import HTTPRequest, HTTPResponse
from aiows.testing import TestClient


def echo_server(**options: Any) -> WebSocketServer:
    router = Router()

    @router.message("ip")
    async def on_ip(websocket: WebSocket, message: BaseMessage) -> None:
        await websocket.send_json({"ip": websocket.client_ip, "path": websocket.path})

    server = WebSocketServer(**options)
    server.include_router(router)
    return server


async def http_get(port: int, path: str, headers: str = "") -> tuple[int, dict[str, str], bytes]:
    """A plain HTTP/1.1 GET over a raw socket: status, headers, body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n".encode())
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    fields = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:] if line)}
    body = await asyncio.wait_for(reader.readexactly(int(fields.get("content-length", "0"))), 5)
    writer.close()
    return status, fields, body


async def refusal_status(url: str, **kwargs: Any) -> int:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, open_timeout=5, **kwargs):
            pass
    return refused.value.response.status_code


@pytest.mark.usefixtures("transport")
async def test_health_endpoint_answers_json_with_open_connections() -> None:
    async with TestClient(echo_server()) as client:
        async with client.connect(), client.connect():
            await asyncio.sleep(0.05)
            status, headers, body = await http_get(client.port, "/healthz")
        assert status == 200 and headers["content-type"] == "application/json"
        assert orjson.loads(body) == {"status": "ok", "connections": 2}


@pytest.mark.usefixtures("transport")
async def test_health_path_is_configurable_and_other_requests_get_426_or_404() -> None:
    server = echo_server(health_path="/status")
    async with TestClient(server) as client:
        assert (await http_get(client.port, "/status"))[0] == 200
        assert (await http_get(client.port, "/healthz"))[0] == 426  # a WebSocket path, without the upgrade
        assert (await http_get(client.port, "/favicon.ico?x=1"))[0] == 426
    only = WebSocketServer()
    only.include_router(Router(), path="/only")
    async with TestClient(only) as client:
        assert (await http_get(client.port, "/elsewhere"))[0] == 404
        assert (await http_get(client.port, "/only"))[0] == 426


@pytest.mark.usefixtures("transport")
async def test_user_http_route_serves_a_page() -> None:
    server = echo_server()

    def page(request: HTTPRequest) -> HTTPResponse:
        body = f"<p>hello {request.query.get('name')}</p>".encode()
        return HTTPResponse(200, body, "text/html; charset=utf-8", {"Cache-Control": "no-store"})

    server.add_http_route("/", page)
    async with TestClient(server) as client:
        status, headers, body = await http_get(client.port, "/?name=ann")
        assert (status, headers["content-type"], body) == (200, "text/html; charset=utf-8", b"<p>hello ann</p>")
        assert headers["cache-control"] == "no-store"
        async with client.connect("/") as ws:  # the same path still upgrades to WebSocket
            await ws.send_json({"type": "ip"})
            assert (await ws.receive_json())["path"] == "/"


@pytest.mark.usefixtures("transport")
async def test_routers_mounted_at_paths() -> None:
    chat, echo, everywhere = Router(), Router(), Router()

    @chat.message("hello")
    async def chat_hello(websocket: WebSocket, message: BaseMessage) -> None:
        await websocket.send_json({"from": "chat", "path": websocket.path})

    @echo.raw()
    async def echo_frame(websocket: WebSocket, data: str | bytes) -> None:
        await (websocket.send_text(data) if isinstance(data, str) else websocket.send_bytes(data))

    @everywhere.connect()
    async def greet(websocket: WebSocket) -> None:
        await websocket.send_json({"hello": websocket.path})

    server = WebSocketServer()
    server.include_router(chat, path="/chat")
    server.include_router(echo, path="/echo")
    server.include_router(everywhere)
    async with TestClient(server) as client:
        async with client.connect("/chat?room=1") as ws:
            assert await ws.receive_json() == {"hello": "/chat"}
            await ws.send_json({"type": "hello"})
            assert await ws.receive_json() == {"from": "chat", "path": "/chat"}
        async with client.connect("/echo") as ws:
            assert await ws.receive_json() == {"hello": "/echo"}
            await ws.send_text("not json at all")
            assert await ws.receive() == "not json at all"
            await ws.send_bytes(b"\x00\xffbinary")
            assert await ws.receive() == b"\x00\xffbinary"
        async with client.connect("/other") as ws:  # only the path-less router serves it
            assert await ws.receive_json() == {"hello": "/other"}
            await ws.send_json({"type": "hello"})
            assert (await ws.receive_json())["code"] == "unknown_type"


@pytest.mark.usefixtures("transport")
async def test_unserved_path_is_refused_with_404() -> None:
    router = Router()

    @router.message("x")
    async def on_x(websocket: WebSocket, message: BaseMessage) -> None: ...

    server = WebSocketServer()
    server.include_router(router, path="/chat")
    async with TestClient(server) as client:
        assert await refusal_status(client.url("/nope")) == 404
        async with client.connect("/chat"):
            pass


def test_raw_and_json_handlers_do_not_mix() -> None:
    from aiows.exceptions import RouterError

    router = Router()

    @router.raw()
    async def frames(websocket: WebSocket, data: str | bytes) -> None: ...

    with pytest.raises(RouterError, match="raw frame handler"):

        @router.message("x")
        async def on_x(websocket: WebSocket, message: BaseMessage) -> None: ...

    json_router = Router()

    @json_router.message("x")
    async def on_json(websocket: WebSocket, message: BaseMessage) -> None: ...

    with pytest.raises(RouterError, match="JSON message handlers"):

        @json_router.raw()
        async def raw_frames(websocket: WebSocket, data: str | bytes) -> None: ...

    server = WebSocketServer()
    server.include_router(router)
    server.include_router(json_router)
    with pytest.raises(RouterError, match="cannot also have JSON"):
        server.dispatcher()


@pytest.mark.usefixtures("transport")
async def test_max_connections_refuses_with_503() -> None:
    async with TestClient(echo_server(max_connections=2)) as client:
        async with client.connect(), client.connect():
            assert await refusal_status(client.url()) == 503
        await asyncio.sleep(0.1)
        async with client.connect():  # slots are freed on close
            pass


async def test_max_connections_per_ip_refuses_with_429_per_source_address() -> None:
    async with TestClient(echo_server(max_connections_per_ip=2)) as client:
        async with client.connect(), client.connect():
            assert await refusal_status(client.url()) == 429
            # Another source address has its own budget.
            async with client.connect(local_addr=("127.0.0.2", 0)) as other:
                await other.send_json({"type": "ip"})
                assert (await other.receive_json())["ip"] == "127.0.0.2"
        await asyncio.sleep(0.1)
        async with client.connect():
            pass


async def test_new_connections_per_ip_per_minute_refused_with_429() -> None:
    async with TestClient(echo_server(max_connections_per_ip_per_minute=3)) as client:
        for _ in range(3):
            async with client.connect():
                pass
        assert await refusal_status(client.url()) == 429
        async with client.connect(local_addr=("127.0.0.3", 0)):
            pass


@pytest.mark.usefixtures("transport")
async def test_origin_allowlist_refuses_other_origins_with_403() -> None:
    async with TestClient(echo_server(origins=["https://app.example"])) as client:
        assert await refusal_status(client.url(), origin="https://evil.example") == 403
        async with client.connect(origin="https://app.example"):
            pass
        async with client.connect():  # non-browser clients send no Origin
            pass


async def test_trusted_proxy_headers_only_from_trusted_peers() -> None:
    spoof = {"X-Forwarded-For": "203.0.113.7"}
    async with TestClient(echo_server()) as client, client.connect(headers=spoof) as ws:
        await ws.send_json({"type": "ip"})
        assert (await ws.receive_json())["ip"] == "127.0.0.1"  # untrusted peer: header ignored
    server = echo_server(trusted_proxies=["127.0.0.0/8"], max_connections_per_ip=1)
    async with TestClient(server) as client:
        async with client.connect(headers={"X-Forwarded-For": "198.51.100.1, 203.0.113.7"}) as ws:
            await ws.send_json({"type": "ip"})
            assert (await ws.receive_json())["ip"] == "203.0.113.7"
            # The per-IP cap counts the forwarded client, not the proxy.
            assert await refusal_status(client.url(), additional_headers=spoof) == 429
            async with client.connect(headers={"Forwarded": 'for="198.51.100.9:1234"'}) as third:
                await third.send_json({"type": "ip"})
                assert (await third.receive_json())["ip"] == "198.51.100.9"


@pytest.mark.usefixtures("transport")
async def test_open_timeout_drops_half_open_handshakes_and_others_still_connect() -> None:
    async with TestClient(echo_server(open_timeout=0.5)) as client:
        stalled = [await asyncio.open_connection("127.0.0.1", client.port) for _ in range(20)]
        for _, writer in stalled:
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finishes the request
        started = time.monotonic()
        async with client.connect() as ws:
            await ws.send_json({"type": "ip"})
            await ws.receive_json()
        assert time.monotonic() - started < 1.0
        for reader, _ in stalled:
            assert await asyncio.wait_for(reader.read(), 3) == b""  # dropped by the server
        for _, writer in stalled:
            writer.close()


@pytest.mark.usefixtures("transport")
async def test_idle_timeout_closes_quiet_connections() -> None:
    async with TestClient(echo_server(idle_timeout=0.3)) as client, client.connect() as ws:
        await ws.send_json({"type": "ip"})
        await ws.receive_json()
        assert await ws.wait_closed(timeout=3) == 1001
        assert ws.close_reason == "idle timeout"


@pytest.mark.usefixtures("transport")
async def test_send_timeout_closes_a_client_that_stops_reading_with_1013() -> None:
    outcome: dict[str, Any] = {}
    router = Router()

    @router.message("flood")
    async def flood(websocket: WebSocket, message: BaseMessage) -> None:
        chunk = "x" * 65536
        try:
            for _ in range(2000):  # bounded: ~128 MiB at most, far beyond the socket buffers
                await websocket.send_json({"chunk": chunk})
        except ClientGone as exc:
            outcome["code"] = exc.close_code

    @router.disconnect()
    async def gone(websocket: WebSocket, reason: str) -> None:
        outcome["disconnected"] = reason

    server = WebSocketServer(send_timeout=0.3, close_timeout=0.5)
    server.include_router(router)
    async with TestClient(server) as client:
        async with client.connect(max_size=None, max_queue=1, close_timeout=0.5) as ws:
            await ws.send_json({"type": "flood"})
            deadline = time.monotonic() + 10
            while "disconnected" not in outcome and time.monotonic() < deadline:
                await asyncio.sleep(0.05)  # the client reads nothing meanwhile
    assert outcome["code"] == 1013
    assert "disconnected" in outcome


@pytest.mark.usefixtures("transport")
async def test_max_concurrent_handlers_bounds_in_flight_handlers() -> None:
    for bound in (1, 4):
        in_flight = peak = 0
        router = Router()

        @router.message("work")
        async def work(websocket: WebSocket, message: BaseMessage) -> None:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.1)
            in_flight -= 1
            await websocket.send_json({"n": message.model_dump()["n"]})

        server = WebSocketServer(max_concurrent_handlers=bound)
        server.include_router(router)
        async with TestClient(server) as client, client.connect() as ws:
            for n in range(12):
                await ws.send_json({"type": "work", "n": n})
            replies = [(await ws.receive_json())["n"] for _ in range(12)]
        assert sorted(replies) == list(range(12))
        assert peak == bound
        if bound == 1:
            assert replies == list(range(12))  # sequential handling keeps arrival order


@pytest.mark.usefixtures("transport")
async def test_oversized_message_closes_1009_and_others_unaffected() -> None:
    async with TestClient(echo_server(max_message_size=4096)) as client:
        async with client.connect() as big, client.connect() as small:
            with contextlib.suppress(ConnectionClosed):
                await big.send_json({"type": "ip", "pad": "x" * 10000})
            assert await big.wait_closed() == 1009
            await small.send_json({"type": "ip"})
            assert (await small.receive_json())["ip"] == "127.0.0.1"
