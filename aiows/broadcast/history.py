"""Rooms with history: numbered publications, delivered in order, and recovery for a client that rejoins.

With a backend whose ``history_size`` is above 0, every publication in a room
gets a ``Position`` from the backend (``append``) and reaches clients as the
broadcast JSON object plus ``"room"``, ``"offset"`` and ``"epoch"``. A server
receives a room's publications from two sides (its own, as ``append``
returns, and other servers', through the backend), which may arrive out of
order: a ``RoomLog`` per room with local members delivers them in offset
order, each once, holding a publication that comes early until the ones
before it arrive (or reading them from the history when they do not come
within ``GAP_WAIT`` seconds).

Recovery (``websocket.join(room, offset=N, epoch=E)``): the connection is
registered with the log first, so every publication the log delivers from
then on is buffered for it; then the history after ``N`` is read, up to the
room's last publication ``M``. Whatever the log had delivered before the
registration is in that history (it was stored before it was read), and
whatever it delivers after is in the buffer; the history may also hold
publications this server has not delivered yet (on their way from Redis), so
the connection stays registered until the log has delivered ``M``. Then it
gets the history, then the buffer without what the history held, then live
publications. No gap, no duplicate, in order.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson

from ..codecs import JSON, transcoded
from .base import History

if TYPE_CHECKING:
    from ..websocket import WebSocket
    from .hub import Hub

__all__ = ["CATCH_UP_WAIT", "GAP_WAIT", "RESERVED", "RoomLog", "history_payload", "numbered"]

logger = logging.getLogger("aiows.broadcast")

#: The fields aiows adds to every publication in a room with history.
RESERVED = ("room", "offset", "epoch")

#: Seconds a publication that came early waits for the ones before it, before they are read from the history.
GAP_WAIT = 1.0

#: Seconds a recovery waits for this server to deliver what it replayed from the history, before it delivers it.
CATCH_UP_WAIT = 2 * GAP_WAIT


def history_payload(data: object) -> bytes:
    """The JSON object a publication in a room with history carries (``bytes`` are taken as encoded JSON).

    Raises:
        ValueError: it is not a JSON object, or it has a key aiows adds itself
            (``"room"``, ``"offset"``, ``"epoch"``).
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        payload = bytes(data).strip()
        try:
            fields = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise ValueError("a broadcast payload given as bytes must be encoded JSON (UTF-8)") from None
    elif type(data) is dict:
        fields = data
        payload = JSON.encode(data)
    else:
        payload = JSON.encode(data)
        fields = orjson.loads(payload)
    if type(fields) is not dict:
        raise ValueError("a publication in a room with history must be a JSON object")
    for key in RESERVED:
        if key in fields:
            raise ValueError(
                f'a publication in a room with history must not have a "{key}" key: aiows adds '
                '"room", "offset" and "epoch" to each'
            )
    return payload if fields else b"{}"


def numbered(payload: bytes, room_json: bytes, offset: int, epoch_json: bytes) -> bytes:
    """``payload`` (a JSON object) with ``"room"``, ``"offset"`` and ``"epoch"`` added at its end."""
    tail = b'"room":' + room_json + b',"offset":' + str(offset).encode() + b',"epoch":' + epoch_json + b"}"
    if payload == b"{}":
        return b"{" + tail
    return payload[:-1] + b"," + tail


class Buffered(NamedTuple):
    """A live publication held for a connection that is recovering."""

    epoch: str
    offset: int
    frame: bytes


class Pending(NamedTuple):
    """A publication waiting for the log to know where it stands."""

    offset: int
    epoch: str
    payload: bytes
    exclude: set[WebSocket] | None


