"""``RateLimitingMiddleware``: at most N messages per connection per minute."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from ..types import DisconnectHandler, JSONObject, MessageNext
from ..websocket import WebSocket
from .base import BaseMiddleware

__all__ = ["RATE_LIMITED", "RateLimitingMiddleware"]

#: Close code for a connection over its message budget (an HTTP 429 in the 4000 range).
RATE_LIMITED = 4429

WINDOW_SECONDS = 60.0


class RateLimitingMiddleware(BaseMiddleware):
    """Allow at most ``max_messages_per_minute`` messages per connection in any 60 s window.

    The message over the limit does not reach its handler: the connection is
    closed with 4429.
    """

    def __init__(self, max_messages_per_minute: int = 60) -> None:
        if max_messages_per_minute < 1:
            raise ValueError("max_messages_per_minute must be at least 1")
        self.max_messages_per_minute = max_messages_per_minute
        self._arrivals: dict[WebSocket, deque[float]] = {}

    async def on_message(self, handler: MessageNext, websocket: WebSocket, message: JSONObject) -> Any:
        now = time.monotonic()
        arrivals = self._arrivals.get(websocket)
        if arrivals is None:
            arrivals = deque()
            self._arrivals[websocket] = arrivals
        while arrivals and arrivals[0] <= now - WINDOW_SECONDS:
            arrivals.popleft()
        if len(arrivals) >= self.max_messages_per_minute:
            await websocket.close(RATE_LIMITED, "rate limit exceeded")
            return None
        arrivals.append(now)
        return await handler(websocket, message)

    async def on_disconnect(self, handler: DisconnectHandler, websocket: WebSocket, reason: str) -> Any:
        self._arrivals.pop(websocket, None)
        return await handler(websocket, reason)
