"""``WebSocketServer``: composes the app once and serves it with ``websockets``."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import Server, ServerConnection
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.typing import Origin

from .admission import ConnectionLimiter
from .broadcast.base import BroadcastBackend
from .broadcast.hub import BroadcastStats, Hub, OverflowPolicy
from .broadcast.memory import MemoryBackend
from .chain import MessageStep, compose_connect, compose_disconnect, compose_message, count_routers
from .dispatch import Dispatcher, RouteTable
from .exceptions import MiddlewareError, RouterError
from .http import HTTPHandler, HTTPRequest, HTTPResponse, json_response
from .middleware.base import BaseMiddleware
from .proxies import TrustedProxies
from .redaction import install_redaction
from .router import Router
from .transport import TRANSPORTS, handshake_address, serve_function, transport_options
from .types import RawHandler
from .websocket import WebSocket


__all__ = ["RunningServer", "WebSocketServer"]

logger = logging.getLogger("aiows")

#: Default largest incoming message, in bytes (1 MiB); larger ones close with 1009.
DEFAULT_MAX_MESSAGE_SIZE = 2**20


#: The ``loop=`` choices of ``run()``.
LOOPS = ("auto", "asyncio", "uvloop")


def run_with_loop(loop: str, main: Any) -> None:
    """Run the coroutine ``main`` on uvloop (``"uvloop"``, or ``"auto"`` when installed) or asyncio."""
    if loop != "asyncio":
        try:
            import uvloop  # type: ignore[import-not-found,unused-ignore]
        except ImportError as exc:
            if loop == "uvloop":
                main.close()
                raise ImportError('loop="uvloop" needs the uvloop package: pip install "aiows[fast]"') from exc
        else:
            uvloop.run(main)
            return
    asyncio.run(main)


class WebSocketServer:
    """A WebSocket server: add middleware and routers, then ``run()`` or ``serve()``.

    Every option is a keyword argument; the README's "Server options" section
    documents each one and its default.
    """

    def __init__(
        self,
        *,
        max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        compression: str | None = None,
        open_timeout: float | None = 10.0,
        close_timeout: float | None = 10.0,
        idle_timeout: float | None = None,
        send_timeout: float | None = None,
        max_queue: int | None = 16,
        max_concurrent_handlers: int = 1,
        max_connections: int | None = None,
        max_connections_per_ip: int | None = None,
        max_connections_per_ip_per_minute: int | None = None,
        origins: Sequence[str] | None = None,
        trusted_proxies: Sequence[str] = (),
        health_path: str | None = "/healthz",
        shutdown_grace: float = 10.0,
        broadcast: BroadcastBackend | None = None,
        outgoing_queue_size: int = 256,
        outgoing_overflow: OverflowPolicy = "close",
        transport: str = "websockets",
        loop: str = "auto",
    ) -> None:
        if compression not in (None, "deflate"):
            raise ValueError(f'compression must be None or "deflate", not {compression!r}')
        if transport not in TRANSPORTS:
            raise ValueError(f'transport must be "websockets" or "picows", not {transport!r}')
        if loop not in LOOPS:
            raise ValueError(f'loop must be "auto", "asyncio" or "uvloop", not {loop!r}')
        if transport == "picows" and (max_connections_per_ip is not None or max_connections_per_ip_per_minute is not None):
            raise ValueError(
                'max_connections_per_ip and max_connections_per_ip_per_minute need the client address during '
                'the handshake, which transport="picows" does not provide: use transport="websockets"'
            )
        if max_concurrent_handlers < 1:
            raise ValueError("max_concurrent_handlers must be at least 1")
        self.max_message_size = max_message_size
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.compression = compression
        self.open_timeout = open_timeout
        self.close_timeout = close_timeout
        self.idle_timeout = idle_timeout
        self.send_timeout = send_timeout
        self.max_queue = max_queue
        self.max_concurrent_handlers = max_concurrent_handlers
        self.max_connections = max_connections
        self.max_connections_per_ip = max_connections_per_ip
        self.max_connections_per_ip_per_minute = max_connections_per_ip_per_minute
        self.origins = list(origins) if origins is not None else None
        self.trusted_proxies = TrustedProxies(trusted_proxies)
        self.health_path = health_path
        self.shutdown_grace = shutdown_grace
        self.transport = transport
        self.loop = loop
        self.middlewares: list[BaseMiddleware] = []
        self.mounts: list[tuple[Router, str | None]] = []
        self.http_routes: dict[str, HTTPHandler] = {}
        self.running: RunningServer | None = None
        #: Rooms, fan-out and presence; ``broadcast()`` and ``room_members()`` use it.
        self.hub = Hub(self, broadcast or MemoryBackend(), outgoing_queue_size, outgoing_overflow)

    async def broadcast(
        self,
        data: object,
        room: str | None = None,
        exclude: WebSocket | Iterable[WebSocket] | None = None,
    ) -> int:
        """Send ``data`` (a dict, a pydantic model...) to every connection, or to ``room``'s.

        The frame is encoded once. ``exclude`` is a connection or several.
        With a shared backend it reaches the connections of every server.
        Returns without waiting for delivery: each recipient has a bounded
        outgoing queue (see ``outgoing_queue_size``); the return value is the
        number of this server's connections it was queued for.
        """
        return await self.hub.broadcast(data, room, exclude)

    async def room_members(self, room: str) -> int:
        """The number of connections in ``room``, across every server sharing the backend."""
        return await self.hub.room_members(room)

    @property
    def broadcast_stats(self) -> BroadcastStats:
        """Counters: broadcasts, encodes, queued, delivered, overflow closes and drops."""
        return self.hub.stats

    @property
    def routers(self) -> list[Router]:
        """Every router included, in inclusion order."""
        return [router for router, _ in self.mounts]

    def add_middleware(self, middleware: BaseMiddleware) -> None:
        """Add middleware around every router; server middleware runs in the order added."""
        if not isinstance(middleware, BaseMiddleware):
            raise MiddlewareError(f"{middleware!r} is not a BaseMiddleware instance")
        self.middlewares.append(middleware)

    def include_router(self, router: Router, path: str | None = None) -> None:
        """Serve ``router`` (and the routers nested in it); call it once per router.

        With ``path`` (``"/echo"``) the router serves only connections to that
        request path; without, it serves every path. A path that no router
        serves is refused at the handshake with HTTP 404.
        """
        if router.parent is not None or any(router is served for served in self.routers):
            raise RouterError("this router is already included")
        if path is not None and not path.startswith("/"):
            raise RouterError(f"a router path must start with '/', not {path!r}")
        self.mounts.append((router, path))

    def add_http_route(self, path: str, handler: HTTPHandler) -> None:
        """Answer plain HTTP GET requests for ``path`` with ``handler(request) -> HTTPResponse``.

        The handler must be synchronous (it runs inside the handshake).
        """
        self.http_routes[path] = handler

    def route_table(self, routers: list[Router]) -> RouteTable:
        """Compose the chains of the routers serving one path: done once, at start."""
        routes: dict[str, MessageStep] = {}
        fallback: MessageStep | None = None
        raw: RawHandler | None = None
        for root in routers:
            for router in root.walk():
                middlewares = self.middlewares + router.middleware_path()
                for message_type, handler in router.message_handlers.items():
                    if message_type not in routes:
                        routes[message_type] = compose_message(middlewares, handler)
                if fallback is None and router.catch_all is not None:
                    fallback = compose_message(middlewares, router.catch_all)
                if raw is None and router.raw_handler is not None:
                    raw = router.raw_handler
        if raw is not None and (routes or fallback is not None):
            raise RouterError("a path served by a raw frame handler cannot also have JSON message handlers")
        return RouteTable(
            routes,
            fallback,
            raw,
            compose_connect(self.middlewares, routers),
            compose_disconnect(self.middlewares, routers),
            1 + count_routers(routers),
        )

    def dispatcher(self) -> Dispatcher:
        """Compose every path's route table and the connection manager."""
        everywhere = [router for router, path in self.mounts if path is None]
        paths = dict.fromkeys(path for _, path in self.mounts if path is not None)
        tables = {
            path: self.route_table([router for router, mounted in self.mounts if mounted in (None, path)])
            for path in paths
        }
        limits = (self.max_connections, self.max_connections_per_ip, self.max_connections_per_ip_per_minute)
        return Dispatcher(
            tables,
            self.route_table(everywhere) if everywhere or not paths else None,
            idle_timeout=self.idle_timeout,
            send_timeout=self.send_timeout,
            close_timeout=self.close_timeout,
            max_concurrent_handlers=self.max_concurrent_handlers,
            trusted_proxies=self.trusted_proxies if self.trusted_proxies.networks else None,
            limiter=ConnectionLimiter(*limits) if any(limit is not None for limit in limits) else None,
        )

    def serve(self, host: str = "localhost", port: int = 8000, *, reuse_port: bool = False) -> RunningServer:
        """Serve in the running event loop: ``async with server.serve(host, 0) as running:``.

        ``running.port`` is the bound port (useful with ``port=0``); leaving the
        block shuts the server down gracefully (see ``RunningServer.shutdown``).
        ``reuse_port=True`` sets ``SO_REUSEPORT`` so several processes share the port.
        """
        return RunningServer(self, host, port, reuse_port=reuse_port)

    async def shutdown(self, grace: float | None = None) -> None:
        """Shut the running server down gracefully (see ``RunningServer.shutdown``)."""
        if self.running is not None:
            await self.running.shutdown(grace)

    def run(self, host: str = "localhost", port: int = 8000, *, reuse_port: bool = False) -> None:
        """Serve until Ctrl-C or SIGTERM, then shut down gracefully and return."""
        try:
            run_with_loop(self.loop, self._run_until_signal(host, port, reuse_port))
        except KeyboardInterrupt:
            pass

    async def _run_until_signal(self, host: str, port: int, reuse_port: bool = False) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, stop.set)
            except (NotImplementedError, RuntimeError):
                pass
        async with self.serve(host, port, reuse_port=reuse_port) as running:
            print(f"aiows: serving on {running.url} (Ctrl-C to stop)", file=sys.stderr, flush=True)
            await stop.wait()
            print(f"aiows: shutting down (grace {self.shutdown_grace:g} s)", file=sys.stderr, flush=True)


