"""The request the request/reply tests send, ``{"type": "add", "a", "b"}``, and the reply model, ``Sum``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from aiows import StrictMessage


class Add(StrictMessage):
    type: Literal["add"] = "add"
    a: int
    b: int


class Sum(BaseModel):
    total: int
