"""``ASGIApp``: a ``WebSocketServer`` as an ASGI 3 application, made by ``server.asgi()``.

Serve it with any ASGI server (``uvicorn myapp:app``, where ``app =
server.asgi()``), or mount it in an ASGI framework (``app.mount("/ws",
server.asgi())`` in Starlette and FastAPI, an ``asgi`` route handler in
Litestar). It serves the server's routers on ``websocket`` scopes
(``aiows.transports.asgi``: the same dispatcher, chains and rooms as the
socket front-ends), its HTTP endpoints on ``http`` scopes, and handles
``lifespan``. Mounted where no lifespan reaches it (Starlette does not forward
lifespan to mounts), it starts on the first request; wire ``startup()`` and
``shutdown()`` (or ``lifespan``) into the host app's lifespan to stop it.

ASGI servers close every WebSocket themselves when they shut down (uvicorn
with 1012 at once, granian by dropping the TCP connection, hypercorn after its
graceful timeout), before the lifespan's shutdown reaches the app. So that
clients get 1001 after their running handlers finish, as with ``run()``,
``ASGIApp`` holds SIGTERM and SIGINT while it drains: the first one stops new
WebSocket connections, lets running handlers finish within
``shutdown_grace``, closes every connection with 1001, then gives the signal
to the handler that was installed before (the ASGI server's), which shuts down
as it would have. ``handle_signals=False`` leaves the signals alone. Where
the event loop dispatches the server's own handler from its signal wake-up
(hypercorn, granian), holding cannot delay it: aiows then drains while the
server shuts down (hypercorn waits ``--graceful-timeout`` for it; granian
may drop connections first).

Interpreted on purpose: ASGI servers tell an ASGI 3 application by
``inspect.iscoroutinefunction(app.__call__)``, which a coroutine compiled by
mypyc passes only with mypy 2 (the lowest supported mypy builds coroutines it
does not recognise). The per-connection work is compiled, in
``aiows.transports.asgi``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import FrameType
from typing import TYPE_CHECKING, Any

from .admission import ServerGate
from .dispatch import Dispatcher
from .redaction import install_redaction
from .transports.asgi import check_options, serve_http, serve_websocket

if TYPE_CHECKING:
    from .server import WebSocketServer

__all__ = ["ASGIApp"]

logger = logging.getLogger("aiows")

#: The signals held while the connections drain.
HELD_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class ASGIApp:
    """A ``WebSocketServer`` served through ASGI 3: ``websocket``, ``http`` and ``lifespan`` scopes.

    Made by ``server.asgi()``; see the module's docstring and the guide
    "Mounting in an ASGI app" (docs/guides/asgi.md).
    """

    def __init__(self, server: WebSocketServer, *, handle_signals: bool = True) -> None:
        check_options(server.options)
        self.server = server
        self.handle_signals = handle_signals
        self._started: asyncio.Future[None] | None = None
        self._dispatcher: Dispatcher | None = None
        self._gate: ServerGate | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._draining: asyncio.Future[None] | None = None
        self._held: dict[int, Any] = {}
        self._signalled = False

    @property
    def dispatcher(self) -> Dispatcher:
        """The connection manager: open connections (``dispatcher.connections``), route tables, drain state."""
        if self._dispatcher is None:
            raise RuntimeError("the ASGI app has not started: it starts on lifespan startup or its first request")
        return self._dispatcher

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """The ASGI 3 entry point."""
        kind = scope["type"]
        if kind == "websocket":
            gate = self._gate if self._gate is not None else await self._start_lazily()
            metrics = self.server.metrics
            meter = None if metrics is None else metrics.link_meter
            await serve_websocket(gate, self.server.options, scope, receive, send, meter)
        elif kind == "http":
            gate = self._gate if self._gate is not None else await self._start_lazily()
            await serve_http(gate, scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        else:
            raise ValueError(f"aiows serves websocket, http and lifespan scopes, not {kind!r}")

    # -- start and stop ---------------------------------------------------

    async def startup(self) -> None:
        """Compose the chains and start the broadcast backend (once; later calls wait for the first)."""
        if self._started is None:
            self._started = asyncio.ensure_future(self._start())
        started = self._started
        try:
            await asyncio.shield(started)
        except BaseException:
            if started.done() and self._started is started:
                self._started = None  # a failed start is tried again
            raise

    async def shutdown(self) -> None:
        """Close every connection with 1001 (running handlers get ``shutdown_grace``), stop the broadcast backend.

        Takes no argument, so it can be given to a framework as a shutdown
        hook (Litestar's ``on_shutdown``); the app starts again on its next
        request.
        """
        if self._started is None:
            return
        try:
            await asyncio.shield(self._started)
        except BaseException:
            return
        dispatcher = self._dispatcher
        if dispatcher is None:
            return
        await self._drain()
        self._started = None
        self._dispatcher = None
        self._gate = None
        self._draining = None
        self._release_signals()
        await self.server.hub.detach(dispatcher)
        self.server._serving_stopped()

    @asynccontextmanager
    async def lifespan(self, app: object = None) -> AsyncIterator[None]:
        """``startup()`` on entry, ``shutdown()`` on exit: ``FastAPI(lifespan=server_app.lifespan)``."""
        await self.startup()
        try:
            yield
        finally:
            await self.shutdown()

    async def _start(self) -> None:
        install_redaction()  # keep tokens out of aiows' log lines
        app = self.server
        dispatcher = app.dispatcher(transport="asgi")
        gate = ServerGate(app, dispatcher)
        await app.hub.attach(dispatcher)  # starts the broadcast backend
        app._serving_started()
        self._loop = asyncio.get_running_loop()
        self._dispatcher = dispatcher
        self._gate = gate
        self._signalled = False
        if self.handle_signals:
            self._hold_signals()

    async def _start_lazily(self) -> ServerGate:
        await self.startup()
        assert self._gate is not None
        return self._gate

    async def _drain(self) -> None:
        """Refuse new connections; close the open ones with 1001 once their handlers finish (within the grace)."""
        dispatcher = self._dispatcher
        if dispatcher is None:
            return
        if self._draining is None:
            self._draining = asyncio.ensure_future(dispatcher.shutdown(self.server.options.shutdown_grace))
        await asyncio.shield(self._draining)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            event = await receive()
            if event["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    logger.exception("aiows failed to start")
                    await send({"type": "lifespan.startup.failed", "message": f"aiows failed to start: {exc}"})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif event["type"] == "lifespan.shutdown":
                try:
                    await self.shutdown()
                except Exception as exc:
                    logger.exception("aiows failed to shut down")
                    await send({"type": "lifespan.shutdown.failed", "message": f"aiows failed to shut down: {exc}"})
                    return
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- holding SIGTERM and SIGINT while the connections drain ---------------

    def _hold_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread (a test client's thread, for one)
        for signum in HELD_SIGNALS:
            previous = signal.getsignal(signum)
            if previous is None or previous == signal.SIG_IGN or previous == self._on_signal:
                continue  # not set from Python, or ignored: nothing to hold
            signal.signal(signum, self._on_signal)
            self._held[signum] = previous

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        loop = self._loop
        if self._signalled or loop is None or loop.is_closed() or self._dispatcher is None:
            self._deliver(signum)  # a second signal, or nothing to drain: pass it on now
            return
        self._signalled = True
        loop.call_soon_threadsafe(self._drain_then_deliver, signum)

    def _drain_then_deliver(self, signum: int) -> None:
        logger.info("signal %d: closing the WebSocket connections (1001) before the ASGI server shuts down", signum)
        task = asyncio.ensure_future(self._drain())
        task.add_done_callback(lambda done: self._drained(signum, done))

    def _drained(self, signum: int, task: asyncio.Future[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.error("draining the connections failed", exc_info=task.exception())
        self._deliver(signum)

    def _deliver(self, signum: int) -> None:
        """Give the held signals back to the handlers they had, then raise ``signum`` for them."""
        if signum not in self._held:
            return
        self._release_signals()
        signal.raise_signal(signum)

    def _release_signals(self) -> None:
        held = self._held
        self._held = {}
        for signum, previous in held.items():
            if signal.getsignal(signum) == self._on_signal:
                signal.signal(signum, previous)
