"""``WebSocket``: the per-connection object handlers receive."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Mapping
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl, urlsplit

import orjson
from pydantic import BaseModel

from .exceptions import ConnectionError, InvalidJSONError
from .fastpath import CorkedLink
from .transport import CLOSED, OPEN, Connection, abort, direct_link, send_frame

if TYPE_CHECKING:
    from .server import WebSocketServer

__all__ = ["WebSocket", "decode_json", "encode_json", "peer_ip"]


#: ``orjson.dumps``, bound once: compiled code would look the module attribute up on every message.
_dumps: Final = orjson.dumps


def _encode_default(value: object) -> object:
    if isinstance(value, BaseModel):
        return value.model_dump()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def encode_json(data: object) -> bytes:
    """Encode ``data`` with orjson; pydantic models are dumped first."""
    return _dumps(data, default=_encode_default)


def decode_json(raw: bytes | str) -> Any:
    """Decode one JSON document; raise ``InvalidJSONError`` if it is not valid."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidJSONError(f"invalid JSON: {exc.msg}") from None


class WebSocket:
    """One client connection, as handlers and middleware see it.

    ``context`` is a dict private to this connection: middleware and handlers
    store per-connection data in it (``AuthMiddleware`` sets ``user_id``).
    ``message_size`` is the size in bytes of the frame being handled.
    ``server`` is the ``WebSocketServer`` serving it: handlers broadcast with
    ``await websocket.server.broadcast(...)``.
    """

    def __init__(
        self,
        connection: Connection,
        client_ip: str | None = None,
        send_timeout: float | None = None,
        close_timeout: float | None = 10.0,
        server: WebSocketServer | None = None,
    ) -> None:
        self._connection = connection
        #: Reads and writes the connection directly when nothing must wait (``None``: the transport has no such path).
        self.link: CorkedLink | None = direct_link(connection)
        self.context: dict[str, Any] = {}
        self.message_size = 0
        self.connect_passes = 0
        self.busy = False
        self.send_timeout = send_timeout
        self.close_timeout = close_timeout
        self._client_ip = client_ip
        self._query_params: dict[str, str] | None = None
        self._closing: asyncio.Task[None] | None = None
        self._server = server
        self._rooms: set[str] = set()

    @property
    def connection(self) -> Connection:
        """The underlying transport connection (a ``websockets`` ``ServerConnection`` by default)."""
        return self._connection

    @property
    def server(self) -> WebSocketServer:
        """The ``WebSocketServer`` serving this connection (for ``broadcast()`` and ``room_members()``)."""
        if self._server is None:
            raise RuntimeError("this connection is not served by a WebSocketServer")
        return self._server

    @property
    def rooms(self) -> frozenset[str]:
        """The rooms this connection is in."""
        return frozenset(self._rooms)

    async def join(self, room: str) -> None:
        """Join ``room``: ``server.broadcast(data, room=room)`` now reaches this connection."""
        await self.server.hub.join(self, room)

    async def leave(self, room: str) -> None:
        """Leave ``room`` (connections leave all their rooms when they disconnect)."""
        await self.server.hub.leave(self, room)

    @property
    def path(self) -> str:
        """The request path, without the query string (``"/chat"``)."""
        request = self._connection.request
        return urlsplit(request.path).path if request is not None else "/"

    @property
    def query_params(self) -> dict[str, str]:
        """The request's query parameters (the last value wins for repeated names)."""
        if self._query_params is None:
            request = self._connection.request
            query = urlsplit(request.path).query if request is not None else ""
            self._query_params = dict(parse_qsl(query))
        return self._query_params

    @property
    def headers(self) -> Mapping[str, str]:
        """The request's HTTP headers (case-insensitive names)."""
        request = self._connection.request
        return request.headers if request is not None else {}

    @property
    def remote_address(self) -> Any:
        """The peer's address, as the socket reports it (``(host, port)`` for IP)."""
        return self._connection.remote_address

    @property
    def client_ip(self) -> str:
        """The client's IP address: the socket's, or the one a trusted proxy forwarded."""
        if self._client_ip is None:
            self._client_ip = peer_ip(self._connection.remote_address)
        return self._client_ip

    @property
    def closed(self) -> bool:
        """``True`` once the connection is closing or closed."""
        return self._connection.state != OPEN

    @property
    def close_code(self) -> int | None:
        """The close code, once the connection is closed (1006 when the peer vanished)."""
        code = self._connection.close_code
        if code is None and self._connection.state == CLOSED:
            return 1006  # websockets reports 1006 itself; picows leaves it None
        return code

    @property
    def close_reason(self) -> str | None:
        """The peer's close reason, once the connection is closed."""
        return self._connection.close_reason

    def send_json(self, data: object) -> Coroutine[Any, Any, None]:
        """Send ``data`` as one JSON text frame (dicts, lists, models, datetimes...).

        Use it as ``await websocket.send_json(data)``: ``data`` is encoded by the
        call (a ``TypeError`` for what JSON cannot hold), the frame is sent by the
        await. It waits while the client is slow to read (with the server's
        ``send_timeout``, the connection is closed with 1013 once that expires)
        and raises ``aiows.exceptions.ConnectionError`` if the connection is closed.
        """
        return send_frame(self, encode_json(data), True)

    def send_text(self, text: str) -> Coroutine[Any, Any, None]:
        """Send one text frame as is: ``await websocket.send_text(text)``."""
        return send_frame(self, text, True)

    def send_bytes(self, data: bytes) -> Coroutine[Any, Any, None]:
        """Send one binary frame: ``await websocket.send_bytes(data)``."""
        return send_frame(self, data, False)

    def send_message(self, message: BaseModel) -> Coroutine[Any, Any, None]:
        """Send a pydantic model (a ``BaseMessage``) as one JSON frame: ``await websocket.send_message(m)``."""
        return send_frame(self, encode_json(message), True)

    async def receive_json(self) -> Any:
        """Wait for the client's next frame and return it decoded.

        Raises ``InvalidJSONError`` for a frame that is not JSON and
        ``aiows.exceptions.ConnectionError`` once the connection is closed.
        """
        try:
            raw = await self._connection.recv(decode=False)
        except Exception:
            if self.closed:
                raise ConnectionError("connection closed", self.close_code) from None
            raise
        self.message_size = len(raw)
        return decode_json(raw)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection with ``code`` and ``reason`` and wait for the closing handshake.

        A client that does not complete it within the server's ``close_timeout``
        (for example one that stopped reading) is disconnected.
        """
        try:
            if self.close_timeout is None:
                await self._connection.close(code, reason)
            else:
                await asyncio.wait_for(self._connection.close(code, reason), self.close_timeout)
        except asyncio.TimeoutError:
            abort(self._connection)

    def close_soon(self, code: int = 1000, reason: str = "") -> None:
        """Start closing the connection (as ``close()``) without waiting for it."""
        if self._closing is None:
            self._closing = asyncio.ensure_future(self.close(code, reason))


def peer_ip(address: Any) -> str:
    """The IP address part of a socket address."""
    if isinstance(address, tuple) and address:
        return str(address[0])
    return str(address)
