"""Authentication, logging and rate limiting around a small echo app.

Run it with ``python examples/middleware_example.py [PORT]`` (default 8000)
and connect with a token: ``ws://localhost:8000?token=user123your-secret-key``
(or the header ``Authorization: Bearer user123your-secret-key``).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from aiows import (
    AuthMiddleware,
    BaseMessage,
    BaseMiddleware,
    LoggingMiddleware,
    RateLimitingMiddleware,
    Router,
    WebSocket,
    WebSocketServer,
)
from aiows.types import JSONObject, MessageNext

router = Router()


class CountingMiddleware(BaseMiddleware):
    """A router middleware: counts the messages each connection sent."""

    async def on_message(self, handler: MessageNext, websocket: WebSocket, message: JSONObject) -> Any:
        websocket.context["messages"] = websocket.context.get("messages", 0) + 1
        return await handler(websocket, message)


@router.connect()
async def on_connect(websocket: WebSocket) -> None:
    user_id = websocket.context.get("user_id")  # set by AuthMiddleware
    await websocket.send_json({"type": "welcome", "user_id": user_id, "authenticated": True})


@router.message("echo")
async def on_echo(websocket: WebSocket, message: BaseMessage) -> None:
    await websocket.send_json({"type": "echo", "data": message.dict(), "count": websocket.context["messages"]})


@router.disconnect()
async def on_disconnect(websocket: WebSocket, reason: str) -> None:
    print(f"{websocket.context.get('user_id')} disconnected: {reason}")


server = WebSocketServer()
# Server middleware runs in the order added: auth -> logging -> rate limiting.
server.add_middleware(AuthMiddleware("your-secret-key"))
server.add_middleware(LoggingMiddleware("myapp.websocket"))
server.add_middleware(RateLimitingMiddleware(max_messages_per_minute=60))
# Router middleware runs after the server's.
router.add_middleware(CountingMiddleware())
server.include_router(router)

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    server.run(host="localhost", port=int(sys.argv[1]) if len(sys.argv) > 1 else 8000)
