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

Presence (``server.presence(room)``) and room history are optional:

- ``set_users(room, users)`` / ``presence(room, local_count, local_users)``:
  the distinct user ids of a room across the cluster; the defaults serve one
  process (the local figures are the whole figures);
- with ``history_size > 0`` a backend keeps each room's last publications and
  numbers them: ``append(room, payload)`` stores one and returns its
  ``Position`` (the offset grows by exactly 1 per publication in the room,
  across every server; the epoch changes when the history is lost),
  ``read(room, after)`` returns the room's position and the publications after
  an offset, and another server's publication in such a room reaches this one
  through the callback given to ``bind_history()`` (called before
  ``start()``), with its position, instead of ``receive``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, NamedTuple

__all__ = ["BroadcastBackend", "History", "Position", "Receive", "ReceivePublication", "user_key", "user_order"]

#: The callback a backend calls with ``(room, payload)`` for another server's publication.
Receive = Callable[[str | None, bytes], None]


class Position(NamedTuple):
    """A place in a room's history: ``offset`` counts its publications, ``epoch`` names the history they are in.

    The offset of a room's first publication is 1 (0: none yet); a new epoch
    starts over, when the history was lost (Redis flushed, the key expired, a
    process restarted with ``MemoryBackend``).
    """

    epoch: str
    offset: int


class History(NamedTuple):
    """The answer of ``read(room, after)``.

    ``position`` is the room's last publication now; ``entries`` the
    publications after ``after`` that are still kept, oldest first, as
    ``(offset, payload)``; ``complete`` tells whether they are all of them
    (every offset from ``after + 1`` to ``position.offset``).
    """

    position: Position
    entries: list[tuple[int, bytes]]
    complete: bool


#: The callback for another server's publication in a room with history: ``(room, payload, position)``.
ReceivePublication = Callable[[str, bytes, Position], None]


class BroadcastBackend(ABC):
    """Base class of broadcast backends (see the module docstring for the contract)."""

    #: Publications that could not be handed to the other servers.
    lost_publications: int = 0
    #: Publications each room keeps (0: no history, the default).
    history_size: int = 0
    #: Seconds a publication is kept at most (``None``: until ``history_size`` newer ones replace it).
    history_ttl: float | None = None

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

    # -- presence (optional) -------------------------------------------------

    async def set_users(self, room: str, users: list[Any]) -> None:
        """Record the distinct user ids of this server's connections in ``room`` (sorted; ``[]``: none left)."""

    async def presence(self, room: str, local_count: int, local_users: list[Any]) -> tuple[int, list[Any]]:
        """``(connections, sorted distinct user ids)`` of ``room`` across every server, given this server's own."""
        return local_count, local_users

    # -- history (optional: backends with history_size > 0) -------------------

    def bind_history(self, receive: ReceivePublication) -> None:
        """Called before ``start()`` when ``history_size > 0``: where other servers' numbered publications go."""
        raise NotImplementedError(f"{type(self).__name__} keeps no room history")

    async def append(self, room: str, payload: bytes) -> Position:
        """Store ``payload`` (a JSON object) as ``room``'s next publication, hand it to the other servers.

        Returns its position. Raises ``aiows.exceptions.BackendUnavailable``
        when it cannot be stored (then it was not published either).
        """
        raise NotImplementedError(f"{type(self).__name__} keeps no room history")

    async def read(self, room: str, after: int) -> History:
        """``room``'s position and its publications after offset ``after`` (``-1``: the position only).

        A room that never had a publication gets its epoch here, the one its
        first publication will carry (so ``(epoch, 0)`` is a position to
        recover from).
        """
        raise NotImplementedError(f"{type(self).__name__} keeps no room history")


def check_history_options(history_size: int, history_ttl: float | None) -> None:
    """Refuse a negative ``history_size`` or a ``history_ttl`` that is not positive."""
    if type(history_size) is not int or history_size < 0:
        raise ValueError(f"history_size must be an integer >= 0, not {history_size!r}")
    if history_ttl is not None and not history_ttl > 0:
        raise ValueError(f"history_ttl must be a positive number of seconds or None, not {history_ttl!r}")


def user_key(user_id: object) -> Any:
    """A user id as presence keeps it: JSON scalars as they are, anything else as its ``str()``."""
    if user_id is None or isinstance(user_id, (str, int, float)):
        return user_id
    return str(user_id)


def user_order(user: Any) -> tuple[int, Any]:
    """Sort key of user ids: numbers first, then strings (ids of mixed types still sort)."""
    if isinstance(user, (int, float)):
        return (0, user)
    return (1, str(user))
