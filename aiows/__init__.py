"""aiows: a typed, compiled WebSocket framework with declarative routing.

Quick start:

```python
from aiows import WebSocketServer, Router, WebSocket, ChatMessage

router = Router()

@router.message("chat")
async def on_chat(websocket: WebSocket, message: ChatMessage) -> None:
    await websocket.send_json({"type": "chat", "text": message.text})

server = WebSocketServer()
server.include_router(router)
server.run(host="localhost", port=8000)
```
"""

from __future__ import annotations

from pathlib import Path

from . import dispatch
from .exceptions import AiowsException, MessageValidationError
from .messages import BaseMessage, ChatMessage, GameActionMessage, JoinRoomMessage, StrictMessage
from .middleware import AuthMiddleware, BaseMiddleware, LoggingMiddleware, RateLimitingMiddleware
from .router import Router
from .server import RunningServer, WebSocketServer
from .websocket import WebSocket

from . import client  # noqa: E402  (aiows.client.connect: the Python client; last, it imports the rest)

#: The version of this aiows package.
__version__ = "0.1.0"

#: ``True`` when the hot path runs compiled by mypyc, ``False`` in the pure-Python build.
COMPILED: bool = Path(dispatch.__file__ or "").suffix in (".so", ".pyd")

__all__ = [
    "COMPILED",
    "AiowsException",
    "AuthMiddleware",
    "BaseMessage",
    "BaseMiddleware",
    "ChatMessage",
    "GameActionMessage",
    "JoinRoomMessage",
    "LoggingMiddleware",
    "MessageValidationError",
    "RateLimitingMiddleware",
    "Router",
    "RunningServer",
    "StrictMessage",
    "WebSocket",
    "WebSocketServer",
    "__version__",
    "client",
]
