"""The server side of rooms and broadcast: room index, fan-out, outgoing queues.

One ``Hub`` belongs to each ``WebSocketServer`` (``server.hub``). A broadcast is
encoded and framed once per codec in use among its recipients (JSON, which
the backend carries, then each other codec from it), then written, in the broadcast call itself, to each
local recipient whose socket can take it (the same corked write path as a
reply); a recipient that is slow to read gets it on its bounded outgoing
queue instead (an ``Outbox``, drained by one task that exists only while
the queue does), so a slow or dead recipient never delays the others. The
payload is also handed to the backend for the other servers.

With a backend that keeps history (``history_size > 0``), a broadcast to a
room is numbered by the backend first and delivered in offset order by the
room's ``RoomLog`` (``aiows.broadcast.history``), which also recovers what a
rejoining client missed. Presence (``presence()``) counts the distinct
``context["user_id"]`` of each room's connections.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ..codecs import JSON, Codec, transcoded
from ..transports.base import OPEN
from ..transports.core import binary_frame, text_frame
from ..websocket import WebSocket
from .base import BroadcastBackend, Position, user_key, user_order
from .history import RoomLog, history_payload

if TYPE_CHECKING:
    from ..dispatch import Dispatcher
    from ..server import WebSocketServer

__all__ = ["BroadcastStats", "Hub", "Outbox", "OverflowPolicy"]

logger = logging.getLogger("aiows.broadcast")

#: What to do when a connection's outgoing queue is full: close it with 1013, or drop its oldest message.
OverflowPolicy = Literal["close", "drop_oldest"]

#: Close code for a connection whose outgoing queue overflowed ("try again later").
OVERFLOW_CLOSE_CODE = 1013


@dataclass
class BroadcastStats:
    """Counters of one server's broadcasts (``server.broadcast_stats``)."""

    #: ``server.broadcast()`` calls.
    broadcasts: int = 0
    #: Encodings done for them: one per broadcast, whatever the number of recipients, plus one per other codec
    #: (MessagePack...) in use among its local recipients.
    encodes: int = 0
    #: Messages sent to or queued for local connections (from local broadcasts and other servers').
    queued: int = 0
    #: Messages written to local connections (at once, or later from their outgoing queue).
    delivered: int = 0
    #: Publications received from other servers through the backend.
    received: int = 0
    #: Connections closed with 1013 because their outgoing queue was full.
    overflow_closes: int = 0
    #: Messages dropped (oldest first) because a queue was full, under ``"drop_oldest"``.
    overflow_drops: int = 0
    #: Publications sent to rejoining connections from a room's history (``join(room, offset=, epoch=)``).
    recovered: int = 0
    #: Times a room's live publications skipped some that were lost (no longer in the history).
    history_gaps: int = 0


class Outbox:
    """One connection's broadcast frames that its socket could not take at once: bounded, sent by one task."""

    __slots__ = ("closing", "hub", "queue", "task", "warned", "websocket")

    def __init__(self, hub: Hub, websocket: WebSocket) -> None:
        self.hub = hub
        self.websocket = websocket
        self.queue: deque[tuple[bytes, bytes, bool]] = deque()
        self.task: asyncio.Task[None] | None = None
        self.closing = False
        self.warned = False

    def put(self, frame: bytes, payload: bytes, text: bool) -> bool:
        """Queue one message (``frame`` framed in advance); ``False`` if the connection is closed or closing."""
        link = self.websocket.link
        if self.closing or link.state != OPEN:
            return False
        hub = self.hub
        queue = self.queue
        if len(queue) >= hub.queue_size:
            if hub.overflow == "close":
                self.overflow_close()
                return False
            queue.popleft()
            hub.stats.overflow_drops += 1
            if not self.warned:
                self.warned = True
                logger.warning(
                    "outgoing queue of %s full (%d messages): dropping its oldest messages",
                    self.websocket.client_ip,
                    hub.queue_size,
                )
        queue.append((frame, payload, text))
        hub.stats.queued += 1
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self.run())
        return True

    def overflow_close(self) -> None:
        """Close the connection with 1013: it cannot keep up."""
        self.closing = True
        self.queue.clear()
        self.hub.stats.overflow_closes += 1
        logger.warning(
            "outgoing queue of %s full (%d messages): closing it with %d",
            self.websocket.client_ip,
            self.hub.queue_size,
            OVERFLOW_CLOSE_CODE,
        )
        self.websocket.close_soon(OVERFLOW_CLOSE_CODE, "outgoing queue full")

    async def run(self) -> None:
        """Write the queued frames in order, waiting while the client is slow to read, until none is left."""
        queue = self.queue
        link = self.websocket.link
        stats = self.hub.stats
        try:
            while queue:
                drained = link.drain()
                if drained is not None:
                    await asyncio.shield(drained)
                if link.state != OPEN:
                    queue.clear()
                    break
                link.cork()  # what piled up goes out in one socket write
                while queue and not link.paused:
                    frame, payload, text = queue.popleft()
                    link.write_frame(frame, payload, text)
                    stats.delivered += 1
                link.uncork()
        finally:
            self.task = None
            if not queue:
                self.hub.outboxes.pop(self.websocket, None)


