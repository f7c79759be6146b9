"""Messages several test modules route: ``add`` with its ``Sum`` reply, and a room's ``join`` and ``say``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from aiows import BaseMessage, StrictMessage


class Add(StrictMessage):
    type: Literal["add"] = "add"
    a: int
    b: int


class Sum(BaseModel):
    total: int


class Join(BaseMessage):
    """Join ``room``; with ``offset`` and ``epoch``, recover what was missed since."""

    room: str
    offset: int | None = None
    epoch: str | None = None


class Say(BaseMessage):
    room: str
    text: str
