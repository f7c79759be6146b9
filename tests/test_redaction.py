"""Credentials never reach a log line: every record at DEBUG, aiows' and websockets' own."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode

from aiows import AuthMiddleware, LoggingMiddleware, Router, WebSocket, WebSocketServer
from aiows.auth import issue_token
from aiows.redaction import REDACTED, RedactingFilter, install_redaction, redact
from aiows.testing import TestClient

SECRET = "redaction-test-secret-0123456789abcdef"


def server() -> WebSocketServer:
    router = Router()

    @router.connect()
    async def on_connect(websocket: WebSocket) -> None:
        await websocket.send_json({"type": "hello", "user_id": websocket.context["user_id"]})

    app = WebSocketServer()
    app.add_middleware(LoggingMiddleware())
    app.add_middleware(AuthMiddleware(SECRET, first_message_auth=True, auth_timeout=5))
    app.include_router(router)
    return app


def everything_logged(caplog: pytest.LogCaptureFixture) -> str:
    """Every record as a handler would write it: message, arguments, traceback."""
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return "\n".join(formatter.format(record) for record in caplog.records)


async def exercise(client: TestClient, token: str, valid: bool) -> None:
    """Present ``token`` in the query string, the Authorization header and a first message."""
    paths = [(f"/?room=1&token={token}", None), (f"/?%74oken={token}", None), ("/", {"Authorization": f"Bearer {token}"})]
    for path, headers in paths:
        async with client.connect(path, headers=headers) as ws:
            if valid:
                await ws.receive_json()
            else:
                assert await ws.wait_closed() == 4401
    async with client.connect() as ws:
        await ws.send_json({"type": "auth", "token": token})
        if valid:
            assert (await ws.receive_json())["type"] == "auth_ok"
            await ws.receive_json()
        else:
            assert await ws.wait_closed() == 4401
    async with client.connect() as ws:  # the key written with a JSON escape: still "token" once decoded
        await ws.send_text('{"type": "auth", "\\u0074oken": "' + token + '"}')
        if valid:
            assert (await ws.receive_json())["type"] == "auth_ok"
            await ws.receive_json()
        else:
            assert await ws.wait_closed() == 4401
    # A long first message: the frame preview in websockets' log elides its middle.
    async with client.connect() as ws:
        with contextlib.suppress(ConnectionClosed):
            await ws.send_json({"type": "auth", "padding": "x" * 300, "token": token})
        if valid:
            assert (await ws.receive_json())["type"] == "auth_ok"
        else:
            assert await ws.wait_closed() == 4401


@pytest.mark.parametrize(
    ("token", "valid"),
    [
        (issue_token("alice", SECRET, expires_in=600), True),  # signed
        (f"alice{SECRET}", True),  # plain: contains the secret
        (issue_token("alice", "some-other-secret-0123456789abcdef0123", expires_in=600), False),
        ("forged-token-1234567890", False),
    ],
    ids=["signed", "plain", "foreign-signature", "forged"],
)
@pytest.mark.usefixtures("transport")
async def test_no_record_at_any_level_shows_a_token_or_the_secret(
    token: str, valid: bool, transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(1):  # picows logs its raw request at its own level 9
        async with TestClient(server()) as client:
            await exercise(client, token, valid)
        await asyncio.sleep(0.05)
    text = everything_logged(caplog)
    names = {record.name for record in caplog.records}
    # The test sees the transport's own request, header and frame lines: they were redacted, not absent.
    assert {"websockets.client", "aiows", "websockets.server" if transport == "websockets" else "aiows.picows"} <= names
    assert "token=" + REDACTED in text
    assert "Authorization: " + REDACTED in text
    assert '"token":"' + REDACTED in text
    assert token not in text
    assert token[-12:] not in text and token[:12] not in text  # nor a piece of it
    assert SECRET not in text
    for record in caplog.records:
        assert token not in str(record.msg) and token not in repr(record.args)


def test_redact_patterns() -> None:
    assert redact("< GET /chat?token=abc.def&room=1 HTTP/1.1") == f"< GET /chat?token={REDACTED}&room=1 HTTP/1.1"
    assert redact("> Authorization: Bearer abc") == f"> Authorization: {REDACTED}"
    assert redact("< cookie: session=abc") == f"< cookie: {REDACTED}"
    assert redact("headers {'Authorization': 'Bearer abc'}") == f"headers {{'Authorization': '{REDACTED}'}}"
    assert redact('< TEXT \'{"type":"auth","token":"abc\\"def"}\'') == f'< TEXT \'{{"type":"auth","token":"{REDACTED}"}}\''
    assert redact("< TEXT '{\"token\": \"abc...def\"' [300 bytes]") == f"< TEXT '{{\"token\": \"{REDACTED}\"' [300 bytes]"
    assert redact("nothing to hide in room=1") == "nothing to hide in room=1"
    assert redact("GET /?room=1&%74oken=abc HTTP/1.1") == f"GET /?room=1&%74oken={REDACTED} HTTP/1.1"
    assert redact("GET /?Access_Token=abc") == f"GET /?Access_Token={REDACTED}"
    assert redact('{"type":"auth","\\u0074oken":"abc"}') == f'{{"type":"auth","\\u0074oken":"{REDACTED}"}}'
    assert redact('{"tokens": "kept", "room": "kept"}') == '{"tokens": "kept", "room": "kept"}'


def test_frame_preview_is_redacted_from_the_whole_payload() -> None:
    payload = b'{"type":"auth","padding":"' + b"x" * 300 + b'","token":"tail-of-a-secret-token"}'
    assert "tail-of-a-secret-token"[-10:] in str(Frame(Opcode.TEXT, payload))  # websockets shows the tail
    record = logging.LogRecord("websockets.server", logging.DEBUG, __file__, 1, "< %s", (Frame(Opcode.TEXT, payload),), None)
    RedactingFilter().filter(record)
    assert "secret-token"[-6:] not in record.getMessage() and record.getMessage().startswith("< TEXT")


def test_tracebacks_are_redacted_and_install_is_idempotent() -> None:
    try:
        raise ValueError("bad request GET /?token=abcdef123 HTTP/1.1")
    except ValueError:
        record = logging.LogRecord("websockets.server", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    RedactingFilter().filter(record)
    assert record.exc_text is not None and "abcdef123" not in record.exc_text and REDACTED in record.exc_text
    install_redaction()
    install_redaction()
    filters = [f for f in logging.getLogger("websockets.server").filters if isinstance(f, RedactingFilter)]
    assert len(filters) == 1
