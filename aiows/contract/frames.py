"""The frames aiows itself sends or reads, as models for the contract (dispatch writes them as dicts)."""

from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Auth", "AuthOk", "ErrorDetail", "ErrorFrame", "InRoom", "ReplyFrame"]


class ErrorDetail(BaseModel):
    """One reason a message did not validate: where (``loc``), what (``msg``) and pydantic's error ``type``."""

    model_config = ConfigDict(extra="forbid")

    loc: list[Union[str, int]]
    msg: str
    type: str


class ErrorFrame(BaseModel):
    """The answer to a message that failed: its ``code`` says why; ``errors`` comes with ``validation_error``."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["error"] = "error"
    code: str
    message: str
    errors: list[ErrorDetail] = Field(default_factory=list)
    ref: Union[str, int, None] = Field(None, description='The "ref" of the message that failed, when it carried one.')


class ReplyFrame(BaseModel):
    """A reply: the answer to a message that carried a ``"ref"`` (from the server: the handler's return value).

    A request type's own reply (``data`` typed by its handler's return
    annotation) is this frame with ``data`` required and of that type.
    """

    model_config = ConfigDict(extra="forbid")

    type: Literal["reply"] = "reply"
    ref: Union[str, int] = Field(description="The message's ref: a string (64 characters at most) or an integer.")
    data: Any = None


class Auth(BaseModel):
    """The first message of a client that authenticates by message instead of by ``?token=``."""

    type: Literal["auth"] = "auth"
    token: str = Field(min_length=1)


class AuthOk(BaseModel):
    """The answer to an accepted ``auth`` message; a refused one closes the connection with 4401."""

    type: Literal["auth_ok"] = "auth_ok"
    user_id: Any


class InRoom(BaseModel):
    """What aiows adds to every publication in a room with history: where it was published and its position.

    A client that reconnects joins again with the last ``offset`` and ``epoch``
    it saw, to get what it missed first.
    """

    room: str = Field(description="The room it was published in.")
    offset: int = Field(ge=1, description="Its number in the room: 1 for the first publication, then +1 each.")
    epoch: str = Field(description="The history the offset counts in (a new one when the history was lost).")