class RoomLog:
    """One room with history as this server delivers it: in offset order, each publication once.

    ``delivered`` is the offset of the last publication written to the room's
    local members; ``epoch`` the history it is in (``None``: not known, the
    backend could not be read: the first publication seen sets it).
    """

    def __init__(self, hub: Hub, room: str) -> None:
        self.hub = hub
        self.room = room
        self.room_json = orjson.dumps(room)
        self.epoch: str | None = None
        self.epoch_json = b'""'
        self.delivered = 0
        #: Early publications of this epoch, by offset, waiting for the ones before them.
        self.held: dict[int, tuple[bytes, set[WebSocket] | None]] = {}
        #: While the log asks the backend where the room stands: what arrives meanwhile, in order.
        self.waiting: list[Pending] = []
        self.settling = False
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        #: Epochs this room had before: their late publications are dropped.
        self.retired: set[str] = set()
        #: Connections recovering, with the live publications held for them meanwhile.
        self.recovering: dict[WebSocket, list[Buffered]] = {}
        #: Connections waiting in ``Hub.join`` for the log to settle.
        self.joining = 0
        self.gap_timer: asyncio.TimerHandle | None = None
        #: Woken each time a publication is delivered (``catch_up``).
        self.progress: asyncio.Future[None] | None = None
        self.filling = False
        self.closed = False
        self.tasks: set[asyncio.Task[None]] = set()

    # -- where the room stands ------------------------------------------------

    def settle(self) -> None:
        """Ask the backend for the room's position (in a task); publications wait meanwhile."""
        if self.settling or self.closed:
            return
        self.settling = True
        if self.ready.done():
            self.ready = asyncio.get_running_loop().create_future()
        self._spawn(self._settle())

    async def _settle(self) -> None:
        try:
            position = (await self.hub.backend.read(self.room, -1)).position
        except Exception as exc:
            logger.warning("cannot read the position of room %r (%s): delivering what comes, in order", self.room, exc)
            position = None
        if self.closed:
            return
        if position is None:
            if self.epoch is None:
                self.delivered = 0
        elif self.epoch is None:
            self._set_epoch(position.epoch)
            self.delivered = position.offset
        elif position.epoch != self.epoch:  # the history started over: its publications count from 1
            self.retired.add(self.epoch)
            self._set_epoch(position.epoch)
            self.delivered = 0
            self.held.clear()
        self.settling = False
        # Resolved before what waited is published: a publication that makes the log settle again then gets a
        # fresh future from settle(), and wait_ready() waits for it (with this one still pending, it would
        # have spun on a done future, never yielding to the event loop).
        if not self.ready.done():
            self.ready.set_result(None)
        waiting, self.waiting = self.waiting, []
        for pending in waiting:
            if self.epoch is not None and pending.epoch != self.epoch:
                self.retired.add(pending.epoch)  # older than the backend's current history
                continue
            self.publish(pending.offset, pending.epoch, pending.payload, pending.exclude)
        if self.held:
            self._arm_gap()

    async def wait_ready(self) -> None:
        """Wait until the log knows where the room stands (bounded by the backend's own timeouts)."""
        while self.settling and not self.closed:
            await asyncio.shield(self.ready)

    def _set_epoch(self, epoch: str) -> None:
        self.epoch = epoch
        self.epoch_json = orjson.dumps(epoch)

    # -- delivery -------------------------------------------------------------

    def publish(self, offset: int, epoch: str, payload: bytes, exclude: set[WebSocket] | None) -> int:
        """One publication of the room: delivered now if it is the next, held if it came early, else dropped.

        Returns the number of local connections it was written or queued for now.
        """
        if self.closed:
            return 0
        if self.settling:
            self.waiting.append(Pending(offset, epoch, payload, exclude))
            return 0
        if epoch != self.epoch:
            if self.epoch is None:  # the backend could not be read: the first publication seen sets the epoch
                self._set_epoch(epoch)
                self.delivered = offset - 1
            elif epoch in self.retired:
                return 0
            else:  # a new epoch, or an old one never seen: the backend knows which is current
                self.waiting.append(Pending(offset, epoch, payload, exclude))
                self.settle()
                return 0
        delivered = self.delivered
        if offset <= delivered:
            return 0  # delivered already
        if offset > delivered + 1:
            self.held[offset] = (payload, exclude)
            self._arm_gap()
            return 0
        sent = self._send(offset, payload, exclude)
        held = self.held
        while held:
            early = held.pop(self.delivered + 1, None)
            if early is None:
                break
            sent += self._send(self.delivered + 1, early[0], early[1])
        if not held and self.gap_timer is not None:
            self.gap_timer.cancel()
            self.gap_timer = None
        return sent

    def _send(self, offset: int, payload: bytes, exclude: set[WebSocket] | None) -> int:
        self.delivered = offset
        progress = self.progress
        if progress is not None:
            self.progress = None
            if not progress.done():
                progress.set_result(None)
        frame = numbered(payload, self.room_json, offset, self.epoch_json)
        if self.recovering:
            epoch = self.epoch or ""
            limit = self.hub.queue_size
            for websocket, buffer in list(self.recovering.items()):
                if exclude is not None and websocket in exclude:
                    continue
                if len(buffer) >= limit:  # it cannot keep up even before it has joined
                    del self.recovering[websocket]
                    self.hub.overflowed(websocket)
                    continue
                buffer.append(Buffered(epoch, offset, frame))
        return self.hub.deliver(self.room, frame, exclude)

    # -- gaps -----------------------------------------------------------------

    def _arm_gap(self) -> None:
        if self.gap_timer is None and not self.filling and not self.closed:
            self.gap_timer = asyncio.get_running_loop().call_later(GAP_WAIT, self._gap)

    def _gap(self) -> None:
        self.gap_timer = None
        if self.held and not self.closed and not self.filling:
            self.filling = True
            self._spawn(self._fill())

    async def _fill(self) -> None:
        """Publications before the held ones did not come: read them from the history, or skip them."""
        try:
            history: History | None = await self.hub.backend.read(self.room, self.delivered)
        except Exception as exc:
            logger.debug("reading the history of room %r failed: %r", self.room, exc)
            history = None
        finally:
            self.filling = False
        if self.closed or self.settling or not self.held:
            return
        if history is None:
            self._arm_gap()  # try again later; what is held stays in order
            return
        epoch = history.position.epoch
        if epoch != self.epoch:  # the history started over: find out where it stands
            self.settle()
            return
        for offset, payload in history.entries:
            self.publish(offset, epoch, payload, None)
        if self.held:  # the history no longer has them: skip to what is held
            first = min(self.held)
            self.hub.stats.history_gaps += 1
            logger.warning(
                "room %r: publications %d to %d are lost (no longer in the history); delivering from %d",
                self.room,
                self.delivered + 1,
                first - 1,
                first,
            )
            payload, exclude = self.held.pop(first)
            self.delivered = first - 1
            self.publish(first, epoch, payload, exclude)

    # -- recovery ---------------------------------------------------------------

    async def recover(self, websocket: WebSocket, offset: int, epoch: str) -> bool:
        """Send ``websocket`` the room's publications after ``offset`` (if ``epoch`` still holds them), then live.

        The connection is a member of the room when this returns (unless it
        left meanwhile); returns whether every missed publication was sent.
        """
        self.recovering[websocket] = []
        history: History | None = None
        for _ in range(3):
            try:
                history = await self.hub.backend.read(self.room, offset)
            except Exception as exc:
                logger.debug("reading the history of room %r failed: %r", self.room, exc)
                history = None
            # Settling: what it releases must go to the buffer (the history may hold it), so stay registered.
            await self.wait_ready()
            if history is None or self.epoch is None or history.position.epoch == self.epoch or self.closed:
                break
            # The history started over and this log has not seen it yet: catch up, then read again.
            self.settle()
            await self.wait_ready()
        buffer = self.recovering.pop(websocket, None)
        rooms = websocket._rooms
        if buffer is None or self.closed or websocket.closed or rooms is None or self.room not in rooms:
            return False  # left (or overflowed) meanwhile
        recovered = (
            history is not None
            and history.complete
            and history.position.epoch == epoch
            and offset <= history.position.offset
        )
        last = offset
        if recovered:
            assert history is not None
            epoch_json = orjson.dumps(epoch)
            link = websocket.link
            codec = websocket.codec
            for entry_offset, payload in history.entries:
                publication = numbered(payload, self.room_json, entry_offset, epoch_json)
                link.write(publication if codec is JSON else transcoded(codec, publication), codec.text)
                last = entry_offset
            self.hub.stats.recovered += len(history.entries)
            if self.epoch == epoch and self.delivered < last:
                # The history holds publications this server has not delivered yet (on their way): once it
                # has, they are in the buffer, and the connection must not get them again as live ones.
                self.recovering[websocket] = buffer
                if not await self.catch_up(epoch, last):
                    for entry_offset, payload in history.entries:  # they did not come: deliver them now
                        self.publish(entry_offset, epoch, payload, None)
                buffer = self.recovering.pop(websocket, None)
                if buffer is None or self.closed or websocket.closed or self.room not in rooms:
                    return False
        hub = self.hub
        for item in buffer:
            if recovered and item.epoch == epoch and item.offset <= last:
                continue  # it was in the history
            hub.send_one(websocket, item.frame)
        hub.add_member(websocket, self.room)  # no await since the read: nothing came in between
        return recovered

    async def catch_up(self, epoch: str, offset: int) -> bool:
        """Wait until this log has delivered ``offset`` of ``epoch`` (``False`` after ``CATCH_UP_WAIT`` s)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + CATCH_UP_WAIT
        while not self.closed and self.epoch == epoch and self.delivered < offset:
            remaining = end - loop.time()
            if remaining <= 0:
                return False
            if self.progress is None:
                self.progress = loop.create_future()
            try:
                await asyncio.wait_for(asyncio.shield(self.progress), remaining)
            except asyncio.TimeoutError:
                return False
        return True

    def forget(self, websocket: WebSocket) -> None:
        """``websocket`` left the room (or the server) before its recovery ended."""
        self.recovering.pop(websocket, None)

    # -- the end ------------------------------------------------------------------

    def close(self) -> None:
        """The room has no local member any more: stop (a later join starts a new log)."""
        self.closed = True
        if self.gap_timer is not None:
            self.gap_timer.cancel()
            self.gap_timer = None
        self.held.clear()
        self.waiting.clear()
        if not self.ready.done():
            self.ready.set_result(None)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
