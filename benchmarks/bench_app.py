"""The application every benchmark serves: one routed, validated ``ChatMessage`` request/response.

Shared by the in-process suite (``test_hotpath.py``) and the load benchmark's
servers (``servers.py``), so both measure the same work.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson
from pydantic import Field

from aiows import BaseMessage, BaseMiddleware, ChatMessage, Router, WebSocket, WebSocketServer
from aiows.types import JSONObject, MessageNext

__all__ = ["PAYLOAD", "Ask", "PassThrough", "REQUEST", "make_app", "make_router", "reply_for"]

#: The request every client sends (about 100 bytes of JSON).
PAYLOAD: bytes = orjson.dumps(
    {"type": "chat", "text": "hello, this is a benchmark message of ordinary size", "user_id": 42}
)

#: The same message as a request: routed to ``ask``, whose return value is the reply (``{"type": "reply", ...}``).
REQUEST: bytes = orjson.dumps(
    {"type": "ask", "text": "hello, this is a benchmark message of ordinary size", "user_id": 42, "ref": 1}
)


class Ask(BaseMessage):
    """``REQUEST``: the fields of a ``ChatMessage``, under the type ``ask``."""

    type: Literal["ask"] = "ask"
    text: str = Field(max_length=4096)
    user_id: int


def reply_for(message: ChatMessage | Ask) -> dict[str, Any]:
    """The reply to one chat message: the same fields back."""
    return {"type": "chat", "text": message.text, "user_id": message.user_id}


class PassThrough(BaseMiddleware):
    """A user middleware that only passes messages on (an interpreted subclass, as users write them)."""

    async def on_message(self, handler: MessageNext, websocket: WebSocket, message: JSONObject) -> Any:
        return await handler(websocket, message)


def make_router() -> Router:
    """A router with the ``chat`` route and a few others, so dispatch picks from a real table."""
    router = Router()

    @router.message("chat")
    async def on_chat(websocket: WebSocket, message: ChatMessage) -> None:
        await websocket.send_json(reply_for(message))

    @router.message("ask")
    async def on_ask(websocket: WebSocket, message: Ask) -> dict[str, Any]:
        return reply_for(message)  # sent as {"type": "reply", "ref": 1, "data": ...}

    for name in ("join", "leave", "typing", "presence", "history"):

        async def other(websocket: WebSocket, message: ChatMessage) -> None:
            await websocket.send_json({"type": "ok"})

        router.message(name)(other)
    return router


def make_app(middlewares: int = 0, **options: Any) -> WebSocketServer:
    """The benchmark app with ``middlewares`` pass-through middlewares and server ``options``."""
    server = WebSocketServer(**options)
    for _ in range(middlewares):
        server.add_middleware(PassThrough())
    server.include_router(make_router())
    return server
