"""Type aliases for handlers and middleware hooks."""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from .websocket import WebSocket

__all__ = [
    "ConnectHandler",
    "DisconnectHandler",
    "JSONObject",
    "MessageHandler",
    "MessageNext",
    "RawHandler",
]

#: A decoded message as middleware sees it: a JSON object with a string ``"type"``.
JSONObject = dict[str, Any]

#: ``async def on_connect(websocket)``; also what ``BaseMiddleware.on_connect`` calls next.
ConnectHandler = Callable[[WebSocket], Awaitable[Any]]

#: ``async def on_chat(websocket, message)``: ``message`` is validated into its annotation.
MessageHandler = Callable[[WebSocket, Any], Awaitable[Any]]

#: What ``BaseMiddleware.on_message`` calls next: takes the decoded ``JSONObject``.
MessageNext = Callable[[WebSocket, JSONObject], Awaitable[Any]]

#: ``async def on_disconnect(websocket, reason)``; also what ``on_disconnect`` calls next.
DisconnectHandler = Callable[[WebSocket, str], Awaitable[Any]]

#: ``async def on_frame(websocket, data)``: every frame unparsed, ``str`` for text, ``bytes`` for binary.
RawHandler = Callable[[WebSocket, "str | bytes"], Awaitable[Any]]
