"""Test your app over a real socket: ``TestClient`` serves it on 127.0.0.1.

```python
from aiows.testing import TestClient

async def test_chat() -> None:
    async with TestClient(server) as client:
        async with client.connect("/?token=user1secret") as ws:
            await ws.send_json({"type": "chat", "text": "hi", "user_id": 1})
            assert (await ws.receive_json())["type"] == "chat"
```

``async with TestClient(server)`` serves in the test's own event loop (pytest-asyncio,
or anyio with the asyncio backend). ``with TestClient(server)`` serves from a
background thread with its own event loop instead, so it works from synchronous
code and whatever runs the test; the ``aiows_client`` pytest fixture
(``aiows.pytest_plugin``) uses it.
"""

from __future__ import annotations

import asyncio
import ssl as ssl_module
import threading
from types import TracebackType
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from .codecs import JSON, Codec, codec_named
from .server import RunningServer, WebSocketServer

__all__ = ["TestClient", "TestConnection"]

#: Seconds a ``receive_*`` or ``wait_closed`` call waits before failing the test.
DEFAULT_TIMEOUT = 10.0


class TestClient:
    """Serves a ``WebSocketServer`` on an ephemeral loopback port for the ``async with`` or ``with`` block.

    ``async with`` serves in the running event loop; ``with`` serves from a
    background thread, so the test may run in any event loop (or none).
    Connections (``client.connect()``) are made from the caller's event loop either way.
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self, server: WebSocketServer, host: str = "127.0.0.1", *, ssl: ssl_module.SSLContext | None = None
    ) -> None:
        self.app = server
        self.host = host
        #: The server's TLS context: serve ``wss://`` (give ``connect()`` a client context as ``ssl=``).
        self.ssl = ssl
        self._running: RunningServer | None = None
        self._thread: threading.Thread | None = None
        self._thread_loop: asyncio.AbstractEventLoop | None = None
        self._thread_stop: asyncio.Event | None = None

    @property
    def running(self) -> RunningServer:
        """The running server (inside ``async with`` only)."""
        if self._running is None:
            raise RuntimeError("use the TestClient in 'async with TestClient(server) as client:'")
        return self._running

    @property
    def port(self) -> int:
        """The server's port."""
        return self.running.port

    def url(self, path: str = "/") -> str:
        """The ``ws://`` (with TLS ``wss://``) URL of ``path`` on the test server."""
        return f"{'ws' if self.ssl is None else 'wss'}://{self.host}:{self.port}{path}"

    def connect(
        self,
        path: str = "/",
        headers: dict[str, str] | None = None,
        *,
        codec: str | Codec | None = None,
        **kwargs: Any,
    ) -> TestConnection:
        """A client connection to ``path`` (with the query string), for ``async with``.

        ``codec`` (``"msgpack"``, ``"json"`` or a ``Codec``) is offered as the
        subprotocol ``aiows.<name>``; ``send_json`` and ``receive_json`` then
        speak what the server agreed to (``ws.codec``). Other keyword
        arguments go to ``websockets.asyncio.client.connect``.
        """
        if codec is not None:
            offered = codec if isinstance(codec, Codec) else codec_named(codec)
            kwargs["subprotocols"] = [Subprotocol(offered.subprotocol)]
        return TestConnection(self.url(path), headers, kwargs, self.app.options.offered_codecs)

    async def __aenter__(self) -> TestClient:
        self._running = self.app.serve(self.host, 0, ssl=self.ssl)
        await self._running.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.running.close()
        self._running = None

    def __enter__(self) -> TestClient:
        if self._running is not None:
            raise RuntimeError("this TestClient is already serving")
        ready = threading.Event()
        errors: list[BaseException] = []
        self._thread = threading.Thread(
            target=self._serve_in_thread, args=(ready, errors), name="aiows-testclient", daemon=True
        )
        self._thread.start()
        if not ready.wait(DEFAULT_TIMEOUT):
            raise RuntimeError(f"the test server did not start within {DEFAULT_TIMEOUT} s")
        if errors:
            self._thread.join(DEFAULT_TIMEOUT)
            self._thread = None
            raise errors[0]
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        thread, loop, stop = self._thread, self._thread_loop, self._thread_stop
        if thread is None or loop is None or stop is None:
            return
        loop.call_soon_threadsafe(stop.set)
        # Closing waits for each connection's closing handshake (close_timeout).
        limit = (self.app.options.close_timeout or 0.0) + DEFAULT_TIMEOUT
        thread.join(limit)
        self._thread = None
        if thread.is_alive():
            raise RuntimeError(f"the test server did not stop within {limit} s")

    def _serve_in_thread(self, ready: threading.Event, errors: list[BaseException]) -> None:
        asyncio.run(self._serve_until_stopped(ready, errors))

    async def _serve_until_stopped(self, ready: threading.Event, errors: list[BaseException]) -> None:
        self._thread_loop = asyncio.get_running_loop()
        self._thread_stop = stop = asyncio.Event()
        running = self.app.serve(self.host, 0, ssl=self.ssl)
        try:
            await running.start()
        except BaseException as exc:  # reported to the thread that called __enter__
            errors.append(exc)
            ready.set()
            return
        self._running = running
        ready.set()
        try:
            await stop.wait()
        finally:
            self._running = None
            await running.close()


