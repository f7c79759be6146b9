"""What aiows needs from a WebSocket connection, whichever library serves it.

``websockets`` serves by default; ``picows.websockets`` offers the same
asyncio API. Both fit the ``Connection`` protocol below, so the compiled core
never names one library's classes or exceptions.
"""

from __future__ import annotations

from collections.abc import Mapping
import asyncio
from typing import TYPE_CHECKING, Any, Protocol

from .exceptions import ConnectionError

if TYPE_CHECKING:
    from .websocket import WebSocket

__all__ = ["Connection", "RequestLike", "abort", "send_frame"]

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
    try:
        if websocket.send_timeout is None:
            await websocket.connection.send(payload, text=text)
        else:
            await asyncio.wait_for(websocket.connection.send(payload, text=text), websocket.send_timeout)
    except asyncio.TimeoutError:
        websocket.close_soon(1013, "send timeout")
        raise ConnectionError("send timed out: the client is not reading", 1013) from None
    except Exception:
        if websocket.closed:
            raise ConnectionError("connection closed", websocket.close_code) from None
        raise
