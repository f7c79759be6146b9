"""The hot path and each connection's life.

``RouteTable`` decodes a message, finds its route, runs its chain and answers
errors. ``Dispatcher`` serves every connection of a running server through a
``Session``: the connect chain, then the messages in arrival order (or up to
``max_concurrent_handlers`` at once), then the disconnect chain; it also
drains connections on shutdown.

A message is dispatched from the front-end's data callback: the link queues
it and calls ``Session.message()``, which starts a task only when none is
handling this connection's messages yet. On Python 3.12+ that task starts
eagerly, so a handler that does not wait runs (and its reply is written)
within the same callback; there is no ``recv()`` coroutine per message.

Request/reply: a message that carries a ``"ref"`` gets exactly one answer
with that ref, ``{"type": "reply", "ref", "data"}`` (the handler's return
value) or its error frame with ``"ref"`` added (``RouteTable.handle_request``).
The client's ``{"type": "reply", "ref", "data"}`` frames answer
``websocket.request()`` and never reach routing: handled in order when the
connection is idle, or taken out of the queue at once while its handler runs
(``Session.take_replies``), since that handler may be the one waiting.
Messages without a ``"ref"`` pay one dict lookup for all of this.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Final, cast
from urllib.parse import urlsplit

from .chain import ConnectStep, DisconnectStep, MessageStep
from .codecs import JSON, Codec
from .exceptions import AiowsException, MessageValidationError
from .router import REPLY
from .proxies import TrustedProxies
from .stats import ANY_PATH, ServerCounters
from .transports.base import CLOSED, OPEN, Link, Receiver
from .types import RawHandler
from .websocket import WebSocket, peer_ip, take_deferred

if TYPE_CHECKING:
    from .server import WebSocketServer

__all__ = ["Dispatcher", "RouteTable", "Session", "disconnect_reason", "send_error"]

logger = logging.getLogger("aiows")

#: Close reason sent to every connection when the server shuts down (code 1001).
SHUTDOWN_REASON: Final = "server shutting down"

#: The envelope field of a request: the client chooses it, the answer carries it back.
REF: Final = "ref"

#: The longest string ``"ref"`` (an integer one always fits: orjson reads 64-bit integers).
MAX_REF_LENGTH: Final = 64

#: Messages taken out of the queue ahead of their turn, at most, while the server waits for a reply.
MAX_DEFERRED: Final = 64

#: ``asyncio.eager_task_factory`` where it exists (Python 3.12+): a task that runs at once until it waits.
_EAGER: Final[Callable[[asyncio.AbstractEventLoop, Coroutine[Any, Any, None]], asyncio.Task[None]] | None] = getattr(
    asyncio, "eager_task_factory", None
)


#: Without eager tasks (before Python 3.12), a connection's message task waits for the next message instead of
#: ending: creating a task for each message costs more than waking one (measured on 3.11: about 10% of the
#: server's CPU at 1 message in flight). With eager tasks both cost the same, and an idle connection keeps no task.
_KEEP_TASK: Final = _EAGER is None


def spawn(loop: asyncio.AbstractEventLoop, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    """Run ``coroutine`` as a task: started at once where the event loop can (3.12+), else on its next turn."""
    if _EAGER is not None:
        return _EAGER(loop, coroutine)
    return loop.create_task(coroutine)


def disconnect_reason(code: int | None, reason: str | None) -> str:
    """The disconnect handlers' ``reason``: ``"1000 (bye)"``, or ``"1006"`` without a reason."""
    if code is None:
        code = 1006
    return f"{code} ({reason})" if reason else str(code)


def valid_ref(ref: object) -> bool:
    """Whether ``ref`` may be a request's ``"ref"``: an integer (not a bool) or a string of at most 64 characters."""
    kind = type(ref)
    if kind is int:
        return True
    return kind is str and len(cast(str, ref)) <= MAX_REF_LENGTH


def take_reply(websocket: WebSocket, raw: bytes) -> bool:
    """If ``raw`` is a reply to one of ``websocket``'s pending requests, hand it over and return ``True``."""
    pending = websocket._pending
    if pending is None:
        return False
    try:
        data = websocket.codec.decode(raw)
    except ValueError:
        return False
    if type(data) is not dict or data.get("type") != REPLY:
        return False
    return pending.resolve(data.get(REF), data.get("data"))


