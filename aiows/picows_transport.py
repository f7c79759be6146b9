"""``transport="picows"``: picows' own callback API, with aiows' direct read path and corked writes.

``picows.websockets`` (picows' copy of the ``websockets`` asyncio API) hides
its receive queue and its transport, and writes every frame with its own
``send()`` system call. On loopback those system calls cost more than the
whole aiows pipeline, so this module serves connections with picows' native
API instead (``picows.ws_create_server`` and a ``WSListener``):
``PicowsConnection`` fits the ``Connection`` protocol of ``aiows.transport``
and offers the same direct read/write surface as ``aiows.fastpath.DirectLink``
(``take`` / ``received`` / ``write`` / ``flush`` / ``held`` / ``corked``), so
the dispatcher needs no picows-specific code.

Corking works as on ``websockets``: while the message being handled has more
already queued behind it, reply frames are held and written in one socket
write when the last of them is handled, or at the latest on the event loop's
next turn (a handler that awaits something does not hold back what was
written before), at most ``MAX_CORKED`` frames at a time. Held frames are
written before any close frame.

The handshake reuses ``picows.websockets``' pieces (``Request``,
``Response``, ``ServerHandshakeConnection``, its ``Server`` bookkeeping and
permessage-deflate codec), so ``process_request`` / ``process_response``
hooks, origins, the 503 while shutting down and compression behave as they
did with ``picows.websockets.asyncio.server.serve``.
"""

from __future__ import annotations

import asyncio
import http
import logging
import os
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from time import monotonic
from typing import Any

import picows  # type: ignore[import-not-found,unused-ignore]
from multidict import CIMultiDict  # type: ignore[import-not-found,unused-ignore]  # a picows dependency
from picows import (  # type: ignore[import-not-found,unused-ignore]
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSProtocolError,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
)
from picows.websockets.asyncio.negotiation import configure_permessage_deflate  # type: ignore[import-not-found,unused-ignore]
from picows.websockets.asyncio.server import Server, ServerHandshakeConnection  # type: ignore[import-not-found,unused-ignore]
from picows.websockets.asyncio.utils import default_server_header  # type: ignore[import-not-found,unused-ignore]
from picows.websockets.compat import Request, Response  # type: ignore[import-not-found,unused-ignore]
from picows.websockets.exceptions import (  # type: ignore[import-not-found,unused-ignore]
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
)

from .fastpath import CorkedLink

__all__ = ["PicowsConnection", "serve"]

#: ``state`` values, as ``websockets`` numbers them.
CONNECTING, OPEN, CLOSING, CLOSED = 0, 1, 2, 3

_TEXT = WSMsgType.TEXT
_BINARY = WSMsgType.BINARY
_CONTINUATION = WSMsgType.CONTINUATION
_PONG = WSMsgType.PONG
_CLOSE = WSMsgType.CLOSE
_OK_CODES = (None, 0, 1000, 1001)


def frame_header(first: int, size: int) -> bytes:
    """The header of an unmasked (server) frame: ``first`` is FIN + RSV + opcode, ``size`` the payload's."""
    if size < 126:
        return bytes((first, size))
    if size < 65536:
        return bytes((first, 126)) + size.to_bytes(2, "big")
    return bytes((first, 127)) + size.to_bytes(8, "big")


