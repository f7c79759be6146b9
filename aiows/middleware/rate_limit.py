"""``RateLimitingMiddleware``: a token bucket per connection, user or client IP."""

from __future__ import annotations

import time
from typing import Any, Final

from ..exceptions import RateLimitedError
from ..stats import record_failure
from ..types import DisconnectHandler, JSONObject, MessageNext
from ..websocket import WebSocket
from .base import BaseMiddleware

__all__ = ["DEFAULT_MAX_KEYS", "RATE_LIMITED", "RATE_LIMIT_KEYS", "RateLimitingMiddleware", "TokenBucket"]

#: Close code for a connection over its message budget (an HTTP 429 in the 4000 range).
RATE_LIMITED = 4429

#: What ``RateLimitingMiddleware(per=...)`` accepts.
RATE_LIMIT_KEYS = ("connection", "user", "ip")

#: Default bound on the number of budgets kept at once.
DEFAULT_MAX_KEYS = 10_000

#: ``time.monotonic``, bound once: compiled code would look the module attribute up on every message.
_monotonic: Final = time.monotonic


class TokenBucket:
    """One budget: ``tokens`` left (at most the burst), as of ``updated`` (monotonic seconds)."""

    def __init__(self, tokens: float, updated: float) -> None:
        self.tokens = tokens
        self.updated = updated


class RateLimitingMiddleware(BaseMiddleware):
    """Limit messages with a token bucket: ``max_messages_per_minute`` sustained, ``burst`` at once.

    Each budget holds up to ``burst`` messages (default: the per-minute
    rate) and refills continuously at ``max_messages_per_minute / 60`` per
    second. A message that finds its budget empty never reaches its handler.

    - ``per="connection"`` (default): one budget per connection.
      ``per="user"``: one budget per ``context["user_id"]`` (set by
      ``AuthMiddleware``, which must come first), shared by all of that user's
      connections; a connection without a user id gets its own budget.
      ``per="ip"``: one budget per ``websocket.client_ip``.
    - ``on_limit="close"`` (default): close the connection with 4429.
      ``on_limit="error"``: answer ``{"type": "error", "code": "rate_limited",
      ...}`` (it raises ``aiows.exceptions.RateLimitedError``, which the
      dispatcher turns into that frame), drop the message and keep the
      connection open.
    - At most ``max_keys`` budgets are kept. A budget that has refilled to
      full is the same as a fresh one, so it is forgotten; past ``max_keys``
      the least recently used budgets are forgotten first.
    """

    def __init__(
        self,
        max_messages_per_minute: int = 60,
        *,
        burst: int | None = None,
        per: str = "connection",
        on_limit: str = "close",
        max_keys: int = DEFAULT_MAX_KEYS,
    ) -> None:
        if max_messages_per_minute < 1:
            raise ValueError("max_messages_per_minute must be at least 1")
        if burst is not None and burst < 1:
            raise ValueError("burst must be at least 1")
        if per not in RATE_LIMIT_KEYS:
            raise ValueError(f'per must be "connection", "user" or "ip", not {per!r}')
        if on_limit not in ("close", "error"):
            raise ValueError(f'on_limit must be "close" or "error", not {on_limit!r}')
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.max_messages_per_minute = max_messages_per_minute
        self.burst = max_messages_per_minute if burst is None else burst
        self.per = per
        self.on_limit = on_limit
        self.max_keys = max_keys
        self.rate = max_messages_per_minute / 60.0
        #: Seconds an idle budget takes to refill completely: after that it is forgotten.
        self.idle_expiry = self.burst / self.rate
        self._buckets: dict[object, TokenBucket] = {}
        self._next_sweep = 0.0

    def key(self, websocket: WebSocket) -> object:
        """The budget ``websocket``'s messages count against."""
        per = self.per
        if per == "user":
            user_id = websocket.context.get("user_id")
            if user_id is not None:
                return ("user", user_id)
        elif per == "ip":
            return ("ip", websocket.client_ip)
        return websocket

    def allow(self, key: object, now: float) -> bool:
        """Take one message from ``key``'s budget at time ``now``; ``False`` if it is empty."""
        if now >= self._next_sweep:
            self._next_sweep = now + self.idle_expiry
            self.sweep(now)
        buckets = self._buckets
        bucket = buckets.pop(key, None)  # re-inserted below: the dict stays in least-recently-used order
        if bucket is None:
            if len(buckets) >= self.max_keys:
                self.evict(now)
            bucket = TokenBucket(float(self.burst), now)
        else:
            tokens = bucket.tokens + (now - bucket.updated) * self.rate
            bucket.tokens = tokens if tokens < self.burst else float(self.burst)
            bucket.updated = now
        buckets[key] = bucket
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    def sweep(self, now: float) -> None:
        """Forget budgets that have refilled completely (idle for ``idle_expiry`` seconds)."""
        expiry = self.idle_expiry
        rate = self.rate
        burst = self.burst
        stale = [
            key
            for key, bucket in self._buckets.items()
            if now - bucket.updated >= expiry or bucket.tokens + (now - bucket.updated) * rate >= burst
        ]
        for key in stale:
            del self._buckets[key]

    def evict(self, now: float) -> None:
        """Make room for one more budget: forget full ones, else the least recently used."""
        self.sweep(now)
        buckets = self._buckets
        while len(buckets) >= self.max_keys:
            del buckets[next(iter(buckets))]

    @property
    def tracked_keys(self) -> int:
        """How many budgets are kept right now."""
        return len(self._buckets)

    async def on_message(self, handler: MessageNext, websocket: WebSocket, message: JSONObject) -> Any:
        if self.allow(self.key(websocket), _monotonic()):
            return await handler(websocket, message)
        if self.on_limit == "close":
            record_failure(websocket, "rate_limit_close")
            await websocket.close(RATE_LIMITED, "rate limit exceeded")
            return None
        record_failure(websocket, "rate_limit_error")
        # Raised, not sent here: the dispatcher answers it like any error, with the message's "ref" if it has one.
        raise RateLimitedError("rate limit exceeded: message dropped")

    async def on_disconnect(self, handler: DisconnectHandler, websocket: WebSocket, reason: str) -> Any:
        self._buckets.pop(websocket, None)
        return await handler(websocket, reason)
