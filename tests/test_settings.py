"""``AiowsSettings`` and ``WebSocketServer.from_settings()``: environment variables, ``.env``, precedence, errors
that name the variable; ``aiows run`` with settings from the environment and flags that win over them."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

pytest.importorskip("pydantic_settings", reason='settings need pydantic-settings: pip install "aiows[settings]"')

from websockets.asyncio.client import connect  # noqa: E402

from aiows import AiowsSettings, WebSocketServer  # noqa: E402
from aiows.options import ServerOptions  # noqa: E402
from aiows.settings import SettingsError  # noqa: E402
from certs import make_certs  # noqa: E402
from processes import free_port  # noqa: E402


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No AIOWS_* variable of the caller's, and no .env but the test's own (in a fresh current directory)."""
    for name in list(os.environ):
        if name.startswith("AIOWS_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_every_server_option_is_a_setting_with_the_same_default() -> None:
    options = dataclasses.fields(ServerOptions)
    fields = AiowsSettings.model_fields
    for option in options:
        assert option.name in fields, option.name
        assert fields[option.name].default == option.default, option.name
    keywords = set(inspect.signature(WebSocketServer.__init__).parameters) - {"self", "broadcast"}
    assert keywords == {option.name for option in options}  # and WebSocketServer takes each as a keyword
    assert {"host", "port", "workers", "certfile", "keyfile", "ca_certs", "log_level", "log_format"} <= set(fields)


def test_settings_come_from_the_environment_then_dotenv_then_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    Path(".env").write_text("AIOWS_MAX_MESSAGE_SIZE=2048\nAIOWS_PORT=9001\nAIOWS_ORIGINS=https://a.example\n")
    monkeypatch.setenv("AIOWS_PORT", "9002")
    monkeypatch.setenv("AIOWS_PING_INTERVAL", "none")
    monkeypatch.setenv("AIOWS_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.0.1")
    monkeypatch.setenv("AIOWS_HEALTH_DETAIL", "true")
    monkeypatch.setenv("AIOWS_EXPECT_COMPILED", "1")  # other AIOWS_ variables (CI's) are not settings: ignored
    settings = AiowsSettings()
    assert settings.port == 9002  # the environment wins over .env
    assert settings.max_message_size == 2048  # .env over the default
    assert settings.origins == ("https://a.example",)
    assert settings.trusted_proxies == ("10.0.0.0/8", "192.168.0.1")
    assert settings.ping_interval is None
    assert settings.health_detail is True
    assert settings.ping_timeout == 20.0 and settings.host == "127.0.0.1"  # defaults
    assert AiowsSettings(port=1234).port == 1234  # values given in code win over both
    monkeypatch.setenv("AIOWS_ORIGINS", '["https://b.example", "https://c.example"]')
    assert AiowsSettings().origins == ("https://b.example", "https://c.example")


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("AIOWS_MAX_MESSAGE_SIZE", "abc", "AIOWS_MAX_MESSAGE_SIZE: Input should be a valid integer"),
        ("AIOWS_PORT", "70000", "AIOWS_PORT: Input should be less than or equal to 65535"),
        ("AIOWS_TRANSPORT", "carrier-pigeon", "AIOWS_TRANSPORT: Input should be 'websockets' or 'picows'"),
        ("AIOWS_MAX_CONNECTIONS", "0", "AIOWS_MAX_CONNECTIONS: max_connections must be at least 1"),
        ("AIOWS_METRICS_PATH", "metrics", "AIOWS_METRICS_PATH: metrics_path must start with '/'"),
        ("AIOWS_KEYFILE", "key.pem", "AIOWS_KEYFILE and AIOWS_CA_CERTS need AIOWS_CERTFILE"),
    ],
)
def test_a_bad_value_names_the_variable_and_the_problem(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match="invalid aiows settings: ") as raised:
        AiowsSettings()
    assert message in str(raised.value)
    if value == "abc":
        assert "(got 'abc')" in str(raised.value)


def test_a_redis_url_is_never_shown_in_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsError) as raised:
        AiowsSettings(redis_url=["redis://:hunter2@host"])
    assert "AIOWS_REDIS_URL" in str(raised.value) and "hunter2" not in str(raised.value)


