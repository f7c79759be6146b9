"""Direct reads and writes on a ``websockets`` connection, for the common case.

``recv()`` and ``send()`` of ``websockets``' asyncio connection each run a
stack of coroutines (the message assembler's queue, a future, an async
context manager) even when a message is already waiting or the socket can
take the frame at once. When nothing needs waiting, ``DirectLink`` does the
same work synchronously through the same objects (the connection's
assembler and its Sans-I/O protocol), so framing, order and flow control
stay the library's; in every other case (a fragmented message, invalid
UTF-8, a client slow to read) it answers "not now" and the caller awaits
``recv()`` / ``send()`` as usual.

It also corks: while the messages being handled arrived together (more are
already queued behind the current one), the frames written for them wait in
the protocol and go out in one socket write when the last of them is
handled, or at the latest on the event loop's next turn (a handler that
awaits something else does not hold back what was written before). On
loopback, each socket write costs more than routing, validating and
answering a message, so a client that pipelines gets its replies for a
fraction of the system calls.

It relies on attributes of ``websockets.asyncio.connection.Connection``
(``recv_messages``, ``protocol``, ``paused``, ``send_in_progress``,
``transport``); ``DirectLink.attach`` checks them once per connection, so a
``websockets`` release that changes them makes aiows fall back to
``recv()`` / ``send()`` instead of breaking.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from websockets.asyncio.connection import Connection as WebsocketsConnection
from websockets.frames import Opcode
from websockets.protocol import State

__all__ = ["MAX_CORKED", "CorkedLink", "DirectLink"]

#: Frames held back at most before they are written anyway (bounds the memory a pipelining client can pin).
MAX_CORKED = 32

_TEXT = Opcode.TEXT
_OPEN = State.OPEN


class CorkedLink:
    """A connection's direct read/write path: what the receive loop, ``send_frame`` and broadcasts use.

    ``take(decode)`` returns a message already received, or ``None``;
    ``write(payload, text)`` writes a frame, or returns ``False`` when
    ``send()`` must be awaited instead; ``flush()`` writes the ``held``
    frames in one socket write. ``corked`` is set by the receive loop while
    the message being handled has more queued behind it (``queue``): writes
    then wait (at most ``MAX_CORKED`` frames, at most until the loop's next
    turn) to go out together. Subclasses: ``DirectLink`` for ``websockets``,
    ``aiows.picows_transport.PicowsConnection`` for picows.
    """

    # No slots of its own, so that PicowsConnection can also derive from picows' WSListener; each subclass
    # lists these attributes in its own __slots__.
    __slots__ = tuple[str, ...]()

    corked: bool
    held: int
    queue: deque[Any]
    loop: asyncio.AbstractEventLoop

    def take(self, decode: bool | None) -> bytes | str | None:
        raise NotImplementedError

    def write(self, payload: str | bytes, text: bool) -> bool:
        raise NotImplementedError

    def flush(self) -> None:
        raise NotImplementedError

    def received(self) -> None:
        """Note a message ``recv()`` returned: cork if more are queued behind it."""
        self.corked = len(self.queue) > 0

    def hold(self) -> bool:
        """Whether the frame just written waits for the others (corked, fewer than ``MAX_CORKED`` held)."""
        if not self.corked or self.held >= MAX_CORKED:
            return False
        if self.held == 0:
            self.loop.call_soon(self.flush)  # whatever happens, out on the loop's next turn
        self.held += 1
        return True

    def write_all(self, frames: deque[bytes]) -> int:
        """Write ``frames`` (text) from the left in one socket write, up to the first one that must wait.

        Returns how many were written (and removed from ``frames``); the rest
        go through ``send()``.
        """
        corked = self.corked
        self.corked = True
        written = 0
        try:
            while frames and self.write(frames[0], True):
                frames.popleft()
                written += 1
        finally:
            self.corked = corked  # the receive loop's own setting
        self.flush()
        return written


class DirectLink(CorkedLink):
    """Reads and writes one ``websockets`` connection without its coroutine machinery when nothing must wait."""

    __slots__ = ("connection", "corked", "held", "loop", "messages", "protocol", "queue", "transport")

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.loop = asyncio.get_running_loop()
        self.protocol = connection.protocol
        self.messages = connection.recv_messages
        self.queue = connection.recv_messages.frames.queue
        self.transport = connection.transport
        self.corked = False
        self.held = 0  # frames written to the protocol, not yet to the socket

    @classmethod
    def attach(cls, connection: object) -> DirectLink | None:
        """A link for ``connection`` if it is a ``websockets`` connection with the expected insides, else ``None``."""
        if not isinstance(connection, WebsocketsConnection):
            return None
        messages = getattr(connection, "recv_messages", None)
        if not (
            hasattr(getattr(messages, "frames", None), "queue")
            and hasattr(messages, "get_in_progress")
            and hasattr(messages, "maybe_resume")
            and hasattr(connection, "send_in_progress")
            and hasattr(connection, "paused")
            and hasattr(getattr(connection, "protocol", None), "data_to_send")
        ):
            return None
        return cls(connection)

    def take(self, decode: bool | None) -> bytes | str | None:
        """The next message if it has fully arrived already, as ``recv(decode)`` would return it; else ``None``.

        ``None`` also when another coroutine is receiving, or when the next
        message is fragmented: ``recv()`` handles those. Sets ``corked``
        when more frames are queued behind the one taken.
        """
        queue = self.queue
        if not queue or self.messages.get_in_progress:
            return None
        frame = queue[0]
        if not frame.fin:
            return None
        queue.popleft()
        self.messages.maybe_resume()  # reading resumes once the backlog is below websockets' low-water mark
        self.corked = len(queue) > 0
        data = frame.data
        if type(data) is not bytes:
            data = bytes(data)
        if decode or (decode is None and frame.opcode is _TEXT):
            try:
                return data.decode()
            except UnicodeDecodeError:  # recv() closes the connection with 1007, as websockets does
                queue.appendleft(frame)
                return None
        return data

    def write(self, payload: str | bytes, text: bool) -> bool:
        """Write one frame, as ``send()`` would, if nothing makes ``send()`` wait; ``False``: await ``send()``.

        ``True`` means the frame is written (or held back while corked); the
        caller still waits for ``connection.drain()`` when
        ``connection.paused`` says the client is slow to read.
        """
        connection = self.connection
        protocol = self.protocol
        if (
            protocol.state is not _OPEN
            or connection.paused
            or connection.send_in_progress is not None
            or self.transport.is_closing()
        ):
            return False
        data = payload.encode() if type(payload) is str else payload
        if text:
            protocol.send_text(data)
        else:
            protocol.send_binary(data)
        if not self.hold():
            self.flush()
        return True

    def flush(self) -> None:
        """Hand every frame written so far to the socket, in one write."""
        self.held = 0
        writes = self.protocol.data_to_send()
        if not writes or self.transport.is_closing():
            return  # nothing held, or the connection is gone (websockets' own writes would be dropped too)
        if all(writes):
            self.transport.write(writes[0] if len(writes) == 1 else b"".join(writes))
        else:  # an end-of-stream marker (b"") among them: let websockets handle it
            self.protocol.writes[:0] = writes
            self.connection.send_data()