class Hub:
    """Rooms, fan-out and presence for one server (``server.hub``)."""

    def __init__(
        self,
        server: WebSocketServer,
        backend: BroadcastBackend,
        queue_size: int = 256,
        overflow: OverflowPolicy = "close",
    ) -> None:
        self.server = server
        self.backend = backend
        self.queue_size = queue_size
        self.overflow: OverflowPolicy = overflow
        self.stats = BroadcastStats()
        #: Local connections of each room, each with the user id it had when it joined (``None``: none).
        self.rooms: dict[str, dict[WebSocket, Any]] = {}
        #: How many of each room's local connections each user id has (rooms with a user id only).
        self.room_users: dict[str, dict[Any, int]] = {}
        self.outboxes: dict[WebSocket, Outbox] = {}
        self.dispatchers: list[Dispatcher] = []
        #: Whether the backend keeps room history (then each room with local connections has a ``RoomLog``).
        self.history = backend.history_size > 0
        self.logs: dict[str, RoomLog] = {}
        self._started = False

    # -- lifecycle ---------------------------------------------------------

    async def attach(self, dispatcher: Dispatcher) -> None:
        """A running server's dispatcher: its connections receive broadcasts; starts the backend."""
        dispatcher.server = self.server
        self.dispatchers.append(dispatcher)
        if not self._started:
            self._started = True
            if self.history:
                self.backend.bind_history(self.receive_publication)
            await self.backend.start(self.receive)

    async def detach(self, dispatcher: Dispatcher) -> None:
        """The server stopped; the last one to stop stops the backend."""
        if dispatcher in self.dispatchers:
            self.dispatchers.remove(dispatcher)
        if not self.dispatchers and self._started:
            self._started = False
            await self.backend.stop()

    # -- rooms -------------------------------------------------------------

    async def join(self, websocket: WebSocket, room: str, offset: int | None = None, epoch: str | None = None) -> bool:
        """Add ``websocket`` to ``room``; with ``offset`` and ``epoch``, recover what it missed first.

        Returns ``True`` without ``offset``; with it, whether every publication
        after ``offset`` was sent (see ``WebSocket.join``). A connection in the
        room already is left as it is (``False`` with ``offset``: nothing replayed).
        """
        if not isinstance(room, str) or not room:
            raise ValueError(f"a room is a non-empty string, not {room!r}")
        if (offset is None) != (epoch is None):
            raise ValueError("pass offset and epoch together (both from the room's publications or room_position())")
        if offset is not None and (type(offset) is not int or offset < 0 or not isinstance(epoch, str)):
            raise ValueError(f"offset must be an integer >= 0 and epoch a string, not {offset!r} and {epoch!r}")
        rooms = websocket._rooms
        if rooms is None:
            rooms = websocket._rooms = set()
        elif room in rooms:
            return offset is None
        rooms.add(room)
        if not self.history:
            await self.members_changed(room, self.add_member(websocket, room))
            return offset is None
        log = self.logs.get(room)
        if log is None:
            log = self.logs[room] = RoomLog(self, room)
            log.settle()  # where the room stands now: publications after it reach the members
        log.joining += 1
        try:
            await log.wait_ready()
        finally:
            log.joining -= 1
        if log.closed or room not in rooms or websocket.closed:
            return False  # it left (or the connection closed) meanwhile
        if offset is None:
            await self.members_changed(room, self.add_member(websocket, room))
            return True
        assert epoch is not None
        recovered = await log.recover(websocket, offset, epoch)
        members = self.rooms.get(room)
        if members is not None and websocket in members:
            user = members[websocket]
            await self.members_changed(room, user is not None and self.room_users.get(room, {}).get(user) == 1)
        return recovered

    def add_member(self, websocket: WebSocket, room: str) -> bool:
        """Put ``websocket`` among ``room``'s local members now; whether the room's distinct users changed."""
        members = self.rooms.get(room)
        if members is None:
            members = self.rooms[room] = {}
        user = user_key(websocket.context.get("user_id"))
        members[websocket] = user
        changed = False
        if user is not None:
            users = self.room_users.get(room)
            if users is None:
                users = self.room_users[room] = {}
            count = users.get(user, 0)
            users[user] = count + 1
            changed = count == 0
        return changed

    async def members_changed(self, room: str, users_changed: bool) -> None:
        """Tell the backend ``room``'s local count (and its users, when they changed)."""
        members = self.rooms.get(room)
        await self.backend.set_members(room, len(members) if members else 0)
        if users_changed:
            await self.backend.set_users(room, self.local_users(room))

    def local_users(self, room: str) -> list[Any]:
        """The distinct user ids of ``room``'s local connections, sorted."""
        return sorted(self.room_users.get(room, ()), key=user_order)

    async def leave(self, websocket: WebSocket, room: str) -> None:
        """Remove ``websocket`` from ``room`` (nothing happens if it is not in it)."""
        rooms = websocket._rooms
        if rooms is None or room not in rooms:
            return
        rooms.discard(room)
        members = self.rooms.get(room)
        count = 0
        users_changed = False
        if members is not None:
            if websocket in members:
                user = members.pop(websocket)
                if user is not None:
                    users = self.room_users.get(room)
                    if users is not None and user in users:
                        left = users[user] - 1
                        if left:
                            users[user] = left
                        else:
                            users_changed = True
                            del users[user]
                            if not users:
                                del self.room_users[room]
            count = len(members)
            if not count:
                del self.rooms[room]
        log = self.logs.get(room)
        if log is not None:
            log.forget(websocket)
            if not count and not log.recovering and not log.joining:
                del self.logs[room]
                log.close()
        await self.backend.set_members(room, count)
        if users_changed:
            await self.backend.set_users(room, self.local_users(room))

    async def disconnected(self, websocket: WebSocket) -> None:
        """A connection ended: leave all its rooms and drop its queue. Never raises."""
        self.outboxes.pop(websocket, None)
        for room in list(websocket._rooms or ()):
            try:
                await self.leave(websocket, room)
            except Exception:
                logger.exception("leaving room %r failed", room)

    async def room_members(self, room: str) -> int:
        """Connections in ``room``: across the cluster with a shared backend."""
        members = self.rooms.get(room)
        return await self.backend.count_members(room, len(members) if members else 0)

    async def presence(self, room: str) -> dict[str, Any]:
        """``{"connections": N, "users": [...]}`` of ``room`` across the cluster (users: distinct, sorted)."""
        members = self.rooms.get(room)
        connections, users = await self.backend.presence(room, len(members) if members else 0, self.local_users(room))
        return {"connections": connections, "users": users}

    async def room_position(self, room: str) -> dict[str, Any]:
        """``{"epoch": E, "offset": N}``: the last publication of ``room`` (0: none yet)."""
        if not isinstance(room, str) or not room:
            raise ValueError(f"a room is a non-empty string, not {room!r}")
        if not self.history:
            raise RuntimeError(
                "rooms keep no history: create the backend with history_size > 0, e.g. MemoryBackend(history_size=100)"
            )
        position = (await self.backend.read(room, -1)).position
        return {"epoch": position.epoch, "offset": position.offset}

    # -- broadcast ---------------------------------------------------------

    async def broadcast(
        self,
        data: object,
        room: str | None = None,
        exclude: WebSocket | Iterable[WebSocket] | None = None,
    ) -> int:
        """Encode ``data`` once (``bytes`` are sent as they are), send it to local recipients, publish it.

        Returns the number of local connections it was written or queued for.
        """
        numbered = room is not None and self.history
        payload = history_payload(data) if numbered else encoded(data)
        stats = self.stats
        stats.broadcasts += 1
        stats.encodes += 1
        excluded: set[WebSocket] | None
        if exclude is None:
            excluded = None
        elif isinstance(exclude, WebSocket):
            excluded = {exclude}
        else:
            excluded = set(exclude)
        if numbered:
            assert room is not None
            position = await self.backend.append(room, payload)  # numbered (and sent to the other servers)
            log = self.logs.get(room)
            return log.publish(position.offset, position.epoch, payload, excluded) if log is not None else 0
        sent = self.deliver(room, payload, excluded)
        await self.backend.publish(room, payload)
        return sent

    def receive(self, room: str | None, payload: bytes) -> None:
        """The backend's callback: another server's publication."""
        self.stats.received += 1
        self.deliver(room, payload, None)

    def receive_publication(self, room: str, payload: bytes, position: Position) -> None:
        """The backend's callback: another server's publication in a room with history."""
        self.stats.received += 1
        log = self.logs.get(room)
        if log is not None:
            log.publish(position.offset, position.epoch, payload, None)

    def send_one(self, websocket: WebSocket, payload: bytes) -> None:
        """Send one JSON message to ``websocket`` (in its codec) as a broadcast goes: written now, or queued if it
        is slow."""
        codec = websocket.codec
        text = codec.text
        if codec is not JSON:
            payload = transcoded(codec, payload)
        outbox = self.outboxes.get(websocket)
        if outbox is None:
            link = websocket.link
            if link.state != OPEN:
                return
            if not link.paused:
                link.write(payload, text)
                self.stats.queued += 1
                self.stats.delivered += 1
                return
            outbox = self.outboxes[websocket] = Outbox(self, websocket)
        outbox.put(text_frame(payload) if text else binary_frame(payload), payload, text)

    def overflowed(self, websocket: WebSocket) -> None:
        """``websocket`` cannot keep up with its broadcasts: close it (1013) or, under drop_oldest, go on."""
        if self.overflow == "close":
            self.stats.overflow_closes += 1
            logger.warning(
                "%s fell %d messages behind while it recovered a room's history: closing it with %d",
                websocket.client_ip,
                self.queue_size,
                OVERFLOW_CLOSE_CODE,
            )
            websocket.close_soon(OVERFLOW_CLOSE_CODE, "outgoing queue full")

    def deliver(self, room: str | None, payload: bytes, exclude: set[WebSocket] | None) -> int:
        """Send ``payload`` to the local connections of ``room`` (or all of them): written now where possible."""
        targets: Iterable[WebSocket]
        if room is None:
            if len(self.dispatchers) == 1:
                targets = self.dispatchers[0].connections
            else:
                targets = {ws for dispatcher in self.dispatchers for ws in dispatcher.connections}
        else:
            members = self.rooms.get(room)
            if not members:
                return 0
            targets = members
        json_frame = text_frame(payload)
        #: The message in each other codec among the recipients (framed), made for the first that uses it.
        others: dict[Codec, tuple[bytes, bytes]] | None = None
        outboxes = self.outboxes
        sent = written = 0
        for websocket in list(targets):
            if exclude is not None and websocket in exclude:
                continue
            codec = websocket.codec
            if codec is JSON:
                frame = json_frame
                data = payload
            else:
                if others is None:
                    others = {}
                encoded = others.get(codec)
                if encoded is None:
                    data = transcoded(codec, payload)
                    encoded = others[codec] = (text_frame(data) if codec.text else binary_frame(data), data)
                    self.stats.encodes += 1
                frame, data = encoded
            outbox = outboxes.get(websocket)
            if outbox is None:
                link = websocket.link
                if link.state != OPEN:
                    continue
                if not link.paused:
                    link.write_frame(frame, data, codec.text)
                    written += 1
                    continue
                outbox = outboxes[websocket] = Outbox(self, websocket)
            if outbox.put(frame, data, codec.text):
                sent += 1
        stats = self.stats
        stats.queued += written
        stats.delivered += written
        return sent + written


def encoded(data: object) -> bytes:
    """The JSON text a broadcast sends: ``data`` encoded, or ``bytes`` as they are (checked to be UTF-8)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        payload = bytes(data)
        try:
            payload.decode()
        except UnicodeDecodeError:
            raise ValueError("a broadcast payload given as bytes must be UTF-8 (encoded JSON)") from None
        return payload
    return JSON.encode(data)
