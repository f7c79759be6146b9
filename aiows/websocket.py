"""``WebSocket``: the per-connection object handlers receive."""

from __future__ import annotations

from collections.abc import Coroutine, Mapping
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl, urlsplit

import orjson
from pydantic import BaseModel

from .codecs import JSON, Codec
from .exceptions import ConnectionError, InvalidJSONError
from .pending import DEFAULT_MAX_PENDING_REQUESTS, PendingRequests
from .sending import send_frame
from .transports.base import CLOSED, OPEN, Link

if TYPE_CHECKING:
    from .server import WebSocketServer

__all__ = ["WebSocket", "peer_ip", "take_deferred"]


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
        link: Link,
        client_ip: str | None = None,
        send_timeout: float | None = None,
        close_timeout: float | None = 10.0,
        server: WebSocketServer | None = None,
        codec: Codec = JSON,
    ) -> None:
        #: The connection as aiows' transport layer carries it (``aiows.transports.base.Link``).
        self.link = link
        #: The wire format of this connection's messages (``aiows.codecs``), negotiated by subprotocol.
        self.codec = codec
        self.context: dict[str, Any] = {}
        self.message_size = 0
        self.connect_passes = 0
        self.busy = False
        self.send_timeout = send_timeout
        self.close_timeout = close_timeout
        self._client_ip = client_ip
        self._server = server
        #: The rooms joined (``None`` until the first: most connections join none, and a set costs 216 bytes).
        self._rooms: set[str] | None = None
        #: The server's requests waiting for this client's replies (``None`` until the first ``request()``).
        self._pending: PendingRequests | None = None
        #: Messages with a ``"ref"`` being handled (the dispatcher counts them; see ``aiows.chain``).
        self.answering = 0
        #: Messages the dispatcher took from the link ahead of their turn, to find a reply behind them (in order).
        self._deferred: list[tuple[bool, bytes]] | None = None
        #: Whether ``receive_json()`` waits for the next message.
        self.receiving = False

    @property
    def connection(self) -> Link:
        """The underlying connection, with the ``websockets``-style ``recv``/``send``/``close``/``wait_closed``.

        It is aiows' own on both transports (``aiows.transports.core.SocketLink``).
        """
        return self.link

    @property
    def server(self) -> WebSocketServer:
        """The ``WebSocketServer`` serving this connection (for ``broadcast()`` and ``room_members()``)."""
        if self._server is None:
            raise RuntimeError("this connection is not served by a WebSocketServer")
        return self._server

    @property
    def rooms(self) -> frozenset[str]:
        """The rooms this connection is in."""
        return frozenset(self._rooms) if self._rooms is not None else frozenset()

    async def join(self, room: str, offset: int | None = None, epoch: str | None = None) -> bool:
        """Join ``room``: ``server.broadcast(data, room=room)`` now reaches this connection.

        With ``offset`` and ``epoch`` (the last position this client saw in the
        room, from the ``"offset"`` and ``"epoch"`` of its publications, or
        from ``server.room_position()``), it also recovers what it missed:
        every publication of the room after ``offset`` is sent to this
        connection, in order, before any live one, with no gap and no
        duplicate. Returns ``True`` when all of them were sent; ``False`` when
        that cannot be done (the epoch changed, the history no longer reaches
        back that far, the backend keeps no history, or the connection is in
        the room already): then nothing is replayed, and the app sends its own
        snapshot. Without ``offset`` it returns ``True``.
        """
        return await self.server.hub.join(self, room, offset, epoch)

    async def leave(self, room: str) -> None:
        """Leave ``room`` (connections leave all their rooms when they disconnect)."""
        await self.server.hub.leave(self, room)

    @property
    def path(self) -> str:
        """The request path, without the query string (``"/chat"``)."""
        return urlsplit(self.link.request.path).path

    @property
    def query_params(self) -> dict[str, str]:
        """The request's query parameters (the last value wins for repeated names), decoded on each access."""
        return dict(parse_qsl(urlsplit(self.link.request.path).query))

    @property
    def headers(self) -> Mapping[str, str]:
        """The request's HTTP headers (case-insensitive names), parsed on each access."""
        return self.link.request.headers

    @property
    def remote_address(self) -> Any:
        """The peer's address, as the socket reports it (``(host, port)`` for IP)."""
        return self.link.remote_address

    @property
    def client_ip(self) -> str:
        """The client's IP address: the socket's, or the one a trusted proxy forwarded."""
        if self._client_ip is None:
            self._client_ip = peer_ip(self.link.remote_address)
        return self._client_ip

    @property
    def closed(self) -> bool:
        """``True`` once the connection is closing or closed."""
        return self.link.state != OPEN

    @property
    def close_code(self) -> int | None:
        """The peer's close code, once the connection is closed (1006 when the peer sent none)."""
        code = self.link.close_code
        if code is None and self.link.state == CLOSED:
            return 1006
        return code

    @property
    def close_reason(self) -> str | None:
        """The peer's close reason, once its close frame arrived."""
        return self.link.close_reason

    def send_json(self, data: object) -> Coroutine[Any, Any, None]:
        """Send ``data`` as one message (dicts, lists, models, datetimes...) in the connection's codec.

        A JSON text frame by default; a binary MessagePack frame on a
        connection that negotiated ``aiows.msgpack`` (see ``aiows.codecs``).
        Use it as ``await websocket.send_json(data)``: ``data`` is encoded by the
        call (a ``TypeError`` for what the codec cannot hold), the frame is sent by the
        await. It waits while the client is slow to read (with the server's
        ``send_timeout``, the connection is closed with 1013 once that expires)
        and raises ``aiows.exceptions.ConnectionError`` if the connection is closed.
        """
        codec = self.codec
        return send_frame(self, codec.encode(data), codec.text)

    def send_text(self, text: str) -> Coroutine[Any, Any, None]:
        """Send one text frame as is: ``await websocket.send_text(text)``."""
        return send_frame(self, text.encode(), True)

    def send_bytes(self, data: bytes) -> Coroutine[Any, Any, None]:
        """Send one binary frame: ``await websocket.send_bytes(data)``."""
        return send_frame(self, bytes(data), False)

    def request(self, payload: object, timeout: float = 5.0) -> Coroutine[Any, Any, Any]:
        """Send ``payload`` (a dict or a model) with a ``"ref"`` and return the ``data`` of the client's reply.

        Use it as ``data = await websocket.request({"type": "confirm"}, timeout=5.0)``:
        the client answers with ``{"type": "reply", "ref": REF, "data": ...}``
        (``REF`` as received). Raises ``aiows.exceptions.RequestTimeout`` (an
        ``asyncio.TimeoutError``) after ``timeout`` seconds,
        ``aiows.exceptions.ConnectionError`` if the connection closes first,
        and ``TooManyPendingRequests`` at once when the server's
        ``max_pending_requests`` (64) requests wait already on this connection.
        """
        pending = self._pending
        if pending is None:
            server = self._server
            limit = server.options.max_pending_requests if server is not None else DEFAULT_MAX_PENDING_REQUESTS
            pending = self._pending = PendingRequests(limit)
        return pending.request(self, payload, timeout)

    def send_message(self, message: BaseModel) -> Coroutine[Any, Any, None]:
        """Send a pydantic model (a ``BaseMessage``) as one message in the connection's codec (as ``send_json``):
        ``await websocket.send_message(m)``."""
        codec = self.codec
        return send_frame(self, codec.encode(message), codec.text)

    async def receive_json(self) -> Any:
        """Wait for the client's next frame and return it decoded (by the connection's codec).

        Raises ``InvalidJSONError`` for a frame the codec cannot decode and
        ``aiows.exceptions.ConnectionError`` once the connection is closed.
        A reply to one of the server's ``request()`` calls goes to that call,
        not here.
        """
        link = self.link
        while True:
            if self._deferred is not None:
                text, raw = take_deferred(self)
            else:
                self.receiving = True
                try:
                    text, raw = await link.receive()
                except ConnectionError:
                    raise ConnectionError("connection closed", self.close_code) from None
                finally:
                    self.receiving = False
            self.message_size = len(raw)
            codec = self.codec
            try:
                data = codec.decode_frame(raw, text)
            except ValueError as exc:
                if text:
                    try:
                        raw.decode()
                    except UnicodeDecodeError:
                        link.fail(1007, "invalid UTF-8")
                        raise ConnectionError("connection closed: invalid UTF-8", 1007) from None
                detail = exc.msg if isinstance(exc, orjson.JSONDecodeError) else str(exc)
                raise InvalidJSONError(f"invalid {codec.label}: {detail}") from None
            pending = self._pending
            if (
                pending is not None
                and type(data) is dict
                and data.get("type") == "reply"
                and pending.resolve(data.get("ref"), data.get("data"))
            ):
                continue  # the answer to a request() of the server
            return data

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection with ``code`` and ``reason`` and wait for the closing handshake.

        A client that does not complete it within the server's ``close_timeout``
        (for example one that stopped reading) is disconnected.
        """
        self.link.close_soon(code, reason)
        await self.link.closed_future()

    def close_soon(self, code: int = 1000, reason: str = "") -> None:
        """Start closing the connection (as ``close()``) without waiting for it."""
        self.link.close_soon(code, reason)


def take_deferred(websocket: WebSocket) -> tuple[bool, bytes]:
    """The oldest message the dispatcher took ahead of its turn (``websocket._deferred`` must hold one)."""
    deferred = websocket._deferred
    assert deferred is not None
    item = deferred.pop(0)
    if not deferred:
        websocket._deferred = None
    return item


def peer_ip(address: Any) -> str:
    """The IP address part of a socket address."""
    if isinstance(address, tuple) and address:
        return str(address[0])
    return str(address)
