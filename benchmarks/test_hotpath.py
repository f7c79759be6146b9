"""In-process hot path: decode, dispatch, chain, validation, handler, error frames.

No socket: each message goes through ``RouteTable.handle`` (or a connection's
``Session.run`` loop) on a real ``SocketLink`` whose transport only counts
what is written, so the coroutines finish on their first step and the timings
are the framework's own cost.

    pytest benchmarks/test_hotpath.py            # this build
    python benchmarks/compare.py                 # compiled and pure side by side
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from typing import Any

import orjson
import pytest

from aiows import ChatMessage
from aiows.chain import adapter_for
from aiows.dispatch import RouteTable, Session
from aiows.metering import MeteredRouteTable
from aiows.options import ServerOptions
from aiows.transports.base import HandshakeRequest
from aiows.transports.core import LinkLimits, LinkMeter, MeteredSocketLink, SocketLink, text_frame
from aiows.websocket import WebSocket
from bench_app import PAYLOAD, PassThrough, make_app, reply_for

#: ``benchmark`` is pytest-benchmark's fixture (untyped).
Benchmark = Any

#: The frame every answered request writes.
REPLY = text_frame(orjson.dumps(reply_for(ChatMessage.model_validate(json.loads(PAYLOAD)))))

#: The links are made in a running loop; nothing is ever scheduled on it that the benchmarks wait for.
LOOP = asyncio.new_event_loop()


class NullSocket:
    """The asyncio transport and the front-end's wire under a real ``SocketLink``: writes are only counted."""

    def __init__(self) -> None:
        self.size = 0

    def write(self, data: bytes) -> None:
        self.size += len(data)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def send_close(self, code: int, reason: str) -> None:
        pass

    def send_ping(self, data: bytes) -> None:
        pass

    def fail(self, code: int, reason: str) -> None:
        pass

    def encode(self, payload: bytes, text: bool) -> bytes:
        raise NotImplementedError


def new_link(socket: NullSocket, meter: LinkMeter | None = None) -> SocketLink:
    """An open link on ``socket`` (no keepalive, no queue limit); with ``meter``, one that counts its bytes."""

    async def make() -> SocketLink:
        limits = LinkLimits(ServerOptions(ping_interval=None, max_queue=None))
        request = HandshakeRequest("/", {})
        link = (
            SocketLink(socket, socket, limits, request, ("127.0.0.1", 1))
            if meter is None
            else MeteredSocketLink(socket, socket, limits, request, ("127.0.0.1", 1), False, None, meter)
        )
        link.opened()
        return link

    return LOOP.run_until_complete(make())


#: Requests per ``serve`` run in ``test_serve_loop``.
SERVE_BATCH = 1000


def drive(coroutine: Coroutine[Any, Any, Any]) -> None:
    """Run a coroutine that never suspends to its end."""
    try:
        coroutine.send(None)
    except StopIteration:
        return
    raise RuntimeError("the coroutine suspended")


def drive_until_idle(coroutine: Coroutine[Any, Any, Any]) -> None:
    """Run a serve loop until it ends, or until it waits for the next message (then close it).

    Before Python 3.12 a session's message loop waits for the next message
    instead of ending (``aiows.dispatch._KEEP_TASK``): the batch is done then.
    """
    try:
        coroutine.send(None)
    except StopIteration:
        return
    coroutine.close()


#: A serve loop under test: runs the requests queued on ``link`` through ``websocket``.
ServeLoop = Callable[[WebSocket, SocketLink], Coroutine[Any, Any, None]]


def serve_batch(serve: ServeLoop, make_link: Callable[[NullSocket], SocketLink] = new_link) -> None:
    """Queue ``SERVE_BATCH`` requests on a fresh link, run ``serve`` over them; check every one was answered."""
    socket = NullSocket()
    link = make_link(socket)
    for _ in range(SERVE_BATCH):
        link.data(1, True, PAYLOAD)  # no receiver: queued, as pipelined requests are
    drive_until_idle(serve(WebSocket(link), link))
    link.flush()
    assert socket.size == SERVE_BATCH * len(REPLY)


def setup(middlewares: int) -> tuple[RouteTable, WebSocket, NullSocket]:
    socket = NullSocket()
    table = make_app(middlewares).dispatcher().default
    assert table is not None
    return table, WebSocket(new_link(socket)), socket


def test_decode(benchmark: Benchmark) -> None:
    """``orjson.loads`` of the request: the floor under every build."""
    benchmark(orjson.loads, PAYLOAD)


def test_validate(benchmark: Benchmark) -> None:
    """The route's cached ``TypeAdapter`` turning the dict into a ``ChatMessage``."""
    adapter = adapter_for(ChatMessage)
    data = orjson.loads(PAYLOAD)
    benchmark(adapter.validate_python, data)


@pytest.mark.parametrize("depth", [0, 3, 10])
def test_message(benchmark: Benchmark, depth: int) -> None:
    """One request through decode + dispatch + ``depth`` middlewares + validation + handler + reply."""
    dispatcher, websocket, socket = setup(depth)
    benchmark(lambda: drive(dispatcher.handle(websocket, True, PAYLOAD)))
    assert socket.size > 0


