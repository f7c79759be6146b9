"""What an app's routers declare, channel by channel: the input of every contract format.

A channel is one mounted path (``include_router(router, path="/chat")``), or
``"/"`` for the routers mounted without a path (they serve every path). Its
messages are the ones the route table of that path dispatches, found the same
way (first handler wins, nested routers depth first).
"""

from __future__ import annotations

import inspect
import typing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import PydanticUserError, TypeAdapter

from ..chain import message_model
from ..middleware.auth import AuthMiddleware
from ..middleware.base import BaseMiddleware
from ..middleware.rate_limit import RateLimitingMiddleware
from ..router import Router

if TYPE_CHECKING:
    from ..server import WebSocketServer

__all__ = ["BUILTIN_ERROR_CODES", "Auth", "Channel", "Incoming", "channels"]

#: The error codes dispatch itself sends (``unknown_ref``: a client's reply that no request waits for).
BUILTIN_ERROR_CODES = (
    "invalid_json",
    "invalid_message",
    "unknown_type",
    "validation_error",
    "internal_error",
    "unknown_ref",
)


@dataclass(frozen=True)
class Incoming:
    """A message clients send: its ``type`` (``None`` for the catch-all), model and handler docstring.

    ``reply`` is the handler's return annotation, what the reply to the
    message sent as a request (with a ``"ref"``) carries as ``data``; ``None``
    where it is not declared (no annotation, ``None``, ``Any``, or a type
    pydantic has no JSON Schema for).
    """

    type: str | None
    model: Any
    description: str | None
    reply: Any = None


@dataclass(frozen=True)
class Auth:
    """How a channel's clients authenticate (``AuthMiddleware``): always by token, maybe by first message."""

    first_message: bool


@dataclass
class Channel:
    """One path's contract: what clients send, what the server sends, the error codes, the auth."""

    address: str
    incoming: list[Incoming] = field(default_factory=list)
    raw: str | None = None  #: the raw handler's docstring ("" without one), or ``None`` for JSON channels
    outgoing: list[type[Any]] = field(default_factory=list)
    #: Models published to rooms (``router.emits(..., room=True)``), when the backend keeps history.
    published: list[type[Any]] = field(default_factory=list)
    error_codes: list[str] = field(default_factory=list)
    auth: Auth | None = None


def channels(server: WebSocketServer) -> list[Channel]:
    """The channels of ``server``: one per mounted path, then ``"/"`` for routers without a path."""
    mounts = server.mounts
    everywhere = [router for router, path in mounts if path is None]
    paths = dict.fromkeys(path for _, path in mounts if path is not None)
    found = [_channel(server, path, [router for router, at in mounts if at in (None, path)]) for path in paths]
    if everywhere or not paths:
        found.append(_channel(server, "/", everywhere))
    return found


def _channel(server: WebSocketServer, address: str, roots: list[Router]) -> Channel:
    channel = Channel(address)
    middlewares: list[BaseMiddleware] = list(server.middlewares)
    seen: set[str] = set()
    catch_all = False
    for root in roots:
        for router in root.walk():
            middlewares.extend(m for m in router.middleware_path() if m not in middlewares)
            for message_type, handler in router.message_handlers.items():
                if message_type not in seen:
                    seen.add(message_type)
                    channel.incoming.append(_incoming(message_type, handler))
            if not catch_all and router.catch_all is not None:
                catch_all = True
                channel.incoming.append(_incoming(None, router.catch_all))
            if channel.raw is None and router.raw_handler is not None:
                channel.raw = _doc(router.raw_handler) or ""
            channel.outgoing.extend(item for item in router.outgoing if item not in channel.outgoing)
            # Without history, a room's publications are sent as they are.
            published = channel.published if server.hub.history else channel.outgoing
            published.extend(item for item in router.published if item not in published)
    auths = [m for m in middlewares if isinstance(m, AuthMiddleware)]
    if auths:
        channel.auth = Auth(first_message=any(m.first_message_auth for m in auths))
    if channel.raw is None:
        codes = list(BUILTIN_ERROR_CODES)
        codes += [codec.invalid_code for codec in server.options.offered_codecs if codec.invalid_code not in codes]
        if any(isinstance(m, RateLimitingMiddleware) and m.on_limit == "error" for m in middlewares):
            codes.append("rate_limited")
        for item in channel.outgoing:
            code = getattr(item, "code", None)
            if isinstance(item, type) and issubclass(item, Exception) and isinstance(code, str) and code not in codes:
                codes.append(code)
        channel.error_codes = codes
    return channel


def _incoming(message_type: str | None, handler: Any) -> Incoming:
    model = message_model(handler)  # raises RouterError for annotations that do not resolve
    return Incoming(message_type, model, _doc(handler), _reply(typing.get_type_hints(handler).get("return")))


def _reply(annotation: Any) -> Any:
    """A return annotation as the type of a reply's ``data``, or ``None`` for "not declared"."""
    if annotation is None or annotation is type(None) or annotation is Any:
        return None
    try:
        TypeAdapter(annotation).json_schema(mode="serialization")
    except PydanticUserError:  # no JSON Schema for it (an arbitrary class): the reply stays untyped
        return None
    return annotation


def _doc(handler: object) -> str | None:
    return inspect.getdoc(handler) or None
