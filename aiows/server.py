"""``WebSocketServer``: composes the app once and serves it with ``websockets``."""

from __future__ import annotations

import asyncio
import signal
import sys
from types import TracebackType
from typing import Any, Callable

from websockets.asyncio.server import Server, serve

from .chain import compose_connect, compose_disconnect, compose_message, count_routers
from .chain import MessageStep
from .dispatch import Dispatcher
from .exceptions import MiddlewareError, RouterError
from .middleware.base import BaseMiddleware
from .router import Router

__all__ = ["RunningServer", "WebSocketServer"]

#: Default largest incoming message, in bytes (1 MiB); larger ones close with 1009.
DEFAULT_MAX_MESSAGE_SIZE = 2**20

#: The ``transport=`` choices: the library whose asyncio ``serve()`` runs the server.
TRANSPORTS = ("websockets", "picows")

#: The ``loop=`` choices of ``run()``.
LOOPS = ("auto", "asyncio", "uvloop")


def serve_function(transport: str) -> Callable[..., Any]:
    """The ``serve()`` of ``transport``; a clear ``ImportError`` if its extra is not installed."""
    if transport == "picows":
        try:
            from picows.websockets.asyncio.server import serve as picows_serve  # type: ignore[import-not-found,unused-ignore]
        except ImportError as exc:
            raise ImportError(
                'transport="picows" needs the picows package: pip install "aiows[fast]"'
            ) from exc
        picows_function: Callable[..., Any] = picows_serve
        return picows_function
    return serve


#: picows starts each connection with a 16 KiB read buffer (it grows on demand);
#: 2 KiB brings an idle connection's memory to about websockets' level.
PICOWS_READ_BUFFER = 2048


def transport_options(transport: str) -> dict[str, Any]:
    """Options only one transport's ``serve()`` takes."""
    return {"read_buffer_init_size": PICOWS_READ_BUFFER} if transport == "picows" else {}


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

    Keyword options (the transport limits of ``websockets``):

    - ``max_message_size``: largest incoming message in bytes (default 1 MiB);
      a larger one closes the connection with 1009.
    - ``ping_interval`` / ``ping_timeout``: keepalive pings every 20 s; a peer
      that does not answer within 20 s is dropped (``None`` turns them off).
    - ``compression``: ``None`` (default) or ``"deflate"``. Off by default:
      permessage-deflate costs about 31 KiB of memory per connection that
      negotiates it and lets a small frame inflate into a large message.
    - ``open_timeout``: seconds a client has to finish the handshake (default 10).
    - ``close_timeout``: seconds to wait for the closing handshake (default 10).
    - ``max_queue``: incoming messages buffered per connection while a handler
      runs (default 16); past that, reading from the socket pauses.
    - ``transport``: ``"websockets"`` (default) or ``"picows"``, the faster
      implementation of the same API (``pip install "aiows[fast]"``).
    - ``loop``: the event loop ``run()`` uses: ``"auto"`` (default: uvloop when
      installed, like uvicorn), ``"uvloop"`` or ``"asyncio"``.
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
        max_queue: int | None = 16,
        transport: str = "websockets",
        loop: str = "auto",
    ) -> None:
        if compression not in (None, "deflate"):
            raise ValueError(f'compression must be None or "deflate", not {compression!r}')
        if transport not in TRANSPORTS:
            raise ValueError(f'transport must be "websockets" or "picows", not {transport!r}')
        if loop not in LOOPS:
            raise ValueError(f'loop must be "auto", "asyncio" or "uvloop", not {loop!r}')
        self.max_message_size = max_message_size
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.compression = compression
        self.open_timeout = open_timeout
        self.close_timeout = close_timeout
        self.max_queue = max_queue
        self.transport = transport
        self.loop = loop
        self.middlewares: list[BaseMiddleware] = []
        self.routers: list[Router] = []

    def add_middleware(self, middleware: BaseMiddleware) -> None:
        """Add middleware around every router; server middleware runs in the order added."""
        if not isinstance(middleware, BaseMiddleware):
            raise MiddlewareError(f"{middleware!r} is not a BaseMiddleware instance")
        self.middlewares.append(middleware)

    def include_router(self, router: Router) -> None:
        """Serve ``router`` (and the routers nested in it); call it once per router."""
        if router.parent is not None or any(router is served for served in self.routers):
            raise RouterError("this router is already included")
        self.routers.append(router)

    def dispatcher(self) -> Dispatcher:
        """Compose every chain: done once, when the server starts."""
        routes: dict[str, MessageStep] = {}
        fallback: MessageStep | None = None
        for root in self.routers:
            for router in root.walk():
                middlewares = self.middlewares + router.middleware_path()
                for message_type, handler in router.message_handlers.items():
                    if message_type not in routes:
                        routes[message_type] = compose_message(middlewares, handler)
                if fallback is None and router.catch_all is not None:
                    fallback = compose_message(middlewares, router.catch_all)
        return Dispatcher(
            routes,
            fallback,
            compose_connect(self.middlewares, self.routers),
            compose_disconnect(self.middlewares, self.routers),
            1 + count_routers(self.routers),
        )

    def serve(self, host: str = "localhost", port: int = 8000) -> RunningServer:
        """Serve in the running event loop: ``async with server.serve(host, 0) as running:``.

        ``running.port`` is the bound port (useful with ``port=0``); leaving the
        block closes every connection with 1001 and stops the server.
        """
        return RunningServer(self, host, port)

    def run(self, host: str = "localhost", port: int = 8000) -> None:
        """Serve until Ctrl-C or SIGTERM, then close every connection and return.

        Runs on uvloop when it is installed, unless ``loop="asyncio"``.
        """
        try:
            run_with_loop(self.loop, self._run_until_signal(host, port))
        except KeyboardInterrupt:
            pass

    async def _run_until_signal(self, host: str, port: int) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, stop.set)
            except (NotImplementedError, RuntimeError):
                pass
        async with self.serve(host, port) as running:
            print(f"aiows: serving on {running.url} (Ctrl-C to stop)", file=sys.stderr, flush=True)
            await stop.wait()
            print("aiows: shutting down", file=sys.stderr, flush=True)


class RunningServer:
    """A server started by ``WebSocketServer.serve()``; use it with ``async with``."""

    def __init__(self, app: WebSocketServer, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.requested_port = port
        self._server: Server | None = None

    @property
    def server(self) -> Server:
        """The underlying server: ``websockets``' ``Server`` (``picows.websockets``' with ``transport="picows"``)."""
        if self._server is None:
            raise RuntimeError("the server is not running: use 'async with server.serve(...)'")
        return self._server

    @property
    def port(self) -> int:
        """The port the server listens on (the real one when started with port 0)."""
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        """``ws://host:port``, for clients."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}"

    async def start(self) -> None:
        """Compose the chains and start listening."""
        app = self.app
        dispatcher = app.dispatcher()
        self._server = await serve_function(app.transport)(
            dispatcher.serve,
            self.host,
            self.requested_port,
            max_size=app.max_message_size,
            ping_interval=app.ping_interval,
            ping_timeout=app.ping_timeout,
            compression=app.compression,
            open_timeout=app.open_timeout,
            close_timeout=app.close_timeout,
            max_queue=app.max_queue,
            **transport_options(app.transport),
        )

    async def close(self) -> None:
        """Close every connection with 1001 and wait until the server has stopped."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def __aenter__(self) -> RunningServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()
