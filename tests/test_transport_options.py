"""The ``transport=`` and ``loop=`` options: choices, missing extras, and the loop ``run()`` picks."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus

from aiows import ChatMessage, Router, WebSocket, WebSocketServer
from aiows.exceptions import ConnectionError
from aiows.server import run_with_loop
from aiows.transports import serve_function
from aiows.transports.core import SocketLink
from aiows.testing import TestClient


def test_transport_and_loop_options_are_checked() -> None:
    with pytest.raises(ValueError, match="transport"):
        WebSocketServer(transport="tornado")
    with pytest.raises(ValueError, match="loop"):
        WebSocketServer(loop="trio")
    server = WebSocketServer()
    assert (server.options.transport, server.options.loop) == ("websockets", "auto")


def test_missing_picows_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "picows", None)  # makes "import picows..." fail
    monkeypatch.delitem(sys.modules, "aiows.transports.picows", raising=False)
    with pytest.raises(ImportError, match=r"aiows\[fast\]"):
        serve_function("picows")


def test_missing_uvloop_names_the_extra_or_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)
    seen: list[str] = []

    async def main() -> None:
        seen.append(type(asyncio.get_running_loop()).__module__)

    with pytest.raises(ImportError, match=r"aiows\[fast\]"):
        run_with_loop("uvloop", main())
    run_with_loop("auto", main())  # no uvloop: plain asyncio
    assert seen == ["asyncio.unix_events"]


@pytest.mark.parametrize("loop", ["auto", "uvloop", "asyncio"])
def test_run_uses_uvloop_when_installed_unless_told_not_to(loop: str) -> None:
    uvloop_installed = True
    try:
        import uvloop  # noqa: F401
    except ImportError:
        uvloop_installed = False
        if loop == "uvloop":
            pytest.skip("uvloop is not installed")
    seen: list[str] = []

    async def main() -> None:
        seen.append(type(asyncio.get_running_loop()).__module__.split(".")[0])

    run_with_loop(loop, main())
    expected = "uvloop" if uvloop_installed and loop != "asyncio" else "asyncio"
    assert seen == [expected]


def test_the_app_runs_unchanged_on_picows_on_the_same_connection_core() -> None:
    pytest.importorskip("picows")
    router = Router()
    classes: list[type] = []

    @router.message("chat")
    async def on_chat(websocket: WebSocket, message: ChatMessage) -> None:
        classes.append(type(websocket.connection))
        await websocket.send_json({"type": "chat", "text": message.text.upper()})

    server = WebSocketServer(transport="picows")
    server.include_router(router)
    replies: list[Any] = []

    async def main() -> None:
        async with TestClient(server) as client, client.connect() as ws:
            await ws.send_json({"type": "chat", "text": "hi", "user_id": 1})
            replies.append(await ws.receive_json())

    asyncio.run(main())
    assert replies == [{"type": "chat", "text": "HI"}]
    assert classes == [SocketLink]  # the same core as on websockets; picows parses its frames


@pytest.mark.usefixtures("transport")
async def test_send_after_close_raises_aiows_connection_error_and_bad_data_a_type_error() -> None:
    router = Router()
    seen: list[Any] = []

    @router.message("chat")
    async def on_chat(websocket: WebSocket, message: ChatMessage) -> None:
        try:
            await websocket.send_json({"not json": object()})
        except TypeError:
            seen.append("TypeError")
        await websocket.close(4000, "done")
        try:
            await websocket.send_json({"type": "late"})
        except ConnectionError as exc:
            seen.append(("ConnectionError", websocket.closed))

    server = WebSocketServer()
    server.include_router(router)
    async with TestClient(server) as client, client.connect() as ws:
        await ws.send_json({"type": "chat", "text": "hi", "user_id": 1})
        assert await ws.wait_closed() == 4000
    for _ in range(100):
        if len(seen) == 2:
            break
        await asyncio.sleep(0.01)
    assert seen == ["TypeError", ("ConnectionError", True)]


async def test_picows_refuses_over_max_connections_and_rejects_per_ip_limits() -> None:
    pytest.importorskip("picows")
    with pytest.raises(ValueError, match="picows"):
        WebSocketServer(transport="picows", max_connections_per_ip=2)
    server = WebSocketServer(transport="picows", max_connections=1)
    server.include_router(Router())
    async with TestClient(server) as client, client.connect():
        await asyncio.sleep(0.05)
        with pytest.raises(InvalidStatus) as refused:
            async with client.connect():
                pass
        assert refused.value.response.status_code == 503


@pytest.mark.usefixtures("transport")
async def test_the_listen_backlog_is_2048_by_default_and_can_be_set() -> None:
    ss = shutil.which("ss")
    if ss is None:
        pytest.skip("needs the ss command (iproute2) to read a listening socket's backlog")

    def backlog(port: int) -> int:
        line = subprocess.run([ss, "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
        return int(line.split()[2])  # for a listening socket, Send-Q is the backlog

    server = WebSocketServer()
    server.include_router(Router())
    async with server.serve("127.0.0.1", 0) as running:
        assert backlog(running.port) == 2048
    async with server.serve("127.0.0.1", 0, backlog=77) as running:
        assert backlog(running.port) == 77
