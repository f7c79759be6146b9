"""Strict validation (StrictMessage) and the field limits of the built-in messages, over real sockets."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import pytest
from pydantic import Field, ValidationError

from aiows import BaseMessage, ChatMessage, GameActionMessage, JoinRoomMessage, Router, StrictMessage, WebSocket
from aiows import WebSocketServer
from aiows.messages import MAX_NAME_LENGTH, MAX_TEXT_LENGTH
from aiows.testing import TestClient


class Transfer(StrictMessage):
    type: Literal["transfer"] = "transfer"
    amount: int
    to: str
    urgent: bool = False
    route: tuple[str, str] | None = Field(default=None, strict=False)


class LaxTransfer(BaseMessage):
    type: Literal["lax_transfer"] = "lax_transfer"
    amount: int
    to: str


def app() -> WebSocketServer:
    router = Router()

    @router.message("transfer")
    async def on_transfer(websocket: WebSocket, message: Transfer) -> None:
        await websocket.send_json({"ok": message.model_dump(exclude={"timestamp"})})

    @router.message("lax_transfer")
    async def on_lax(websocket: WebSocket, message: LaxTransfer) -> None:
        await websocket.send_json({"ok": message.model_dump(exclude={"timestamp"})})

    @router.message("chat")
    async def on_chat(websocket: WebSocket, message: ChatMessage) -> None:
        await websocket.send_json({"ok": len(message.text)})

    @router.message("join_room")
    async def on_join(websocket: WebSocket, message: JoinRoomMessage) -> None:
        await websocket.send_json({"ok": message.room_id})

    @router.message("game_action")
    async def on_game(websocket: WebSocket, message: GameActionMessage) -> None:
        await websocket.send_json({"ok": message.action})

    server = WebSocketServer()
    server.include_router(router)
    return server


async def ask(frame: dict[str, Any]) -> dict[str, Any]:
    async with TestClient(app()) as client, client.connect() as ws:
        await ws.send_json(frame)
        reply: dict[str, Any] = await ws.receive_json()
        await ws.send_json({"type": "chat", "text": "still open", "user_id": 1})
        assert await ws.receive_json() == {"ok": 10}  # bad input never closes the connection
        return reply


def error_types(reply: dict[str, Any]) -> list[str]:
    assert reply["code"] == "validation_error", reply
    return [error["type"] for error in reply["errors"]]


async def test_strict_message_accepts_exact_json_types() -> None:
    reply = await ask(
        {"type": "transfer", "amount": 5, "to": "bob", "urgent": True, "route": ["a", "b"], "timestamp": "2024-01-02T03:04:05Z"}
    )
    assert reply == {"ok": {"type": "transfer", "amount": 5, "to": "bob", "urgent": True, "route": ["a", "b"]}}


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("amount", "5", "int_type"),  # lax mode would coerce "5" to 5
        ("amount", 5.0, "int_type"),
        ("amount", True, "int_type"),
        ("to", 7, "string_type"),
        ("urgent", 1, "bool_type"),
        ("urgent", "true", "bool_type"),
        ("admin", True, "extra_forbidden"),  # lax mode would keep an unknown field
    ],
)
async def test_strict_message_refuses_coercion_and_unknown_fields(field: str, value: Any, error: str) -> None:
    frame = {"type": "transfer", "amount": 5, "to": "bob", field: value}
    assert error in error_types(await ask(frame))


async def test_base_message_stays_lax() -> None:
    reply = await ask({"type": "lax_transfer", "amount": "5", "to": "bob", "admin": True})
    assert reply == {"ok": {"type": "lax_transfer", "amount": 5, "to": "bob", "admin": True}}


async def test_strict_timestamp_still_parses_from_json() -> None:
    message = Transfer.model_validate({"type": "transfer", "amount": 1, "to": "x", "timestamp": "2024-01-02T03:04:05Z"})
    assert isinstance(message.timestamp, datetime)
    with pytest.raises(ValidationError):
        Transfer.model_validate({"type": "transfer", "amount": 1, "to": "x", "extra": 1})


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        ({"type": "chat", "text": "x" * (MAX_TEXT_LENGTH + 1), "user_id": 1}, "string_too_long"),
        ({"type": "join_room", "room_id": "", "user_name": "ann"}, "string_too_short"),
        ({"type": "join_room", "room_id": "r" * (MAX_NAME_LENGTH + 1), "user_name": "ann"}, "string_too_long"),
        ({"type": "join_room", "room_id": "r1", "user_name": "n" * (MAX_NAME_LENGTH + 1)}, "string_too_long"),
        ({"type": "game_action", "action": "", "coordinates": [1, 2]}, "string_too_short"),
        ({"type": "game_action", "action": "a" * (MAX_NAME_LENGTH + 1), "coordinates": [1, 2]}, "string_too_long"),
    ],
)
async def test_builtin_message_limits(frame: dict[str, Any], error: str) -> None:
    assert error in error_types(await ask(frame))


async def test_builtin_messages_at_their_limits_pass() -> None:
    assert await ask({"type": "chat", "text": "x" * MAX_TEXT_LENGTH, "user_id": 1}) == {"ok": MAX_TEXT_LENGTH}
    room = "r" * MAX_NAME_LENGTH
    assert await ask({"type": "join_room", "room_id": room, "user_name": "a"}) == {"ok": room}
