"""Direct reads and writes on a ``websockets`` connection, for the common case.

``recv()`` and ``send()`` of ``websockets``' asyncio connection each run a
stack of coroutines (the message assembler's queue, a future, an async
context manager) even when a message is already waiting or the socket can
take the frame at once. When nothing needs waiting, these functions do the
same work synchronously through the same objects (the connection's
assembler and its Sans-I/O protocol), so order, flow control and UTF-8
checks stay the library's; in every other case they answer "not now" and
the caller awaits ``recv()`` / ``send()`` as usual.

They rely on attributes of ``websockets.asyncio.connection.Connection``
(``recv_messages``, ``protocol``, ``paused``, ``send_in_progress``);
``supports()`` checks them once per connection, so a ``websockets`` release
that changes them falls back to ``recv()`` / ``send()`` instead of breaking.
"""

from __future__ import annotations

from typing import Any

from websockets.asyncio.connection import Connection as WebsocketsConnection
from websockets.frames import Opcode
from websockets.protocol import State

__all__ = ["supports", "take_message", "write_message"]

_TEXT = Opcode.TEXT
_OPEN = State.OPEN


def supports(connection: object) -> bool:
    """Whether ``connection`` is a ``websockets`` connection these functions can read and write directly."""
    if not isinstance(connection, WebsocketsConnection):
        return False
    messages = getattr(connection, "recv_messages", None)
    frames = getattr(messages, "frames", None)
    return (
        hasattr(frames, "queue")
        and hasattr(messages, "get_in_progress")
        and hasattr(messages, "maybe_resume")
        and hasattr(connection, "send_in_progress")
        and hasattr(connection, "paused")
        and hasattr(connection, "send_data")
    )


def take_message(connection: Any, decode: bool | None) -> bytes | str | None:
    """The next message if it has fully arrived already, as ``recv(decode)`` would return it; else ``None``.

    ``None`` also when another coroutine is receiving, or when the next
    message is fragmented: ``recv()`` handles those.
    """
    messages = connection.recv_messages
    queue = messages.frames.queue
    if not queue or messages.get_in_progress:
        return None
    frame = queue[0]
    if not frame.fin:
        return None
    queue.popleft()
    messages.maybe_resume()  # reading resumes once the backlog is below websockets' low-water mark
    data = frame.data
    if type(data) is not bytes:
        data = bytes(data)
    if decode or (decode is None and frame.opcode is _TEXT):
        return data.decode()  # websockets checked the UTF-8 of text frames already
    return data


def write_message(connection: Any, payload: str | bytes, text: bool) -> bool:
    """Write one frame now, as ``send()`` would, if nothing makes ``send()`` wait; ``False``: await ``send()``.

    ``True`` means the frame was handed to the socket; the caller still
    waits for ``connection.drain()`` when ``connection.paused`` says the
    client is slow to read.
    """
    protocol = connection.protocol
    if (
        protocol.state is not _OPEN
        or connection.paused
        or connection.send_in_progress is not None
        or connection.transport.is_closing()
    ):
        return False
    data = payload.encode() if type(payload) is str else payload
    if text:
        protocol.send_text(data)
    else:
        protocol.send_binary(data)
    connection.send_data()
    return True
