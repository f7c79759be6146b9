"""A basic chat server: every chat message goes to every connected client.

Run it with ``python examples/simple_chat.py [PORT]`` (default 8000), then
connect with any WebSocket client to ``ws://localhost:8000`` and send
``{"type": "chat", "text": "hello", "user_id": 1}``.
"""

from __future__ import annotations

import sys

from aiows import ChatMessage, JoinRoomMessage, Router, WebSocket, WebSocketServer
from aiows.exceptions import ConnectionError as ClientGone

router = Router()
clients: set[WebSocket] = set()


@router.connect()
async def on_connect(websocket: WebSocket) -> None:
    clients.add(websocket)
    await websocket.send_json({"type": "welcome", "message": "Connected!", "online": len(clients)})


@router.message("chat")
async def on_chat(websocket: WebSocket, message: ChatMessage) -> None:
    line = {"type": "chat", "user_id": message.user_id, "text": message.text, "timestamp": message.timestamp}
    for client in list(clients):
        try:
            await client.send_json(line)
        except ClientGone:
            pass  # it left while we were sending; its disconnect handler cleans up


@router.message("join_room")
async def on_join(websocket: WebSocket, message: JoinRoomMessage) -> None:
    websocket.context["room"] = message.room_id
    websocket.context["name"] = message.user_name
    await websocket.send_json({"type": "joined", "room_id": message.room_id, "user_name": message.user_name})


@router.disconnect()
async def on_disconnect(websocket: WebSocket, reason: str) -> None:
    clients.discard(websocket)
    print(f"Client disconnected: {reason}")


server = WebSocketServer()
server.include_router(router)

if __name__ == "__main__":
    server.run(host="localhost", port=int(sys.argv[1]) if len(sys.argv) > 1 else 8000)