@pytest.mark.parametrize("depth", [0, 3])
def test_serve_loop(benchmark: Benchmark, depth: int) -> None:
    """``SERVE_BATCH`` requests through the connection's read loop, as a server runs them (time per batch)."""
    dispatcher = make_app(depth).dispatcher()
    table = dispatcher.default
    assert table is not None

    def serve(websocket: WebSocket, link: SocketLink) -> Coroutine[Any, Any, None]:
        session = Session(dispatcher, table, websocket, link, LOOP)
        session.admitted = True
        return session.run()

    benchmark(serve_batch, serve)


def test_serve_loop_metrics(benchmark: Benchmark) -> None:
    """``test_serve_loop[0]`` with ``metrics_path`` on: each message counted and timed by type, its bytes
    counted by the link (``MeteredRouteTable``, ``MeteredSocketLink``). The difference is what metrics cost."""
    pytest.importorskip("prometheus_client")
    app = make_app(metrics_path="/metrics")
    assert app.metrics is not None
    meter = app.metrics.link_meter
    dispatcher = app.dispatcher()
    table = dispatcher.default
    assert isinstance(table, MeteredRouteTable)

    def serve(websocket: WebSocket, link: SocketLink) -> Coroutine[Any, Any, None]:
        session = Session(dispatcher, table, websocket, link, LOOP)
        session.admitted = True
        return session.run()

    benchmark(serve_batch, serve, lambda socket: new_link(socket, meter))
    assert app.metrics.types["chat"].handled > 0 and meter.bytes_in > 0 and meter.bytes_out > 0


def test_serve_loop_floor(benchmark: Benchmark) -> None:
    """``test_serve_loop[3]``'s work written by hand with no framework: the floor under any build.

    The same connection, decode, route lookup, three ``PassThrough`` middlewares,
    validator, handler and reply, with nothing else (no error frames, no
    shutdown or busy bookkeeping). What aiows costs above it is all that
    compiling could ever remove.
    """
    validate = adapter_for(ChatMessage).validator.validate_python

    async def handler(websocket: WebSocket, message: ChatMessage) -> None:
        websocket.link.write(orjson.dumps(reply_for(message)), True)

    def last(websocket: WebSocket, message: Any) -> Any:
        return handler(websocket, validate(message))

    class Step:  # built once, like aiows' chains
        def __init__(self, next_step: Any) -> None:
            self.middleware = PassThrough()
            self.next_step = next_step

        def __call__(self, websocket: WebSocket, message: Any) -> Any:
            return self.middleware.on_message(self.next_step, websocket, message)

    routes = {"chat": Step(Step(Step(last)))}

    async def serve(websocket: WebSocket, link: SocketLink) -> None:
        while (item := link.take()) is not None:
            data = orjson.loads(item[1])
            await routes[data["type"]](websocket, data)

    benchmark(serve_batch, serve)


def test_serve_loop_external(benchmark: Benchmark) -> None:
    """Only the work in ``test_serve_loop[3]`` that is not aiows's: no build of aiows can cost less.

    Decode and validation (orjson and pydantic-core, C already), the three
    ``PassThrough`` middlewares and the handler (the user's code, interpreted
    in both builds), encode and send. The middlewares are chained with
    ``functools.partial`` (C: no Python frame between them) and the message is
    validated before the chain instead of after it (the same work), so the
    only Python glue left is a three-line loop.
    """
    validate = adapter_for(ChatMessage).validator.validate_python

    async def handler(websocket: WebSocket, message: ChatMessage) -> None:
        websocket.link.write(orjson.dumps(reply_for(message)), True)

    chain: Callable[[WebSocket, Any], Awaitable[Any]] = handler
    for _ in range(3):
        chain = partial(PassThrough().on_message, chain)

    async def serve(websocket: WebSocket, link: SocketLink) -> None:
        while (item := link.take()) is not None:
            await chain(websocket, validate(orjson.loads(item[1])))

    benchmark(serve_batch, serve)


def test_dispatch_only(benchmark: Benchmark) -> None:
    """Decode and route lookup only: a frame whose handler does nothing and needs no validation."""
    dispatcher, websocket, _ = setup(0)

    async def nothing(websocket: WebSocket, message: Any) -> None:
        pass

    from aiows.chain import MessageHandlerStep

    dispatcher.routes["chat"] = MessageHandlerStep(nothing, adapter_for(Any))
    benchmark(lambda: drive(dispatcher.handle(websocket, True, PAYLOAD)))


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(b"{not json", id="invalid_json"),
        pytest.param(b'{"type": "nope"}', id="unknown_type"),
        pytest.param(b'{"type": "chat", "text": 1}', id="validation_error"),
    ],
)
def test_error(benchmark: Benchmark, frame: bytes) -> None:
    """A bad frame: one error frame back, the connection stays."""
    dispatcher, websocket, socket = setup(3)
    benchmark(lambda: drive(dispatcher.handle(websocket, True, frame)))
    assert socket.size > 0


def test_naive_reference(benchmark: Benchmark) -> None:
    """What aiows replaces: stdlib ``json``, ``model_validate``, a chain built for every message."""
    socket = NullSocket()
    link = new_link(socket)

    async def handler(message: ChatMessage) -> None:
        link.write(json.dumps(reply_for(message)).encode(), True)

    async def process(raw: bytes) -> None:
        data = json.loads(raw)
        handlers = {"chat": handler}

        async def chain(data: dict[str, Any]) -> None:
            await handlers[data["type"]](ChatMessage.model_validate(data))

        await chain(data)

    benchmark(lambda: drive(process(PAYLOAD)))
