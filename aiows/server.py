"""``WebSocketServer``: composes the app once and serves it on a transport front-end."""

from __future__ import annotations

import asyncio
import signal
import ssl as ssl_module
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from .admission import ServerGate
from .broadcast.base import BroadcastBackend
from .broadcast.hub import BroadcastStats, Hub, OverflowPolicy
from .broadcast.memory import MemoryBackend
from .codecs import Codec
from .chain import MessageStep, compose_connect, compose_disconnect, compose_message, count_routers
from .dispatch import Dispatcher, RouteTable
from .exceptions import MiddlewareError, RouterError
from .http import HTTPHandler, HTTPRequest, HTTPResponse
from .logs import announce
from .middleware.base import BaseMiddleware
from .options import DEFAULT_MAX_MESSAGE_SIZE, ServerOptions
from .proxies import TrustedProxies
from .redaction import install_redaction
from .router import Router
from .stats import ServerCounters, ServerStats
from .transports import serve_function
from .transports.base import Listener
from .types import RawHandler
from .websocket import WebSocket

if TYPE_CHECKING:
    from .asgi import ASGIApp
    from .metrics import Metrics
    from .settings import AiowsSettings

__all__ = ["DEFAULT_BACKLOG", "RunningServer", "WebSocketServer"]

#: Default listen backlog: pending TCP connections the kernel queues (uvicorn and hypercorn use 2048).
DEFAULT_BACKLOG = 2048


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

    Every option is a keyword argument with a safe default, checked when the
    server is created and kept, frozen, in ``server.options``. The "Running in
    production" guide shows them together (docs/guides/production.md).

    Args:
        max_message_size: the largest message in bytes (``None``: no limit);
            a larger one, or one in more than ``max(4096, max_message_size / 64)``
            fragments, closes the connection with 1009.
        ping_interval: seconds between keepalive pings (``None``: off).
        ping_timeout: seconds a peer has to answer a ping before it is dropped.
        compression: ``"deflate"`` to offer permessage-deflate; ``None`` (off)
            by default, as it costs about 31 KiB per connection.
        open_timeout: seconds a client has to complete the handshake.
        close_timeout: seconds for the closing handshake, then the socket is dropped.
        idle_timeout: seconds without a message before closing with 1001 (``None``: off).
        send_timeout: seconds ``send_json()`` may wait for a client that does
            not read, then the connection is closed with 1013 (``None``: wait).
        max_queue: messages buffered per connection before reading from it pauses.
        max_concurrent_handlers: messages of one connection handled at once
            (1: one at a time, in arrival order).
        max_pending_requests: ``websocket.request()`` calls waiting for one
            client's replies, at most.
        max_connections: connections in total; over it the handshake gets HTTP 503.
        max_connections_per_ip: connections per client IP; over it HTTP 429.
        max_connections_per_ip_per_minute: new connections per client IP per
            minute; over it HTTP 429.
        origins: the browser origins allowed (``None``: any); others get HTTP 403.
        trusted_proxies: addresses or networks whose ``X-Forwarded-For`` and
            ``Forwarded`` headers are believed.
        health_path: the plain HTTP GET path answering
            ``{"status": "ok", "connections": N}`` (``None``: off).
        health_detail: ``True``: the health answer includes ``server.stats()``.
        metrics_path: the plain HTTP GET path of the Prometheus metrics, such
            as ``"/metrics"`` (``None``: off; ``pip install "aiows[metrics]"``).
        asyncapi_path: the plain HTTP GET path of the app's AsyncAPI 3.0.0
            document (``None``: off).
        docs_path: the plain HTTP GET path of the page rendering that document
            (``None``: off).
        title: the document's ``info.title``.
        version: the document's ``info.version``.
        client_script_path: the plain HTTP GET path of the browser client,
            ``aiows.js`` (``None``: off).
        shutdown_grace: seconds running handlers get to finish on shutdown.
        broadcast: the rooms and broadcast backend (``MemoryBackend()`` by
            default; ``RedisBackend(url)`` across processes).
        outgoing_queue_size: broadcast messages queued per connection.
        outgoing_overflow: when that queue is full, ``"close"`` the connection
            (1013) or ``"drop_oldest"``.
        transport: ``"websockets"`` or ``"picows"`` (``pip install "aiows[fast]"``).
        loop: the event loop of ``run()``: ``"auto"`` (uvloop when installed),
            ``"asyncio"`` or ``"uvloop"``.
        codecs: the wire formats offered, by name (``"json"``, ``"msgpack"``:
            ``pip install "aiows[msgpack]"``) or as ``aiows.codecs.Codec``
            objects. A client picks one with the WebSocket subprotocol
            ``aiows.<name>``; one that offers none of them gets the first.

    Raises:
        aiows.options.OptionError: an option is out of range or not one of its
            choices (a ``ValueError`` naming the option).
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
        max_pending_requests: int = 64,
        max_connections: int | None = None,
        max_connections_per_ip: int | None = None,
        max_connections_per_ip_per_minute: int | None = None,
        origins: Sequence[str] | None = None,
        trusted_proxies: Sequence[str] = (),
        health_path: str | None = "/healthz",
        health_detail: bool = False,
        metrics_path: str | None = None,
        asyncapi_path: str | None = "/asyncapi.json",
        docs_path: str | None = "/docs",
        title: str = "aiows app",
        version: str = "0.1.0",
        shutdown_grace: float = 10.0,
        broadcast: BroadcastBackend | None = None,
        outgoing_queue_size: int = 256,
        outgoing_overflow: OverflowPolicy = "close",
        transport: str = "websockets",
        loop: str = "auto",
        client_script_path: str | None = "/aiows.js",
        codecs: Sequence[str | Codec] = ("json",),
    ) -> None:
        #: Every option, checked (``aiows.options.ServerOptions``).
        self.options = ServerOptions(
            max_message_size=max_message_size,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            compression=compression,
            open_timeout=open_timeout,
            close_timeout=close_timeout,
            idle_timeout=idle_timeout,
            send_timeout=send_timeout,
            max_queue=max_queue,
            max_concurrent_handlers=max_concurrent_handlers,
            max_pending_requests=max_pending_requests,
            max_connections=max_connections,
            max_connections_per_ip=max_connections_per_ip,
            max_connections_per_ip_per_minute=max_connections_per_ip_per_minute,
            origins=None if origins is None else tuple(origins),
            trusted_proxies=tuple(trusted_proxies),
            health_path=health_path,
            health_detail=health_detail,
            metrics_path=metrics_path,
            asyncapi_path=asyncapi_path,
            docs_path=docs_path,
            title=title,
            version=version,
            shutdown_grace=shutdown_grace,
            outgoing_queue_size=outgoing_queue_size,
            outgoing_overflow=outgoing_overflow,
            transport=transport,
            loop=loop,
            client_script_path=client_script_path,
            codecs=tuple(codecs),
        )
        self.middlewares: list[BaseMiddleware] = []
        self.mounts: list[tuple[Router, str | None]] = []
        self.http_routes: dict[str, HTTPHandler] = {}
        self.running: RunningServer | None = None
        #: Rooms, fan-out and presence; ``broadcast()`` and ``room_members()`` use it.
        self.hub = Hub(self, broadcast or MemoryBackend(), outgoing_queue_size, outgoing_overflow)
        #: Connections, error frames and refusals counted since the server was created (see ``stats()``).
        self.counters = ServerCounters()
        #: The settings it was made from (``from_settings()``), which ``run()`` follows; ``None`` otherwise.
        self.settings: AiowsSettings | None = None
        #: The Prometheus metrics served at ``metrics_path`` (``None`` without it).
        self.metrics: Metrics | None = None
        if metrics_path is not None:
            from .metrics import Metrics

            self.metrics = Metrics(self)
        if client_script_path is not None:
            self.add_http_route(client_script_path, client_script)

    @classmethod
    def from_settings(cls, settings: AiowsSettings | None = None) -> WebSocketServer:
        """A server with the options of ``settings`` (default: ``AiowsSettings()``, the ``AIOWS_*`` environment
        variables and ``.env``; needs ``pip install "aiows[settings]"``).

        ``run()`` then serves on the settings' host and port, with TLS when they
        name a certificate; ``redis_url`` makes a ``RedisBackend``.
        """
        if settings is None:
            try:
                from .settings import AiowsSettings
            except ImportError as exc:
                raise ImportError('settings from the environment need pydantic-settings: pip install "aiows[settings]"') from exc
            settings = AiowsSettings()
        broadcast: BroadcastBackend | None = None
        if settings.redis_url is not None:
            from .broadcast.redis_backend import RedisBackend

            broadcast = RedisBackend(settings.redis_url)
        server = cls(**settings.server_options(), broadcast=broadcast)
        server.settings = settings
        return server

    def stats(self) -> ServerStats:
        """A snapshot of the server's counters: connections by path and transport, messages, error frames by
        code, authentication failures, rate limiting, broadcast counters and uptime (``aiows.stats.ServerStats``).
        """
        return self.counters.snapshot(self)

    async def broadcast(
        self,
        data: object,
        room: str | None = None,
        exclude: WebSocket | Iterable[WebSocket] | None = None,
    ) -> int:
        """Send ``data`` to every connection, or to ``room``'s; ``exclude`` is a connection or several.

        ``data`` (a dict, a list, a pydantic model...) is encoded to JSON once;
        ``bytes`` are sent as they are, as JSON text encoded already (encode
        once, broadcast many times). A local recipient whose socket can take
        the frame gets it written in this call; one that is slow to read gets
        it on its bounded outgoing queue (``outgoing_queue_size``). With a
        shared backend it reaches the connections of every server. Returns
        the number of this server's connections it was written or queued for.

        With a backend that keeps history (``history_size > 0``), a broadcast to
        a room is stored and numbered first: each delivery is the JSON object
        plus ``"room"``, ``"offset"`` and ``"epoch"``, and ``data`` that is not
        a JSON object, or already has one of those keys, raises
        ``ValueError``. Raises ``aiows.exceptions.BackendUnavailable`` when
        the history cannot be reached (nothing was sent then).
        """
        return await self.hub.broadcast(data, room, exclude)

    async def room_members(self, room: str) -> int:
        """The number of connections in ``room``, across every server sharing the backend."""
        return await self.hub.room_members(room)

    async def presence(self, room: str) -> dict[str, Any]:
        """``{"connections": N, "users": [...]}``: who is in ``room``, across every server sharing the backend.

        ``users`` are the distinct ``websocket.context["user_id"]`` values (set
        by ``AuthMiddleware``) of the room's connections, sorted; connections
        without one count in ``connections`` only. Like ``room_members()``, a
        server that stopped refreshing its presence drops out after the
        backend's ``presence_ttl``.
        """
        return await self.hub.presence(room)

    async def room_position(self, room: str) -> dict[str, Any]:
        """``{"epoch": E, "offset": N}``: ``room``'s last publication (offset 0: none yet), with a history backend.

        A client that stores it with a snapshot it got from the app can later
        ``join(room, offset=N, epoch=E)`` and receive every publication since.
        Raises ``RuntimeError`` when the backend keeps no history.
        """
        return await self.hub.room_position(room)

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

        The handler must be synchronous (it runs inside the handshake). The
        paths of the built-in endpoints (``health_path``, ``asyncapi_path``,
        ``docs_path``) are refused: turn the endpoint off or move it first.
        """
        options = self.options
        for option in ("health_path", "asyncapi_path", "docs_path"):
            if path == getattr(options, option):
                raise RouterError(f"{path} is the {option} endpoint: pass {option}=None or another path to use it")
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
        table = RouteTable(
            routes,
            fallback,
            raw,
            compose_connect(self.middlewares, routers),
            compose_disconnect(self.middlewares, routers),
            1 + count_routers(routers),
            self.counters.errors,
        )
        # Per-message counters only when metrics are served: a server without them counts nothing per message.
        return table if self.metrics is None else self.metrics.metered(table)

    def dispatcher(self, transport: str | None = None) -> Dispatcher:
        """Compose every path's route table and the connection manager.

        ``transport`` labels its connections in the counters (default: the
        ``transport`` option; ``"asgi"`` under ``server.asgi()``). The route
        tables are metered when ``metrics_path`` is set (``server.metrics``
        follows the options here, should they have been replaced).
        """
        if self.options.metrics_path is None:
            self.metrics = None
        elif self.metrics is None:
            from .metrics import Metrics

            self.metrics = Metrics(self)
        everywhere = [router for router, path in self.mounts if path is None]
        paths = dict.fromkeys(path for _, path in self.mounts if path is not None)
        tables = {
            path: self.route_table([router for router, mounted in self.mounts if mounted in (None, path)])
            for path in paths
        }
        options = self.options
        proxies = TrustedProxies(options.trusted_proxies)
        return Dispatcher(
            tables,
            self.route_table(everywhere) if everywhere or not paths else None,
            idle_timeout=options.idle_timeout,
            send_timeout=options.send_timeout,
            close_timeout=options.close_timeout,
            max_concurrent_handlers=options.max_concurrent_handlers,
            trusted_proxies=proxies if proxies.networks else None,
            counters=self.counters,
            transport=options.transport if transport is None else transport,
            codecs=options.offered_codecs,
        )

    def _serving_started(self) -> None:
        """A listener or the ASGI app started serving: uptime counts from now, the metrics are shared."""
        if self.counters.started is None:
            self.counters.started = time.monotonic()
        if self.metrics is not None:
            self.metrics.start_sharing()

    def _serving_stopped(self) -> None:
        """Serving stopped: no uptime, the metrics shared a last time."""
        self.counters.started = None
        if self.metrics is not None:
            self.metrics.stop_sharing()

    def serve(
        self,
        host: str = "localhost",
        port: int = 8000,
        *,
        reuse_port: bool = False,
        backlog: int = DEFAULT_BACKLOG,
        ssl: ssl_module.SSLContext | None = None,
    ) -> RunningServer:
        """Serve in the running event loop: ``async with server.serve(host, 0) as running:``.

        ``running.port`` is the bound port (useful with ``port=0``); leaving the
        block shuts the server down gracefully (see ``RunningServer.shutdown``).
        ``reuse_port=True`` sets ``SO_REUSEPORT`` so several processes share the port;
        ``backlog`` is how many connections the kernel queues before they are accepted.
        ``ssl`` (an ``ssl.SSLContext``, see ``aiows.tls.server_context``) serves
        ``wss://`` and HTTPS; the TLS handshake must end within ``open_timeout``.
        """
        return RunningServer(self, host, port, reuse_port=reuse_port, backlog=backlog, ssl=ssl)

    def asgi(self, *, handle_signals: bool = True) -> ASGIApp:
        """This server as an ASGI 3 application, for any ASGI server or to mount in an ASGI app.

        ``uvicorn myapp:app`` with ``app = server.asgi()``, or
        ``fastapi_app.mount("/ws", server.asgi())``: the same routers,
        middleware and rooms on ``websocket`` scopes, the health endpoint and
        HTTP routes on ``http`` scopes, and ``lifespan``. The options that
        belong to the ASGI server (``ping_interval``, ``ping_timeout``,
        ``compression``, ``open_timeout``, ``transport``, ``loop``) must be
        left at their defaults: a ``ValueError`` names those that are not.
        With ``handle_signals`` (the default), SIGTERM and SIGINT are held
        until the connections are closed with 1001, then passed on to the
        ASGI server (see ``aiows.asgi``).
        """
        from .asgi import ASGIApp

        return ASGIApp(self, handle_signals=handle_signals)

    async def shutdown(self, grace: float | None = None) -> None:
        """Shut the running server down gracefully (see ``RunningServer.shutdown``)."""
        if self.running is not None:
            await self.running.shutdown(grace)

    def run(
        self,
        host: str | None = None,
        port: int | None = None,
        *,
        reuse_port: bool = False,
        backlog: int = DEFAULT_BACKLOG,
        ssl: ssl_module.SSLContext | None = None,
    ) -> None:
        """Serve until Ctrl-C or SIGTERM, then shut down gracefully and return (``ssl``: see ``serve()``).

        ``host`` and ``port`` default to ``"localhost"`` and 8000, or to those of
        the settings the server was made from (``from_settings()``), whose
        certificate files then give the TLS context if ``ssl`` is not given.
        """
        settings = self.settings
        if settings is not None:
            host = settings.host if host is None else host
            port = settings.port if port is None else port
            if ssl is None and settings.certfile is not None:
                from .tls import server_context

                ssl = server_context(settings.certfile, settings.keyfile, ca_certs=settings.ca_certs)
        host = "localhost" if host is None else host
        port = 8000 if port is None else port
        try:
            run_with_loop(self.options.loop, self._run_until_signal(host, port, reuse_port, backlog, ssl))
        except KeyboardInterrupt:
            pass

    async def _run_until_signal(
        self, host: str, port: int, reuse_port: bool, backlog: int, ssl: ssl_module.SSLContext | None
    ) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, stop.set)
            except (NotImplementedError, RuntimeError):
                pass
        async with self.serve(host, port, reuse_port=reuse_port, backlog=backlog, ssl=ssl) as running:
            announce(f"serving on {running.url} (Ctrl-C to stop)")
            await stop.wait()
            announce(f"shutting down (grace {self.options.shutdown_grace:g} s)")


#: The browser client (``aiows/static/aiows.js``), read once when first asked for.
_client_script: bytes | None = None


def client_script(request: HTTPRequest) -> HTTPResponse:
    """The dependency-free browser client, served at ``client_script_path`` (``/aiows.js``)."""
    global _client_script
    if _client_script is None:
        _client_script = (Path(__file__).resolve().parent / "static" / "aiows.js").read_bytes()
    return HTTPResponse(
        body=_client_script,
        content_type="text/javascript; charset=utf-8",
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )


T = TypeVar("T")


def _started(value: T | None) -> T:
    """``value``, set when the server started; a clear error before that."""
    if value is None:
        raise RuntimeError("the server is not running: use 'async with server.serve(...)'")
    return value


class RunningServer:
    """A server started by ``WebSocketServer.serve()``; use it with ``async with``."""

    def __init__(
        self,
        app: WebSocketServer,
        host: str,
        port: int,
        *,
        reuse_port: bool = False,
        backlog: int = DEFAULT_BACKLOG,
        ssl: ssl_module.SSLContext | None = None,
    ) -> None:
        self.app = app
        self.host = host
        self.requested_port = port
        self.reuse_port = reuse_port
        self.backlog = backlog
        #: The TLS context (``None``: plain ``ws://``).
        self.ssl = ssl
        self._listener: Listener | None = None
        self._dispatcher: Dispatcher | None = None
        self._gate: ServerGate | None = None
        self._port: int | None = None

    @property
    def server(self) -> asyncio.AbstractServer:
        """The listening ``asyncio`` server."""
        return _started(self._listener).server

    @property
    def dispatcher(self) -> Dispatcher:
        """The connection manager: open connections, route tables, drain state."""
        return _started(self._dispatcher)

    @property
    def gate(self) -> ServerGate:
        """The handshake checks: HTTP endpoints, paths, origins, connection limits (``gate.limiter``)."""
        return _started(self._gate)

    @property
    def port(self) -> int:
        """The port the server listens on (the real one when started with port 0)."""
        return _started(self._port)

    @property
    def url(self) -> str:
        """``ws://host:port`` (``wss://`` with TLS), for clients."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'ws' if self.ssl is None else 'wss'}://{host}:{self.port}"

    async def start(self) -> None:
        """Compose the chains and start listening."""
        app = self.app
        install_redaction()  # keep tokens out of aiows' and its transports' log lines
        dispatcher = self._dispatcher = app.dispatcher()
        gate = self._gate = ServerGate(app, dispatcher)
        await app.hub.attach(dispatcher)  # starts the broadcast backend
        try:
            serve = serve_function(app.options.transport)
            listen: dict[str, Any] = {"reuse_port": self.reuse_port, "backlog": self.backlog}
            if app.metrics is not None:
                listen["meter"] = app.metrics.link_meter
            if self.ssl is not None:
                listen["ssl"] = self.ssl
                if app.options.open_timeout is not None:  # a client that never finishes the TLS handshake
                    listen["ssl_handshake_timeout"] = app.options.open_timeout
            self._listener = await serve(gate, app.options, self.host, self.requested_port, **listen)
        except BaseException:
            await app.hub.detach(dispatcher)
            raise
        self._port = self._listener.sockets[0].getsockname()[1]
        app.running = self
        app._serving_started()

    async def shutdown(self, grace: float | None = None) -> None:
        """Shut down gracefully; returns once every connection is closed.

        Stops accepting connections at once (handshakes in progress get HTTP
        503); frames that arrive from then on are not dispatched; handlers
        already running get ``grace`` seconds (default: the server's
        ``shutdown_grace``) to finish, and each connection is closed with 1001
        as soon as its handler is done; what is still running after that is
        cancelled. Disconnect handlers run once per connection. A client that
        does not answer the close frame within ``close_timeout`` is dropped.
        """
        listener = self._listener
        if listener is None:
            return
        self._listener = None
        listener.close()  # stop listening now
        await self.dispatcher.shutdown(self.app.options.shutdown_grace if grace is None else grace)
        listener.abort_handshakes()
        await self.app.hub.detach(self.dispatcher)
        if self.app.running is self:
            self.app.running = None
            self.app._serving_stopped()

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
