"""aiows mounted in a FastAPI app: FastAPI's HTTP routes and aiows' typed, routed WebSockets on one port.

Run it with ``python examples/fastapi_mount.py [PORT]`` (``pip install "aiows[asgi]"``: FastAPI and uvicorn;
default port 8000), or with any ASGI server: ``uvicorn fastapi_mount:app`` from this directory.

- ``GET /`` and ``GET /rooms/{room}`` are FastAPI's (the second asks aiows how many are in a room);
- ``ws://localhost:8000/ws/chat?token=<user_id>example-secret-key-that-is-long-enough`` is aiows': the
  WebSocket server's routers, middleware and rooms, mounted at ``/ws`` with ``app.mount``;
- ``GET /ws/healthz`` is aiows' health endpoint.

The chat protocol (JSON text frames; client -> server on the left)::

    {"type": "join", "room": "lobby"}              -> you: {"type": "joined", "room", "members"}
    {"type": "say", "room": "lobby", "text": "hi"} -> the room: {"type": "said", "room", "user_id", "text"}

A missing or wrong token closes the connection with 4401. Ctrl-C or SIGTERM closes every WebSocket with
1001 once its running handler finishes, then uvicorn shuts down.
"""

from __future__ import annotations

import sys
from typing import Literal

from fastapi import FastAPI
from pydantic import BaseModel, Field

from aiows import AuthMiddleware, BaseMessage, Router, WebSocket, WebSocketServer

SECRET = "example-secret-key-that-is-long-enough"


class Join(BaseMessage):
    type: Literal["join"] = "join"
    room: str = Field(min_length=1, max_length=64)


class Say(BaseMessage):
    type: Literal["say"] = "say"
    room: str = Field(min_length=1, max_length=64)
    text: str = Field(min_length=1, max_length=2000)


class Said(BaseModel):
    type: Literal["said"] = "said"
    room: str
    user_id: str
    text: str


router = Router()


@router.connect()
async def on_connect(websocket: WebSocket) -> None:
    await websocket.send_json({"type": "welcome", "user_id": websocket.context["user_id"]})


@router.message("join")
async def on_join(websocket: WebSocket, message: Join) -> None:
    await websocket.join(message.room)
    members = await websocket.server.room_members(message.room)
    await websocket.send_json({"type": "joined", "room": message.room, "members": members})


@router.message("say")
async def on_say(websocket: WebSocket, message: Say) -> None:
    if message.room not in websocket.rooms:
        await websocket.send_json({"type": "error", "code": "not_in_room", "message": "join the room first"})
        return
    said = Said(room=message.room, user_id=websocket.context["user_id"], text=message.text)
    await websocket.server.broadcast(said, room=message.room)


server = WebSocketServer()
server.add_middleware(AuthMiddleware(SECRET))
server.include_router(router, path="/chat")
chat = server.asgi()

app = FastAPI(lifespan=chat.lifespan)  # aiows starts with the app, and closes its connections when it stops


@app.get("/")
async def index() -> dict[str, str]:
    return {"chat": "/ws/chat?token=<user_id>" + "<secret>", "health": "/ws/healthz"}


@app.get("/rooms/{room}")
async def room(room: str) -> dict[str, object]:
    return {"room": room, "members": await server.room_members(room)}


app.mount("/ws", chat)

if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="localhost", port=int(sys.argv[1]) if len(sys.argv) > 1 else 8000)
