"""Graceful shutdown: running handlers finish, their replies arrive, then 1001; nothing new gets in."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time

import pytest
from processes import free_port
from rawclient import TEXT, RawClient, client_frame
from server_process import ServerProcess
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from aiows import BaseMessage, Router, WebSocket, WebSocketServer
from aiows.testing import TestClient, TestConnection


def slow_server(delay: float, events: list[str]) -> WebSocketServer:
    router = Router()

    @router.message("work")
    async def on_work(websocket: WebSocket, message: BaseMessage) -> None:
        events.append("started")
        await asyncio.sleep(delay)
        await websocket.send_json({"type": "done", "n": message.model_dump()["n"]})
        events.append("finished")

    @router.message("echo")
    async def on_echo(websocket: WebSocket, message: BaseMessage) -> None:
        await websocket.send_json({"type": "echo"})

    @router.disconnect()
    async def on_disconnect(websocket: WebSocket, reason: str) -> None:
        events.append(f"disconnect {reason}")

    server = WebSocketServer()
    server.include_router(router)
    return server


async def frames_until_close(ws: TestConnection) -> list[object]:
    frames: list[object] = []
    try:
        while True:
            frames.append(await ws.receive_json(timeout=10))
    except Exception:
        pass
    return frames


async def wait_until(predicate: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.01)


@pytest.mark.usefixtures("transport")
async def test_fifty_running_handlers_finish_and_their_replies_arrive_before_1001() -> None:
    events: list[str] = []
    server = slow_server(0.5, events)
    async with TestClient(server) as client:
        connections = [await client.connect().__aenter__() for _ in range(50)]
        for n, ws in enumerate(connections):
            await ws.send_json({"type": "work", "n": n})
        await wait_until(lambda: events.count("started") == 50)
        started = time.monotonic()
        shutdown = asyncio.ensure_future(client.running.shutdown(grace=5))
        await asyncio.sleep(0.05)
        # New connections are refused during the drain.
        with pytest.raises((OSError, InvalidStatus)):
            async with connect(client.url(), open_timeout=2):
                pass
        results = await asyncio.gather(*(frames_until_close(ws) for ws in connections))
        await shutdown
        elapsed = time.monotonic() - started
    for n, (ws, frames) in enumerate(zip(connections, results)):
        assert frames == [{"type": "done", "n": n}]
        assert ws.close_code == 1001 and ws.close_reason == "server shutting down"
    assert events.count("finished") == 50
    assert events.count("disconnect 1001 (server shutting down)") == 50
    assert elapsed < 4, "closing must follow the handlers, not wait for the whole grace period"


@pytest.mark.usefixtures("transport")
async def test_idle_connections_close_at_once_and_late_frames_are_not_dispatched() -> None:
    events: list[str] = []
    server = slow_server(0.3, events)
    async with TestClient(server) as client:
        async with client.connect() as busy, client.connect() as idle:
            await busy.send_json({"type": "work", "n": 1})
            await wait_until(lambda: "started" in events)
            shutdown = asyncio.ensure_future(client.running.shutdown(grace=5))
            assert await idle.wait_closed(timeout=2) == 1001
            try:
                await busy.send_json({"type": "echo"})  # arrives after shutdown started
            except Exception:
                pass
            frames = await frames_until_close(busy)
            await shutdown
    assert frames == [{"type": "done", "n": 1}]
    assert busy.close_code == 1001


@pytest.mark.usefixtures("transport")
async def test_handlers_still_running_after_the_grace_period_are_cancelled() -> None:
    events: list[str] = []
    server = slow_server(30, events)
    async with TestClient(server) as client, client.connect() as ws:
        await ws.send_json({"type": "work", "n": 1})
        await wait_until(lambda: "started" in events)
        started = time.monotonic()
        await client.running.shutdown(grace=0.3)
        assert time.monotonic() - started < 5
        assert await ws.wait_closed() == 1001
    assert "finished" not in events
    assert events.count("disconnect 1001 (server shutting down)") == 1


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_run_shuts_down_on_signal(signum: int, tmp_path: object) -> None:
    script = """
import asyncio, sys
from aiows import Router, WebSocketServer, BaseMessage
router = Router()
@router.message("work")
async def work(websocket, message: BaseMessage):
    await asyncio.sleep(0.5)
    await websocket.send_json({"type": "done"})
server = WebSocketServer(shutdown_grace=5)
server.include_router(router)
server.run(host="127.0.0.1", port=int(sys.argv[1]))
"""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", script, str(port)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                ws = await connect(f"ws://127.0.0.1:{port}")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)
        await ws.send('{"type": "work"}')
        await asyncio.sleep(0.1)
        process.send_signal(signum)
        assert await asyncio.wait_for(ws.recv(), 5) == '{"type":"done"}'
        await asyncio.wait_for(ws.wait_closed(), 5)
        assert ws.close_code == 1001
        assert await asyncio.to_thread(process.wait, 10) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert process.stderr is not None
    assert b"Traceback" not in process.stderr.read()


@pytest.mark.parametrize("reading", [True, False], ids=["clients-read", "clients-never-read"])
@pytest.mark.parametrize("transport", ["websockets", "picows"])
async def test_sigterm_under_load_runs_every_disconnect_handler_and_exits_in_time(transport: str, reading: bool) -> None:
    """20 clients sending a message every 2 ms: shutdown does not wait on the frames they keep sending.

    Clients that never read cannot get the close frame: they are dropped after ``close_timeout``.
    """
    if transport != "websockets":
        pytest.importorskip(transport)
    grace, close_timeout = 2.0, 1.0
    async with ServerProcess(transport=transport, shutdown_grace=grace, close_timeout=close_timeout) as server:
        clients = [await RawClient(server.url).__aenter__() for _ in range(20)]
        if not reading:
            for client in clients:
                assert client.writer is not None
                client.writer.transport.pause_reading()
        sending = True

        async def send_forever(client: RawClient, c: int) -> None:
            n = 0
            while sending and n < 5000:  # bounded: 10 s at most
                if client.writer is None or client.writer.transport.get_write_buffer_size() > 2**20:
                    break  # the server stopped reading this one (it does not read the replies)
                client.send_raw(client_frame(TEXT, b'{"type": "echo", "c": %d, "n": %d}' % (c, n)))
                n += 1
                await asyncio.sleep(0.002)

        senders = [asyncio.create_task(send_forever(client, c)) for c, client in enumerate(clients)]
        await asyncio.sleep(0.5)
        started = time.monotonic()
        assert await server.stop(timeout=grace + close_timeout + 10) == 0
        took = time.monotonic() - started
        sending = False
        await asyncio.gather(*senders)
        codes = [client.close_code for client in clients]
        for client in clients:
            await client.__aexit__(None, None, None)
    print(f"\n{transport}: exited {took:.2f} s after SIGTERM; {server.stats}")
    assert server.stats["disconnects"] == 20
    assert server.stats["handled"] > 20
    if reading:
        assert codes == [1001] * 20
        assert server.stats["reasons"] == {"1001 (server shutting down)": 20}
    else:
        assert server.stats["reasons"] == {"1006": 20}  # no close frame came back
    assert took < grace + close_timeout + 1.0
    assert b"Traceback" not in server.stderr
