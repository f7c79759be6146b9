"""The ASGI front-end: aiows served by an ASGI server (uvicorn, hypercorn, granian) or mounted in an ASGI app.

The ASGI server owns the socket: it runs the HTTP handshake, parses and
frames WebSocket messages, answers pings and negotiates compression. This
front-end turns one ``websocket`` scope into an ``ASGILink`` behind the same
``Link`` interface as the socket front-ends, so the dispatcher, the rooms and
``WebSocket`` work unchanged, and answers ``http`` scopes (health, HTTP
routes) with the server's ``Gate``:

- **incoming**: the connection's coroutine (the one the ASGI server runs)
  awaits ``receive()`` and queues each ``websocket.receive`` whole for
  ``take()`` / ``receive()``; while ``max_queue`` messages wait it stops
  calling ``receive()``, so the ASGI server stops reading the socket;
- **outgoing**: ``write()`` runs the ASGI ``send()`` coroutine in a task of
  its own (started at once on Python 3.12+, where servers write to their
  socket without waiting unless the client reads too slowly); the messages
  written while it runs queue behind it and the same task sends them, in
  order. While that queue holds more than
  ``WRITE_HIGH`` bytes the link is ``paused`` (``drain()`` waits), which is
  how the ASGI server's flow control reaches ``send_json()`` and broadcasts;
- **closing**: ``close_soon()`` sends ``websocket.close`` after what is
  queued; the link is closed when the server reports ``websocket.disconnect``
  (the closing handshake is over), or after ``close_timeout``, when this
  coroutine gives the connection back to the server.

There is no corking: every message is its own ``send()``. The options that
belong to the ASGI server (pings, compression, the handshake timeout, the
transport and the event loop) are refused by ``check_options`` when set to
anything but their defaults; the guide "Mounting in an ASGI app"
(docs/guides/asgi.md) maps each to the servers' own settings.

``aiows.asgi.ASGIApp`` (interpreted, see there) is the ASGI application
object that calls ``serve_websocket()`` and ``serve_http()``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

from websockets.datastructures import Headers

from ..dispatch import spawn
from ..exceptions import ConnectionError
from ..options import ServerOptions
from .base import CLOSED, CLOSING, CONNECTING, OPEN, Gate, HandshakeRequest, Link, Receiver, Reply
from .core import LinkMeter, valid_close_code
from .negotiation import choose_subprotocol

__all__ = [
    "ASGILink",
    "MeteredASGILink",
    "Receive",
    "Scope",
    "Send",
    "check_options",
    "handshake_request",
    "route_path",
    "serve_http",
    "serve_websocket",
]

#: An ASGI connection scope.
Scope = MutableMapping[str, Any]
#: The ``receive`` callable of the ASGI 3 interface: the next event from the server.
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
#: The ``send`` callable of the ASGI 3 interface: an event to the server.
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

#: Bytes waiting for ``send()`` above which the link is ``paused`` (the client reads too slowly).
WRITE_HIGH: Final = 64 * 1024
#: ... and below which it is resumed.
WRITE_LOW: Final = 16 * 1024

#: The ASGI extension that lets an app refuse a WebSocket handshake with an HTTP response of its own.
DENIAL_EXTENSION: Final = "websocket.http.response"

#: What each option the ASGI server owns is called there; ``check_options`` refuses them when set.
SERVER_OWNED: Final = {
    "ping_interval": "uvicorn --ws-ping-interval, hypercorn --websocket-ping-interval (granian has none)",
    "ping_timeout": "uvicorn --ws-ping-timeout (hypercorn and granian have none)",
    "compression": "uvicorn --ws-per-message-deflate (hypercorn and granian do not compress)",
    "open_timeout": "the ASGI server's own handshake and keep-alive timeouts",
    "transport": "the ASGI server carries the connections (uvicorn --ws websockets-sansio or wsproto)",
    "loop": "the ASGI server's event loop (uvicorn --loop, hypercorn --worker-class, granian --loop)",
}


def check_options(options: ServerOptions) -> None:
    """Refuse, naming each, the options set to anything but their default that only the ASGI server can apply."""
    defaults = ServerOptions()
    problems = [
        f"{name}={getattr(options, name)!r} (under ASGI: {where})"
        for name, where in SERVER_OWNED.items()
        if getattr(options, name) != getattr(defaults, name)
    ]
    if problems:
        raise ValueError(
            "server.asgi(): these options belong to the ASGI server, set them there and leave them at their "
            "defaults here: " + "; ".join(problems)
        )


def route_path(scope: Scope) -> str:
    """The path within the app: the scope's ``path`` less its ``root_path`` (the mount prefix).

    Servers and frameworks differ on whether ``path`` includes ``root_path``
    (Starlette's ``Mount`` keeps it, Litestar's mounts strip it and add a
    trailing slash): both are handled, and a trailing slash is ignored.
    """
    path: str = scope.get("path") or "/"
    root: str = scope.get("root_path") or ""
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        path = path[len(root) :] or "/"
    if len(path) > 1 and path.endswith("/"):
        path = path[:-1]
    return path


def handshake_request(scope: Scope) -> HandshakeRequest:
    """The scope as a ``HandshakeRequest``: the route path with the query string, case-insensitive headers."""
    path = route_path(scope)
    query: bytes = scope.get("query_string") or b""
    if query:
        path = path + "?" + query.decode("latin-1")
    headers = Headers([(name.decode("latin-1"), value.decode("latin-1")) for name, value in scope.get("headers", ())])
    return HandshakeRequest(path, headers)


def peer_address(scope: Scope) -> Any:
    """The client's ``(host, port)`` from the scope, or ``None`` (a Unix socket, or a server that does not say)."""
    client = scope.get("client")
    return tuple(client) if client else None