T = TypeVar("T")


def _started(value: T | None) -> T:
    """``value``, set when the server started; a clear error before that."""
    if value is None:
        raise RuntimeError("the server is not running: use 'async with server.serve(...)'")
    return value


class RunningServer:
    """A server started by ``WebSocketServer.serve()``; use it with ``async with``."""

    def __init__(self, app: WebSocketServer, host: str, port: int, *, reuse_port: bool = False) -> None:
        self.app = app
        self.host = host
        self.requested_port = port
        self.reuse_port = reuse_port
        self._server: Server | None = None
        self._dispatcher: Dispatcher | None = None
        self._port: int | None = None

    @property
    def server(self) -> Server:
        """The underlying server: ``websockets``' ``Server`` (``picows.websockets``' with ``transport="picows"``)."""
        return _started(self._server)

    @property
    def dispatcher(self) -> Dispatcher:
        """The connection manager: open connections, route tables, drain state."""
        return _started(self._dispatcher)

    @property
    def port(self) -> int:
        """The port the server listens on (the real one when started with port 0)."""
        return _started(self._port)

    @property
    def url(self) -> str:
        """``ws://host:port``, for clients."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}"

    async def start(self) -> None:
        """Compose the chains and start listening."""
        app = self.app
        install_redaction()  # keep tokens out of aiows' and websockets' log lines
        dispatcher = self._dispatcher = self.app.dispatcher()
        await app.hub.attach(dispatcher)  # starts the broadcast backend
        try:
            self._server = await serve_function(app.transport)(
                self._serve_connection,
                self.host,
                self.requested_port,
                max_size=app.max_message_size,
                ping_interval=app.ping_interval,
                ping_timeout=app.ping_timeout,
                compression=app.compression,
                open_timeout=app.open_timeout,
                close_timeout=app.close_timeout,
                max_queue=app.max_queue,
                origins=[*(Origin(origin) for origin in app.origins), None] if app.origins is not None else None,
                process_request=self.process_request,
                process_response=self.process_response,
                reuse_port=self.reuse_port,
                **transport_options(app.transport),
            )
        except BaseException:
            await app.hub.detach(dispatcher)
            raise
        self._port = self._server.sockets[0].getsockname()[1]
        app.running = self

    async def _serve_connection(self, connection: ServerConnection) -> None:
        """Serve one connection; a closed connection's stray exception is not a server error.

        With the compiled build (mypy 2.4, CPython 3.11), an exception that
        asyncio throws into the compiled connection coroutine when the peer
        closes (the transport's internal ``EOFError``, or a reset) can escape it
        although its ``except`` clauses would handle it; its ``finally`` blocks
        still run (the connection is cleaned up and disconnect handlers run).
        This interpreted frame keeps such an exception out of the error log.
        """
        try:
            await self.dispatcher.serve(connection)
        except Exception:
            if connection.state == State.OPEN:
                raise

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """The handshake's checks: HTTP routes and health, paths, drain, connection limits."""
        url = urlsplit(request.path)
        dispatcher = self.dispatcher
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return self._http(connection, url.path, url.query, request)
        if dispatcher.draining:
            return connection.respond(503, "Server is shutting down.\n")
        if dispatcher.table_for(url.path) is None:
            return connection.respond(404, "No WebSocket endpoint at this path.\n")
        limiter = dispatcher.limiter
        if limiter is None:
            return None
        address = handshake_address(connection)
        if address is None:  # picows: only the total can be checked (per-IP limits are refused at creation)
            if limiter.max_connections is not None and len(dispatcher.tasks) >= limiter.max_connections:
                return connection.respond(503, "Server is at capacity.\n")
            return None
        ip = dispatcher.client_ip(address, request.headers)
        refusal = limiter.reserve(address, ip)
        if refusal is not None:
            logger.info("refused a connection from %s: HTTP %d", ip, refusal)
            text = "Too many connections.\n" if refusal == 429 else "Server is at capacity.\n"
            return connection.respond(refusal, text)
        # A client that leaves after sending its request may never reach the connection
        # handler (websockets drops it without a call): free its slot when the TCP link goes.
        connection.connection_lost_waiter.add_done_callback(lambda _: limiter.release(address))
        return None

    def process_response(self, connection: ServerConnection, request: Request, response: Response) -> Response:
        """Free the connection slot of a handshake that did not open a WebSocket."""
        limiter = self.dispatcher.limiter
        address = handshake_address(connection)
        if response.status_code != 101 and limiter is not None and address is not None:
            limiter.release(address)
        return response

    def _http(self, connection: ServerConnection, path: str, query: str, request: Request) -> Response | None:
        app = self.app
        if app.health_path is not None and path == app.health_path:
            dispatcher = self.dispatcher
            status = "draining" if dispatcher.draining else "ok"
            reply = json_response(
                {"status": status, "connections": len(dispatcher.connections)}, 503 if dispatcher.draining else 200
            )
        elif path in app.http_routes:
            reply = app.http_routes[path](HTTPRequest(path, dict(parse_qsl(query)), request.headers))
            if not isinstance(reply, HTTPResponse):
                raise TypeError(f"HTTP route {path!r} must return an HTTPResponse synchronously")
        elif self.dispatcher.table_for(path) is not None:
            return None  # websockets answers 426 Upgrade Required
        else:
            return connection.respond(404, "Not Found\n")
        response = connection.respond(reply.status, "")
        response.body = reply.body
        fields = {"Content-Type": reply.content_type, **reply.headers, "Content-Length": str(len(reply.body))}
        for name, value in fields.items():
            if name in response.headers:
                del response.headers[name]
            response.headers[name] = value
        return response

    async def shutdown(self, grace: float | None = None) -> None:
        """Shut down gracefully; returns once every connection is closed.

        Stops accepting connections at once (handshakes in progress get HTTP
        503); frames that arrive from then on are not dispatched; handlers
        already running get ``grace`` seconds (default: the server's
        ``shutdown_grace``) to finish, and each connection is closed with 1001
        as soon as its handler is done; what is still running after that is
        cancelled. Disconnect handlers run once per connection.
        """
        if self._server is None:
            return
        self._server.server.close()  # stop listening now
        await self.dispatcher.shutdown(self.app.shutdown_grace if grace is None else grace)
        self._server.close()
        await self._server.wait_closed()
        await self.app.hub.detach(self.dispatcher)
        if self.app.running is self:
            self.app.running = None

    async def close(self) -> None:
        """Shut down without a grace period: running handlers are cancelled."""
        await self.shutdown(0)

    async def __aenter__(self) -> RunningServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.shutdown()


