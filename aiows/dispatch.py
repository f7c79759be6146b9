"""The hot path and each connection's life.

``RouteTable`` decodes a frame, finds its route, runs its chain and answers
errors. ``Dispatcher`` runs every connection: the connect chain, then one
message at a time in arrival order (or up to ``max_concurrent_handlers`` at
once), then the disconnect chain; it also drains connections on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

import orjson

from .chain import ConnectStep, DisconnectStep, MessageStep
from .exceptions import AiowsException, MessageValidationError
from .proxies import TrustedProxies
from .transport import OPEN, Connection
from .types import RawHandler
from .websocket import WebSocket, peer_ip

if TYPE_CHECKING:
    from .server import WebSocketServer

__all__ = ["Dispatcher", "RouteTable", "disconnect_reason"]

logger = logging.getLogger("aiows")

#: ``orjson.loads``, bound once: compiled code would look the module attribute up on every message.
_loads: Final = orjson.loads

#: Close reason sent to every connection when the server shuts down (code 1001).
SHUTDOWN_REASON = "server shutting down"


def disconnect_reason(code: int | None, reason: str | None) -> str:
    """The disconnect handlers' ``reason``: ``"1000 (bye)"``, or ``"1006"`` without a reason."""
    if code is None:
        code = 1006
    return f"{code} ({reason})" if reason else str(code)


class RouteTable:
    """The chains that serve one request path, composed once."""

    def __init__(
        self,
        routes: dict[str, MessageStep],
        fallback: MessageStep | None,
        raw: RawHandler | None,
        connect: ConnectStep,
        disconnect: DisconnectStep,
        connect_passes: int,
    ) -> None:
        self.routes = routes
        self.fallback = fallback
        self.raw = raw
        self.connect = connect
        self.disconnect = disconnect
        self.connect_passes = connect_passes

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

    async def handle(self, websocket: WebSocket, raw: bytes | str) -> None:
        """Dispatch one frame; every failure becomes one error frame."""
        try:
            data = _loads(raw)
        except orjson.JSONDecodeError:
            await send_error(websocket, "invalid_json", "message is not valid JSON")
            return
        if type(data) is not dict:
            await send_error(websocket, "invalid_message", "message must be a JSON object")
            return
        message_type = data.get("type")
        if not isinstance(message_type, str):
            await send_error(websocket, "invalid_message", 'message must have a string "type"')
            return
        step = self.routes.get(message_type)
        if step is None:
            step = self.fallback
            if step is None:
                # Not an f-string with !r: compiled, that goes through str.format (about 110 ns more, measured).
                await send_error(websocket, "unknown_type", "no handler for message type " + repr(message_type))
                return
        websocket.message_size = len(raw)
        try:
            await step.call(websocket, data)
        except MessageValidationError as exc:
            await send_error(websocket, exc.code, exc.message, exc.errors)
        except AiowsException as exc:
            if websocket.closed:
                raise  # this client is gone: end its loop
            await send_error(websocket, exc.code, exc.message)
        except Exception:
            if websocket.closed:
                raise
            await internal_error(websocket, message_type)

    async def handle_raw(self, websocket: WebSocket, data: bytes | str) -> None:
        """Give one frame, unparsed, to the raw handler; a failure is logged."""
        assert self.raw is not None
        websocket.message_size = len(data)
        try:
            await self.raw(websocket, data)
        except Exception:
            if websocket.closed:
                raise
            logger.exception("raw frame handler failed")


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
        limiter: Any = None,
    ) -> None:
        self.tables = tables
        self.default = default
        self.idle_timeout = idle_timeout
        self.send_timeout = send_timeout
        self.close_timeout = close_timeout
        self.max_concurrent_handlers = max_concurrent_handlers
        self.trusted_proxies = trusted_proxies
        self.limiter = limiter
        self.connections: set[WebSocket] = set()
        self.server: WebSocketServer | None = None
        self.tasks: set[asyncio.Task[Any]] = set()
        self.draining = False
        self._idle = asyncio.Event()
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

    async def serve(self, connection: Connection) -> None:
        """Run one connection from connect to disconnect."""
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)
            self._idle.clear()
        key = connection.remote_address
        if self.limiter is not None:
            self.limiter.start(key)
        try:
            await self._serve(connection)
        finally:
            if self.limiter is not None:
                self.limiter.release(key)
            if task is not None:
                self.tasks.discard(task)
                if not self.tasks:
                    self._idle.set()

    async def _serve(self, connection: Connection) -> None:
        request = connection.request
        path = urlsplit(request.path).path if request is not None else "/"
        table = self.table_for(path)
        if table is None:  # refused with HTTP 404 at the handshake; kept for safety
            await connection.close(1008, "no route for this path")
            return
        headers: Any = request.headers if request is not None else {}
        ip = self.client_ip(connection.remote_address, headers)
        websocket = WebSocket(connection, ip, self.send_timeout, self.close_timeout, self.server)
        websocket.busy = True
        admitted = await table.admit(websocket)
        if admitted is None and websocket.connect_passes == table.connect_passes:
            # The client left while the connect handlers ran: they all ran, so the disconnect handlers run too.
            await self._disconnect(table, websocket)
        if not admitted:
            return
        websocket.busy = False
        self.connections.add(websocket)
        try:
            if self.draining:
                pass
            elif self.max_concurrent_handlers > 1:
                await self._read_concurrently(table, websocket)
            else:
                await self._read(table, websocket)
        except asyncio.CancelledError:
            pass  # shutdown's grace period is over: close and run the disconnect handlers below
        except Exception:
            if not websocket.closed:
                logger.exception("connection failed")
        finally:
            self.connections.discard(websocket)
            if not websocket.closed:
                await websocket.close(*((1001, SHUTDOWN_REASON) if self.draining else (1011, "internal error")))
            await self._disconnect(table, websocket)

    async def _disconnect(self, table: RouteTable, websocket: WebSocket) -> None:
        """Wait for the connection to be closed, then run the disconnect chain once."""
        connection = websocket.connection
        await connection.wait_closed()
        reason = disconnect_reason(connection.close_code, connection.close_reason)
        try:
            await table.disconnect.call(websocket, reason)
        except Exception:
            logger.exception("disconnect middleware failed")
        if self.server is not None:
            await self.server.hub.disconnected(websocket)  # leave every room

    async def _receive(self, websocket: WebSocket, decode: bool | None) -> bytes | str:
        """The next frame; with ``idle_timeout``, close with 1001 when none comes in time."""
        connection = websocket.connection
        if self.idle_timeout is None:
            return await connection.recv(decode)
        try:
            return await asyncio.wait_for(connection.recv(decode), self.idle_timeout)
        except asyncio.TimeoutError:
            await websocket.close(1001, "idle timeout")
            raise

    async def _read(self, table: RouteTable, websocket: WebSocket) -> None:
        """Handle one frame at a time, in arrival order, until the connection or the server closes."""
        connection = websocket.connection
        raw_frames = table.raw is not None
        decode = None if raw_frames else False
        link = websocket.link
        while self.dispatching(connection):
            ready = link.take(decode) if link is not None else None
            if ready is not None:
                data: bytes | str = ready  # taken without waiting: still open, no shutdown since the check above
            else:
                if link is not None and link.held:
                    link.flush()  # the messages that came together are handled: out go their replies
                if self.idle_timeout is None:
                    data = await connection.recv(decode)
                else:
                    data = await self._receive(websocket, decode)
                if link is not None:
                    link.received()
                if not self.dispatching(connection):
                    return  # frames that arrive once shutdown started are not dispatched
            websocket.busy = True
            if raw_frames:
                await table.handle_raw(websocket, data)
            else:
                await table.handle(websocket, data)
            websocket.busy = False

    def dispatching(self, connection: Connection) -> bool:
        """Whether frames of ``connection`` are still dispatched (open, and no shutdown started)."""
        return not self.draining and connection.state == OPEN

    async def _read_concurrently(self, table: RouteTable, websocket: WebSocket) -> None:
        """Handle up to ``max_concurrent_handlers`` frames at once; reading waits for a free slot."""
        connection = websocket.connection
        raw_frames = table.raw is not None
        slots = asyncio.Semaphore(self.max_concurrent_handlers)
        running: set[asyncio.Task[None]] = set()
        try:
            while self.dispatching(connection):
                await slots.acquire()
                try:
                    data = await self._receive(websocket, None if raw_frames else False)
                except BaseException:
                    slots.release()
                    raise
                if not self.dispatching(connection):
                    slots.release()
                    return
                websocket.busy = True
                handling = table.handle_raw(websocket, data) if raw_frames else table.handle(websocket, data)
                task = asyncio.ensure_future(handling)
                running.add(task)
                task.add_done_callback(FrameDone(slots, running, websocket).done)
        finally:
            if running:
                await asyncio.gather(*running, return_exceptions=True)

    async def shutdown(self, grace: float) -> None:
        """Drain: stop dispatching, let running handlers finish within ``grace`` seconds, then close all.

        Idle connections are closed with 1001 at once; a connection whose
        handler is running is closed with 1001 as soon as it finishes; what is
        still running after ``grace`` is cancelled (its disconnect handlers
        still run).
        """
        self.draining = True
        for websocket in list(self.connections):
            if not websocket.busy and not websocket.closed:
                websocket.close_soon(1001, SHUTDOWN_REASON)
        try:
            await asyncio.wait_for(self._idle.wait(), grace)
        except asyncio.TimeoutError:
            for task in list(self.tasks):
                task.cancel()
            await self._idle.wait()


