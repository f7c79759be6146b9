"""Typed messages: ``BaseMessage`` and the built-in message models.

Pydantic models live in this interpreted module on purpose: mypyc cannot
compile pydantic model classes. Validation itself goes through one cached
``TypeAdapter`` per model (see ``aiows.dispatch``).
"""

from __future__ import annotations

import functools
from datetime import datetime, timezone
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field

from .exceptions import AiowsException, RouterError

__all__ = [
    "MAX_NAME_LENGTH",
    "MAX_TEXT_LENGTH",
    "BaseMessage",
    "ChatMessage",
    "GameActionMessage",
    "JoinRoomMessage",
    "StrictMessage",
    "check_outgoing",
    "message_type_of",
]

#: Longest ``ChatMessage.text``, in characters.
MAX_TEXT_LENGTH = 4096

#: Longest identifier or name in the built-in messages (room ids, user names, actions), in characters.
MAX_NAME_LENGTH = 128


#: The default ``timestamp``: now, in UTC (a ``partial`` of the C function: no Python frame per message).
_now = functools.partial(datetime.now, timezone.utc)


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


class StrictMessage(BaseMessage):
    """A ``BaseMessage`` validated strictly: subclass it instead of ``BaseMessage`` to opt in.

    Strict mode is pydantic's ``strict=True`` plus ``extra="forbid"``: a field
    gets the JSON type it declares or the message is refused (no ``"123"`` to
    ``123``, no ``1.0`` to ``1``, no ``1`` to ``True``), and a field the model
    does not declare is an error instead of being kept. Values arrive as JSON
    decodes them, so declare JSON types (``str``, ``int``, ``float``,
    ``bool``, ``list``, ``dict``); a field whose type JSON has no literal for
    (``tuple``, ``datetime``, ``UUID``, enums) needs ``Field(strict=False)``, as
    ``timestamp`` has here.
    """

    model_config = ConfigDict(strict=True, extra="forbid")

    timestamp: datetime = Field(default_factory=_now, strict=False)


class ChatMessage(BaseMessage):
    """A chat line: ``{"type": "chat", "text": ..., "user_id": ...}``; ``text`` holds at most 4096 characters."""

    type: Literal["chat"] = "chat"
    text: str = Field(max_length=MAX_TEXT_LENGTH)
    user_id: int


class JoinRoomMessage(BaseMessage):
    """A request to join a room: ``{"type": "join_room", "room_id": ..., "user_name": ...}``.

    ``room_id`` and ``user_name`` are 1 to 128 characters long.
    """

    type: Literal["join_room"] = "join_room"
    room_id: str = Field(min_length=1, max_length=MAX_NAME_LENGTH)
    user_name: str = Field(min_length=1, max_length=MAX_NAME_LENGTH)


class GameActionMessage(BaseMessage):
    """A game move: ``{"type": "game_action", "action": ..., "coordinates": [x, y]}``.

    ``action`` is 1 to 128 characters long.
    """

    type: Literal["game_action"] = "game_action"
    action: str = Field(min_length=1, max_length=MAX_NAME_LENGTH)
    coordinates: tuple[int, int]


def message_type_of(model: type[BaseModel]) -> str | None:
    """The ``"type"`` a model's messages carry: its ``type: Literal["..."]`` field's one value, else ``None``."""
    field = model.model_fields.get("type")
    if field is None or get_origin(field.annotation) is not Literal:
        return None
    values = get_args(field.annotation)
    return values[0] if len(values) == 1 and isinstance(values[0], str) else None


def check_outgoing(item: object) -> None:
    """Refuse what cannot be declared as sent by the server (see ``Router.emits``).

    Raises:
        RouterError: ``item`` is neither a pydantic model with a
            ``type: Literal["..."]`` field nor an ``AiowsException`` subclass.
    """
    if isinstance(item, type) and issubclass(item, AiowsException):
        return
    if isinstance(item, type) and issubclass(item, BaseModel):
        if message_type_of(item) is None:
            raise RouterError(
                f'{item.__qualname__} declares no message type: give it a field type: Literal["..."] with one value'
            )
        return
    raise RouterError(f"{item!r} is neither a pydantic model nor an AiowsException subclass: it cannot be emitted")