def test_from_settings_builds_the_server_and_run_follows_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIOWS_MAX_MESSAGE_SIZE", "4096")
    monkeypatch.setenv("AIOWS_COMPRESSION", "deflate")
    server = WebSocketServer.from_settings()
    assert server.options.max_message_size == 4096 and server.options.compression == "deflate"
    assert server.settings == AiowsSettings()
    assert WebSocketServer.from_settings(AiowsSettings(idle_timeout=5)).options.idle_timeout == 5
    assert WebSocketServer().settings is None

    served: list[tuple[object, object, object]] = []

    async def fake(host: str, port: int, reuse_port: bool, backlog: int, ssl: object) -> None:
        served.append((host, port, ssl))

    monkeypatch.setattr(server, "_run_until_signal", fake)
    server.run()
    assert served.pop() == ("127.0.0.1", 8000, None)
    server.run("0.0.0.0", 9000)
    assert served.pop() == ("0.0.0.0", 9000, None)


def test_from_settings_with_a_certificate_serves_tls(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    certs = make_certs(tmp_path)
    server = WebSocketServer.from_settings(AiowsSettings(certfile=str(certs.server), keyfile=str(certs.server_key)))
    contexts: list[object] = []

    async def fake(host: str, port: int, reuse_port: bool, backlog: int, ssl: object) -> None:
        contexts.append(ssl)

    monkeypatch.setattr(server, "_run_until_signal", fake)
    server.run()
    assert type(contexts[0]).__name__ == "SSLContext"


# -- aiows run: the environment, .env, and flags that win ----------------------------------------------

APP = """
from aiows import BaseMessage, Router, WebSocket, WebSocketServer

router = Router()

@router.message("options")
async def options(websocket: WebSocket, message: BaseMessage) -> None:
    o = websocket.server.options
    await websocket.send_json({"type": "options", "max_message_size": o.max_message_size, "path": websocket.path})

server = WebSocketServer.from_settings()
server.include_router(router)
"""


def run_cli(*flags: str, env: dict[str, str]) -> subprocess.Popen[str]:
    Path("app.py").write_text(APP)
    return subprocess.Popen(
        [sys.executable, "-m", "aiows", "run", "app:server", *flags],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, **env},
    )  # fmt: skip


async def ask(port: int) -> dict[str, object]:
    deadline = time.monotonic() + 30
    while True:
        try:
            async with connect(f"ws://127.0.0.1:{port}/", open_timeout=5) as ws:
                await ws.send('{"type": "options"}')
                reply: dict[str, object] = orjson.loads(await asyncio.wait_for(ws.recv(), 5))
                return reply
        except OSError:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)


def stop(process: subprocess.Popen[str]) -> str:
    process.terminate()
    try:
        output, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate(timeout=10)
    assert process.returncode == 0, output
    return output


async def test_aiows_run_reads_the_environment_and_dotenv() -> None:
    port = free_port()
    Path(".env").write_text(f"AIOWS_PORT={port}\nAIOWS_MAX_MESSAGE_SIZE=5000\n")
    process = run_cli(env={"AIOWS_LOG_LEVEL": "warning"})
    try:
        assert await ask(port) == {"type": "options", "max_message_size": 5000, "path": "/"}
    finally:
        output = stop(process)
    assert f"listening on ws://127.0.0.1:{port}" in output


async def test_aiows_run_flags_win_over_the_environment() -> None:
    port, other = free_port(), free_port()
    Path(".env").write_text(f"AIOWS_PORT={other}\n")
    process = run_cli("--port", str(port), env={"AIOWS_PORT": str(other), "AIOWS_HOST": "localhost"})
    try:
        assert (await ask(port))["type"] == "options"
    finally:
        output = stop(process)
    assert f"listening on ws://127.0.0.1:{port}" in output or f"listening on ws://[::1]:{port}" in output


def test_aiows_run_names_the_bad_variable() -> None:
    process = run_cli(env={"AIOWS_MAX_MESSAGE_SIZE": "abc"})
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 1
    assert "aiows: error: invalid aiows settings: AIOWS_MAX_MESSAGE_SIZE: Input should be a valid integer" in output
    assert "Traceback" not in output
