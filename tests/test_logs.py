"""JSON logs: ``LoggingMiddleware(json=True)``, ``aiows.logs.JSONFormatter`` and ``aiows run --log-format json``:
one JSON object per line with stable keys, tokens never included."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import connect

from aiows import AuthMiddleware, BaseMessage, ChatMessage, LoggingMiddleware, Router, WebSocket, WebSocketServer
from aiows.logs import FIELDS, JSONFormatter
from aiows.testing import TestClient
from processes import free_port

SECRET = "a-long-enough-secret"
TOKEN = "ann" + SECRET


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    """What the ``myapp.ws`` logger writes, as ``%(message)s`` lines."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("myapp.ws")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield stream
    logger.removeHandler(handler)


def app(**logging_options: Any) -> WebSocketServer:
    router = Router()

    @router.message("chat")
    async def on_chat(websocket: WebSocket, message: ChatMessage) -> None:
        await websocket.send_json({"type": "chat", "text": message.text})

    @router.message("boom")
    async def on_boom(websocket: WebSocket, message: BaseMessage) -> None:
        raise RuntimeError("boom")

    server = WebSocketServer()
    server.add_middleware(AuthMiddleware(SECRET))
    server.add_middleware(LoggingMiddleware(**logging_options))
    server.include_router(router)
    return server


async def test_json_lines_with_stable_keys_and_no_tokens(lines: io.StringIO, transport: str) -> None:
    async with TestClient(app(logger_name="myapp.ws", json=True)) as client:
        async with client.connect(f"/chat?token={TOKEN}", headers={"X-Trace": TOKEN}) as ws:
            await ws.send_json({"type": "chat", "text": "hi", "user_id": 1})
            await ws.receive_json()
            await ws.send_json({"type": "chat", "text": 5})
            await ws.receive_json()
            await ws.send_json({"type": "boom"})
            await ws.receive_json()
            await ws.close(1000, "bye")
        deadline = time.monotonic() + 5
        while "disconnect" not in lines.getvalue():
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
    output = lines.getvalue()
    assert TOKEN not in output and SECRET not in output and "token" not in output
    records = [orjson.loads(line) for line in output.splitlines()]
    assert all(list(record) == list(FIELDS) for record in records)  # every key, in the same order, every time
    connect_, ok, invalid, boom, disconnect = records
    assert connect_ == {
        "event": "connect", "path": "/chat", "peer": connect_["peer"], "user_id": "ann",
        "type": None, "size": None, "ms": None, "code": None,
    }  # fmt: skip
    assert connect_["peer"].startswith("127.0.0.1:")
    assert (ok["event"], ok["type"], ok["code"], ok["user_id"]) == ("message", "chat", None, "ann")
    assert ok["size"] == len(orjson.dumps({"type": "chat", "text": "hi", "user_id": 1})) and ok["ms"] >= 0
    assert (invalid["type"], invalid["code"]) == ("chat", "validation_error")
    assert (boom["type"], boom["code"]) == ("boom", "internal_error")
    assert (disconnect["event"], disconnect["code"]) == ("disconnect", 1000)


async def test_text_lines_stay_as_they_were_and_carry_the_fields(transport: str) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JSONFormatter())  # what aiows run --log-format json puts on the root logger
    logger = logging.getLogger("myapp.text")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        async with TestClient(app(logger_name="myapp.text")) as client:
            async with client.connect(f"/?token={TOKEN}") as ws:
                await ws.send_json({"type": "chat", "text": "hi", "user_id": 1})
                await ws.receive_json()
    finally:
        logger.removeHandler(handler)
    records = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    assert records[0]["event"] == "connect" and records[0]["logger"] == "myapp.text"
    assert set(records[1]) == {"time", "level", "logger", *FIELDS}
    assert records[1]["type"] == "chat" and records[1]["level"] == "INFO"


def test_the_formatter_redacts_messages_and_tracebacks_of_any_logger() -> None:
    formatter = JSONFormatter()
    record = logging.LogRecord("other", logging.WARNING, __file__, 1, "GET /?token=%s", (TOKEN,), None)
    line = orjson.loads(formatter.format(record))
    assert line["message"] == "GET /?token=[REDACTED]" and line["level"] == "WARNING"
    try:
        raise ValueError("Authorization: Bearer abc.def")
    except ValueError:
        record = logging.LogRecord("other", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = orjson.loads(formatter.format(record))
    assert "abc.def" not in line["exception"] and "ValueError" in line["exception"]


CLI_APP = """
from aiows import AuthMiddleware, BaseMessage, LoggingMiddleware, Router, WebSocket, WebSocketServer

router = Router()

@router.message("ping")
async def ping(websocket: WebSocket, message: BaseMessage) -> None:
    await websocket.send_json({"type": "pong"})

server = WebSocketServer(close_timeout=2)
server.add_middleware(AuthMiddleware("a-long-enough-secret"))
server.add_middleware(LoggingMiddleware())
server.include_router(router)
"""


@pytest.mark.parametrize("workers", [1, 2] if sys.platform.startswith("linux") else [1])
async def test_aiows_run_log_format_json_writes_only_json_lines(tmp_path: Path, workers: int) -> None:
    (tmp_path / "app.py").write_text(CLI_APP)
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIOWS_")}
    process = subprocess.Popen(
        [
            sys.executable, "-m", "aiows", "run", "app:server", "--port", str(port),
            "--log-format", "json", "--workers", str(workers),
        ],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                async with connect(f"ws://127.0.0.1:{port}/?token={TOKEN}", open_timeout=5) as ws:
                    await ws.send('{"type": "ping"}')
                    await asyncio.wait_for(ws.recv(), 5)
                break
            except OSError:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)
        await asyncio.sleep(0.3)
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    records = [orjson.loads(line) for line in output.splitlines()]  # every line is one JSON object
    assert TOKEN not in output
    events = [record.get("event") for record in records]
    assert ["connect", "message", "disconnect"] == [event for event in events if event]
    messages = [record["message"] for record in records if "message" in record]
    assert f"listening on ws://127.0.0.1:{port} (workers: {workers}, compiled: " in " ".join(messages)
    assert any(message.startswith("serving on ws://") for message in messages)
    assert all({"time", "level", "logger"} <= set(record) for record in records)
