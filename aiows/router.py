"""``Router``: handler registration by decorators, and router trees."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any, Callable, Final, TypeVar

from pydantic import BaseModel

from .exceptions import MiddlewareError, RouterError
from .messages import check_outgoing
from .middleware.base import BaseMiddleware
from .types import ConnectHandler, DisconnectHandler, MessageHandler, RawHandler

__all__ = ["REPLY", "Router"]

#: The reserved message type of replies (``{"type": "reply", "ref": ..., "data": ...}``): no router may take it.
REPLY: Final = "reply"

C = TypeVar("C", bound=ConnectHandler)
M = TypeVar("M", bound=MessageHandler)
D = TypeVar("D", bound=DisconnectHandler)
R = TypeVar("R", bound=RawHandler)


def _require_coroutine(handler: Callable[..., Any], kind: str) -> None:
    if not inspect.iscoroutinefunction(handler):
        name = getattr(handler, "__qualname__", repr(handler))
        raise RouterError(f"{kind} handler {name} must be an 'async def' function")


class Router:
    """A group of handlers with its own middleware; routers nest.

    Register handlers with ``@router.connect()``, ``@router.message("type")``,
    ``@router.message()`` (catch-all) and ``@router.disconnect()``, then
    ``server.include_router(router)``. What the handlers send is declared
    with ``emits=`` or ``router.emits()``, for the contract (``aiows.contract``).
    """

    def __init__(self) -> None:
        self.connect_handlers: list[ConnectHandler] = []
        self.message_handlers: dict[str, MessageHandler] = {}
        self.catch_all: MessageHandler | None = None
        self.disconnect_handlers: list[DisconnectHandler] = []
        self.raw_handler: RawHandler | None = None
        self.middlewares: list[BaseMiddleware] = []
        self.children: list[Router] = []
        self.parent: Router | None = None
        #: What this router's handlers send (models) and the error codes they raise (exceptions).
        self.outgoing: list[type[Any]] = []
        #: The models they publish to rooms (``emits(..., room=True)``).
        self.published: list[type[Any]] = []

    def emits(self, *outgoing: type[Any], room: bool = False) -> None:
        """Declare messages this router's handlers send: pydantic models with a ``type: Literal[...]``.

        ``AiowsException`` subclasses declare the error codes they raise. The
        declarations go into the AsyncAPI document, the docs page and the
        TypeScript types; nothing is checked at run time. ``emits=[...]`` on
        ``connect()`` and ``message()`` declares them next to the handler.

        ``room=True`` declares models published to rooms
        (``server.broadcast(model, room=...)``): with a backend that keeps
        history, each reaches clients with ``"room"``, ``"offset"`` and
        ``"epoch"`` added, and the contract says so.
        """
        declared = self.published if room else self.outgoing
        for item in outgoing:
            check_outgoing(item)
            if room and not (isinstance(item, type) and issubclass(item, BaseModel)):
                raise RouterError(f"{item!r} is not a pydantic model: only models are published to rooms")
            if item not in declared:
                declared.append(item)

    def connect(self, *, emits: Sequence[type[Any]] = ()) -> Callable[[C], C]:
        """Decorator: run ``async def handler(websocket)`` when a client connects.

        ``emits`` declares what the handler sends (see ``emits()``).
        """
        self.emits(*emits)

        def register(handler: C) -> C:
            _require_coroutine(handler, "connect")
            self.connect_handlers.append(handler)
            return handler

        return register

    def message(self, message_type: str | None = None, *, emits: Sequence[type[Any]] = ()) -> Callable[[M], M]:
        """Decorator: handle messages whose ``"type"`` is ``message_type``.

        Without a type, the handler is this router's catch-all: it takes the
        messages no typed handler (in any router) takes. The handler is
        ``async def handler(websocket, message)``; ``message`` is validated
        into the model its parameter is annotated with (``BaseMessage`` when
        not annotated); its docstring describes the message in the contract.
        ``emits`` declares what the handler sends (see ``emits()``).
        """
        self.emits(*emits)

        def register(handler: M) -> M:
            _require_coroutine(handler, "message")
            if self.raw_handler is not None:
                raise RouterError("this router has a raw frame handler: it cannot also have JSON message handlers")
            if message_type == REPLY:
                raise RouterError(
                    '"reply" is reserved: a client\'s {"type": "reply", "ref": ...} answers websocket.request()'
                )
            if message_type is None:
                if self.catch_all is not None:
                    raise RouterError("this router already has a catch-all message handler")
                self.catch_all = handler
            else:
                if message_type in self.message_handlers:
                    raise RouterError(f"this router already has a handler for {message_type!r}")
                self.message_handlers[message_type] = handler
            return handler

        return register

    def raw(self) -> Callable[[R], R]:
        """Decorator: give every frame, unparsed, to ``async def handler(websocket, data)``.

        ``data`` is ``str`` for text frames and ``bytes`` for binary ones;
        reply with ``websocket.send_text()`` / ``send_bytes()``. Message
        middleware does not run for raw frames (connect and disconnect
        middleware do), and a router with a raw handler has no JSON message
        handlers.
        """

        def register(handler: R) -> R:
            _require_coroutine(handler, "raw")
            if self.message_handlers or self.catch_all is not None:
                raise RouterError("this router has JSON message handlers: it cannot also have a raw frame handler")
            if self.raw_handler is not None:
                raise RouterError("this router already has a raw frame handler")
            self.raw_handler = handler
            return handler

        return register

    def disconnect(self) -> Callable[[D], D]:
        """Decorator: run ``async def handler(websocket, reason)`` when a client leaves.

        ``reason`` is the close code and the peer's reason, like ``"1000 (bye)"``.
        """

        def register(handler: D) -> D:
            _require_coroutine(handler, "disconnect")
            self.disconnect_handlers.append(handler)
            return handler

        return register

    def add_middleware(self, middleware: BaseMiddleware) -> None:
        """Add middleware that wraps only this router's handlers (and its children's)."""
        if not isinstance(middleware, BaseMiddleware):
            raise MiddlewareError(f"{middleware!r} is not a BaseMiddleware instance")
        self.middlewares.append(middleware)

    def include_router(self, router: Router) -> None:
        """Nest ``router`` under this one: its handlers also run inside this router's middleware."""
        if router is self:
            raise RouterError("a router cannot include itself")
        if router.parent is not None:
            raise RouterError("this router is already included in another router")
        ancestor: Router | None = self
        while ancestor is not None:
            if ancestor is router:
                raise RouterError("including this router would create a cycle")
            ancestor = ancestor.parent
        router.parent = self
        self.children.append(router)

    def walk(self) -> list[Router]:
        """This router and its descendants, depth first, in inclusion order."""
        routers: list[Router] = [self]
        for child in self.children:
            routers.extend(child.walk())
        return routers

    def middleware_path(self) -> list[BaseMiddleware]:
        """The middleware that wrap this router's handlers: outermost router's first."""
        chain: list[BaseMiddleware] = []
        router: Router | None = self
        while router is not None:
            chain[0:0] = router.middlewares
            router = router.parent
        return chain
