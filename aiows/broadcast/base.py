"""The broadcast backend interface: what a server needs to reach other servers.

A backend carries broadcasts and room presence between server processes.
The server itself delivers to its own connections; the backend only has to:

- ``start(receive)``: connect (in the background: never fail because the
  broker is down) and call ``receive(room, payload)`` for every publication
  made by *another* server;
- ``publish(room, payload)``: hand ``payload`` (the already encoded JSON frame)
  to every other server; never raise: count a publication that could not be
  sent in ``lost_publications`` and log it;
- ``set_members(room, count)``: this server now has ``count`` connections in
  ``room`` (0 when it has none left);
- ``count_members(room, local)``: the members of ``room`` across the cluster,
  given this server's own ``local`` count;
- ``stop()``: disconnect.

A NATS or Postgres (``LISTEN``/``NOTIFY``) backend is one module implementing
these five methods. A backend instance belongs to one server.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

__all__ = ["BroadcastBackend", "Receive"]

#: The callback a backend calls with ``(room, payload)`` for another server's publication.
Receive = Callable[[str | None, bytes], None]


class BroadcastBackend(ABC):
    """Base class of broadcast backends (see the module docstring for the contract)."""

    #: Publications that could not be handed to the other servers.
    lost_publications: int = 0

    @abstractmethod
    async def start(self, receive: Receive) -> None:
        """Start delivering other servers' publications to ``receive``."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop and release the connection to the broker."""

    @abstractmethod
    async def publish(self, room: str | None, payload: bytes) -> None:
        """Send ``payload`` for ``room`` (``None``: every connection) to the other servers."""

    @abstractmethod
    async def set_members(self, room: str, count: int) -> None:
        """Record that this server has ``count`` connections in ``room``."""

    @abstractmethod
    async def count_members(self, room: str, local: int) -> int:
        """The number of connections in ``room`` across every server sharing this backend."""