def valid_utf8(data: bytes) -> bool:
    """Whether ``data`` is valid UTF-8."""
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


class RouteTable:
    """The chains that serve one request path, composed once.

    ``errors`` counts the error frames sent, by code (the server's
    ``ServerCounters.errors``, shared by its tables); it is only touched on
    the error paths.
    """

    def __init__(
        self,
        routes: dict[str, MessageStep],
        fallback: MessageStep | None,
        raw: RawHandler | None,
        connect: ConnectStep,
        disconnect: DisconnectStep,
        connect_passes: int,
        errors: dict[str, int] | None = None,
    ) -> None:
        self.routes = routes
        self.fallback = fallback
        self.raw = raw
        self.connect = connect
        self.disconnect = disconnect
        self.connect_passes = connect_passes
        self.errors: dict[str, int] = {} if errors is None else errors

    async def admit(self, websocket: WebSocket) -> bool | None:
        """Run the connect chain; ``True`` if every part of it let the connection in.

        ``None`` if the client left during the connect chain, ``False`` if the
        chain refused the connection or failed.
        """
        try:
            await self.connect.call(websocket)
        except Exception:
            if websocket.closed:
                return None  # the client left during the connect chain
            logger.exception("connect handler or middleware failed")
            await websocket.close(1011, "internal error")
            return False
        if websocket.closed:
            return None
        if websocket.connect_passes != self.connect_passes:
            await websocket.close(1008, "connection refused")
            return False
        return True

    async def handle(self, websocket: WebSocket, text: bool, raw: bytes) -> None:
        """Dispatch one message, decoded by the connection's codec; every failure becomes one error frame."""
        try:
            data = websocket.codec.decode_frame(raw, text)
        except ValueError:
            sending = self.undecodable(websocket, text, raw)
            if sending is not None:
                await sending
            return
        if type(data) is not dict:
            await self.not_object(websocket)
            return
        if REF in data:  # a request: answered with its ref, whatever happens (the only cost for other messages)
            await self.handle_request(websocket, data, len(raw))
            return
        message_type = data.get("type")
        if not isinstance(message_type, str):
            await self.error(websocket, "invalid_message", 'message must have a string "type"')
            return
        step = self.routes.get(message_type)
        if step is None:
            if message_type == REPLY:  # never routed, not even to a catch-all
                await self.error(websocket, "invalid_message", 'a "reply" must carry the "ref" of the request it answers')
                return
            step = self.fallback
            if step is None:
                await self.unknown(websocket, message_type)
                return
        websocket.message_size = len(raw)
        try:
            await step.call(websocket, data)
        except Exception as exc:
            await self.failed(websocket, exc, message_type)

    # The failures, shared with ``aiows.metering.MeteredRouteTable``: each returns the error frame's send to await.

    def error(
        self,
        websocket: WebSocket,
        code: str,
        message: str,
        errors: list[dict[str, Any]] | None = None,
        ref: object = None,
    ) -> Coroutine[Any, Any, None]:
        """Count an error frame and return its send (``send_error``; with the request's ``ref`` if it has one)."""
        counts = self.errors
        counts[code] = counts.get(code, 0) + 1
        return send_error(websocket, code, message, errors, ref)

    def undecodable(self, websocket: WebSocket, text: bool, raw: bytes) -> Coroutine[Any, Any, None] | None:
        """A message its codec cannot decode: an ``invalid_json`` (``invalid_msgpack``...) error frame, or
        ``None`` once text that is not UTF-8 failed the connection (1007)."""
        if text and not valid_utf8(raw):  # orjson checked the UTF-8 of every valid message already
            websocket.link.fail(1007, "invalid UTF-8")
            return None
        codec = websocket.codec
        return self.error(websocket, codec.invalid_code, codec.invalid_message)

    def not_object(self, websocket: WebSocket) -> Coroutine[Any, Any, None]:
        """The ``invalid_message`` error frame for a message that is not an object (a JSON object, a map)."""
        return self.error(websocket, "invalid_message", websocket.codec.not_object_message)

    def unknown(self, websocket: WebSocket, message_type: str) -> Coroutine[Any, Any, None]:
        """The ``unknown_type`` error frame."""
        # Not an f-string with !r: compiled, that goes through str.format (about 110 ns more, measured).
        return self.error(websocket, "unknown_type", "no handler for message type " + repr(message_type))

    def failed(
        self, websocket: WebSocket, exc: Exception, message_type: str, ref: object = None
    ) -> Coroutine[Any, Any, None]:
        """The error frame for what the chain raised (with the request's ``ref``); raises ``exc`` again if the
        client is gone.

        Call it in the ``except`` block (an internal error is logged with its traceback).
        """
        if isinstance(exc, MessageValidationError):
            return self.error(websocket, exc.code, exc.message, exc.errors, ref)
        if websocket.closed:
            raise exc  # this client is gone: stop serving it
        if isinstance(exc, AiowsException):
            return self.error(websocket, exc.code, exc.message, None, ref)
        logger.exception("handler for message type %r failed", message_type)
        return self.error(websocket, "internal_error", "internal server error", None, ref)

    async def handle_request(self, websocket: WebSocket, data: dict[str, Any], size: int) -> None:
        """A message with a ``"ref"``: exactly one answer carrying it (the reply, or the error frame).

        The client's own ``{"type": "reply", "ref", "data"}`` is matched to the
        ``websocket.request()`` waiting for it (``unknown_ref`` if none waits).
        Middleware sees ``"ref"`` in the message; it is left out of what is
        validated into the handler's model.
        """
        ref = data[REF]
        if not valid_ref(ref):
            await self.error(websocket, "invalid_message", '"ref" must be an integer or a string of at most 64 characters')
            return
        message_type = data.get("type")
        if not isinstance(message_type, str):
            await self.error(websocket, "invalid_message", 'message must have a string "type"', None, ref)
            return
        if message_type == REPLY:
            pending = websocket._pending
            if pending is None or not pending.resolve(ref, data.get("data")):
                # Without the ref: the client's own requests use refs too, and this is not an answer to one.
                await self.error(
                    websocket, "unknown_ref", "no request waits for this reply (it timed out or was answered already)"
                )
            return
        step = self.routes.get(message_type)
        if step is None:
            step = self.fallback
            if step is None:
                await self.error(websocket, "unknown_type", "no handler for message type " + repr(message_type), None, ref)
                return
        websocket.message_size = size
        websocket.answering += 1
        try:
            result = await step.call(websocket, data)
        except Exception as exc:
            await self.failed(websocket, exc, message_type, ref)
            return
        finally:
            websocket.answering -= 1
        if websocket.closed:
            return  # nobody to answer
        try:
            reply = websocket.send_json({"type": REPLY, "ref": ref, "data": result})
        except TypeError as exc:  # the handler returned what the codec cannot hold
            await self.failed(websocket, exc, message_type, ref)
            return
        await reply

    async def handle_raw(self, websocket: WebSocket, text: bool, payload: bytes) -> None:
        """Give one message, unparsed (``str`` for text), to the raw handler; a failure is logged."""
        assert self.raw is not None
        websocket.message_size = len(payload)
        data: str | bytes = payload
        if text:
            try:
                data = payload.decode()
            except UnicodeDecodeError:
                websocket.link.fail(1007, "invalid UTF-8")
                return
        try:
            await self.raw(websocket, data)
        except Exception:
            if websocket.closed:
                raise
            logger.exception("raw frame handler failed")