class TestConnection:
    """One client connection of a ``TestClient``, with JSON helpers and the close code."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        url: str,
        headers: dict[str, str] | None,
        options: dict[str, Any],
        codecs: tuple[Codec, ...] = (JSON,),
    ) -> None:
        self.url = url
        self.headers = headers
        self.options = options
        self.codecs = codecs
        #: The codec the server agreed to (its first one when the handshake agreed on no subprotocol).
        self.codec: Codec = codecs[0]
        self._ws: ClientConnection | None = None

    @property
    def ws(self) -> ClientConnection:
        """The underlying ``websockets`` client connection."""
        if self._ws is None:
            raise RuntimeError("use the connection in 'async with client.connect(...) as ws:'")
        return self._ws

    async def __aenter__(self) -> TestConnection:
        self._ws = await connect(self.url, additional_headers=self.headers, **self.options)
        chosen = self._ws.subprotocol
        self.codec = next((codec for codec in self.codecs if codec.subprotocol == chosen), self.codecs[0])
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.ws.close()

    async def send_json(self, data: Any) -> None:
        """Send ``data`` in the connection's codec: a JSON text frame, a MessagePack binary frame..."""
        payload = self.codec.encode(data)
        await self.ws.send(payload.decode() if self.codec.text else payload)

    async def send_text(self, text: str) -> None:
        """Send a text frame as is."""
        await self.ws.send(text)

    async def send_bytes(self, data: bytes) -> None:
        """Send a binary frame."""
        await self.ws.send(data)

    async def receive(self, timeout: float = DEFAULT_TIMEOUT) -> str | bytes:
        """The next frame, ``str`` for text and ``bytes`` for binary."""
        return await asyncio.wait_for(self.ws.recv(), timeout)

    async def receive_json(self, timeout: float = DEFAULT_TIMEOUT) -> Any:
        """The next frame, decoded by the connection's codec (JSON unless another was agreed)."""
        frame = await self.receive(timeout)
        return self.codec.decode(frame.encode() if isinstance(frame, str) else frame)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection from the client side."""
        await self.ws.close(code, reason)

    async def wait_closed(self, timeout: float = DEFAULT_TIMEOUT) -> int | None:
        """Wait until the server closes the connection; return the close code.

        Frames that arrive meanwhile are discarded.
        """

        async def drain() -> None:
            try:
                while True:
                    await self.ws.recv()
            except ConnectionClosed:
                pass

        await asyncio.wait_for(drain(), timeout)
        return self.close_code

    @property
    def close_code(self) -> int | None:
        """The close code the server sent (``None`` while open; 1006 if the socket dropped)."""
        return self.ws.close_code

    @property
    def close_reason(self) -> str | None:
        """The close reason the server sent (``None`` while open)."""
        return self.ws.close_reason
