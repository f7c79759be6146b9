"""The aiows app every ASGI test serves: the quick start's chat, auth, rooms, mounted at ``/ws/chat``.

Each ``*_app.py`` module beside it mounts ``chat_app`` in one framework, with an HTTP route of its own;
``tests/test_asgi.py`` serves them with uvicorn, hypercorn and granian in subprocesses.
"""

from __future__ import annotations

from typing import Any

from aiows import AuthMiddleware, BaseMessage, ChatMessage, Router, WebSocket, WebSocketServer
from aiows.broadcast import MemoryBackend

#: A token is ``<user_id><SECRET>`` (AuthMiddleware's plain tokens).
SECRET = "a-test-secret-that-is-long-enough-for-aiows"

router = Router()


@router.connect()
async def on_connect(websocket: WebSocket) -> None:
    await websocket.send_json({"type": "welcome", "user_id": websocket.context["user_id"], "path": websocket.path})


@router.message("chat")
async def on_chat(websocket: WebSocket, message: ChatMessage) -> None:
    await websocket.send_json({"type": "chat_response", "echo": message.model_dump(mode="json", exclude={"timestamp"})})


@router.message("join")
async def on_join(websocket: WebSocket, message: BaseMessage) -> None:
    room = str(getattr(message, "room", ""))
    await websocket.join(room)
    await websocket.send_json({"type": "joined", "room": room, "members": await websocket.server.room_members(room)})


@router.message("say")
async def on_say(websocket: WebSocket, message: BaseMessage) -> None:
    await websocket.server.broadcast({"type": "said", "text": getattr(message, "text", "")}, room=getattr(message, "room", ""))


@router.message("add")
async def on_add(websocket: WebSocket, message: BaseMessage) -> dict[str, Any]:
    """Request/reply: the return value is the reply to a message with a ``"ref"``."""
    return {"sum": int(getattr(message, "a", 0)) + int(getattr(message, "b", 0))}


@router.message("confirm")
async def on_confirm(websocket: WebSocket, message: BaseMessage) -> Any:
    """A server-to-client request from inside a handler: the client's reply comes back here."""
    return await websocket.request({"type": "sure?"}, timeout=5.0)


@router.message("rejoin")
async def on_rejoin(websocket: WebSocket, message: BaseMessage) -> dict[str, Any]:
    """Join a room from the last position seen in it: what was missed comes first."""
    room = str(getattr(message, "room", ""))
    recovered = await websocket.join(room, offset=int(getattr(message, "offset", 0)), epoch=str(getattr(message, "epoch", "")))
    return {"recovered": recovered, "position": await websocket.server.room_position(room)}


@router.message("ask")
async def on_ask(websocket: WebSocket, message: BaseMessage) -> None:
    """``receive_json()`` inside a handler: the client's next frame is the answer."""
    await websocket.send_json({"type": "question"})
    answer = await websocket.receive_json()
    await websocket.send_json({"type": "answered", "answer": answer})


#: Rooms keep their last 100 publications: a client that comes back recovers what it missed.
#: Clients that offer the subprotocol aiows.msgpack get MessagePack frames.
server = WebSocketServer(shutdown_grace=5.0, broadcast=MemoryBackend(history_size=100), codecs=("json", "msgpack"))
server.add_middleware(AuthMiddleware(SECRET))
server.include_router(router, path="/chat")

#: The ASGI application the frameworks mount at ``/ws``.
chat_app = server.asgi()