class PicowsConnection(WSListener, CorkedLink):  # type: ignore[misc,unused-ignore]
    """One server-side connection on picows, with the ``websockets`` asyncio connection API aiows uses.

    Messages are queued whole (fragments joined, compression undone) as they
    arrive; ``recv()`` waits for the next, ``take()`` returns it at once if it
    is there. ``write()`` frames a reply and writes it now, or holds it while
    ``corked``; ``send()`` writes and then waits while the client is slow to
    read (``paused``).
    """

    __slots__ = (
        "_request", "close_timeout", "closed_exc", "corked", "deflate", "drained", "fragments",
        "fragments_size", "fragments_text", "held", "keepalive", "latency", "loop", "max_message_size",
        "paused", "pending", "ping_interval", "ping_timeout", "pings", "queue", "queue_high", "queue_low",
        "reading_paused", "response", "server", "socket_transport", "transport", "waiter", "write_limit",
    )

    def __init__(
        self,
        server: Any,
        request: Any,
        response: Any,
        *,
        deflate: Any,
        ping_interval: float | None,
        ping_timeout: float | None,
        close_timeout: float | None,
        max_queue: int | None,
        max_message_size: int | None,
        write_limit: int,
    ) -> None:
        super().__init__()
        self.server = server
        self._request = request
        self.response = response
        self.deflate = deflate
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.close_timeout = close_timeout
        self.max_message_size = max_message_size or 0
        self.queue_high = max_queue or 0
        self.queue_low = self.queue_high // 4
        self.write_limit = write_limit
        self.loop = asyncio.get_running_loop()
        self.transport: Any = None
        self.socket_transport: Any = None
        #: Whole messages received and not yet taken: ``(is_text, payload)``.
        self.queue: deque[tuple[bool, bytes]] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.reading_paused = False
        self.fragments: list[bytes] | None = None
        self.fragments_text = False
        self.fragments_size = 0
        #: Set while the client reads too slowly (the socket's write buffer is above its high-water mark).
        self.paused = False
        self.drained: asyncio.Future[None] | None = None
        self.closed_exc: ConnectionClosed | None = None
        self.pings: dict[bytes, tuple[asyncio.Future[float], float]] = {}
        self.keepalive: asyncio.Task[None] | None = None
        self.latency = 0.0
        #: Set by the receive loop while more messages are queued behind the one being handled.
        self.corked = False
        self.held = 0  # frames in ``pending``, not yet written to the socket
        self.pending: list[bytes] = []

    # picows callbacks

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.socket_transport = transport.underlying_transport
        self.socket_transport.set_write_buffer_limits(high=self.write_limit)
        if self.ping_interval is not None:
            self.keepalive = self.loop.create_task(self._keep_alive(self.ping_interval))
        self.loop.call_soon(self.server.start_connection_handler, self)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        msg_type = frame.msg_type
        if (msg_type is _TEXT or msg_type is _BINARY) and frame.fin and self.fragments is None and self.deflate is None:
            payload = frame.get_payload_as_bytes()
            if frame.rsv1:
                self._fail(WSCloseCode.PROTOCOL_ERROR, "compressed frame without negotiated permessage-deflate")
            if self.max_message_size and len(payload) > self.max_message_size:
                self._fail(WSCloseCode.MESSAGE_TOO_BIG, "message too big")
            self._enqueue(msg_type is _TEXT, payload)
        elif msg_type is _TEXT or msg_type is _BINARY or msg_type is _CONTINUATION:
            self._fragment(frame, msg_type)
        elif msg_type is _PONG:
            ping = self.pings.pop(frame.get_payload_as_bytes(), None)
            if ping is not None:
                waiter, sent_at = ping
                self.latency = monotonic() - sent_at
                if not waiter.done():
                    waiter.set_result(self.latency)
        elif msg_type is _CLOSE:
            self.flush()
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()
        else:
            self._fail(WSCloseCode.PROTOCOL_ERROR, "unsupported frame opcode")

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.pending.clear()
        self.held = 0
        handshake: Any = transport.close_handshake  # None when the peer vanished without a close frame
        if handshake is None:
            exc: ConnectionClosed = ConnectionClosedError(None, None, None)
        else:
            received, sent = handshake.recv, handshake.sent
            ok = (received is None or received.code in _OK_CODES) and (sent is None or sent.code in _OK_CODES)
            exc = (ConnectionClosedOK if ok else ConnectionClosedError)(received, sent, handshake.recv_then_sent)
        self.closed_exc = exc
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)  # recv() raises closed_exc
        if self.keepalive is not None:
            self.keepalive.cancel()
            self.keepalive = None
        self.resume_writing()
        for waiter, _ in self.pings.values():
            if not waiter.done():
                waiter.set_exception(exc)
        self.pings.clear()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        drained = self.drained
        if drained is not None:
            self.drained = None
            if not drained.done():
                drained.set_result(None)

    # receiving

    def _enqueue(self, text: bool, payload: bytes) -> None:
        queue = self.queue
        queue.append((text, payload))
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)
        if self.queue_high and not self.reading_paused and len(queue) >= self.queue_high:
            self.socket_transport.pause_reading()
            self.reading_paused = True

    def _fragment(self, frame: WSFrame, msg_type: Any) -> None:
        """A frame of a fragmented or compressed message: join, inflate, check the size."""
        continuation = msg_type is _CONTINUATION
        if continuation != (self.fragments is not None):
            self._fail(
                WSCloseCode.PROTOCOL_ERROR,
                "unexpected continuation frame" if continuation else "expected continuation frame",
            )
        if self.deflate is not None:
            remaining = max(self.max_message_size - self.fragments_size, 0) if self.max_message_size else 0
            payload = self.deflate.decode_frame(frame, remaining)
        elif frame.rsv1:
            self._fail(WSCloseCode.PROTOCOL_ERROR, "compressed frame without negotiated permessage-deflate")
        else:
            payload = frame.get_payload_as_bytes()
        if self.fragments is None:
            self.fragments = []
            self.fragments_text = msg_type is _TEXT
            self.fragments_size = 0
        self.fragments.append(payload)
        self.fragments_size += len(payload)
        if self.max_message_size and self.fragments_size > self.max_message_size:
            self._fail(WSCloseCode.MESSAGE_TOO_BIG, "message too big")
        if frame.fin:
            fragments = self.fragments
            self.fragments = None
            self._enqueue(self.fragments_text, fragments[0] if len(fragments) == 1 else b"".join(fragments))

    def _fail(self, code: Any, reason: str) -> None:
        """Close with ``code`` (picows sends the close frame and disconnects); replies held go out first."""
        self.flush()
        raise WSProtocolError(code, reason)

    def _message(self, text: bool, payload: bytes, decode: bool | None) -> bytes | str:
        if decode or (decode is None and text):
            try:
                return payload.decode()
            except UnicodeDecodeError as exc:
                self.queue.clear()
                self.flush()
                self.transport.send_close(WSCloseCode.INVALID_TEXT, f"{exc.reason} at position {exc.start}")
                self.transport.disconnect(False)
                raise
        return payload

    def _taken(self) -> None:
        queue = self.queue
        if self.reading_paused and len(queue) <= self.queue_low:
            self.socket_transport.resume_reading()
            self.reading_paused = False
        self.corked = len(queue) > 0

    def take(self, decode: bool | None) -> bytes | str | None:
        """The next message if it has arrived already, as ``recv(decode)`` would return it; else ``None``.

        Sets ``corked`` when more messages are queued behind the one taken.
        """
        queue = self.queue
        if not queue or self.waiter is not None:
            return None
        text, payload = queue.popleft()
        self._taken()
        if decode or (decode is None and text):
            try:
                return self._message(text, payload, decode)
            except UnicodeDecodeError:
                return None  # the connection is closing with 1007: recv() reports it
        return payload

    async def recv(self, decode: bool | None = None) -> bytes | str:
        """The next message (``str`` for text frames unless ``decode`` says otherwise)."""
        queue = self.queue
        while not queue:
            if self.waiter is not None:
                raise ConcurrencyError("cannot call recv() concurrently")
            if self.closed_exc is not None:
                raise self.closed_exc
            waiter = self.waiter = self.loop.create_future()
            try:
                await waiter
            finally:
                if self.waiter is waiter:
                    self.waiter = None
        text, payload = queue.popleft()
        self._taken()
        try:
            return self._message(text, payload, decode)
        except UnicodeDecodeError as exc:
            await self.wait_closed()
            assert self.closed_exc is not None
            raise self.closed_exc from exc

    # sending

    def write(self, payload: str | bytes, text: bool) -> bool:
        """Write one frame, or hold it while ``corked``; ``False`` if the connection is not open.

        The caller still waits for ``drain()`` when ``paused`` says the client
        is slow to read.
        """
        transport = self.transport
        if transport is None or transport.is_close_frame_sent or transport.is_disconnected:
            return False
        data: bytes = payload.encode() if isinstance(payload, str) else payload
        first = 0x81 if text else 0x82
        if self.deflate is not None:
            data = bytes(self.deflate.encode_frame(_TEXT if text else _BINARY, data, True))
            first |= 0x40
        held = self.hold()
        if held or self.held:  # held, or others are: it goes out behind them, in one write
            self.pending += (frame_header(first, len(data)), data)
            if not held:
                self.flush()
        else:
            transport.send(_TEXT if text else _BINARY, data, True, first & 0x40 != 0)
        return True

    def flush(self) -> None:
        """Hand every frame held so far to the socket, in one write."""
        if not self.held:
            return
        self.held = 0
        pending = self.pending
        data = b"".join(pending)
        pending.clear()
        transport = self.transport
        if not (transport.is_close_frame_sent or transport.is_disconnected):
            self.socket_transport.write(data)

    async def drain(self) -> None:
        """Wait until the client has read enough of what was written (``paused`` is unset)."""
        while self.paused:
            if self.drained is None:
                self.drained = self.loop.create_future()
            await asyncio.shield(self.drained)
        if self.closed_exc is not None:
            raise self.closed_exc

    async def send(self, message: str | bytes, *, text: bool | None = None) -> None:
        """Send ``message`` as one frame (text for ``str`` unless ``text=False``), then wait while ``paused``."""
        if isinstance(message, str):
            is_text = text is not False
        elif isinstance(message, (bytes, bytearray, memoryview)):
            is_text = bool(text)
            message = bytes(message)
        else:
            raise TypeError(f"message has unsupported type {type(message).__name__}")
        if not self.write(message, is_text):
            await self.wait_closed()
            raise self.closed_exc or ConnectionClosedError(None, None, None)
        if self.paused:
            await self.drain()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Send a close frame (after the replies held) and wait until the connection is closed."""
        transport = self.transport
        self.flush()
        if not transport.is_disconnected:
            transport.send_close(WSCloseCode(code), reason.encode())
        try:
            if self.close_timeout is None:
                await self.wait_closed()
            else:
                await asyncio.wait_for(self.wait_closed(), self.close_timeout)
        except asyncio.TimeoutError:
            transport.disconnect(False)
            await self.wait_closed()

    async def wait_closed(self) -> None:
        """Wait until the TCP connection is closed."""
        try:
            await self.transport.wait_disconnected()
        except Exception:
            pass

    async def ping(self, data: bytes | None = None) -> asyncio.Future[float]:
        """Send a ping; the returned future gets the round-trip time when the pong comes back."""
        if self.state != OPEN:
            await self.wait_closed()
            raise self.closed_exc or ConnectionClosedError(None, None, None)
        payload = data if data is not None else os.urandom(4)
        while payload in self.pings:
            payload = os.urandom(4)
        waiter: asyncio.Future[float] = self.loop.create_future()
        self.pings[payload] = (waiter, monotonic())
        self.transport.send_ping(payload)
        return waiter

    async def _keep_alive(self, interval: float) -> None:
        try:
            while True:
                await asyncio.sleep(interval)
                waiter = await self.ping()
                if self.ping_timeout is not None:
                    await asyncio.wait_for(waiter, self.ping_timeout)
        except asyncio.CancelledError:
            raise
        except Exception:
            if self.state == OPEN:  # the peer does not answer: do not wait for its close frame either
                self.flush()
                self.transport.send_close(WSCloseCode.INTERNAL_ERROR, b"keepalive ping timeout")
                self.transport.disconnect()

    # what aiows reads

    @property
    def state(self) -> int:
        """0 connecting, 1 open, 2 closing, 3 closed (as ``websockets.protocol.State``)."""
        transport = self.transport
        if transport is None:
            return CONNECTING
        if transport.is_disconnected:
            return CLOSED
        if transport.is_close_frame_sent or transport.close_handshake is not None:
            return CLOSING
        return OPEN

    @property
    def request(self) -> Any:
        """The HTTP request that opened the connection (``path``, ``headers``)."""
        return self._request

    @property
    def remote_address(self) -> Any:
        """The peer's socket address."""
        return self.socket_transport.get_extra_info("peername")

    @property
    def local_address(self) -> Any:
        """The server's socket address."""
        return self.socket_transport.get_extra_info("sockname")

    def _close_frame(self) -> Any:
        """The peer's close frame, ``None`` until one arrived (or when none ever did)."""
        handshake = self.transport.close_handshake
        return None if handshake is None else handshake.recv

    @property
    def close_code(self) -> int | None:
        """The close code the peer sent, as ``websockets`` reports it (``None``: none came, so 1006 for aiows)."""
        frame = self._close_frame()
        return None if frame is None else int(frame.code)

    @property
    def close_reason(self) -> str | None:
        """The close reason the peer sent, ``None`` until its close frame arrived."""
        frame = self._close_frame()
        reason: str | None = None if frame is None else frame.reason  # picows leaves it None without a reason
        return reason


