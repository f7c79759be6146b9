"""Admission at the handshake: connection limits per server and per client IP."""

from __future__ import annotations

import time
from collections import deque

__all__ = ["ConnectionLimiter"]

#: Seconds a reserved slot may wait for its connection to start before it counts as abandoned.
ABANDONED_AFTER = 30.0


class ConnectionLimiter:
    """Counts connections from handshake to close, and refuses those over a limit.

    ``reserve()`` is called when a handshake request arrives and returns the
    HTTP status to refuse it with (503 for the total, 429 per IP) or ``None``;
    ``release()`` frees the slot when the connection ends or its handshake
    fails. A slot whose handshake vanished without either is reclaimed once it
    is older than ``ABANDONED_AFTER`` seconds and a limit is reached.
    """

    def __init__(
        self,
        max_connections: int | None = None,
        max_connections_per_ip: int | None = None,
        max_connections_per_ip_per_minute: int | None = None,
    ) -> None:
        self.max_connections = max_connections
        self.max_connections_per_ip = max_connections_per_ip
        self.max_connections_per_ip_per_minute = max_connections_per_ip_per_minute
        self.slots: dict[object, tuple[str, float]] = {}
        self.started: set[object] = set()
        self.per_ip: dict[str, int] = {}
        self.recent: dict[str, deque[float]] = {}

    def reserve(self, key: object, ip: str) -> int | None:
        """Take a slot for connection ``key`` from ``ip``; the refusal status if over a limit."""
        now = time.monotonic()
        if self.max_connections is not None and len(self.slots) >= self.max_connections:
            self._reclaim(now)
            if len(self.slots) >= self.max_connections:
                return 503
        if self.max_connections_per_ip is not None and self.per_ip.get(ip, 0) >= self.max_connections_per_ip:
            self._reclaim(now)
            if self.per_ip.get(ip, 0) >= self.max_connections_per_ip:
                return 429
        if self.max_connections_per_ip_per_minute is not None and not self._admit_rate(ip, now):
            return 429
        self.slots[key] = (ip, now)
        self.per_ip[ip] = self.per_ip.get(ip, 0) + 1
        return None

    def start(self, key: object) -> None:
        """The connection ``key`` completed its handshake and is being served."""
        if key in self.slots:
            self.started.add(key)

    def release(self, key: object) -> None:
        """Free the slot of connection ``key`` (idempotent)."""
        slot = self.slots.pop(key, None)
        self.started.discard(key)
        if slot is not None:
            ip = slot[0]
            remaining = self.per_ip[ip] - 1
            if remaining:
                self.per_ip[ip] = remaining
            else:
                del self.per_ip[ip]

    def _reclaim(self, now: float) -> None:
        abandoned = [
            key for key, (_, since) in self.slots.items() if key not in self.started and now - since > ABANDONED_AFTER
        ]
        for key in abandoned:
            self.release(key)

    def _admit_rate(self, ip: str, now: float) -> bool:
        limit = self.max_connections_per_ip_per_minute
        assert limit is not None
        window = self.recent.get(ip)
        if window is None:
            if len(self.recent) >= 10_000:  # bound memory: forget addresses idle for a minute
                for idle in [addr for addr, times in self.recent.items() if now - times[-1] >= 60.0]:
                    del self.recent[idle]
            window = self.recent[ip] = deque()
        while window and now - window[0] >= 60.0:
            window.popleft()
        if len(window) >= limit:
            return False
        window.append(now)
        return True
