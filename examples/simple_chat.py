"""A chat server with rooms and a page to chat in; run several on one Redis to chat across processes.

Run it with ``python examples/simple_chat.py [PORT] [REDIS_URL]`` (default port
8000, in-memory rooms), then open ``http://localhost:8000/`` in a browser, in
two tabs to chat between them: the same port serves the page
(``examples/static/chat.html``, which uses the server's ``/aiows.js`` client)
over plain HTTP and the chat over WebSocket. With a Redis URL, every process
started with the same URL shares rooms, broadcasts, member counts and the
rooms' history::

    python examples/simple_chat.py 8001 redis://localhost:6379/0
    python examples/simple_chat.py 8002 redis://localhost:6379/0

Each room keeps its last 100 publications (in Redis, or in the process's
memory without it), so a page that reconnects (after a network blip, or after
this server restarted while another one on the same Redis kept the chat going)
joins again from the last message it saw and shows what it missed, once and
in order.

The same port serves the protocol's contract: ``/docs`` (a page) and
``/asyncapi.json`` (the AsyncAPI document), from the models below.

The protocol (JSON text frames; client -> server on the left)::

    {"type": "chat", "text": "hi", "user_id": 1}      -> everyone: {"type": "chat", "user_id", "text", "timestamp"}
    {"type": "join", "room": "lobby", "name": "ann"}  -> the room:  {"type": "joined", "name", "members", ...}
    {"type": "say", "room": "lobby", "text": "hi"}    -> the room:  {"type": "said", "name", "text", "timestamp", ...}
    {"type": "leave", "room": "lobby"}                -> the room:  {"type": "left", "name", "members", ...}
                                                         and you:   {"type": "left", "room", "name", "members"}
    {"type": "members", "room": "lobby"}              -> you: {"type": "members", "room", "count"}

Every frame sent to a room carries ``"room"``, ``"offset"`` and ``"epoch"``
(added by aiows). A ``join`` may carry the ``"offset"`` and ``"epoch"`` last
seen in the room: the publications after it come first. With a ``"ref"``, a
``join`` is answered with ``{"type": "reply", "ref", "data": {"room",
"recovered", "members"}}`` (``recovered``: whether every missed publication
was sent).

On connecting you get ``{"type": "welcome", "message": "Connected!"}``.
``name`` is optional (``"anonymous"``); a room name has 1-64 characters, a
text 1-2000. Bad input gets ``{"type": "error", "code", "message"}`` back:
``validation_error`` (with ``errors``) for a bad field, ``not_in_room`` to
say or leave where you have not joined. Disconnecting leaves every room
(the others get ``left``).
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from aiows import BaseMessage, ChatMessage, Router, WebSocket, WebSocketServer
from aiows.broadcast import MemoryBackend
from aiows.exceptions import AiowsException
from aiows.http import HTTPRequest, HTTPResponse

PAGE = (Path(__file__).resolve().parent / "static" / "chat.html").read_bytes()

#: Publications each room keeps for clients that reconnect.
HISTORY = 100


class Join(BaseMessage):
    """Join a room, under a display name; ``offset`` and ``epoch``: the last position seen there, to recover from."""

    type: Literal["join"] = "join"
    room: str = Field(min_length=1, max_length=64)
    name: str = Field("anonymous", min_length=1, max_length=32)
    offset: int | None = Field(None, ge=0)
    epoch: str | None = Field(None, min_length=1, max_length=64)


class Leave(BaseMessage):
    """Leave a room."""

    type: Literal["leave"] = "leave"
    room: str = Field(min_length=1, max_length=64)


class Say(BaseMessage):
    """Say something to a room you are in."""

    type: Literal["say"] = "say"
    room: str = Field(min_length=1, max_length=64)
    text: str = Field(min_length=1, max_length=2000)


class Members(BaseMessage):
    """Ask how many are in a room (across every server)."""

    type: Literal["members"] = "members"
    room: str = Field(min_length=1, max_length=64)


class Welcome(BaseModel):
    """Sent to every client that connects."""

    type: Literal["welcome"] = "welcome"
    message: str


class ChatLine(BaseModel):
    """A ``chat`` message, sent to everyone."""

    type: Literal["chat"] = "chat"
    user_id: int
    text: str
    timestamp: datetime


class Joined(BaseModel):
    """Someone joined the room; ``members`` counts its connections across every server."""

    type: Literal["joined"] = "joined"
    name: str
    members: int


class Said(BaseModel):
    """What someone said in the room."""

    type: Literal["said"] = "said"
    name: str
    text: str
    timestamp: datetime


class Left(BaseModel):
    """Someone left the room."""

    type: Literal["left"] = "left"
    name: str
    members: int


class LeftRoom(Left):
    """The ``left`` frame the one who left gets: the room it left."""

    room: str


class JoinReply(BaseModel):
    """The reply to a ``join`` sent with a ``ref``: ``recovered`` tells whether every missed publication was sent."""

    room: str
    recovered: bool
    members: int


class MemberCount(BaseModel):
    """The answer to ``members``."""

    type: Literal["members"] = "members"
    room: str
    count: int


class NotInRoom(AiowsException):
    """Saying or leaving where the client has not joined."""

    code = "not_in_room"


router = Router()
# Broadcast to rooms, which keep a history: each reaches clients with "room", "offset" and "epoch" added.
router.emits(Joined, Said, Left, room=True)


def name_of(websocket: WebSocket) -> str:
    name: str = websocket.context.get("name", "anonymous")
    return name


@router.connect(emits=[Welcome])
async def on_connect(websocket: WebSocket) -> None:
    await websocket.send_message(Welcome(message="Connected!"))


@router.message("chat", emits=[ChatLine])
async def on_chat(websocket: WebSocket, message: ChatMessage) -> None:
    """Say something to everyone connected (to every server sharing the backend)."""
    line = ChatLine(user_id=message.user_id, text=message.text, timestamp=message.timestamp)
    await websocket.server.broadcast(line)


@router.message("join")
async def on_join(websocket: WebSocket, message: Join) -> JoinReply:
    """Join a room: its members (you included) get ``joined``; with a ``ref``, the reply says whether you recovered."""
    websocket.context["name"] = message.name
    if message.offset is not None and message.epoch is not None:  # a client coming back: what it missed first
        recovered = await websocket.join(message.room, offset=message.offset, epoch=message.epoch)
    else:
        recovered = await websocket.join(message.room)
    members = await websocket.server.room_members(message.room)
    await websocket.server.broadcast(Joined(name=message.name, members=members), room=message.room)
    return JoinReply(room=message.room, recovered=recovered, members=members)  # the reply, when asked with a ref


@router.message("say", emits=[NotInRoom])
async def on_say(websocket: WebSocket, message: Say) -> None:
    """Say something to a room you joined: its members get ``said``."""
    if message.room not in websocket.rooms:
        raise NotInRoom(f"join room {message.room!r} before saying something in it")
    line = Said(name=name_of(websocket), text=message.text, timestamp=message.timestamp)
    await websocket.server.broadcast(line, room=message.room)


async def leave(websocket: WebSocket, room: str) -> LeftRoom:
    """Leave ``room``, tell its members; return the ``left`` frame for the one who left."""
    await websocket.leave(room)
    members = await websocket.server.room_members(room)
    frame = Left(name=name_of(websocket), members=members)
    await websocket.server.broadcast(frame, room=room)  # aiows adds "room", "offset" and "epoch"
    return LeftRoom(name=frame.name, members=members, room=room)


@router.message("leave", emits=[LeftRoom, NotInRoom])
async def on_leave(websocket: WebSocket, message: Leave) -> None:
    """Leave a room: its members and you get ``left``."""
    if message.room not in websocket.rooms:
        raise NotInRoom(f"you are not in room {message.room!r}")
    await websocket.send_message(await leave(websocket, message.room))


@router.message("members", emits=[MemberCount])
async def on_members(websocket: WebSocket, message: Members) -> None:
    """Ask how many connections are in a room, across every server."""
    count = await websocket.server.room_members(message.room)
    await websocket.send_message(MemberCount(room=message.room, count=count))


@router.disconnect()
async def on_disconnect(websocket: WebSocket, reason: str) -> None:
    for room in websocket.rooms:
        await leave(websocket, room)  # tell the others now (aiows would leave the rooms right after)
    print(f"Client disconnected: {reason}")


def chat_page(request: HTTPRequest) -> HTTPResponse:
    """The chat page, for a browser opening ``http://localhost:8000/``."""
    return HTTPResponse(body=PAGE, content_type="text/html; charset=utf-8")


def make_server(redis_url: str | None = None) -> WebSocketServer:
    """The chat server, on in-memory rooms or on the Redis at ``redis_url``; each room keeps its history."""
    if redis_url is None:
        return WebSocketServer(title="aiows chat", version="1.0.0", broadcast=MemoryBackend(history_size=HISTORY))
    from aiows.broadcast import RedisBackend

    return WebSocketServer(title="aiows chat", version="1.0.0", broadcast=RedisBackend(redis_url, history_size=HISTORY))


server = make_server(sys.argv[2] if __name__ == "__main__" and len(sys.argv) > 2 else None)
server.include_router(router)
server.add_http_route("/", chat_page)

if __name__ == "__main__":
    server.run(host="localhost", port=int(sys.argv[1]) if len(sys.argv) > 1 else 8000)
