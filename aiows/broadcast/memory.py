"""``MemoryBackend``: the default, single-process backend."""

from __future__ import annotations

from .base import BroadcastBackend, Receive

__all__ = ["MemoryBackend"]


class MemoryBackend(BroadcastBackend):
    """Rooms and broadcast within one server process: zero configuration.

    The server delivers to its own connections itself, so there is nothing to
    forward and presence is the local count.
    """

    def __init__(self) -> None:
        self.lost_publications = 0

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
