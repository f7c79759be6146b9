"""What every socket front-end shares, written once: ``SocketLink``.

A front-end parses frames with its library and calls the link's ``data()``,
``pong()``, ``close_received()`` and ``connection_lost()``; the link does the
rest on the asyncio transport the library reads from:

- **message assembly**: fragments joined, size and fragment-count limits,
  whole messages queued for ``take()`` / ``receive()`` (UTF-8 of text is
  checked by whoever decodes it: orjson does it for free on the JSON path);
- **writes**: server frames are framed here and written to the socket;
  while the link is *corked* they are held and go out in one write;
- **flow control**: reading pauses while ``max_queue`` messages wait, or
  while the client reads too slowly (the transport's write buffer is above its
  high-water mark), so neither queued messages nor answers to its pings (pongs)
  grow without bound; with ``send_timeout`` such a client is closed;
- **keepalive** pings, the **closing handshake** and its timeout.

Corking: frames written while the front-end is delivering one read's worth of
frames (between ``cork()`` and ``uncork()``) or while more messages are
queued behind the one being handled go out together, at the latest on the
event loop's next turn.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, Final, Protocol

from websockets.extensions.base import ServerExtensionFactory
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.typing import Subprotocol

from ..exceptions import ConnectionError
from ..options import ServerOptions
from .base import CLOSED, CLOSING, CONNECTING, OPEN, Gate, HandshakeRequest, Link, Receiver
from .negotiation import subprotocol_selector

__all__ = [
    "Front",
    "LinkLimits",
    "LinkMeter",
    "MeteredSocketLink",
    "SocketLink",
    "Wire",
    "binary_frame",
    "frame_header",
    "text_frame",
    "valid_close_code",
]

#: Bytes one socket read takes at most (asyncio's own figure).
READ_BUFFER: Final = 256 * 1024

#: Frames held back at most before they are written anyway.
MAX_HELD: Final = 64

#: A fragmented message may have ``max(FRAGMENTS_FLOOR, max_message_size // FRAGMENT_AVERAGE)`` fragments.
FRAGMENTS_FLOOR: Final = 4096
FRAGMENT_AVERAGE: Final = 64

_TEXT_HEADERS: Final = tuple(bytes((0x81, size)) for size in range(126))
_BINARY_HEADERS: Final = tuple(bytes((0x82, size)) for size in range(126))


def wake(future: asyncio.Future[None] | None) -> None:
    """Complete ``future`` if there is one and it is still pending."""
    if future is not None and not future.done():
        future.set_result(None)


def valid_close_code(code: int) -> bool:
    """Whether an endpoint may send ``code`` in a close frame (RFC 6455 7.4; 1012-1014 from IANA's registry)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def frame_header(first: int, size: int) -> bytes:
    """The header of an unmasked (server) frame: ``first`` is FIN + RSV + opcode."""
    if size < 126:
        return bytes((first, size))
    if size < 65536:
        return bytes((first, 126)) + size.to_bytes(2, "big")
    return bytes((first, 127)) + size.to_bytes(8, "big")


def text_frame(payload: bytes) -> bytes:
    """``payload`` as one unmasked, uncompressed text frame."""
    size = len(payload)
    if size < 126:
        return _TEXT_HEADERS[size] + payload
    return frame_header(0x81, size) + payload


def binary_frame(payload: bytes) -> bytes:
    """``payload`` as one unmasked, uncompressed binary frame."""
    size = len(payload)
    if size < 126:
        return _BINARY_HEADERS[size] + payload
    return frame_header(0x82, size) + payload


class Wire(Protocol):
    """What a link asks of its front-end: the frames its library must write itself."""

    def send_close(self, code: int, reason: str) -> None:
        """Write a close frame (the library tracks the closing handshake)."""

    def send_ping(self, data: bytes) -> None:
        """Write a ping frame."""

    def fail(self, code: int, reason: str) -> None:
        """Write a close frame if none was sent, then close the TCP connection."""

    def encode(self, payload: bytes, text: bool) -> bytes:
        """``payload`` as a compressed frame (only called when ``compressed``)."""


class LinkLimits:
    """The server options a link applies, read once per server."""

    def __init__(self, options: ServerOptions) -> None:
        max_message_size = options.max_message_size
        self.max_message_size = max_message_size or 0
        self.max_fragments = (
            max(FRAGMENTS_FLOOR, max_message_size // FRAGMENT_AVERAGE) if max_message_size else 1 << 24
        )
        self.max_queue = options.max_queue or 0
        self.ping_interval = options.ping_interval
        self.ping_timeout = options.ping_timeout
        self.close_timeout = options.close_timeout
        self.send_timeout = options.send_timeout


class Keepalive:
    """Pings every open link of one server: one timer for all of them, not one per connection.

    Every ``tick`` it pings the links whose last pong is ``ping_interval``
    old, and fails with 1011 those whose ping went unanswered for
    ``ping_timeout``: a link is pinged every ``ping_interval`` to
    ``ping_interval + tick`` seconds. A timer per connection costs about
    600 bytes each on uvloop.
    """

    def __init__(self, interval: float, timeout: float | None) -> None:
        self.interval = interval
        self.timeout = timeout
        self.tick = min(interval, timeout if timeout is not None else interval) / 4
        self.links: set[SocketLink] = set()
        self.loop = asyncio.get_running_loop()
        self.timer: asyncio.TimerHandle | None = None

    def add(self, link: SocketLink) -> None:
        link.next_ping = self.loop.time() + self.interval
        self.links.add(link)
        if self.timer is None:
            self.timer = self.loop.call_later(self.tick, self.sweep)

    def discard(self, link: SocketLink) -> None:
        self.links.discard(link)

    def sweep(self) -> None:
        self.timer = None
        now = self.loop.time()
        for link in tuple(self.links):
            link.keep_alive(now, self.timeout)
        if self.links:
            self.timer = self.loop.call_later(self.tick, self.sweep)


class LinkMeter:
    """Payload bytes received and sent by the links of one server (``metrics_path`` only: ``MeteredSocketLink``)."""

    def __init__(self) -> None:
        self.bytes_in = 0
        self.bytes_out = 0


class Front:
    """What every connection of one listening server shares.

    With a ``meter``, its links count their bytes (``MeteredSocketLink``);
    without, they are plain ``SocketLink`` objects that count nothing.
    """

    def __init__(self, gate: Gate, options: ServerOptions, meter: LinkMeter | None = None) -> None:
        self.gate = gate
        self.meter = meter
        self.limits = LinkLimits(options)
        self.max_size = options.max_message_size
        self.compression = options.compression
        self.open_timeout = options.open_timeout
        #: The subprotocols of the codecs offered (``"aiows.json"``...), in the server's order.
        self.subprotocols = [Subprotocol(subprotocol) for subprotocol in options.subprotocols]
        #: ``ServerProtocol``'s ``select_subprotocol`` hook: the client's first offer among them.
        self.select_subprotocol = subprotocol_selector(self.subprotocols)
        interval = options.ping_interval
        self.keepalive = Keepalive(interval, options.ping_timeout) if interval is not None else None
        #: Connections whose handshake has not completed (aborted when the server stops).
        self.handshakes: set[Any] = set()
        #: What a buffered protocol's socket reads go into: one buffer for every connection (reads never overlap).
        self.buffer = bytearray(READ_BUFFER)
        self.view = memoryview(self.buffer)

    def extensions(self) -> list[ServerExtensionFactory]:
        """The ``websockets`` extensions offered in handshakes: permessage-deflate with ``compression="deflate"``."""
        if self.compression != "deflate":
            return []
        # websockets' own defaults for compression="deflate"
        return [
            ServerPerMessageDeflateFactory(
                server_max_window_bits=12, client_max_window_bits=12, compress_settings={"memLevel": 5}
            )
        ]

    def abort_handshakes(self) -> None:
        """Drop every connection still in its handshake (on shutdown)."""
        for connection in list(self.handshakes):
            connection.abort()

    def new_link(
        self,
        transport: Any,
        wire: Wire,
        request: HandshakeRequest,
        remote_address: Any,
        compressed: bool,
        subprotocol: str | None = None,
    ) -> SocketLink:
        """The link of a connection whose handshake completed (not yet ``opened()``)."""
        meter = self.meter
        link = (
            SocketLink(transport, wire, self.limits, request, remote_address, compressed, self.keepalive)
            if meter is None
            else MeteredSocketLink(
                transport, wire, self.limits, request, remote_address, compressed, self.keepalive, meter
            )
        )
        link.subprotocol = subprotocol
        return link


class SocketLink(Link):
    """A connection on an asyncio transport whose frames a front-end library parses."""

    def __init__(
        self,
        transport: Any,
        wire: Wire,
        limits: LinkLimits,
        request: HandshakeRequest,
        remote_address: Any,
        compressed: bool = False,
        keepalive: Keepalive | None = None,
    ) -> None:
        self.transport = transport
        self.keepalive = keepalive
        self.wire = wire
        self.limits = limits
        self.request = request
        self.remote_address = remote_address
        self.compressed = compressed
        self.loop = asyncio.get_running_loop()
        self.receiver: Receiver | None = None
        self.subprotocol: str | None = None
        self.state = CONNECTING
        self.close_code: int | None = None
        self.close_reason: str | None = None
        # incoming: a FIFO of whole messages (a list and a head index: an empty deque costs 600 bytes)
        self.queue: list[tuple[bool, bytes]] = []
        self.head = 0
        self.received = 0
        self.waiter: asyncio.Future[None] | None = None
        self.fragments: bytearray | None = None
        self.fragments_text = False
        self.fragment_count = 0
        self.discarding = False
        self.queue_full = False
        # outgoing
        self.pending: list[bytes] = []
        self.batching = False
        self.backlog = False
        self.flush_scheduled = False
        self.paused = False
        self.drained: asyncio.Future[None] | None = None
        self.reading_paused = False
        # timers and the end
        self.ping_data: bytes | None = None
        self.ping_sent = 0.0
        self.next_ping = 0.0
        self.stall_timer: asyncio.TimerHandle | None = None
        self.close_timer: asyncio.TimerHandle | None = None
        self.closed: asyncio.Future[None] | None = None

    # -- called by the front-end ------------------------------------------

    def opened(self) -> None:
        """The handshake completed: the connection is open (starts keepalive pings)."""
        self.state = OPEN
        if self.keepalive is not None:
            self.keepalive.add(self)

    def cork(self) -> None:
        self.batching = True

    def idle(self) -> None:
        if not self.batching:
            self.flush()

    def uncork(self) -> None:
        self.batching = False
        if self.pending and not self.backlog:
            self.flush()

    def data(self, kind: int, fin: bool, payload: bytes) -> None:
        """A data frame: ``kind`` 1 text, 2 binary, 0 continuation."""
        if self.state != OPEN:
            return
        fragments = self.fragments
        if kind:
            if fragments is not None:
                self.fail(1002, "expected a continuation frame")
            elif fin:
                self._deliver(kind == 1, payload)
            else:
                self.fragments = bytearray(payload)
                self.fragments_text = kind == 1
                self.fragment_count = 1
            return
        if fragments is None:
            self.fail(1002, "unexpected continuation frame")
            return
        limits = self.limits
        self.fragment_count += 1
        if self.fragment_count > limits.max_fragments:
            self.fail(1009, "too many fragments")
            return
        fragments += payload
        if limits.max_message_size and len(fragments) > limits.max_message_size:
            self.fail(1009, "message too big")
            return
        if fin:
            self.fragments = None
            self._deliver(self.fragments_text, bytes(fragments))

    def pong(self, data: bytes) -> None:
        """A pong frame: the answer to the keepalive ping, if it carries its data."""
        keepalive = self.keepalive
        if self.ping_data is not None and data == self.ping_data and keepalive is not None:
            self.ping_data = None
            self.next_ping = self.loop.time() + keepalive.interval

    def close_received(self, code: int | None, reason: str | None) -> None:
        """The peer's close frame (the front-end answers it); what is held goes out before the answer."""
        self.close_code = code
        self.close_reason = reason
        if self.state == OPEN:
            self.flush()
            self.state = CLOSING
            self._wake_receiver()
            self._arm_close_timer()

    def pause_writing(self) -> None:
        """The transport's write buffer is above its high-water mark: the client reads too slowly."""
        self.paused = True
        self._update_reading()
        timeout = self.limits.send_timeout
        if timeout is not None and self.stall_timer is None:
            self.stall_timer = self.loop.call_later(timeout, self._stalled)

    def resume_writing(self) -> None:
        """The write buffer drained below its low-water mark."""
        self.paused = False
        if self.stall_timer is not None:
            self.stall_timer.cancel()
            self.stall_timer = None
        self._update_reading()
        self._wake_drained()

    def connection_lost(self) -> None:
        """The TCP connection is closed: wake every waiter, tell the receiver."""
        self.state = CLOSED
        self.pending.clear()
        self.fragments = None
        for timer in (self.stall_timer, self.close_timer):
            if timer is not None:
                timer.cancel()
        self.stall_timer = self.close_timer = None
        if self.keepalive is not None:
            self.keepalive.discard(self)
        self._wake_receiver()
        self._wake_drained()
        wake(self.closed)
        receiver = self.receiver
        if receiver is not None:
            receiver.closed(self)

    # -- incoming, for aiows ------------------------------------------------

    def _deliver(self, text: bool, payload: bytes) -> None:
        if self.discarding:
            return
        self.received += 1
        queue = self.queue
        queue.append((text, payload))
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            wake(waiter)
        elif self.receiver is not None:
            self.receiver.message(self)
        limit = self.limits.max_queue
        if limit and not self.queue_full and len(queue) - self.head >= limit:
            self.queue_full = True
            self._update_reading()

    def take(self) -> tuple[bool, bytes] | None:
        queue = self.queue
        head = self.head
        size = len(queue)
        if head >= size:
            self.backlog = False
            return None
        item = queue[head]
        head += 1
        if head == size:
            queue.clear()
            head = 0
            self.backlog = False
        else:
            self.backlog = True
            if head >= 64 and head * 2 >= size:
                del queue[:head]
                head = 0
        self.head = head
        if self.queue_full and len(queue) - head <= self.limits.max_queue // 4:
            self.queue_full = False
            self._update_reading()
        return item

    async def receive(self) -> tuple[bool, bytes]:
        while True:
            item = self.take()
            if item is not None:
                return item
            if self.state != OPEN:
                raise ConnectionError("connection closed", self.close_code)
            if self.waiter is not None:
                raise RuntimeError("another coroutine is already waiting for the next message")
            waiter = self.waiter = self.loop.create_future()
            try:
                await waiter
            finally:
                if self.waiter is waiter:
                    self.waiter = None

    def discard_incoming(self) -> None:
        self.discarding = True
        self.queue.clear()
        self.head = 0
        self.backlog = False
        if self.queue_full:
            self.queue_full = False
            self._update_reading()

    def _wake_receiver(self) -> None:
        waiter = self.waiter
        self.waiter = None
        wake(waiter)

    def _wake_drained(self) -> None:
        drained = self.drained
        self.drained = None
        wake(drained)

    def _update_reading(self) -> None:
        """Read from the socket unless messages pile up or the client does not read what it gets."""
        paused = self.queue_full or self.paused
        if paused == self.reading_paused or self.state == CLOSED:
            return
        self.reading_paused = paused
        try:
            if paused:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()
        except (AttributeError, RuntimeError):  # the transport is closing
            pass

    # -- outgoing ---------------------------------------------------------

    def write(self, payload: bytes, text: bool) -> bool:
        if self.state != OPEN:
            return False
        if self.compressed:
            self._out(self.wire.encode(payload, text))
        elif text:
            self._out(text_frame(payload))
        else:
            self._out(binary_frame(payload))
        return True

    def write_frame(self, frame: bytes, payload: bytes, text: bool) -> bool:
        if self.state != OPEN:
            return False
        self._out(self.wire.encode(payload, text) if self.compressed else frame)
        return True

    def _out(self, data: bytes) -> None:
        pending = self.pending
        if self.batching or self.backlog:
            pending.append(data)
            if len(pending) >= MAX_HELD:
                self.flush()
            elif not self.batching and not self.flush_scheduled:
                self.flush_scheduled = True  # a handler that awaits something never holds back earlier replies
                self.loop.call_soon(self._scheduled_flush)
        elif pending:
            pending.append(data)
            self.flush()
        else:
            self.transport.write(data)

    def _scheduled_flush(self) -> None:
        self.flush_scheduled = False
        self.flush()

    def flush(self) -> None:
        pending = self.pending
        if not pending:
            return
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
        if self.state != CLOSED:
            self.transport.write(data)

    def drain(self) -> asyncio.Future[None] | None:
        if not self.paused or self.state == CLOSED:
            return None
        if self.drained is None:
            self.drained = self.loop.create_future()
        return self.drained

    # -- closing ----------------------------------------------------------

    def fail(self, code: int, reason: str) -> None:
        if self.state == CLOSED:
            return
        if self.state == OPEN:
            self.flush()
        self.state = CLOSING
        self.fragments = None
        self._wake_receiver()
        self.wire.fail(code, reason)
        self._arm_close_timer()

    def close_soon(self, code: int = 1000, reason: str = "") -> None:
        if not valid_close_code(code):
            raise ValueError(f"{code} is not a close code an endpoint may send")
        if self.state != OPEN:
            return
        self.flush()
        self.wire.send_close(code, reason)
        self.closing()

    def closing(self) -> None:
        """The closing handshake started (a close frame was sent, or the TCP connection is being closed)."""
        if self.state == OPEN:
            self.state = CLOSING
            self._wake_receiver()
        if self.state == CLOSING:
            self._arm_close_timer()

    def abort(self) -> None:
        if self.state != CLOSED:
            self.transport.abort()

    def closed_future(self) -> asyncio.Future[None]:
        if self.closed is None:
            self.closed = self.loop.create_future()
            if self.state == CLOSED:
                self.closed.set_result(None)
        return self.closed

    def _arm_close_timer(self) -> None:
        timeout = self.limits.close_timeout
        if timeout is not None and self.close_timer is None:
            self.close_timer = self.loop.call_later(timeout, self.abort)

    def _stalled(self) -> None:
        """The client has not read for ``send_timeout`` seconds: close it (1013, "try again later")."""
        self.stall_timer = None
        if self.paused and self.state == OPEN:
            self.close_soon(1013, "send timeout")

    # -- keepalive --------------------------------------------------------

    def keep_alive(self, now: float, timeout: float | None) -> None:
        """``Keepalive``'s visit: ping if it is time, fail if the last ping went unanswered too long."""
        if self.state != OPEN:
            return
        if self.ping_data is not None:
            if timeout is not None and now - self.ping_sent >= timeout:
                self.fail(1011, "keepalive ping timeout")
        elif now >= self.next_ping:
            data = os.urandom(4)
            self.ping_data = data
            self.ping_sent = now
            self.wire.send_ping(data)

    # -- the ``websockets``-style connection API (``websocket.connection``) -----

    async def recv(self, decode: bool | None = None) -> str | bytes:
        """The next message: ``str`` for text frames (unless ``decode=False``), ``bytes`` for binary."""
        text, payload = await self.receive()
        if decode or (decode is None and text):
            try:
                return payload.decode()
            except UnicodeDecodeError:
                self.fail(1007, "invalid UTF-8")
                raise ConnectionError("connection closed: invalid UTF-8", 1007) from None
        return payload


class MeteredSocketLink(SocketLink):
    """A ``SocketLink`` that counts the payload bytes of the data frames it receives and sends (``LinkMeter``)."""

    def __init__(
        self,
        transport: Any,
        wire: Wire,
        limits: LinkLimits,
        request: HandshakeRequest,
        remote_address: Any,
        compressed: bool,
        keepalive: Keepalive | None,
        meter: LinkMeter,
    ) -> None:
        super().__init__(transport, wire, limits, request, remote_address, compressed, keepalive)
        self.meter = meter

    def data(self, kind: int, fin: bool, payload: bytes) -> None:
        self.meter.bytes_in += len(payload)
        SocketLink.data(self, kind, fin, payload)

    def write(self, payload: bytes, text: bool) -> bool:
        if SocketLink.write(self, payload, text):
            self.meter.bytes_out += len(payload)
            return True
        return False

    def write_frame(self, frame: bytes, payload: bytes, text: bool) -> bool:
        if SocketLink.write_frame(self, frame, payload, text):
            self.meter.bytes_out += len(payload)
            return True
        return False