def reply_headers(reply: Reply, body: bool = True) -> list[tuple[bytes, bytes]]:
    """A ``Reply``'s headers for an ASGI response start, with ``Content-Length``."""
    headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in reply.headers]
    headers.append((b"content-length", str(len(reply.body)).encode()))
    return headers


async def serve_http(gate: Gate, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer one plain HTTP request (health, HTTP routes, 426 for a WebSocket path, else 404)."""
    method = scope.get("method", "GET")
    if method not in ("GET", "HEAD"):
        reply = Reply(405, b"Method Not Allowed\n", [("Content-Type", "text/plain; charset=utf-8"), ("Allow", "GET")])
    else:
        admitted = gate.admit(handshake_request(scope), False, None, peer_address(scope))
        reply = admitted if admitted is not None else Reply(404, b"Not Found\n")
    await send({"type": "http.response.start", "status": reply.status, "headers": reply_headers(reply)})
    await send({"type": "http.response.body", "body": b"" if method == "HEAD" else reply.body})


async def refuse(scope: Scope, send: Send, reply: Reply) -> None:
    """Refuse a WebSocket handshake: ``reply`` where the server lets the app answer it, else HTTP 403."""
    if DENIAL_EXTENSION in (scope.get("extensions") or {}):
        await send({"type": "websocket.http.response.start", "status": reply.status, "headers": reply_headers(reply)})
        await send({"type": "websocket.http.response.body", "body": reply.body})
    else:
        await send({"type": "websocket.close", "code": 1008})


async def serve_websocket(
    gate: Gate, options: ServerOptions, scope: Scope, receive: Receive, send: Send, meter: LinkMeter | None = None
) -> None:
    """Serve one ``websocket`` scope: admission, accept, then messages until ``websocket.disconnect``.

    With a ``meter`` (``metrics_path``), the link counts its payload bytes (``MeteredASGILink``).
    """
    event = await receive()
    if event.get("type") != "websocket.connect":
        return  # the client left before the handshake (websocket.disconnect)
    request = handshake_request(scope)
    peer = peer_address(scope)
    key = object()
    try:
        reply = gate.admit(request, True, key, peer)
        if reply is not None:
            await refuse(scope, send, reply)
            return
        subprotocol = choose_subprotocol(scope.get("subprotocols") or (), options.subprotocols)
        await send({"type": "websocket.accept", "subprotocol": subprotocol})
        link = (
            ASGILink(send, options, request, peer)
            if meter is None
            else MeteredASGILink(send, options, request, peer, meter)
        )
        link.subprotocol = subprotocol
        link.task = asyncio.current_task()
        link.state = OPEN
        gate.opened(link, key)
        await link.read(receive)
    finally:
        gate.release(key)


class ASGILink(Link):
    """One WebSocket connection served through the ASGI interface."""

    def __init__(self, send: Send, options: ServerOptions, request: HandshakeRequest, remote_address: Any) -> None:
        self.asgi_send = send
        self.request = request
        self.remote_address = remote_address
        self.max_message_size = options.max_message_size or 0
        self.max_queue = options.max_queue or 0
        self.close_timeout = options.close_timeout
        self.loop = asyncio.get_running_loop()
        self.task: asyncio.Task[Any] | None = None
        self.receiver: Receiver | None = None
        self.subprotocol: str | None = None
        self.state = CONNECTING
        self.close_code: int | None = None
        self.close_reason: str | None = None
        # incoming: whole messages (a list and a head index, as SocketLink)
        self.queue: list[tuple[bool, bytes]] = []
        self.head = 0
        self.received = 0
        self.waiter: asyncio.Future[None] | None = None
        self.room: asyncio.Future[None] | None = None
        self.discarding = False
        # outgoing: the send() under way (its steps) and the messages waiting behind it
        self.writing = False
        self.writer: asyncio.Task[None] | None = None
        self.outgoing: deque[MutableMapping[str, Any]] = deque()
        self.outgoing_bytes = 0
        self.paused = False
        self.drained: asyncio.Future[None] | None = None
        self.close_timer: asyncio.TimerHandle | None = None
        self.aborting = False
        self.closed: asyncio.Future[None] | None = None

    # -- the connection's coroutine ----------------------------------------

    async def read(self, receive: Receive) -> None:
        """Take messages from the ASGI server until it reports the connection closed."""
        try:
            while True:
                if self.max_queue and len(self.queue) - self.head >= self.max_queue and self.state == OPEN:
                    room = self.room = self.loop.create_future()
                    await room  # the handlers catch up before more is read
                    continue
                event = await receive()
                kind = event.get("type")
                if kind == "websocket.receive":
                    text = event.get("text")
                    if text is not None:
                        self.data(True, text.encode())
                    else:
                        data = event.get("bytes")
                        self.data(False, bytes(data) if data is not None else b"")
                elif kind == "websocket.disconnect":
                    code = event.get("code")
                    self.connection_lost(code if isinstance(code, int) else 1005, event.get("reason") or "")
                    return
        except asyncio.CancelledError:
            self.connection_lost(None, None)
            if self.aborting:
                return  # abort(): the ASGI server closes the connection when this coroutine returns
            raise
        except BaseException:
            self.connection_lost(None, None)
            raise

    def data(self, text: bool, payload: bytes) -> None:
        """A whole message from the client."""
        if self.state != OPEN or self.discarding:
            return
        if self.max_message_size and len(payload) > self.max_message_size:
            self.fail(1009, "message too big")
            return
        self.received += 1
        self.queue.append((text, payload))
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)
        elif self.receiver is not None:
            self.receiver.message(self)

    def connection_lost(self, code: int | None, reason: str | None) -> None:
        """The ASGI server reports the connection closed: wake every waiter, tell the receiver."""
        if self.state == CLOSED:
            return
        if code is not None and self.close_code is None:
            self.close_code = code
            self.close_reason = reason
        self.state = CLOSED
        self.outgoing.clear()
        self.outgoing_bytes = 0
        writer = self.writer
        if writer is not None and not writer.done():
            writer.cancel()  # what it was sending has no one to go to
        if self.close_timer is not None:
            self.close_timer.cancel()
            self.close_timer = None
        self._wake(self.waiter)
        self.waiter = None
        self._wake(self.room)
        self.room = None
        self._wake(self.drained)
        self.drained = None
        self.paused = False
        self._wake(self.closed)
        receiver = self.receiver
        if receiver is not None:
            receiver.closed(self)

    def _wake(self, future: asyncio.Future[None] | None) -> None:
        if future is not None and not future.done():
            future.set_result(None)

    # -- incoming, for aiows ------------------------------------------------

    def take(self) -> tuple[bool, bytes] | None:
        queue = self.queue
        head = self.head
        size = len(queue)
        if head >= size:
            return None
        item = queue[head]
        head += 1
        if head == size:
            queue.clear()
            head = 0
        elif head >= 64 and head * 2 >= size:
            del queue[:head]
            head = 0
        self.head = head
        room = self.room
        if room is not None and len(queue) - head <= self.max_queue // 4:
            self.room = None
            self._wake(room)
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
        room = self.room
        self.room = None
        self._wake(room)

    # -- outgoing ---------------------------------------------------------

    def write(self, payload: bytes, text: bool) -> bool:
        if self.state != OPEN:
            return False
        if text:
            self._push({"type": "websocket.send", "text": payload.decode()}, len(payload))
        else:
            self._push({"type": "websocket.send", "bytes": payload}, len(payload))
        return True

    def write_frame(self, frame: bytes, payload: bytes, text: bool) -> bool:
        return self.write(payload, text)  # the ASGI server frames it

    def flush(self) -> None:
        pass  # every message is sent as it is written

    def idle(self) -> None:
        pass

    def cork(self) -> None:
        pass

    def uncork(self) -> None:
        pass

    def drain(self) -> asyncio.Future[None] | None:
        if not self.paused or self.state == CLOSED:
            return None
        if self.drained is None:
            self.drained = self.loop.create_future()
        return self.drained

    def _push(self, message: MutableMapping[str, Any], size: int) -> None:
        """Send ``message`` once those written before it are sent."""
        if self.writing:
            self.outgoing.append(message)
            self.outgoing_bytes += size
            if not self.paused and self.outgoing_bytes >= WRITE_HIGH:
                self.paused = True
            return
        self.writing = True
        writer = spawn(self.loop, self._send_all(message))
        if self.writing:  # an eager task may have sent everything already
            self.writer = writer

    async def _send_all(self, message: MutableMapping[str, Any]) -> None:
        """Send ``message``, then those queued behind it, one ``send()`` at a time, in a task of their own.

        ASGI servers' ``send()`` may use ``asyncio.timeout()`` and friends,
        which belong to the task that runs them: running it in whichever task
        wrote (or in none, from a callback) would break that.
        """
        try:
            while True:
                await self.asgi_send(message)
                if not self.outgoing:
                    break
                message = self.outgoing.popleft()
                if not self.outgoing:
                    self.outgoing_bytes = 0
        except asyncio.CancelledError:
            self.writing = False
            self.writer = None
            raise
        except BaseException:  # the client is gone (the server's ClientDisconnected, an OSError...)
            self.writing = False
            self.writer = None
            self._send_failed()
            return
        self.writing = False
        self.writer = None
        self._resume_writing()

    def _resume_writing(self) -> None:
        if self.paused:
            self.paused = False
            drained = self.drained
            self.drained = None
            self._wake(drained)

    def _send_failed(self) -> None:
        """A ``send()`` raised: the connection is going; the server's ``websocket.disconnect`` will follow."""
        self.outgoing.clear()
        self.outgoing_bytes = 0
        self._resume_writing()
        if self.state == OPEN:
            self.state = CLOSING
            self._wake(self.waiter)
            self.waiter = None
        self._arm_close_timer()

    # -- closing ----------------------------------------------------------

    def fail(self, code: int, reason: str) -> None:
        if self.state != OPEN:
            return
        self._close(code, reason)

    def close_soon(self, code: int = 1000, reason: str = "") -> None:
        if not valid_close_code(code):
            raise ValueError(f"{code} is not a close code an endpoint may send")
        if self.state != OPEN:
            return
        self._close(code, reason)

    def _close(self, code: int, reason: str) -> None:
        self.state = CLOSING
        self._wake(self.waiter)
        self.waiter = None
        self._push({"type": "websocket.close", "code": code, "reason": reason}, 0)
        self._arm_close_timer()

    def _arm_close_timer(self) -> None:
        if self.close_timeout is not None and self.close_timer is None and self.state != CLOSED:
            self.close_timer = self.loop.call_later(self.close_timeout, self.abort)

    def abort(self) -> None:
        """Stop serving the connection: its coroutine returns, and the ASGI server closes the socket."""
        if self.state == CLOSED:
            return
        self.close_timer = None
        task = self.task
        if task is not None and not task.done():
            self.aborting = True
            task.cancel()
        else:
            self.connection_lost(None, None)

    def closed_future(self) -> asyncio.Future[None]:
        if self.closed is None:
            self.closed = self.loop.create_future()
            if self.state == CLOSED:
                self.closed.set_result(None)
        return self.closed

    # -- the ``websockets``-style connection API (``websocket.connection``) -----

    async def recv(self, decode: bool | None = None) -> str | bytes:
        """The next message: ``str`` for text frames (unless ``decode=False``), ``bytes`` for binary."""
        text, payload = await self.receive()
        if decode or (decode is None and text):
            return payload.decode()
        return payload


class MeteredASGILink(ASGILink):
    """An ``ASGILink`` that counts the payload bytes of the messages it receives and sends (``LinkMeter``)."""

    def __init__(
        self, send: Send, options: ServerOptions, request: HandshakeRequest, remote_address: Any, meter: LinkMeter
    ) -> None:
        super().__init__(send, options, request, remote_address)
        self.meter = meter

    def data(self, text: bool, payload: bytes) -> None:
        self.meter.bytes_in += len(payload)
        ASGILink.data(self, text, payload)

    def write(self, payload: bytes, text: bool) -> bool:
        if ASGILink.write(self, payload, text):
            self.meter.bytes_out += len(payload)
            return True
        return False
