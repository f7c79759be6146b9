"""In-process hot path: decode, dispatch, chain, validation, handler, error frames.

No socket and no event loop: each frame goes through ``RouteTable.handle``
with a connection whose ``send`` returns at once, so the coroutine finishes
on its first step and the timings are the framework's own cost.

    pytest benchmarks/test_hotpath.py            # this build
    python benchmarks/compare.py                 # compiled and pure side by side
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from typing import Any

import orjson
import pytest

from aiows import ChatMessage
from aiows.chain import adapter_for
from aiows.dispatch import RouteTable
from aiows.websocket import WebSocket
from bench_app import PAYLOAD, PassThrough, make_app, reply_for

#: ``benchmark`` is pytest-benchmark's fixture (untyped).
Benchmark = Any


class NullConnection:
    """A ``Connection`` that is always open and sends nowhere."""

    request = None
    remote_address = ("127.0.0.1", 1)
    state = 1
    close_code = None
    close_reason = None

    def __init__(self) -> None:
        self.sent = 0

    async def recv(self, decode: bool | None = None) -> str | bytes:
        raise NotImplementedError

    async def send(self, message: str | bytes, *, text: bool | None = None) -> None:
        self.sent += 1

    async def close(self, code: int = 1000, reason: str = "") -> None:
        pass

    async def wait_closed(self) -> None:
        pass


class FeedConnection(NullConnection):
    """A connection whose ``recv`` returns requests at once; closed once ``count`` replies were sent."""

    def __init__(self, count: int) -> None:
        super().__init__()
        self.count = count
        self.state = 1

    async def recv(self, decode: bool | None = None) -> str | bytes:
        return PAYLOAD

    async def send(self, message: str | bytes, *, text: bool | None = None) -> None:
        self.sent += 1
        if self.sent >= self.count:
            self.state = 3


#: Requests per ``serve`` run in ``test_serve_loop``.
SERVE_BATCH = 1000


def drive(coroutine: Coroutine[Any, Any, Any]) -> None:
    """Run a coroutine that never suspends to its end."""
    try:
        coroutine.send(None)
    except StopIteration:
        return
    raise RuntimeError("the coroutine suspended")


#: A serve loop under test: runs ``connection``'s requests through ``websocket`` until it is closed.
ServeLoop = Callable[[WebSocket, FeedConnection], Coroutine[Any, Any, None]]


def serve_batch(serve: ServeLoop) -> None:
    """Run ``SERVE_BATCH`` requests through ``serve`` on a fresh connection; check every one was answered."""
    connection = FeedConnection(SERVE_BATCH)
    drive(serve(WebSocket(connection), connection))
    assert connection.sent == SERVE_BATCH


def setup(middlewares: int) -> tuple[RouteTable, WebSocket, NullConnection]:
    connection = NullConnection()
    table = make_app(middlewares).dispatcher().default
    assert table is not None
    return table, WebSocket(connection), connection


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
    dispatcher, websocket, connection = setup(depth)
    benchmark(lambda: drive(dispatcher.handle(websocket, PAYLOAD)))
    assert connection.sent > 0


@pytest.mark.parametrize("depth", [0, 3])
def test_serve_loop(benchmark: Benchmark, depth: int) -> None:
    """``SERVE_BATCH`` requests through the connection's read loop, as a server runs them (time per batch)."""
    dispatcher = make_app(depth).dispatcher()
    table = dispatcher.default
    assert table is not None

    benchmark(serve_batch, lambda websocket, connection: dispatcher._read(table, websocket))


def test_serve_loop_floor(benchmark: Benchmark) -> None:
    """``test_serve_loop[3]``'s work written by hand with no framework: the floor under any build.

    The same connection, decode, route lookup, three ``PassThrough`` middlewares,
    validator, handler and reply, with nothing else (no error frames, no
    shutdown or busy bookkeeping). What aiows costs above it is all that
    compiling could ever remove.
    """
    validate = adapter_for(ChatMessage).validator.validate_python

    async def handler(websocket: WebSocket, message: ChatMessage) -> None:
        await websocket.connection.send(orjson.dumps(reply_for(message)), text=True)

    def last(websocket: WebSocket, message: Any) -> Any:
        return handler(websocket, validate(message))

    class Step:  # built once, like aiows' chains
        def __init__(self, next_step: Any) -> None:
            self.middleware = PassThrough()
            self.next_step = next_step

        def __call__(self, websocket: WebSocket, message: Any) -> Any:
            return self.middleware.on_message(self.next_step, websocket, message)

    routes = {"chat": Step(Step(Step(last)))}

    async def serve(websocket: WebSocket, connection: FeedConnection) -> None:
        while connection.state == 1:
            data = orjson.loads(await connection.recv(False))
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
        await websocket.connection.send(orjson.dumps(reply_for(message)), text=True)

    chain: Callable[[WebSocket, Any], Awaitable[Any]] = handler
    for _ in range(3):
        chain = partial(PassThrough().on_message, chain)

    async def serve(websocket: WebSocket, connection: FeedConnection) -> None:
        while connection.state == 1:
            await chain(websocket, validate(orjson.loads(await connection.recv(False))))

    benchmark(serve_batch, serve)


def test_dispatch_only(benchmark: Benchmark) -> None:
    """Decode and route lookup only: a frame whose handler does nothing and needs no validation."""
    dispatcher, websocket, _ = setup(0)

    async def nothing(websocket: WebSocket, message: Any) -> None:
        pass

    from aiows.chain import MessageHandlerStep

    dispatcher.routes["chat"] = MessageHandlerStep(nothing, adapter_for(Any))
    benchmark(lambda: drive(dispatcher.handle(websocket, PAYLOAD)))


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
    dispatcher, websocket, connection = setup(3)
    benchmark(lambda: drive(dispatcher.handle(websocket, frame)))
    assert connection.sent > 0


def test_naive_reference(benchmark: Benchmark) -> None:
    """What aiows replaces: stdlib ``json``, ``model_validate``, a chain built for every message."""
    connection = NullConnection()

    async def handler(message: ChatMessage) -> None:
        await connection.send(json.dumps(reply_for(message)), text=True)

    async def process(raw: bytes) -> None:
        data = json.loads(raw)
        handlers = {"chat": handler}

        async def chain(data: dict[str, Any]) -> None:
            await handlers[data["type"]](ChatMessage.model_validate(data))

        await chain(data)

    benchmark(lambda: drive(process(PAYLOAD)))
