"""Exceptions raised by aiows.

Every exception that maps to an error frame carries the frame's ``code``: a
handler may raise one of them to answer the client with that error.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AiowsException",
    "ConnectionError",
    "InvalidJSONError",
    "InvalidMessageError",
    "MessageValidationError",
    "MiddlewareError",
    "RouterError",
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