class Session(Receiver):
    """One connection's life: connect chain, messages, disconnect chain (each once)."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        table: RouteTable,
        websocket: WebSocket,
        link: Link,
        loop: asyncio.AbstractEventLoop,
        path: str = ANY_PATH,
    ) -> None:
        self.dispatcher = dispatcher
        self.table = table
        #: The path of the routers serving it (``"*"``: those included without a path), for the counters.
        self.path = path
        self.websocket = websocket
        self.link = link
        self.loop = loop
        self.task: asyncio.Task[None] | None = None
        #: Set while the message task waits for the next message (without eager tasks).
        self.waiter: asyncio.Future[None] | None = None
        self.connecting = True
        self.admitted = False
        self.running = False
        self.in_flight = 0
        self.ended = False
        #: Whether the disconnect chain runs when the connection ends (every connect chain was passed).
        self.disconnects = False

    def start(self) -> None:
        """Run the connect chain."""
        self.task = spawn(self.loop, self.connect())

    async def connect(self) -> None:
        """Admit the connection through the connect chain, then serve what arrived meanwhile (or close it)."""
        table = self.table
        websocket = self.websocket
        websocket.busy = True
        try:
            admitted = await table.admit(websocket)
        except asyncio.CancelledError:
            admitted = None
        self.connecting = False
        self.task = None
        websocket.busy = False
        self.disconnects = websocket.connect_passes == table.connect_passes
        link = self.link
        if admitted:
            self.admitted = True
            self.dispatcher.connections.add(websocket)
            if self.dispatcher.draining:
                link.close_soon(1001, SHUTDOWN_REASON)
            else:
                self.message(link)  # what arrived meanwhile
        elif link.state == OPEN:
            link.close_soon(1008, "connection refused")
        if link.state == CLOSED:
            self.finish()

    def message(self, link: Link) -> None:
        waiter = self.waiter
        if waiter is not None:  # the message task waits for this
            self.waiter = None
            waiter.set_result(None)
            return
        if self.running or not self.admitted or self.dispatcher.draining:
            pending = self.websocket._pending
            if pending is not None and pending.futures and not self.websocket.receiving:
                self.take_replies()  # the handler running may be the one waiting for a reply
            return
        if self.dispatcher.max_concurrent_handlers > 1:
            self._start_concurrently()
            return
        self.running = True
        task = spawn(self.loop, self.run())
        if self.running:  # an eager task may have finished already
            self.task = task

    async def run(self) -> None:
        """Handle the queued messages one at a time, in arrival order."""
        link = self.link
        websocket = self.websocket
        table = self.table
        dispatcher = self.dispatcher
        raw = table.raw is not None
        keep = _KEEP_TASK
        try:
            while True:
                item = link.take() if websocket._deferred is None else take_deferred(websocket)
                if dispatcher.draining or link.state != OPEN:
                    break
                if item is None:
                    if not keep:
                        break
                    link.idle()
                    waiter = self.waiter = self.loop.create_future()
                    await waiter
                    continue
                websocket.busy = True
                if raw:
                    await table.handle_raw(websocket, item[0], item[1])
                else:
                    await table.handle(websocket, item[0], item[1])
                websocket.busy = False
        except asyncio.CancelledError:
            pass  # shutdown's grace period is over
        except Exception:
            if not websocket.closed:
                logger.exception("connection failed")
                link.close_soon(1011, "internal error")
        finally:
            websocket.busy = False
            self.running = False
            self.task = None
            self.waiter = None
            link.idle()
            self._idle()

    def take_replies(self) -> None:
        """The server waits for replies and cannot dispatch now: take what arrived, hand replies over at once.

        The other messages keep their order in ``websocket._deferred`` and are
        handled (or read by ``receive_json()``) before the link's next ones; at
        most ``MAX_DEFERRED`` are held, so a reply behind more than that waits
        its turn (and may time out). Not while a ``receive_json()`` waits: it
        takes replies itself. Raw frame handlers get every frame, replies too.
        """
        if self.table.raw is not None:
            return
        websocket = self.websocket
        deferred = websocket._deferred
        if deferred is None:
            deferred = []
        link = self.link
        while len(deferred) < MAX_DEFERRED:
            item = link.take()
            if item is None:
                break
            if not take_reply(websocket, item[1]):
                deferred.append(item)
        websocket._deferred = deferred or None

    def _start_concurrently(self) -> None:
        link = self.link
        limit = self.dispatcher.max_concurrent_handlers
        while self.in_flight < limit:
            item = link.take() if self.websocket._deferred is None else take_deferred(self.websocket)
            if item is None:
                break
            self.in_flight += 1
            self.websocket.busy = True
            handling = self.table.handle_raw if self.table.raw is not None else self.table.handle
            task = spawn(self.loop, handling(self.websocket, item[0], item[1]))
            task.add_done_callback(self._handled)
        if self.in_flight >= limit:
            pending = self.websocket._pending
            if pending is not None and pending.futures and not self.websocket.receiving:
                self.take_replies()
        link.idle()

    def _handled(self, task: asyncio.Task[None]) -> None:
        self.in_flight -= 1
        if not task.cancelled():
            error = task.exception()
            if error is not None and not self.websocket.closed:
                logger.error("handler failed", exc_info=error)
        if self.in_flight == 0:
            self.websocket.busy = False
            self._idle()
        if self.link.state == OPEN and not self.dispatcher.draining:
            self._start_concurrently()

    def _idle(self) -> None:
        """No handler is running for this connection."""
        link = self.link
        if link.state == CLOSED:
            self.finish()
        elif self.dispatcher.draining and self.admitted:
            link.close_soon(1001, SHUTDOWN_REASON)

    def closed(self, link: Link) -> None:
        pending = self.websocket._pending
        if pending is not None:  # no reply can come now
            pending.close(link.close_code)
        if self.waiter is not None:  # the message task ends and finishes the connection
            self.message(link)
        elif not self.connecting and not self.running and self.in_flight == 0:
            self.finish()

    def drain(self) -> None:
        """Shutdown started: take no more messages; close now if nothing runs."""
        self.link.discard_incoming()
        self.websocket._deferred = None
        if self.waiter is not None:  # idle: its message task ends, and closes the connection
            self.message(self.link)
        elif self.admitted and not self.running and self.in_flight == 0:
            self.link.close_soon(1001, SHUTDOWN_REASON)

    def cancel(self) -> None:
        """The grace period is over: cancel what still runs for this connection."""
        if self.task is not None:
            self.task.cancel()

    def finish(self) -> None:
        """The connection is closed and nothing runs: run the disconnect chain once, then forget it."""
        if self.ended:
            return
        self.ended = True
        dispatcher = self.dispatcher
        link = self.link
        dispatcher.counters.connection_closed(self.path, dispatcher.transport, link.close_code, link.received)
        dispatcher.connections.discard(self.websocket)
        if self.disconnects:
            self.task = spawn(self.loop, self.disconnect())
        else:
            self.dispatcher.ended(self)

    async def disconnect(self) -> None:
        """Run the disconnect chain once the connection is closed, then leave its rooms."""
        websocket = self.websocket
        link = self.link
        reason = disconnect_reason(link.close_code, link.close_reason)
        try:
            await self.table.disconnect.call(websocket, reason)
        except BaseException:
            logger.exception("disconnect middleware failed")
        server = self.dispatcher.server
        if server is not None:
            try:
                await server.hub.disconnected(websocket)  # leave every room
            except BaseException:
                logger.exception("leaving the rooms failed")
        self.task = None
        self.dispatcher.ended(self)


class Dispatcher:
    """Serves every connection of a running server.

    ``connections`` holds the admitted connections that are still open;
    ``server`` is the ``WebSocketServer`` whose hub delivers broadcasts to them.
    """

    def __init__(
        self,
        tables: dict[str, RouteTable],
        default: RouteTable | None,
        *,
        idle_timeout: float | None = None,
        send_timeout: float | None = None,
        close_timeout: float | None = 10.0,
        max_concurrent_handlers: int = 1,
        trusted_proxies: TrustedProxies | None = None,
        counters: ServerCounters | None = None,
        transport: str = "websockets",
        codecs: tuple[Codec, ...] = (JSON,),
    ) -> None:
        self.tables = tables
        self.default = default
        self.idle_timeout = idle_timeout
        self.send_timeout = send_timeout
        self.close_timeout = close_timeout
        self.max_concurrent_handlers = max_concurrent_handlers
        self.trusted_proxies = trusted_proxies
        #: Connections opened and closed, error frames... (the server's ``ServerCounters``).
        self.counters = ServerCounters() if counters is None else counters
        #: The front-end's name (``ServerOptions.transport``), for the counters.
        self.transport = transport
        #: The codec of a connection that negotiated none (the first offered), and each one's by subprotocol.
        self.codec = codecs[0]
        self.codecs = {codec.subprotocol: codec for codec in codecs}
        self.connections: set[WebSocket] = set()
        self.sessions: set[Session] = set()
        self.server: WebSocketServer | None = None
        self.draining = False
        self._idle = asyncio.Event()  # no running loop needed to create it (Python 3.10+)
        self._idle.set()

    def table_for(self, path: str) -> RouteTable | None:
        """The route table serving ``path`` (``None``: nothing serves it)."""
        return self.tables.get(path, self.default)

    def client_ip(self, remote_address: Any, headers: Any) -> str:
        """The client's IP, from the socket or a trusted proxy's headers."""
        ip = peer_ip(remote_address)
        if self.trusted_proxies is not None:
            return self.trusted_proxies.client_ip(ip, headers)
        return ip

    def open(self, link: Link) -> None:
        """Serve a connection whose handshake completed."""
        request = link.request
        path = urlsplit(request.path).path
        table = self.tables.get(path)
        label = path
        if table is None:
            table = self.default
            label = ANY_PATH
        if table is None:  # refused with HTTP 404 at the handshake; kept for safety
            link.close_soon(1008, "no route for this path")
            return
        ip = peer_ip(link.remote_address)
        if self.trusted_proxies is not None:
            ip = self.trusted_proxies.client_ip(ip, request.headers)
        subprotocol = link.subprotocol
        codec = self.codec if subprotocol is None else self.codecs.get(subprotocol, self.codec)
        websocket = WebSocket(link, ip, self.send_timeout, self.close_timeout, self.server, codec)
        loop = asyncio.get_running_loop()
        session = Session(self, table, websocket, link, loop, label)
        self.counters.connection_opened(label, self.transport)
        link.receiver = session
        self.sessions.add(session)
        self._idle.clear()
        if self.idle_timeout is not None:
            IdleWatch(websocket, self.idle_timeout, loop).arm()
        session.start()

    def ended(self, session: Session) -> None:
        """``session`` is over."""
        self.sessions.discard(session)
        if not self.sessions:
            self._idle.set()

    async def shutdown(self, grace: float) -> None:
        """Drain: stop dispatching, let running handlers finish within ``grace`` seconds, then close all.

        Idle connections are closed with 1001 at once; a connection whose
        handler is running is closed with 1001 as soon as it finishes; what is
        still running after ``grace`` is cancelled (its disconnect handlers
        still run). Frames that arrive meanwhile are dropped, so a client's
        answer to the close frame is never stuck behind them.
        """
        self.draining = True
        for session in list(self.sessions):
            session.drain()
        try:
            await asyncio.wait_for(self._idle.wait(), grace)
            return
        except asyncio.TimeoutError:
            pass
        for session in list(self.sessions):
            session.cancel()
        # Closing handshakes end within close_timeout (the socket is dropped after that).
        try:
            await asyncio.wait_for(self._idle.wait(), (self.close_timeout or 0.0) + 1.0)
            return
        except asyncio.TimeoutError:
            pass
        for session in list(self.sessions):
            session.link.abort()
            session.cancel()
        await self._idle.wait()


class IdleWatch:
    """Closes a connection with 1001 once no message came for ``timeout`` seconds (checked every ``timeout``)."""

    def __init__(self, websocket: WebSocket, timeout: float, loop: asyncio.AbstractEventLoop) -> None:
        self.websocket = websocket
        self.timeout = timeout
        self.loop = loop
        self.seen = -1

    def arm(self) -> None:
        self.seen = self.websocket.link.received
        self.loop.call_later(self.timeout, self.check)

    def check(self) -> None:
        websocket = self.websocket
        if websocket.closed:
            return
        if websocket.link.received == self.seen and not websocket.busy:
            websocket.link.close_soon(1001, "idle timeout")
        else:
            self.arm()


def send_error(
    websocket: WebSocket, code: str, message: str, errors: list[dict[str, Any]] | None = None, ref: object = None
) -> Coroutine[Any, Any, None]:
    """One ``{"type": "error", "code", "message"}`` frame (with ``errors`` for validation), sent when awaited.

    ``ref``: the ``"ref"`` of the request it answers. A plain function
    returning the send's coroutine: a compiled coroutine in between would cost
    more than it saves (measured).
    """
    frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if errors is not None:
        frame["errors"] = errors
    if ref is not None:
        frame["ref"] = ref
    return websocket.send_json(frame)
