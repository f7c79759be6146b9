"""Middleware chains, composed once when the server starts.

A chain is a linked list of native step objects: each middleware step calls
its middleware's hook with the next step as ``handler``; the last step
validates the message and calls the user's handler. Hooks a middleware does
not override are left out, so they cost nothing per event.
"""

from __future__ import annotations

import inspect
import logging
import typing
from typing import Any, Awaitable, Callable

from pydantic import TypeAdapter, ValidationError

from .exceptions import MessageValidationError, RouterError
from .messages import BaseMessage
from .middleware.base import BaseMiddleware
from .router import Router
from .types import ConnectHandler, DisconnectHandler, JSONObject, MessageHandler
from .websocket import WebSocket

__all__ = [
    "ConnectStep",
    "DisconnectStep",
    "MessageStep",
    "compose_connect",
    "compose_disconnect",
    "compose_message",
    "overrides",
]

logger = logging.getLogger("aiows")

_adapters: dict[Any, TypeAdapter[Any]] = {}


def overrides(middleware: BaseMiddleware, hook: str) -> bool:
    """Whether ``middleware`` overrides ``BaseMiddleware``'s ``hook``."""
    return getattr(type(middleware), hook) is not getattr(BaseMiddleware, hook)


def adapter_for(annotation: Any) -> TypeAdapter[Any]:
    """The cached ``TypeAdapter`` for a message model (or any annotation)."""
    adapter = _adapters.get(annotation)
    if adapter is None:
        adapter = TypeAdapter(annotation)
        _adapters[annotation] = adapter
    return adapter


def message_model(handler: MessageHandler) -> Any:
    """The annotation of ``handler``'s message parameter (``BaseMessage`` if none)."""
    name = getattr(handler, "__qualname__", repr(handler))
    parameters = list(inspect.signature(handler).parameters.values())
    if len(parameters) < 2:
        raise RouterError(f"message handler {name} must accept (websocket, message)")
    try:
        hints = typing.get_type_hints(handler)
    except Exception as exc:
        raise RouterError(f"cannot resolve the annotations of {name}: {exc}") from exc
    return hints.get(parameters[1].name, BaseMessage)


def validation_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """Pydantic's errors as ``{"loc", "msg", "type"}`` dicts, without the input."""
    return [
        {"loc": list(error["loc"]), "msg": error["msg"], "type": error["type"]}
        for error in exc.errors(include_url=False, include_input=False, include_context=False)
    ]


class MessageStep:
    """One link of a message chain; calling it runs the rest of the chain.

    ``call`` is a plain function that returns the next coroutine to await (the
    middleware hook's, or at the end the user's handler's) instead of awaiting
    it itself: the whole chain then runs as one stack of coroutines awaiting
    each other directly, with no compiled frame in between. Measured: each
    await that crosses between compiled and interpreted code costs about as
    much as a middleware layer.
    """

    def call(self, websocket: WebSocket, message: JSONObject) -> Awaitable[Any]:
        raise NotImplementedError

    def __call__(self, websocket: WebSocket, message: JSONObject) -> Awaitable[Any]:
        return self.call(websocket, message)  # the step's own coroutine: no extra frame per layer


class MessageMiddlewareStep(MessageStep):
    def __init__(self, middleware: BaseMiddleware, next_step: MessageStep) -> None:
        self.middleware = middleware
        self.next_step = next_step

    def call(self, websocket: WebSocket, message: JSONObject) -> Awaitable[Any]:
        return self.middleware.on_message(self.next_step, websocket, message)


class MessageHandlerStep(MessageStep):
    def __init__(self, handler: MessageHandler, adapter: TypeAdapter[Any]) -> None:
        self.handler = handler
        self.adapter = adapter
        # pydantic-core's validator itself: TypeAdapter.validate_python is a Python wrapper around it.
        self.validate: Callable[[Any], Any] = adapter.validator.validate_python

    def call(self, websocket: WebSocket, message: JSONObject) -> Awaitable[Any]:
        """Validate now (a ``MessageValidationError`` is raised by the call); return the handler's coroutine.

        A request's ``"ref"`` is an envelope field, not part of the model: it is
        left out of a copy (middleware keeps seeing it in ``message``). The
        dispatcher counts the requests being handled in ``websocket.answering``,
        so other messages skip even the lookup.
        """
        if websocket.answering and "ref" in message:
            message = {key: value for key, value in message.items() if key != "ref"}
        try:
            model = self.validate(message)
        except ValidationError as exc:
            raise MessageValidationError("message failed validation", validation_errors(exc)) from None
        return self.handler(websocket, model)


