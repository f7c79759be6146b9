"""``LoggingMiddleware``: one log line per connect, message and disconnect."""

from __future__ import annotations

import logging
import time
from typing import Any

from ..types import ConnectHandler, DisconnectHandler, JSONObject, MessageNext
from ..websocket import WebSocket
from .base import BaseMiddleware

__all__ = ["LoggingMiddleware"]


def _peer(websocket: WebSocket) -> str:
    address = websocket.remote_address
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address)


class LoggingMiddleware(BaseMiddleware):
    """Log connects (peer, user id), messages (type, size, time) and disconnects (code, reason).

    Lines go to the stdlib logger ``logger_name`` at INFO. Tokens, the query
    string and headers are never logged.
    """

    def __init__(self, logger_name: str = "aiows") -> None:
        self.logger = logging.getLogger(logger_name)

    async def on_connect(self, handler: ConnectHandler, websocket: WebSocket) -> Any:
        user_id = websocket.context.get("user_id")
        if user_id is None:
            self.logger.info("connect from %s", _peer(websocket))
        else:
            self.logger.info("connect from %s user=%s", _peer(websocket), user_id)
        return await handler(websocket)

    async def on_message(self, handler: MessageNext, websocket: WebSocket, message: JSONObject) -> Any:
        if not self.logger.isEnabledFor(logging.INFO):
            return await handler(websocket, message)  # nothing to time or format
        started = time.perf_counter()
        try:
            return await handler(websocket, message)
        finally:
            elapsed = (time.perf_counter() - started) * 1000.0
            self.logger.info(
                "message type=%s size=%dB from %s handled in %.2f ms",
                message.get("type"),
                websocket.message_size,
                _peer(websocket),
                elapsed,
            )

    async def on_disconnect(self, handler: DisconnectHandler, websocket: WebSocket, reason: str) -> Any:
        self.logger.info(
            "disconnect from %s code=%s reason=%s", _peer(websocket), websocket.close_code, reason
        )
        return await handler(websocket, reason)
