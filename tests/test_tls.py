"""TLS on the WebSocket port, on both transports: wss:// clients that trust the certificate (or not), HTTPS health,
mutual TLS, a client that never finishes the TLS handshake. The CLI's --certfile runs are in test_cli.py."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

from aiows import BaseMessage, Router, WebSocket, WebSocketServer
from aiows.testing import TestClient
from aiows.tls import TLSError, server_context
from certs import Certs, make_certs


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def echo_server(**options: object) -> WebSocketServer:
    router = Router()

    @router.message("echo")
    async def on_echo(websocket: WebSocket, message: BaseMessage) -> None:
        await websocket.send_json({"type": "echo", "text": getattr(message, "text", None)})

    server = WebSocketServer(**options)  # type: ignore[arg-type]
    server.include_router(router)
    return server


async def echo(client: TestClient, context: ssl.SSLContext, text: str = "hi") -> None:
    async with client.connect("/", ssl=context) as ws:
        await ws.send_json({"type": "echo", "text": text})
        assert await ws.receive_json() == {"type": "echo", "text": text}


def get(url: str, context: ssl.SSLContext) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, context=context, timeout=10) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


async def test_a_client_that_trusts_the_certificate_is_served_over_wss(certs: Certs, transport: str) -> None:
    async with TestClient(echo_server(), ssl=certs.server_context()) as client:
        assert client.running.url == f"wss://127.0.0.1:{client.port}"
        assert client.url("/") == f"wss://127.0.0.1:{client.port}/"
        await echo(client, certs.client_context())
        async with client.connect("/", ssl=certs.client_context()) as ws:  # big frames go through TLS records
            text = "x" * 300_000
            await ws.send_json({"type": "echo", "text": text})
            assert (await ws.receive_json())["text"] == text


async def test_a_client_that_does_not_trust_it_fails_the_handshake_and_the_server_keeps_serving(
    certs: Certs, transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with TestClient(echo_server(), ssl=certs.server_context()) as client:
        untrusting = ssl.create_default_context()  # the system's CAs only
        for _ in range(3):
            with pytest.raises(ssl.SSLCertVerificationError):
                await connect(client.url("/"), ssl=untrusting, open_timeout=5)
        # A plain ws:// client on the TLS port gets no WebSocket either.
        with pytest.raises(Exception):
            await connect(f"ws://127.0.0.1:{client.port}/", open_timeout=5)
        await echo(client, certs.client_context(), "still serving")
    assert [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR] == []


async def test_health_and_http_routes_answer_over_https(certs: Certs, transport: str) -> None:
    async with TestClient(echo_server(), ssl=certs.server_context()) as client:
        url = f"https://127.0.0.1:{client.port}/healthz"
        status, body = await asyncio.to_thread(get, url, certs.client_context())
        assert status == 200
        assert orjson.loads(body) == {"status": "ok", "connections": 0}
        status, body = await asyncio.to_thread(get, f"https://localhost:{client.port}/chat", certs.client_context())
        assert (status, body) == (426, b"Failed to open a WebSocket connection: not a WebSocket request.\n")
        with pytest.raises(OSError):  # plain HTTP on the TLS port: the TLS layer drops it
            await asyncio.to_thread(urllib.request.urlopen, f"http://127.0.0.1:{client.port}/healthz", timeout=5)


async def test_mutual_tls_serves_only_clients_with_a_certificate_from_the_ca(certs: Certs, transport: str) -> None:
    async with TestClient(echo_server(), ssl=certs.server_context(verify_clients=True)) as client:
        # TLS 1.3: the client's handshake ends before the server checks its certificate; the server's alert
        # then ends the connection before the HTTP response (websockets before 15 raises that EOFError as it is).
        with pytest.raises((OSError, EOFError, WebSocketException)):
            async with client.connect("/", ssl=certs.client_context()) as ws:
                await ws.send_json({"type": "echo", "text": "no certificate"})
                await ws.receive_json()
        await echo(client, certs.client_context(with_certificate=True), "with a certificate")


async def test_a_client_that_never_finishes_the_tls_handshake_is_dropped_after_open_timeout(
    certs: Certs, transport: str
) -> None:
    async with TestClient(echo_server(open_timeout=0.5), ssl=certs.server_context()) as client:
        with socket.create_connection(("127.0.0.1", client.port), timeout=10) as silent:
            started = time.monotonic()
            assert await asyncio.to_thread(silent.recv, 1) == b""  # closed by the server, no byte sent
            assert time.monotonic() - started < 5
        await echo(client, certs.client_context())


def test_server_context_names_the_file_that_cannot_be_loaded(certs: Certs, tmp_path: Path) -> None:
    with pytest.raises(TLSError, match=r"cannot load the TLS certificate and key from .*missing\.pem"):
        server_context(str(tmp_path / "missing.pem"), str(certs.server_key))
    with pytest.raises(TLSError, match="cannot load the TLS certificate and key"):
        server_context(str(certs.server), str(certs.client_key))  # a key that does not match
    with pytest.raises(TLSError, match=r"cannot load the CA certificates from .*nope\.pem"):
        server_context(str(certs.server), str(certs.server_key), ca_certs=str(tmp_path / "nope.pem"))
    context = server_context(str(certs.server), str(certs.server_key), ca_certs=str(certs.ca))
    assert context.verify_mode == ssl.CERT_REQUIRED
