"""``WebSocket``: the per-connection object handlers receive."""

from __future__ import annotations

from collections.abc import Coroutine, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
from pydantic import BaseModel

from .exceptions import ConnectionError, InvalidJSONError
from .transport import CLOSED, OPEN, Connection, send_text

__all__ = ["WebSocket", "decode_json", "encode_json"]


def _encode_default(value: object) -> object:
    if isinstance(value, BaseModel):
        return value.model_dump()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def encode_json(data: object) -> bytes:
    """Encode ``data`` with orjson; pydantic models are dumped first."""
    return orjson.dumps(data, default=_encode_default)


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
    """

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self.context: dict[str, Any] = {}
        self.message_size = 0
        self.connect_passes = 0
        self._query_params: dict[str, str] | None = None

    @property
    def connection(self) -> Connection:
        """The underlying transport connection (a ``websockets`` ``ServerConnection`` by default)."""
        return self._connection

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
        """The client's IP address (from the socket)."""
        address = self._connection.remote_address
        if isinstance(address, tuple) and address:
            return str(address[0])
        return str(address)

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
        await, which raises ``aiows.exceptions.ConnectionError`` if the
        connection is closed.
        """
        return send_text(self, encode_json(data))

    def send_message(self, message: BaseModel) -> Coroutine[Any, Any, None]:
        """Send a pydantic model (a ``BaseMessage``) as one JSON frame: ``await websocket.send_message(m)``."""
        return send_text(self, encode_json(message))

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
        """Close the connection with ``code`` and ``reason`` and wait for the closing handshake."""
        await self._connection.close(code, reason)
