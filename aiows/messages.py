"""Typed messages: ``BaseMessage`` and the built-in message models.

Pydantic models live in this interpreted module on purpose: mypyc cannot
compile pydantic model classes. Validation itself goes through one cached
``TypeAdapter`` per model (see ``aiows.dispatch``).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["BaseMessage", "ChatMessage", "GameActionMessage", "JoinRoomMessage"]


def _now() -> datetime:
    return datetime.now(timezone.utc)


class BaseMessage(BaseModel):
    """A JSON message routed by its ``type`` field.

    Subclass it to declare your own message, with ``type: Literal["..."]``.
    Fields a client sends beyond the declared ones are kept (``extra="allow"``),
    so a handler annotated with ``BaseMessage`` (or not annotated) sees
    everything the client sent.
    """

    model_config = ConfigDict(extra="allow")

    type: str
    timestamp: datetime = Field(default_factory=_now)

    def dict(self, **kwargs: Any) -> dict[str, Any]:
        """Return the message as a dict: the same as ``model_dump()``.

        Kept for the documented ``message.dict()`` without pydantic's
        deprecation warning.
        """
        return self.model_dump(**kwargs)


class ChatMessage(BaseMessage):
    """A chat line: ``{"type": "chat", "text": ..., "user_id": ...}``."""

    type: Literal["chat"] = "chat"
    text: str
    user_id: int


class JoinRoomMessage(BaseMessage):
    """A request to join a room: ``{"type": "join_room", "room_id": ..., "user_name": ...}``."""

    type: Literal["join_room"] = "join_room"
    room_id: str
    user_name: str


class GameActionMessage(BaseMessage):
    """A game move: ``{"type": "game_action", "action": ..., "coordinates": [x, y]}``."""

    type: Literal["game_action"] = "game_action"
    action: str
    coordinates: tuple[int, int]
