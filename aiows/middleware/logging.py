"""``LoggingMiddleware``: one log line per connect, message and disconnect."""

from __future__ import annotations

import logging
import time
from typing import Any, Final

import orjson

from ..exceptions import AiowsException, MessageValidationError
from ..types import ConnectHandler, DisconnectHandler, JSONObject, MessageNext
from ..websocket import WebSocket
from .base import BaseMiddleware

__all__ = ["LoggingMiddleware"]

#: ``time.perf_counter`` and ``orjson.dumps``, bound once: compiled code would look them up on every message.
_clock: Final = time.perf_counter
_dumps: Final = orjson.dumps


def _peer(websocket: WebSocket) -> str:
    address = websocket.remote_address
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address)


def error_code(exc: BaseException) -> str:
    """The error frame code the server answers ``exc`` with (``validation_error``, an ``AiowsException``'s own
    code, else ``internal_error``)."""
    if isinstance(exc, MessageValidationError):
        return exc.code
    if isinstance(exc, AiowsException):
        return exc.code
    return "internal_error"


class LoggingMiddleware(BaseMiddleware):
    """Log connects (peer, user id), messages (type, size, time) and disconnects (code, reason).

    Lines go to the stdlib logger ``logger_name`` at INFO. Each record also
    carries the stable fields ``event``, ``path``, ``peer``, ``user_id``,
    ``type``, ``size``, ``ms`` and ``code`` (as ``record.aiows``, which
    ``aiows run --log-format json`` writes out); with ``json=True`` the
    message itself is that JSON object, so each line is one whatever the
    formatter. ``code`` is a message's error frame code (``null`` when it was
    handled) or the close code of a disconnect. Tokens, the query string and
    headers are never logged.
    """

    def __init__(self, logger_name: str = "aiows", *, json: bool = False) -> None:
        self.logger = logging.getLogger(logger_name)
        self.json = json

    def _log(self, text: str, fields: dict[str, Any]) -> None:
        self.logger.info(_dumps(fields, default=str).decode() if self.json else text, extra={"aiows": fields})

    async def on_connect(self, handler: ConnectHandler, websocket: WebSocket) -> Any:
        if self.logger.isEnabledFor(logging.INFO):
            user_id = websocket.context.get("user_id")
            peer = _peer(websocket)
            text = f"connect from {peer}" if user_id is None else f"connect from {peer} user={user_id}"
            self._log(text, _fields("connect", websocket, peer, user_id))
        return await handler(websocket)

    async def on_message(self, handler: MessageNext, websocket: WebSocket, message: JSONObject) -> Any:
        if not self.logger.isEnabledFor(logging.INFO):
            return await handler(websocket, message)  # nothing to time or format
        started = _clock()
        code: str | None = None
        try:
            return await handler(websocket, message)
        except Exception as exc:
            code = error_code(exc)
            raise
        finally:
            elapsed = (_clock() - started) * 1000.0
            peer = _peer(websocket)
            message_type = message.get("type")
            size = websocket.message_size
            fields = _fields("message", websocket, peer, websocket.context.get("user_id"))
            fields["type"] = message_type
            fields["size"] = size
            fields["ms"] = round(elapsed, 3)
            fields["code"] = code
            text = f"message type={message_type} size={size}B from {peer} handled in {elapsed:.2f} ms"
            self._log(text if code is None else f"{text}: {code}", fields)

    async def on_disconnect(self, handler: DisconnectHandler, websocket: WebSocket, reason: str) -> Any:
        if self.logger.isEnabledFor(logging.INFO):
            peer = _peer(websocket)
            fields = _fields("disconnect", websocket, peer, websocket.context.get("user_id"))
            fields["code"] = websocket.close_code
            self._log(f"disconnect from {peer} code={websocket.close_code} reason={reason}", fields)
        return await handler(websocket, reason)


def _fields(event: str, websocket: WebSocket, peer: str, user_id: object) -> dict[str, Any]:
    """Every key, ``None`` where it does not apply (the path never has its query string: tokens stay out)."""
    return {
        "event": event,
        "path": websocket.path,
        "peer": peer,
        "user_id": user_id,
        "type": None,
        "size": None,
        "ms": None,
        "code": None,
    }
