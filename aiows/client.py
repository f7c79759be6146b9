"""A Python client for aiows servers: requests with replies, server requests, reconnection, room positions.

```python
import aiows.client

async with aiows.client.connect("ws://localhost:8000", token=TOKEN) as client:
    reply = await client.request({"type": "join", "room": "lobby"})
    async for message in client:  # the server's frames, as dicts (replies to requests excluded)
        print(message)
```

It uses ``websockets``' own asyncio client (no other dependency). What it
does on the wire is in the guide "Delivery guarantees" (docs/guides/delivery.md):

- ``request()`` sends the message with a ``"ref"`` (an integer, unique on the
  client) and waits for ``{"type": "reply", "ref", "data"}`` (returns
  ``data``) or the error frame with that ``ref`` (raises
  ``aiows.exceptions.RequestError``);
- a frame of the server with a ``"ref"`` that is not a reply is a request of
  the server: the handler given to ``on_request()`` answers it (its return
  value is sent as ``{"type": "reply", "ref", "data"}``); without a handler
  it is yielded by ``async for`` like any frame;
- every frame with ``"room"``, ``"offset"`` and ``"epoch"`` (a publication in a
  room with history) updates ``client.positions[room]``;
- when the connection drops (anything but a close the server meant as
  final: 1000, 1002, 1003, 1007, 1008, 1009, 1010, 4401), it reconnects with
  exponential backoff and jitter (``reconnect=True``), then calls
  ``on_reconnect(client)``, where the app joins its rooms again from
  ``client.positions`` to recover what it missed.

Interpreted: this is the client side, not the server's hot path.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, Final, TypedDict, TypeVar, overload

from pydantic import BaseModel, TypeAdapter
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as websockets_connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from .codecs import JSON, Codec, codec_named
from .exceptions import ConnectionError, RequestError, RequestTimeout
from .pending import request_fields

__all__ = ["FINAL_CLOSE_CODES", "Client", "Message", "RequestHandler", "RoomPosition", "connect"]

logger = logging.getLogger("aiows.client")

#: Close codes after which the client does not reconnect: the server meant them (or the client is at fault).
FINAL_CLOSE_CODES: Final = frozenset({1000, 1002, 1003, 1007, 1008, 1009, 1010, 4401})

#: What ``send()`` and ``request()`` take: a dict (any mapping) or a pydantic model.
Message = Mapping[str, Any] | BaseModel

#: ``on_request``'s handler: takes the server's request (a dict, with its ``"ref"``), returns the reply's data.
RequestHandler = Callable[[dict[str, Any]], Any]

#: ``on_reconnect``: called with the client after each reconnection (may be async).
ReconnectHandler = Callable[["Client"], Any]

M = TypeVar("M")
H = TypeVar("H", bound=RequestHandler)


class RoomPosition(TypedDict):
    """The last publication a client saw in a room: ``{"epoch": E, "offset": N}``."""

    epoch: str
    offset: int


class _End:
    """Marks the end of the client's frames (it is closed for good)."""


_END: Final = _End()


def connect(
    url: str,
    token: str | None = None,
    *,
    reconnect: bool = True,
    on_reconnect: ReconnectHandler | None = None,
    backoff_min: float = 0.5,
    backoff_max: float = 10.0,
    max_queue: int | None = 1024,
    codec: str | Codec | None = None,
    **options: Any,
) -> Client:
    """A client for the aiows server at ``url``; use it as ``async with connect(url) as client:``.

    Args:
        url: ``ws://`` or ``wss://`` URL.
        token: sent as ``Authorization: Bearer <token>`` (what ``AuthMiddleware`` reads).
        reconnect: reconnect when the connection drops, with exponential backoff
            (``backoff_min`` doubling up to ``backoff_max`` seconds, each delay
            drawn between half and all of it).
        backoff_min: the first reconnection delay, in seconds.
        backoff_max: the longest reconnection delay, in seconds.
        on_reconnect: ``on_reconnect(client)`` (sync or async) after each reconnection.
        max_queue: frames that may wait for ``async for``; when it is full,
            reading pauses until the app takes one (``None``: no bound).
        codec: ``"msgpack"`` (or a ``Codec``): offer its subprotocol
            (``aiows.msgpack``) and speak it when the server agrees, JSON
            otherwise (``client.codec`` says which).
        options: more keyword arguments for ``websockets.asyncio.client.connect``.
    """
    return Client(
        url,
        token,
        reconnect=reconnect,
        on_reconnect=on_reconnect,
        backoff_min=backoff_min,
        backoff_max=backoff_max,
        max_queue=max_queue,
        codec=codec,
        options=options,
    )