class ConnectStep:
    """One link of the connect chain; calling it runs the rest of the chain."""

    async def call(self, websocket: WebSocket) -> Any:
        raise NotImplementedError

    def __call__(self, websocket: WebSocket) -> Awaitable[Any]:
        return self.call(websocket)  # the step's own coroutine: no extra frame per layer


class ConnectMiddlewareStep(ConnectStep):
    def __init__(self, middleware: BaseMiddleware, next_step: ConnectStep) -> None:
        self.middleware = middleware
        self.next_step = next_step

    async def call(self, websocket: WebSocket) -> Any:
        return await self.middleware.on_connect(self.next_step, websocket)


class ConnectEndStep(ConnectStep):
    """The end of one router's (or the server's) connect chain.

    Reaching it counts one pass on the connection: the connection is admitted
    only when every chain of the tree was passed.
    """

    def __init__(self, handlers: list[ConnectHandler], children: list[ConnectStep]) -> None:
        self.handlers = handlers
        self.children = children

    async def call(self, websocket: WebSocket) -> Any:
        websocket.connect_passes += 1
        for handler in self.handlers:
            await handler(websocket)
        for child in self.children:
            await child.call(websocket)
        return None


class DisconnectStep:
    """One link of the disconnect chain; calling it runs the rest of the chain."""

    async def call(self, websocket: WebSocket, reason: str) -> Any:
        raise NotImplementedError

    def __call__(self, websocket: WebSocket, reason: str) -> Awaitable[Any]:
        return self.call(websocket, reason)  # the step's own coroutine: no extra frame per layer


class DisconnectMiddlewareStep(DisconnectStep):
    def __init__(self, middleware: BaseMiddleware, next_step: DisconnectStep) -> None:
        self.middleware = middleware
        self.next_step = next_step

    async def call(self, websocket: WebSocket, reason: str) -> Any:
        return await self.middleware.on_disconnect(self.next_step, websocket, reason)


class DisconnectEndStep(DisconnectStep):
    """Runs every disconnect handler; one that raises is logged and the rest still run."""

    def __init__(self, handlers: list[DisconnectHandler], children: list[DisconnectStep]) -> None:
        self.handlers = handlers
        self.children = children

    async def call(self, websocket: WebSocket, reason: str) -> Any:
        for handler in self.handlers:
            try:
                await handler(websocket, reason)
            except Exception:
                logger.exception("disconnect handler %s failed", getattr(handler, "__qualname__", handler))
        for child in self.children:
            try:
                await child.call(websocket, reason)
            except Exception:
                logger.exception("disconnect middleware failed")
        return None


def compose_message(middlewares: list[BaseMiddleware], handler: MessageHandler) -> MessageStep:
    """The chain for one message handler: ``middlewares`` outermost first."""
    step: MessageStep = MessageHandlerStep(handler, adapter_for(message_model(handler)))
    for middleware in reversed(middlewares):
        if overrides(middleware, "on_message"):
            step = MessageMiddlewareStep(middleware, step)
    return step


def compose_connect(
    middlewares: list[BaseMiddleware], routers: list[Router], handlers: list[ConnectHandler] | None = None
) -> ConnectStep:
    """The connect chain of a router tree: ``middlewares`` wrap ``handlers`` then each router's own chain."""
    children = [compose_connect(router.middlewares, router.children, router.connect_handlers) for router in routers]
    step: ConnectStep = ConnectEndStep(list(handlers or []), children)
    for middleware in reversed(middlewares):
        if overrides(middleware, "on_connect"):
            step = ConnectMiddlewareStep(middleware, step)
    return step


def compose_disconnect(
    middlewares: list[BaseMiddleware], routers: list[Router], handlers: list[DisconnectHandler] | None = None
) -> DisconnectStep:
    """The disconnect chain of a router tree, shaped like the connect chain."""
    children = [
        compose_disconnect(router.middlewares, router.children, router.disconnect_handlers) for router in routers
    ]
    step: DisconnectStep = DisconnectEndStep(list(handlers or []), children)
    for middleware in reversed(middlewares):
        if overrides(middleware, "on_disconnect"):
            step = DisconnectMiddlewareStep(middleware, step)
    return step


def count_routers(routers: list[Router]) -> int:
    """How many routers a list of router trees holds."""
    return sum(len(router.walk()) for router in routers)
