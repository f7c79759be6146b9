"""The seam between aiows and the libraries that carry its connections.

A front-end (``aiows.transports.websockets``, ``aiows.transports.picows``)
accepts TCP connections, runs the opening handshake and parses frames; it asks
a ``Gate`` whether to upgrade each request, and hands every open connection to
the ``Gate`` as a ``Link``. Everything above this module (dispatch, rooms,
``WebSocket``) sees only ``Link`` and ``Receiver``: it never names a library.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from collections.abc import Callable
from typing import Any, Final

from mypy_extensions import mypyc_attr

from ..exceptions import ConnectionError

__all__ = [
    "CLOSED",
    "CLOSING",
    "CONNECTING",
    "OPEN",
    "Gate",
    "HandshakeRequest",
    "Link",
    "Listener",
    "Receiver",
    "Reply",
]

#: ``Link.state`` during the handshake (the values are numbered as ``websockets.protocol.State`` numbers them).
CONNECTING: Final = 0
#: ``Link.state`` once the handshake is done: messages flow.
OPEN: Final = 1
#: ``Link.state`` once a close frame was sent or received.
CLOSING: Final = 2
#: ``Link.state`` once the connection is closed.
CLOSED: Final = 3


class HandshakeRequest:
    """The HTTP request that opened a connection: ``path`` (with the query string) and ``headers``.

    ``headers`` is the front-end library's own case-insensitive mapping (which
    the library keeps for the connection's life anyway: no copy is made).
    """

    __slots__ = ("headers", "path")

    def __init__(self, path: str, headers: Mapping[str, str]) -> None:
        self.path = path
        self.headers = headers


class Reply:
    """A plain HTTP response a front-end sends instead of upgrading, then closes the connection."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, body: bytes = b"", headers: list[tuple[str, str]] | None = None) -> None:
        self.status = status
        self.body = body
        #: Extra headers; the front-end adds ``Content-Length`` and ``Connection: close``.
        self.headers: list[tuple[str, str]] = headers if headers is not None else []


class Receiver:
    """What a link tells the connection's owner (``aiows.dispatch.Session``)."""

    def message(self, link: Link) -> None:
        """A whole message was queued on ``link`` and no ``receive()`` is waiting for it."""
        raise NotImplementedError

    def closed(self, link: Link) -> None:
        """The TCP connection of ``link`` is gone."""
        raise NotImplementedError


class Link:
    """One open WebSocket connection, as aiows sees it whatever library carries it.

    Incoming messages are queued whole (``take()``, ``receive()``); outgoing
    frames are written at once, or held while the connection is *corked* and
    written together (``write()``, ``flush()``). ``paused`` is set while the
    client reads too slowly; ``drain()`` waits until it catches up.
    ``close_code`` and ``close_reason`` are those of the peer's close frame
    (``None`` until one arrives, or when none ever does).
    """

    state: int
    #: Messages received so far.
    received: int
    close_code: int | None
    close_reason: str | None
    paused: bool
    request: HandshakeRequest
    remote_address: Any
    receiver: Receiver | None
    #: The subprotocol the handshake agreed on (``"aiows.msgpack"``...), ``None`` for none.
    subprotocol: str | None

    def take(self) -> tuple[bool, bytes] | None:
        """The next queued message as ``(is_text, payload)``, or ``None``; text is not yet UTF-8 checked."""
        raise NotImplementedError

    async def receive(self) -> tuple[bool, bytes]:
        """Wait for the next message; ``aiows.exceptions.ConnectionError`` once none can come."""
        raise NotImplementedError

    def discard_incoming(self) -> None:
        """Drop queued messages and every data frame from now on (shutdown); control frames still count."""
        raise NotImplementedError

    def write(self, payload: bytes, text: bool) -> bool:
        """Send ``payload`` as one frame (held while corked); ``False`` if the connection is not open."""
        raise NotImplementedError

    def write_frame(self, frame: bytes, payload: bytes, text: bool) -> bool:
        """Send a frame framed in advance (``frame``) for ``payload`` (text or binary): broadcasts frame once."""
        raise NotImplementedError

    def flush(self) -> None:
        """Write the frames held so far, in one socket write."""
        raise NotImplementedError

    def idle(self) -> None:
        """The messages taken so far are handled: write what they produced, unless a read is still being delivered."""
        raise NotImplementedError

    def cork(self) -> None:
        """Hold what is written from now on (a front-end delivering one read, a burst of broadcasts)."""
        raise NotImplementedError

    def uncork(self) -> None:
        """Write what was held since ``cork()``, in one socket write."""
        raise NotImplementedError

    def drain(self) -> asyncio.Future[None] | None:
        """A future done once the client has read enough (``paused`` unset); ``None`` if not paused."""
        raise NotImplementedError

    def fail(self, code: int, reason: str) -> None:
        """Fail the connection for a protocol error (1007 for invalid UTF-8...): close frame, then drop it."""
        raise NotImplementedError

    def close_soon(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake; the socket is dropped if it does not end within the close timeout."""
        raise NotImplementedError

    def abort(self) -> None:
        """Drop the TCP connection at once."""
        raise NotImplementedError

    def closed_future(self) -> asyncio.Future[None]:
        """A future done once the TCP connection is closed."""
        raise NotImplementedError

    # -- the ``websockets``-style connection API (``websocket.connection``), built on the methods above --

    async def send(self, message: str | bytes, *, text: bool | None = None) -> None:
        """Send ``message`` as one message (text for ``str`` unless ``text=False``), then wait while ``paused``."""
        if isinstance(message, str):
            sent = self.write(message.encode(), text is not False)
        else:
            sent = self.write(bytes(message), bool(text))
        if not sent:
            raise ConnectionError("connection closed", self.close_code)
        drained = self.drain()
        if drained is not None:
            await drained

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close with ``code`` and ``reason`` and wait until the connection is closed."""
        self.close_soon(code, reason)
        await self.closed_future()

    async def wait_closed(self) -> None:
        """Wait until the connection is closed."""
        await self.closed_future()


@mypyc_attr(allow_interpreted_subclasses=True)
class Gate:
    """The server's side of every handshake, asked by the front-ends."""

    def admit(self, request: HandshakeRequest, upgrade: bool, key: object, peer: Any) -> Reply | None:
        """``None`` to upgrade ``request``, else the HTTP reply to send (health, routes, refusals).

        ``key`` identifies the TCP connection (``release(key)`` frees what
        admitting it reserved); ``peer`` is its socket address, ``None`` where
        the front-end cannot tell it during the handshake.
        """
        raise NotImplementedError

    def release(self, key: object) -> None:
        """The TCP connection ``key`` is gone (idempotent)."""
        raise NotImplementedError

    def opened(self, link: Link, key: object) -> None:
        """The handshake of connection ``key`` completed: serve ``link``."""
        raise NotImplementedError


class Listener:
    """A front-end's listening server: ``sockets``, stop accepting, drop unfinished handshakes."""

    def __init__(self, server: asyncio.AbstractServer, abort_handshakes: Callable[[], None]) -> None:
        self.server = server
        self.abort_handshakes = abort_handshakes

    @property
    def sockets(self) -> Any:
        """The listening sockets."""
        return getattr(self.server, "sockets", ())

    def close(self) -> None:
        """Stop accepting connections (open ones are not touched)."""
        self.server.close()

    async def wait_closed(self) -> None:
        """Wait until the listening sockets are closed."""
        await self.server.wait_closed()
