"""``MemoryBackend``: the default, single-process backend."""

from __future__ import annotations

import secrets
import time
from collections import deque

from .base import BroadcastBackend, History, Position, Receive, ReceivePublication, check_history_options

__all__ = ["MemoryBackend", "new_epoch"]


def new_epoch() -> str:
    """A fresh epoch: 8 random URL-safe characters (48 bits)."""
    return secrets.token_urlsafe(6)


class RoomHistory:
    """One room's numbered publications in this process: the last ``size`` of them, with their time."""

    __slots__ = ("entries", "epoch", "offset", "touched")

    def __init__(self, size: int, now: float) -> None:
        self.epoch = new_epoch()
        self.offset = 0
        self.entries: deque[tuple[int, float, bytes]] = deque(maxlen=size)
        self.touched = now


class MemoryBackend(BroadcastBackend):
    """Rooms and broadcast within one server process: zero configuration.

    The server delivers to its own connections itself, so there is nothing to
    forward and presence is the local count.

    Args:
        history_size: with a value above 0, each room keeps its last
            ``history_size`` publications, numbered, so a client that
            reconnects can recover what it missed
            (``websocket.join(room, offset=, epoch=)``). They live in this
            process's memory: a restart starts every room over, with a new epoch.
        history_ttl: seconds a publication is kept at most; a room without a
            publication for that long is forgotten (its next one starts a new
            epoch). ``None``: kept until newer ones replace them, for the life
            of the process.
    """

    def __init__(self, *, history_size: int = 0, history_ttl: float | None = None) -> None:
        check_history_options(history_size, history_ttl)
        self.lost_publications = 0
        self.history_size = history_size
        self.history_ttl = history_ttl
        self._histories: dict[str, RoomHistory] = {}
        self._next_sweep = 0.0

    async def start(self, receive: Receive) -> None:
        """Nothing to connect to."""

    async def stop(self) -> None:
        """Nothing to disconnect."""

    async def publish(self, room: str | None, payload: bytes) -> None:
        """No other server to reach."""

    async def set_members(self, room: str, count: int) -> None:
        """The server keeps the local count already."""

    async def count_members(self, room: str, local: int) -> int:
        """The local count is the whole count."""
        return local

    # -- history -------------------------------------------------------------

    def bind_history(self, receive: ReceivePublication) -> None:
        """No other server publishes here."""
        if not self.history_size:
            super().bind_history(receive)

    def _history(self, room: str, now: float) -> RoomHistory:
        """``room``'s history, made (with a new epoch) if it has none or it expired."""
        ttl = self.history_ttl
        histories = self._histories
        if ttl is not None and now >= self._next_sweep:  # forget idle rooms: memory stays bounded
            self._next_sweep = now + ttl
            for name in [name for name, history in histories.items() if now - history.touched > ttl]:
                del histories[name]
        history = histories.get(room)
        if history is None or (ttl is not None and now - history.touched > ttl):
            history = histories[room] = RoomHistory(self.history_size, now)
        return history

    async def append(self, room: str, payload: bytes) -> Position:
        """Number and keep ``payload`` (there is no other server to hand it to)."""
        if not self.history_size:
            return await super().append(room, payload)
        now = time.monotonic()
        history = self._history(room, now)
        history.offset += 1
        history.entries.append((history.offset, now, payload))
        history.touched = now
        return Position(history.epoch, history.offset)

    async def read(self, room: str, after: int) -> History:
        """The room's position and what it keeps after ``after``."""
        if not self.history_size:
            return await super().read(room, after)
        now = time.monotonic()
        history = self._history(room, now)
        position = Position(history.epoch, history.offset)
        if after < 0 or after >= history.offset:
            return History(position, [], after == history.offset)
        oldest = now - self.history_ttl if self.history_ttl is not None else None
        entries = [
            (offset, payload)
            for offset, stamp, payload in history.entries
            if offset > after and (oldest is None or stamp >= oldest)
        ]
        complete = len(entries) == history.offset - after  # offsets are consecutive: all there, or a prefix missing
        return History(position, entries, complete)
