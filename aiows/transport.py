"""What aiows needs from a WebSocket connection, whichever library serves it.

``websockets`` serves by default; ``transport="picows"`` serves with
picows' native API through ``aiows.picows_transport``, whose connection
offers the same asyncio API. Both fit the ``Connection`` protocol below (and
both offer a ``fastpath.CorkedLink``), so the compiled core never names one
library's classes or exceptions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Callable, Protocol

from websockets.asyncio.server import serve

from .exceptions import ConnectionError
from .fastpath import CorkedLink, DirectLink

if TYPE_CHECKING:
    from .websocket import WebSocket

__all__ = [
    "TRANSPORTS",
    "Connection",
    "RequestLike",
    "abort",
    "direct_link",
    "handshake_address",
    "send_frame",
    "serve_function",
    "transport_options",
]

#: ``connection.state`` value of an open connection (an ``IntEnum`` in both libraries).
OPEN = 1

#: ``connection.state`` value of a closed connection.
CLOSED = 3


class RequestLike(Protocol):
    """The HTTP request that opened a connection."""

    @property
    def path(self) -> str: ...

    @property
    def headers(self) -> Mapping[str, str]: ...


class Connection(Protocol):
    """A server-side WebSocket connection, as ``websockets.asyncio`` defines it."""

    @property
    def request(self) -> RequestLike | None: ...

    @property
    def remote_address(self) -> Any: ...

    @property
    def state(self) -> int: ...

    @property
    def close_code(self) -> int | None: ...

    @property
    def close_reason(self) -> str | None: ...

    async def recv(self, decode: bool | None = None) -> str | bytes: ...

    async def send(self, message: str | bytes, *, text: bool | None = None) -> None: ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...

    async def wait_closed(self) -> None: ...


def direct_link(connection: object) -> CorkedLink | None:
    """The direct read/write path of ``connection``, or ``None`` where it has none (use ``recv()`` / ``send()``)."""
    if isinstance(connection, CorkedLink):
        return connection  # transport="picows": the connection is its own link
    return DirectLink.attach(connection)


def handshake_address(connection: object) -> Any:
    """The peer's socket address during the handshake, or ``None`` where the transport hides it (picows)."""
    return getattr(connection, "remote_address", None)


def abort(connection: object) -> None:
    """Drop the TCP connection at once, without a closing handshake."""
    transport: Any = getattr(connection, "transport", None)
    if hasattr(transport, "abort"):  # websockets: an asyncio transport
        transport.abort()
    elif hasattr(transport, "disconnect"):  # picows
        transport.disconnect(graceful=False)


async def send_frame(websocket: WebSocket, payload: str | bytes, text: bool) -> None:
    """Send ``payload`` as one text (``text=True``) or binary frame on ``websocket``'s connection.

    Waits while the client is slow to read; with the server's ``send_timeout``
    it gives up after that many seconds and closes the connection with 1013.
    A send that fails because the connection is closed raises
    ``aiows.exceptions.ConnectionError``. This module is interpreted on
    purpose: the handler that awaits this coroutine and the transport's
    ``send`` it awaits are interpreted too, so no await crosses into compiled
    code and back (each crossing costs about 50 ns, measured).
    """
    connection: Any = websocket.connection
    try:
        link = websocket.link
        if link is not None and link.write(payload, text):
            if not connection.paused:
                return
            sending = connection.drain()  # written: wait until the client reads enough of it
        else:
            sending = connection.send(payload, text=text)
        if websocket.send_timeout is None:
            await sending
        else:
            await asyncio.wait_for(sending, websocket.send_timeout)
    except asyncio.TimeoutError:
        websocket.close_soon(1013, "send timeout")
        raise ConnectionError("send timed out: the client is not reading", 1013) from None
    except Exception:
        if websocket.closed:
            raise ConnectionError("connection closed", websocket.close_code) from None
        raise


#: The ``transport=`` choices: the library whose asyncio ``serve()`` runs the server.
TRANSPORTS = ("websockets", "picows")

def serve_function(transport: str) -> Callable[..., Any]:
    """The ``serve()`` of ``transport``; a clear ``ImportError`` if its extra is not installed."""
    if transport == "picows":
        try:
            import picows  # type: ignore[import-not-found,unused-ignore]  # noqa: F401

            from .picows_transport import serve as picows_serve
        except ImportError as exc:
            raise ImportError(
                'transport="picows" needs the picows package: pip install "aiows[fast]"'
            ) from exc
        picows_function: Callable[..., Any] = picows_serve
        return picows_function
    return serve


#: picows starts each connection with a 16 KiB read buffer (it grows on demand);
#: 2 KiB brings an idle connection's memory to about websockets' level.
PICOWS_READ_BUFFER = 2048


def transport_options(transport: str) -> dict[str, Any]:
    """Options only one transport's ``serve()`` takes."""
    return {"read_buffer_init_size": PICOWS_READ_BUFFER} if transport == "picows" else {}
