"""``BaseMiddleware``: the class every middleware extends."""

from __future__ import annotations

from typing import Any

from mypy_extensions import mypyc_attr

from ..types import ConnectHandler, DisconnectHandler, JSONObject, MessageNext
from ..websocket import WebSocket

__all__ = ["BaseMiddleware"]


@mypyc_attr(allow_interpreted_subclasses=True)
class BaseMiddleware:
    """Wraps connect, message and disconnect events; override the hooks you need.

    Each hook receives ``handler``, the rest of the chain: call it to go on,
    or return without calling it to stop the event there. Hooks that a
    subclass does not override are skipped when the server composes its
    chains, so they cost nothing.
    """

    async def on_connect(self, handler: ConnectHandler, websocket: WebSocket) -> Any:
        """Called when a client connects, before the connect handlers."""
        return await handler(websocket)

    async def on_message(self, handler: MessageNext, websocket: WebSocket, message: JSONObject) -> Any:
        """Called for each message with the decoded JSON object, before validation."""
        return await handler(websocket, message)

    async def on_disconnect(self, handler: DisconnectHandler, websocket: WebSocket, reason: str) -> Any:
        """Called when an admitted connection closes; ``reason`` is like ``"1000 (bye)"``."""
        return await handler(websocket, reason)