class FrameDone:
    """Bookkeeping when a concurrently handled frame finishes."""

    def __init__(self, slots: asyncio.Semaphore, running: set[asyncio.Task[None]], websocket: WebSocket) -> None:
        self.slots = slots
        self.running = running
        self.websocket = websocket

    def done(self, task: asyncio.Task[None]) -> None:
        self.running.discard(task)
        self.slots.release()
        if not self.running:
            self.websocket.busy = False
        if not task.cancelled() and task.exception() is not None and not self.websocket.closed:
            logger.error("handler failed", exc_info=task.exception())

def internal_error(websocket: WebSocket, message_type: str) -> Coroutine[Any, Any, None]:
    """Log the exception being handled with its traceback; tell the client nothing more (await the result)."""
    logger.exception("handler for message type %r failed", message_type)
    return send_error(websocket, "internal_error", "internal server error")


def send_error(
    websocket: WebSocket, code: str, message: str, errors: list[dict[str, Any]] | None = None
) -> Coroutine[Any, Any, None]:
    """One ``{"type": "error", "code", "message"}`` frame (with ``errors`` for validation), sent when awaited.

    A plain function returning the send's coroutine: a compiled coroutine in
    between would cost more than it saves (measured).
    """
    frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if errors is not None:
        frame["errors"] = errors
    return websocket.send_json(frame)
