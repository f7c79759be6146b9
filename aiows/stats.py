"""A server's live counters and the snapshot ``server.stats()`` returns.

``ServerCounters`` belongs to one ``WebSocketServer`` (``server.counters``) and
is kept whatever the options: it counts per connection (opened, closed by
code) and per failure (error frames by code, authentication failures, rate
limiting), never per message, so it costs nothing on the hot path. Messages
are counted by the connections themselves (``Link.received``). Counts by
message type need ``metrics_path`` (``aiows.metrics``).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from .broadcast.hub import BroadcastStats

if TYPE_CHECKING:
    from .server import WebSocketServer
    from .websocket import WebSocket

__all__ = ["ANY_PATH", "ServerCounters", "ServerStats", "close_code_label", "record_failure"]

#: The ``path`` label of connections served by routers included without a path.
ANY_PATH = "*"

#: Close codes of the private range (3000-4999) that aiows sends itself: counted by their own label.
OWN_CLOSE_CODES = frozenset({4401, 4429})


def close_code_label(code: int | None) -> str:
    """A close code as a bounded label: ``"1000"``...``"2999"``, aiows' ``"4401"`` and ``"4429"``, else
    ``"3xxx"`` or ``"4xxx"`` (a client picks any code of those ranges); ``"1006"`` when no close frame came.
    """
    if code is None:
        return "1006"
    if code < 3000 or code in OWN_CLOSE_CODES:
        return str(code)
    return "3xxx" if code < 4000 else "4xxx"


class ServerCounters:
    """What one server counted since it was created; read with ``server.stats()`` or scraped as metrics."""

    def __init__(self) -> None:
        #: ``time.monotonic()`` when the server started serving (``None`` while it is not).
        self.started: float | None = None
        #: Connections whose handshake completed, by ``(path, transport)``.
        self.opened: dict[tuple[str, str], int] = {}
        #: Connections open now, by ``(path, transport)`` (0 once all of them closed).
        self.open: dict[tuple[str, str], int] = {}
        #: Connections that ended, by ``(path, transport, close code label)``.
        self.closed: dict[tuple[str, str, str], int] = {}
        #: Error frames sent, by code (``invalid_json``, ``unknown_type``, ``rate_limited``...).
        self.errors: dict[str, int] = {}
        #: Messages received on the connections that have ended.
        self.messages_ended = 0
        #: Connections closed with 4401 by ``AuthMiddleware``.
        self.auth_failures = 0
        #: Messages refused by ``RateLimitingMiddleware``, by what it did: ``"close"`` (4429) or ``"error"``.
        self.rate_limited: dict[str, int] = {}

    def connection_opened(self, path: str, transport: str) -> None:
        """Count a connection opened on ``path`` over ``transport``."""
        key = (path, transport)
        self.opened[key] = self.opened.get(key, 0) + 1
        self.open[key] = self.open.get(key, 0) + 1

    def connection_closed(self, path: str, transport: str, code: int | None, messages: int) -> None:
        """Count a connection closed with ``code`` after ``messages`` messages."""
        key = (path, transport)
        self.open[key] = self.open.get(key, 0) - 1  # kept at 0: the gauge's series stays (paths are few)
        closed = (path, transport, close_code_label(code))
        self.closed[closed] = self.closed.get(closed, 0) + 1
        self.messages_ended += messages

    def count(self, event: str) -> None:
        """A failure a middleware reports: ``"auth_failure"``, ``"rate_limit_close"`` or ``"rate_limit_error"``."""
        if event == "auth_failure":
            self.auth_failures += 1
        elif event.startswith("rate_limit_"):
            action = event[len("rate_limit_") :]
            self.rate_limited[action] = self.rate_limited.get(action, 0) + 1  # its error frame is counted when sent

    def snapshot(self, server: WebSocketServer) -> ServerStats:
        """The counters now, with the live connections of ``server``'s running dispatchers."""
        live = 0
        for dispatcher in server.hub.dispatchers:
            for session in dispatcher.sessions:
                live += session.link.received
        by_path: dict[str, int] = {}
        by_transport: dict[str, int] = {}
        for (path, transport), count in self.open.items():
            if not count:
                continue
            by_path[path] = by_path.get(path, 0) + count
            by_transport[transport] = by_transport.get(transport, 0) + count
        closed: dict[str, int] = {}
        for (_, _, code), count in self.closed.items():
            closed[code] = closed.get(code, 0) + count
        metrics = server.metrics
        return ServerStats(
            uptime=0.0 if self.started is None else time.monotonic() - self.started,
            connections=sum(by_path.values()),
            connections_by_path=by_path,
            connections_by_transport=by_transport,
            connections_opened=sum(self.opened.values()),
            connections_closed=closed,
            messages=self.messages_ended + live,
            messages_by_type={} if metrics is None else metrics.messages_by_type(),
            errors=dict(self.errors),
            auth_failures=self.auth_failures,
            rate_limited=dict(self.rate_limited),
            broadcast=BroadcastStats(**asdict(server.broadcast_stats)),
        )


@dataclass(frozen=True)
class ServerStats:
    """A snapshot of one server's counters (``server.stats()``); ``as_dict()`` is its JSON form."""

    #: Seconds since the server started serving (0.0 when it is not serving).
    uptime: float = 0.0
    #: Open connections (admitted or not yet), in all.
    connections: int = 0
    #: Open connections by the path of the routers serving them (``"*"``: routers included without a path).
    connections_by_path: dict[str, int] = field(default_factory=dict)
    #: Open connections by transport (``"websockets"``, ``"picows"``; ``"asgi"`` under ``server.asgi()``).
    connections_by_transport: dict[str, int] = field(default_factory=dict)
    #: Connections whose handshake completed since the server was created.
    connections_opened: int = 0
    #: Connections that ended, by close code (``"1000"``, ``"1006"``, ``"4401"``, ``"4xxx"``...).
    connections_closed: dict[str, int] = field(default_factory=dict)
    #: Messages received.
    messages: int = 0
    #: Messages received by type (with ``metrics_path`` only; ``"_unknown"``, ``"_invalid"``, ``"_other"``...).
    messages_by_type: dict[str, int] = field(default_factory=dict)
    #: Error frames sent, by code.
    errors: dict[str, int] = field(default_factory=dict)
    #: Connections refused by ``AuthMiddleware`` (closed with 4401).
    auth_failures: int = 0
    #: Messages refused by ``RateLimitingMiddleware``: ``{"close": N, "error": M}``.
    rate_limited: dict[str, int] = field(default_factory=dict)
    #: The broadcast counters (``server.broadcast_stats``).
    broadcast: BroadcastStats = field(default_factory=BroadcastStats)

    def as_dict(self) -> dict[str, Any]:
        """The snapshot as JSON-ready dicts (what ``health_detail=True`` adds to the health endpoint)."""
        return asdict(self)


def record_failure(websocket: WebSocket, event: str) -> None:
    """Count a middleware's refusal (``ServerCounters.count``) on the server serving ``websocket``, if any."""
    server = websocket._server
    if server is not None:
        server.counters.count(event)
