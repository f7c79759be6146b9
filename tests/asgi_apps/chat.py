"""The aiows app every ASGI test serves: the quick start's chat, auth, rooms, mounted at ``/ws/chat``.

Each ``*_app.py`` module beside it mounts ``chat_app`` in one framework, with an HTTP route of its own;
``tests/test_asgi.py`` serves them with uvicorn, hypercorn and granian in subprocesses.
"""

from __future__ import annotations

from aiows import AuthMiddleware, BaseMessage, ChatMessage, Router, WebSocket, WebSocketServer

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


@router.message("ask")
async def on_ask(websocket: WebSocket, message: BaseMessage) -> None:
    """``receive_json()`` inside a handler: the client's next frame is the answer."""
    await websocket.send_json({"type": "question"})
    answer = await websocket.receive_json()
    await websocket.send_json({"type": "answered", "answer": answer})


server = WebSocketServer(shutdown_grace=5.0)
server.add_middleware(AuthMiddleware(SECRET))
server.include_router(router, path="/chat")

#: The ASGI application the frameworks mount at ``/ws``.
chat_app = server.asgi()
