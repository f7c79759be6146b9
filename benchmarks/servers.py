"""The servers ``load.py`` measures, one per process: ``python benchmarks/servers.py KIND``.

Each binds 127.0.0.1 on a free port, prints ``PORT <n> LOOP <asyncio|uvloop>``
(the event loop it really runs on) once it serves, and serves until killed.
Every kind does the same work for a ``{"type": "chat", ...}`` request: route
it by type, validate it into ``ChatMessage``, answer with one JSON frame (the
raw echo servers only send the frame back: they are the ceiling). Transport
settings are the same everywhere (no compression, 1 MiB frames, pings every
20 s) unless a row says it uses a framework's defaults.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from websockets.asyncio.server import ServerConnection, serve

from aiows import ChatMessage
from bench_app import make_app, reply_for

try:  # FastAPI resolves the endpoint's annotations in this module's globals
    from fastapi import WebSocket as FastAPIWebSocket  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # the FastAPI row is skipped
    pass

__all__ = ["KINDS", "main"]


def loop_name() -> str:
    """``uvloop`` or ``asyncio``: the event loop this code runs on."""
    return "uvloop" if type(asyncio.get_running_loop()).__module__.startswith("uvloop") else "asyncio"


def announce(port: int) -> None:
    print(f"PORT {port} LOOP {loop_name()}", flush=True)


def run(coroutine: Coroutine[Any, Any, None], loop: str) -> None:
    if loop == "uvloop":
        import uvloop  # type: ignore[import-not-found,unused-ignore]

        uvloop.run(coroutine)
    else:
        asyncio.run(coroutine)


async def raw_echo() -> None:
    """Raw ``websockets``: every frame straight back."""

    async def echo(websocket: ServerConnection) -> None:
        async for message in websocket:
            await websocket.send(message)

    async with serve(echo, "127.0.0.1", 0, compression=None) as server:
        announce(server.sockets[0].getsockname()[1])
        await asyncio.Future()


async def raw_picows_native_echo() -> None:
    """picows' own callback API (no asyncio-style connection object): every frame straight back."""
    from picows import WSFrame, WSListener, WSTransport, ws_create_server  # type: ignore[import-not-found,unused-ignore]

    class Echo(WSListener):  # type: ignore[misc,unused-ignore]
        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            transport.send(frame.msg_type, frame.get_payload_as_bytes())

    server = await ws_create_server(lambda request: Echo(), "127.0.0.1", 0)
    announce(server.sockets[0].getsockname()[1])
    await asyncio.Future()


async def naive() -> None:
    """What a hand-written server often does: stdlib json, ``model_validate``, a chain built per message."""

    async def on_chat(websocket: ServerConnection, message: ChatMessage) -> None:
        await websocket.send(json.dumps(reply_for(message)))

    async def handler(websocket: ServerConnection) -> None:
        async for raw in websocket:
            data = json.loads(raw)
            handlers: dict[str, Callable[[ServerConnection, ChatMessage], Awaitable[None]]] = {"chat": on_chat}

            async def chain(data: dict[str, Any]) -> None:
                await handlers[data["type"]](websocket, ChatMessage.model_validate(data))

            await chain(data)

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        announce(server.sockets[0].getsockname()[1])
        await asyncio.Future()


async def aiows_app(middlewares: int = 0, transport: str = "websockets", metrics: bool = False) -> None:
    """The benchmark app on aiows (``bench_app.make_app``); with ``metrics``, serving Prometheus metrics."""
    app = make_app(middlewares, transport=transport, metrics_path="/metrics" if metrics else None)
    async with app.serve("127.0.0.1", 0) as running:
        announce(running.port)
        await asyncio.Future()


def uvicorn_app(app: Any) -> None:
    """Serve an ASGI app with uvicorn's defaults (its loop and WebSocket choices), quietly.

    The port is announced from the lifespan startup, on the loop uvicorn chose.
    """
    import uvicorn  # type: ignore[import-not-found,unused-ignore]

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]

    async def announcing(
        scope: dict[str, Any], receive: Callable[[], Awaitable[Any]], send: Callable[[Any], Awaitable[None]]
    ) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return
        while True:
            event = await receive()
            if event["type"] == "lifespan.startup":
                announce(port)
                await send({"type": "lifespan.startup.complete"})
            elif event["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    uvicorn.Server(uvicorn.Config(announcing, log_level="warning")).run(sockets=[sock])


def fastapi_app() -> None:
    """A FastAPI WebSocket route doing the same routed, validated work, as its docs show."""
    from fastapi import FastAPI, WebSocketDisconnect  # type: ignore[import-not-found,unused-ignore]

    app = FastAPI()

    async def on_chat(websocket: FastAPIWebSocket, data: dict[str, Any]) -> None:
        message = ChatMessage.model_validate(data)
        await websocket.send_json(reply_for(message))

    handlers = {"chat": on_chat}

    @app.websocket("/")  # type: ignore[untyped-decorator,unused-ignore]
    async def endpoint(websocket: FastAPIWebSocket) -> None:
        await websocket.accept()
        try:
            while True:
                data = await websocket.receive_json()
                await handlers[data["type"]](websocket, data)
        except WebSocketDisconnect:
            pass

    uvicorn_app(app)


def aiows_fastapi_app() -> None:
    """The benchmark app (``bench_app.make_app``) mounted in FastAPI with ``server.asgi()``, under uvicorn."""
    from fastapi import FastAPI  # type: ignore[import-not-found,unused-ignore]

    aiows_app = make_app().asgi()
    app = FastAPI(lifespan=aiows_app.lifespan)
    app.mount("/ws", aiows_app)
    uvicorn_app(app)


def socketio_app() -> None:
    """python-socketio (ASGI, under uvicorn): the ``chat`` event, validated, answered to its sender."""
    import socketio  # type: ignore[import-untyped,import-not-found,unused-ignore]

    sio = socketio.AsyncServer(async_mode="asgi")

    @sio.on("chat")  # type: ignore[untyped-decorator,unused-ignore]
    async def chat(sid: str, data: dict[str, Any]) -> None:
        message = ChatMessage.model_validate(data)
        await sio.emit("chat", reply_for(message), to=sid)

    uvicorn_app(socketio.ASGIApp(sio))


#: kind -> how to serve it.
KINDS: dict[str, Callable[[], None]] = {
    "raw": lambda: run(raw_echo(), "asyncio"),
    "raw-uvloop": lambda: run(raw_echo(), "uvloop"),
    "aiows": lambda: run(aiows_app(), "asyncio"),
    "aiows-mw3": lambda: run(aiows_app(3), "asyncio"),
    "aiows-metrics": lambda: run(aiows_app(metrics=True), "asyncio"),
    "aiows-uvloop": lambda: run(aiows_app(), "uvloop"),
    "raw-picows-native": lambda: run(raw_picows_native_echo(), "uvloop"),
    "aiows-picows": lambda: run(aiows_app(transport="picows"), "uvloop"),
    "aiows-picows-asyncio": lambda: run(aiows_app(transport="picows"), "asyncio"),
    "naive": lambda: run(naive(), "asyncio"),
    "fastapi": fastapi_app,
    "aiows-fastapi": aiows_fastapi_app,
    "socketio": socketio_app,
}


def main() -> None:
    KINDS[sys.argv[1]]()


if __name__ == "__main__":
    main()
