"""Exceptions raised by aiows.

Every exception that maps to an error frame carries the frame's ``code``: a
handler may raise one of them to answer the client with that error.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = [
    "AiowsException",
    "BackendUnavailable",
    "ConnectionError",
    "InvalidJSONError",
    "InvalidMessageError",
    "MessageValidationError",
    "MiddlewareError",
    "RateLimitedError",
    "RequestError",
    "RequestTimeout",
    "RouterError",
    "TooManyPendingRequests",
    "UnknownMessageTypeError",
]


class AiowsException(Exception):
    """Base class of every aiows exception.

    ``code`` is the ``"code"`` of the error frame sent to the client when this
    exception escapes a handler.
    """

    code: str = "internal_error"

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message


class ConnectionError(AiowsException):
    """The connection is closed (or closing): nothing can be sent or received."""

    def __init__(self, message: str = "connection closed", close_code: int | None = None) -> None:
        super().__init__(message)
        self.close_code = close_code


class InvalidJSONError(AiowsException):
    """A frame is not valid JSON (or not valid UTF-8)."""

    code = "invalid_json"


class InvalidMessageError(AiowsException):
    """A frame is valid JSON but not an object with a string ``"type"``."""

    code = "invalid_message"


class UnknownMessageTypeError(AiowsException):
    """No handler takes the message's type and no catch-all handler exists."""

    code = "unknown_type"

    def __init__(self, message_type: str) -> None:
        super().__init__(f"no handler for message type {message_type!r}")
        self.message_type = message_type


class MessageValidationError(AiowsException):
    """A message does not validate into the handler's model.

    ``errors`` holds pydantic's errors reduced to ``{"loc", "msg", "type"}``:
    the client's input is never echoed back.
    """

    code = "validation_error"

    def __init__(self, message: str, errors: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.errors = errors


class RouterError(AiowsException):
    """A router is used in a way that cannot work (cycle, second parent, bad handler)."""


class MiddlewareError(AiowsException, TypeError):
    """A middleware is not usable: not a ``BaseMiddleware`` instance."""


class RateLimitedError(AiowsException):
    """A message over its rate limit (``RateLimitingMiddleware(on_limit="error")``): dropped, answered with an error."""

    code = "rate_limited"


class RequestTimeout(AiowsException, asyncio.TimeoutError):
    """No reply came in time: ``websocket.request()`` (or a client's ``request()``) gave up waiting.

    It is an ``asyncio.TimeoutError`` too, so ``except asyncio.TimeoutError`` catches it.
    """

    code = "request_timeout"


class TooManyPendingRequests(AiowsException):
    """``websocket.request()`` while the connection already waits for ``max_pending_requests`` replies."""

    code = "too_many_requests"


class RequestError(AiowsException):
    """The other side answered a request with an error frame (``aiows.client``): ``code``, ``message``, ``frame``.

    ``frame`` is the whole error frame (``errors`` holds a ``validation_error``'s list).
    """

    def __init__(self, frame: dict[str, Any]) -> None:
        code = frame.get("code")
        message = frame.get("message")
        super().__init__(message if isinstance(message, str) else "the request failed")
        self.code = code if isinstance(code, str) else "error"
        self.frame = frame


class BackendUnavailable(AiowsException):
    """The broadcast backend cannot be reached: a publication to a room with history was not made."""

    code = "backend_unavailable"