class Client:
    """A connection to an aiows server that survives the server's restarts (see the module docstring).

    ``positions`` maps each room the client got a numbered publication from to
    the last ``{"epoch", "offset"}`` seen; ``reconnects`` counts the
    reconnections; ``connected`` tells whether a connection is open now.
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        reconnect: bool = True,
        on_reconnect: ReconnectHandler | None = None,
        backoff_min: float = 0.5,
        backoff_max: float = 10.0,
        max_queue: int | None = 1024,
        codec: str | Codec | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        if not 0 < backoff_min <= backoff_max:
            raise ValueError("backoff_min must be positive and at most backoff_max")
        self.url = url
        self.reconnect = reconnect
        self.on_reconnect = on_reconnect
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.options = dict(options or {})
        if token is not None:
            headers = dict(self.options.pop("additional_headers", None) or {})
            headers["Authorization"] = f"Bearer {token}"
            self.options["additional_headers"] = headers
        #: The codec offered (``None``: JSON, nothing offered).
        self.offered = codec_named(codec) if isinstance(codec, str) else codec
        if self.offered is not None:
            self.options["subprotocols"] = [Subprotocol(self.offered.subprotocol)]
        #: The codec of the open connection: the one offered if the server agreed to it, else JSON.
        self.codec: Codec = JSON
        self.positions: dict[str, RoomPosition] = {}
        self.reconnects = 0
        self.close_code: int | None = None
        self._queue: asyncio.Queue[dict[str, Any] | _End] = asyncio.Queue(max_queue or 0)
        self._connection: ClientConnection | None = None
        self._runner: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._last_ref = 0
        self._request_handler: RequestHandler | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self._adapters: dict[Any, TypeAdapter[Any]] = {}

    # -- life ---------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether a connection is open now (``False`` while reconnecting)."""
        connection = self._connection
        return connection is not None and connection.close_code is None and not self._closing

    @property
    def closed(self) -> bool:
        """Whether the client is closed for good (by ``close()``, or a final close of the server)."""
        return self._closing

    async def __aenter__(self) -> Client:
        """Connect (a first connection that fails raises, whatever ``reconnect`` says)."""
        self._connection = await self._connect()
        self._runner = asyncio.get_running_loop().create_task(self._run())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection (code 1000) and stop reconnecting; ``async for`` ends."""
        self._closing = True
        connection = self._connection
        if connection is not None:
            await connection.close()
        runner = self._runner
        if runner is not None and runner is not asyncio.current_task():
            runner.cancel()  # it may wait for room in the queue, or for a reconnection delay
            try:
                await runner
            except asyncio.CancelledError:
                pass
        for task in list(self._tasks):
            task.cancel()
        self._fail_pending()

    async def _run(self) -> None:
        """Read frames; when the connection drops, reconnect (with backoff) unless told not to."""
        try:
            while True:
                connection = self._connection
                assert connection is not None
                try:
                    while True:
                        raw = await connection.recv()
                        await self._received(raw)
                except ConnectionClosed:
                    pass
                self.close_code = connection.close_code
                self._fail_pending()
                if self._closing or not self.reconnect or self.close_code in FINAL_CLOSE_CODES:
                    break
                if not await self._reconnect():
                    break
        finally:
            self._closing = True
            self._fail_pending()
            queue = self._queue
            while True:  # the end goes in even if nobody reads: the oldest frames make room for it
                try:
                    queue.put_nowait(_END)
                    break
                except asyncio.QueueFull:
                    queue.get_nowait()

    async def _connect(self) -> ClientConnection:
        """Open a connection; ``codec`` is what it agreed to."""
        connection = await websockets_connect(self.url, **self.options)
        offered = self.offered
        self.codec = offered if offered is not None and connection.subprotocol == offered.subprotocol else JSON
        return connection

    async def _reconnect(self) -> bool:
        """Connect again, waiting longer after each failure; ``False`` once the client is closed."""
        attempt = 0
        while True:
            delay = min(self.backoff_max, self.backoff_min * 2**attempt)
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            if self.closed:  # close() was called meanwhile
                return False
            try:
                self._connection = await self._connect()
            except Exception as exc:  # refused, reset, HTTP 503 while the server restarts...
                logger.debug("reconnecting to %s failed: %r", self.url, exc)
                attempt += 1
                continue
            self.reconnects += 1
            logger.info("reconnected to %s", self.url)
            if self.on_reconnect is not None:
                self._spawn(self._call_on_reconnect())
            return True

    async def _call_on_reconnect(self) -> None:
        assert self.on_reconnect is not None
        try:
            result = self.on_reconnect(self)
            if inspect.isawaitable(result):
                await result
        except ConnectionError:
            pass  # dropped again: the next reconnection calls it again
        except Exception:
            logger.exception("on_reconnect failed")

    def _fail_pending(self) -> None:
        pending = list(self._pending.values())
        self._pending.clear()
        for future in pending:
            if not future.done():
                future.set_exception(ConnectionError("connection closed before the reply", self.close_code))

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- incoming -------------------------------------------------------------

    async def _received(self, raw: str | bytes) -> None:
        codec = self.codec
        try:
            frame = codec.decode(raw.encode() if isinstance(raw, str) else raw)
        except ValueError:
            logger.warning("the server sent a frame that is not %s: ignored", codec.label)
            return
        if type(frame) is not dict:
            logger.warning("the server sent a frame that is not %s: ignored", codec.object_name)
            return
        ref = frame.get("ref")
        if ref is not None:
            kind = frame.get("type")
            if kind == "reply" or kind == "error":
                future = self._pending.pop(ref, None) if type(ref) is int else None
                if future is not None:
                    if not future.done():
                        if kind == "reply":
                            future.set_result(frame.get("data"))
                        else:
                            future.set_exception(RequestError(frame))
                    return
            elif self._request_handler is not None:
                self._spawn(self._answer(self._request_handler, frame))
                return
        room = frame.get("room")
        offset = frame.get("offset")
        epoch = frame.get("epoch")
        if isinstance(room, str) and type(offset) is int and isinstance(epoch, str):
            self.positions[room] = {"epoch": epoch, "offset": offset}
        await self._queue.put(frame)

    async def _answer(self, handler: RequestHandler, frame: dict[str, Any]) -> None:
        try:
            data = handler(frame)
            if inspect.isawaitable(data):
                data = await data
            await self.send({"type": "reply", "ref": frame["ref"], "data": data})
        except ConnectionError:
            pass  # the server is gone: it stopped waiting
        except Exception:
            logger.exception("the on_request handler failed: no reply sent for ref %r", frame.get("ref"))

    def on_request(self, handler: H) -> H:
        """Answer the server's ``websocket.request()`` with ``handler(request)`` (sync or async); a decorator too.

        ``request`` is the server's frame as a dict (``"ref"`` included); the
        handler's return value (JSON, or a pydantic model) is the reply's
        ``data``. A handler that raises sends no reply (the server's request
        times out), and the exception is logged.
        """
        self._request_handler = handler
        return handler

    def __aiter__(self) -> Client:
        return self

    async def __anext__(self) -> dict[str, Any]:
        """The server's next frame (a dict), across reconnections; ends once the client is closed for good."""
        item = await self._queue.get()
        if isinstance(item, _End):
            self._queue.put_nowait(item)  # later iterations end too
            raise StopAsyncIteration
        return item

    # -- outgoing -------------------------------------------------------------

    async def send(self, message: Message) -> None:
        """Send a dict or a pydantic model as one frame in the connection's codec (a JSON text frame by default).

        Raises ``aiows.exceptions.ConnectionError`` while not connected (closed,
        or reconnecting).
        """
        connection = self._connection
        if connection is None or not self.connected:
            raise ConnectionError("not connected", self.close_code)
        codec = self.codec
        payload = codec.encode(message if isinstance(message, (dict, BaseModel)) else dict(message))
        try:
            await connection.send(payload.decode() if codec.text else payload)
        except ConnectionClosed:
            raise ConnectionError("connection closed", connection.close_code) from None

    @overload
    async def request(self, message: Message, timeout: float = 5.0, reply_model: None = None) -> Any: ...

    @overload
    async def request(self, message: Message, timeout: float = 5.0, *, reply_model: type[M]) -> M: ...

    async def request(self, message: Message, timeout: float = 5.0, reply_model: Any = None) -> Any:
        """Send ``message`` with a ``"ref"``; return the ``data`` of the server's reply.

        With ``reply_model`` (a pydantic model, or any type pydantic validates),
        ``data`` is validated into it (``pydantic.ValidationError`` if it does
        not fit).

        Raises:
            RequestError: the server answered with an error frame (``.code``, ``.frame``).
            RequestTimeout: no answer within ``timeout`` seconds (an ``asyncio.TimeoutError``).
            ConnectionError: not connected, or the connection dropped before the answer.
        """
        if not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
        self._last_ref += 1
        ref = self._last_ref
        fields = request_fields(message, ref)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[ref] = future
        try:
            data = await asyncio.wait_for(self._exchange(fields, future), timeout)
        except asyncio.TimeoutError:
            raise RequestTimeout(f"no answer to request {ref} within {timeout:g} s") from None
        finally:
            self._pending.pop(ref, None)
        if reply_model is None:
            return data
        adapter = self._adapters.get(reply_model)
        if adapter is None:
            adapter = self._adapters[reply_model] = TypeAdapter(reply_model)
        return adapter.validate_python(data)

    async def _exchange(self, fields: dict[str, Any], future: asyncio.Future[Any]) -> Any:
        await self.send(fields)
        return await future