def _error_response(status: int, text: bytes) -> Any:
    status_code = http.HTTPStatus(status)
    return Response(
        status_code=int(status_code),
        reason_phrase=status_code.phrase,
        headers=CIMultiDict({"Content-Type": "text/plain; charset=utf-8"}),
        body=text,
    )


def _origin_allowed(origin: str | None, origins: Sequence[str | None] | None) -> bool:
    return origins is None or origin in origins


async def serve(
    handler: Callable[[PicowsConnection], Awaitable[None]],
    host: str | None,
    port: int | None,
    *,
    max_size: int | None = 2**20,
    ping_interval: float | None = 20.0,
    ping_timeout: float | None = 20.0,
    compression: str | None = None,
    open_timeout: float | None = 10.0,
    close_timeout: float | None = 10.0,
    max_queue: int | None = 16,
    write_limit: int = 32768,
    origins: Sequence[str | None] | None = None,
    process_request: Callable[[Any, Any], Any] | None = None,
    process_response: Callable[[Any, Any, Any], Any] | None = None,
    **kwargs: Any,
) -> Any:
    """Start serving ``handler(connection)`` on ``host:port``; returns a ``picows.websockets`` ``Server``.

    Takes the ``serve()`` options aiows uses; other keyword arguments go to
    ``picows.ws_create_server`` (``reuse_port``, ``read_buffer_init_size``).
    ``process_request`` and ``process_response`` must be synchronous.
    """
    logger = logging.getLogger("websockets.server")
    server = Server(handler, logger=logger)
    server_header = default_server_header()

    def listener_factory(upgrade_request: WSUpgradeRequest) -> Any:
        request = Request.from_picows(upgrade_request)
        handshake = ServerHandshakeConnection(request)
        origin = request.headers.get("Origin")
        if not _origin_allowed(origin, origins):
            response = _error_response(403, b"Origin not allowed\n")
        elif server.close_task is not None:
            response = _error_response(503, b"Server is shutting down.\n")
        else:
            headers = {"Server": server_header}
            offered = request.headers.get("Sec-WebSocket-Extensions")
            if compression == "deflate" and isinstance(offered, str) and "permessage-deflate" in offered:
                headers["Sec-WebSocket-Extensions"] = "permessage-deflate"
            response = Response.from_picows(WSUpgradeResponse.create_101_response(headers))
        if process_request is not None:
            refusal = process_request(handshake, request)
            if refusal is not None:
                response = refusal
        if process_response is not None:
            response = process_response(handshake, request, response)
        if response.status_code == 101 and request.headers.get("Upgrade", "").lower() != "websocket":
            response = _error_response(426, b"Failed to open a WebSocket connection: not a WebSocket request.\n")
            response.headers["Upgrade"] = "websocket"  # as websockets answers a plain GET on a WebSocket path
        if response.status_code != 101:
            return WSUpgradeResponseWithListener(response.to_picows(), None)
        connection = PicowsConnection(
            server,
            request,
            response,
            deflate=configure_permessage_deflate(response, compression),
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            close_timeout=close_timeout,
            max_queue=max_queue,
            max_message_size=max_size,
            write_limit=write_limit,
        )
        return WSUpgradeResponseWithListener(response.to_picows(), connection)

    raw_server = await picows.ws_create_server(
        listener_factory,
        host,
        port,
        websocket_handshake_timeout=open_timeout,
        enable_auto_ping=False,
        enable_auto_pong=True,
        max_frame_size=2**31 - 1 if max_size is None else max_size,
        logger_name=logger,
        **kwargs,
    )
    server.wrap(raw_server)
    return server
