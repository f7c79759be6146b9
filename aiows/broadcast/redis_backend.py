"""``RedisBackend``: rooms and broadcast across processes and machines sharing one Redis.

Needs the ``redis`` package: ``pip install "aiows[redis]"``.

How it uses Redis (every key starts with ``prefix``, ``"aiows"`` by default):

- broadcasts: one pub/sub channel, ``{prefix}:broadcast``. A publication is
  ``[node, room]`` as JSON, a newline, then the encoded frame; each server
  skips its own publications (it has delivered them locally already);
- presence: a hash per room, ``{prefix}:room:{room}``, maps each server's
  node id to its number of members; each server refreshes a liveness key
  ``{prefix}:node:{node}`` every ``presence_ttl / 3`` seconds, so the members of
  a crashed server stop counting after ``presence_ttl`` seconds (its stale
  hash fields are removed when next counted).

When Redis goes away the backend logs it, counts every publication it cannot
send in ``lost_publications``, keeps serving local connections, and reconnects
with exponential backoff (``backoff_min`` doubling up to ``backoff_max``
seconds); once back it re-registers this server's presence. Publications made
by other servers while this one was disconnected are not replayed.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

import orjson

from .base import BroadcastBackend, Receive

__all__ = ["RedisBackend"]

logger = logging.getLogger("aiows.broadcast")

_MISSING_EXTRA = 'RedisBackend needs the redis package: pip install "aiows[redis]"'


def _redis_errors() -> tuple[type[BaseException], ...]:
    from redis.exceptions import RedisError

    return (RedisError, OSError)


class RedisBackend(BroadcastBackend):
    """Share rooms, broadcasts and presence through Redis: ``RedisBackend("redis://localhost:6379/0")``.

    Args:
        url: a ``redis://`` (or ``rediss://``, ``unix://``) URL.
        prefix: prefix of the channel and keys, to let several apps share one Redis.
        presence_ttl: seconds after which a server that stopped refreshing its
            presence (crashed, or cut off from Redis) no longer counts.
        backoff_min: the first reconnection delay, in seconds; it doubles after each failed attempt.
        backoff_max: the longest reconnection delay, in seconds.
        **redis_options: more keyword arguments for ``redis.asyncio.Redis.from_url``.

    Raises:
        ImportError: the ``redis`` package is not installed.
        ValueError: ``presence_ttl`` is not positive.
    """

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        prefix: str = "aiows",
        presence_ttl: float = 30.0,
        backoff_min: float = 0.1,
        backoff_max: float = 10.0,
        **redis_options: Any,
    ) -> None:
        try:
            import redis.asyncio  # noqa: F401
        except ImportError:
            raise ImportError(_MISSING_EXTRA) from None
        if presence_ttl <= 0:
            raise ValueError("presence_ttl must be positive")
        self.url = url
        self.prefix = prefix
        self.presence_ttl = presence_ttl
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.redis_options = redis_options
        #: This server's id in the cluster.
        self.node = uuid.uuid4().hex
        self.channel = f"{prefix}:broadcast".encode()
        self.lost_publications = 0
        #: ``True`` while the subscription to Redis is up.
        self.connected = False
        #: How many times the backend lost its connection to Redis.
        self.disconnections = 0
        self._header = orjson.dumps([self.node, None])
        self._client: Any = None  # a redis.asyncio.Redis once started
        self._receive: Receive | None = None
        self._counts: dict[str, int] = {}
        self._dirty = False
        self._failures = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._down_since = 0.0
        self._lost_at_outage = 0

    def _room_key(self, room: str) -> str:
        return f"{self.prefix}:room:{room}"

    def _node_key(self, node: str) -> str:
        return f"{self.prefix}:node:{node}"

    # -- lifecycle ---------------------------------------------------------

    async def start(self, receive: Receive) -> None:
        """Start subscribing and refreshing presence, in the background (Redis may be down)."""
        from redis.asyncio import BlockingConnectionPool, Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        options: dict[str, Any] = {
            "socket_connect_timeout": 5.0,
            "socket_timeout": 5.0,
            "retry": Retry(NoBackoff(), 0),  # this backend retries with its own backoff
            "max_connections": 32,  # a burst of joins waits for a connection rather than opening hundreds
            "timeout": 10.0,
        }
        options.update(self.redis_options)
        options["decode_responses"] = False  # frames are bytes
        pool = BlockingConnectionPool.from_url(self.url, **options)
        self._client = Redis.from_pool(pool)  # closes the pool when the client closes
        self._receive = receive
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._listen()), loop.create_task(self._heartbeat())]

    async def stop(self) -> None:
        """Stop the background tasks, withdraw this server's presence, close the connections."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        client, self._client = self._client, None
        if client is None:
            return
        if self.connected:
            try:
                async with client.pipeline(transaction=False) as pipe:
                    for room in self._counts:
                        pipe.hdel(self._room_key(room), self.node)
                    pipe.delete(self._node_key(self.node))
                    await pipe.execute()
            except _redis_errors():
                pass
        self.connected = False
        await client.aclose()

    # -- broadcast ---------------------------------------------------------

    async def publish(self, room: str | None, payload: bytes) -> None:
        """Publish to the other servers; a publication that fails is logged and counted."""
        client = self._client
        if client is None or not self.connected:
            self._lose()
            return
        header = self._header if room is None else orjson.dumps([self.node, room])
        try:
            await client.publish(self.channel, header + b"\n" + payload)
        except _redis_errors() as exc:
            logger.debug("publishing failed: %r", exc)
            self._lose()

    def _lose(self) -> None:
        self.lost_publications += 1
        if self.lost_publications - self._lost_at_outage == 1:
            logger.warning("Redis is unreachable: publications to other servers are lost until it is back")

    def _dispatch(self, data: bytes) -> None:
        header, _, payload = data.partition(b"\n")
        try:
            node, room = orjson.loads(header)
        except (orjson.JSONDecodeError, ValueError, TypeError):
            logger.warning("ignoring a malformed publication on %s", self.channel.decode())
            return
        if node == self.node or self._receive is None:
            return
        self._receive(room, payload)

    async def _listen(self) -> None:
        """Subscribe, deliver publications; on failure reconnect with exponential backoff."""
        delay = self.backoff_min
        while True:
            client = self._client
            assert client is not None
            pubsub = client.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                # Redis may have restarted empty: register this server's presence (again).
                self._dirty = True
                while self._dirty:
                    self._dirty = False
                    await self._register()
                self._came_up()
                delay = self.backoff_min
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        self._dispatch(message["data"])
            except _redis_errors() as exc:
                self._went_down(exc)
            finally:
                try:
                    await pubsub.aclose()
                except Exception:
                    pass
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.backoff_max)

    def _went_down(self, exc: BaseException) -> None:
        """Called by the listener only: it alone decides when the connection is up."""
        if not self.connected:
            self._failures += 1
            if self._failures == 1 and not self.disconnections:
                logger.warning("cannot reach Redis at %s (%s): retrying with backoff", self.url, exc)
            return
        self.connected = False
        self.disconnections += 1
        self._down_since = time.monotonic()
        self._lost_at_outage = self.lost_publications
        logger.warning("lost the connection to Redis (%s): reconnecting", exc)

    def _came_up(self) -> None:
        if self.disconnections:
            logger.warning(
                "reconnected to Redis after %.1f s; %d publications lost meanwhile",
                time.monotonic() - self._down_since,
                self.lost_publications - self._lost_at_outage,
            )
        else:
            logger.info("connected to Redis at %s", self.url)
        self.connected = True
        self._failures = 0

    # -- presence ----------------------------------------------------------

    async def _register(self) -> None:
        """Write this server's liveness key, then every room count (raises if Redis is down)."""
        client = self._client
        async with client.pipeline(transaction=False) as pipe:
            pipe.set(self._node_key(self.node), b"1", px=int(self.presence_ttl * 1000))
            for room, count in self._counts.items():
                pipe.hset(self._room_key(room), self.node, count)
            await pipe.execute()

    async def _heartbeat(self) -> None:
        """Refresh the liveness key; re-register the rooms if Redis forgot them."""
        interval = self.presence_ttl / 3
        while True:
            await asyncio.sleep(interval)
            client = self._client
            if client is None or not self.connected:
                continue
            try:
                previous = await client.set(
                    self._node_key(self.node), b"1", px=int(self.presence_ttl * 1000), get=True
                )
            except _redis_errors() as exc:
                logger.debug("presence heartbeat failed: %r", exc)
                continue
            if previous is None or self._dirty:  # Redis forgot this server, or a write failed
                self._dirty = False
                try:
                    await self._register()
                except _redis_errors() as exc:
                    self._dirty = True
                    logger.debug("registering presence failed: %r", exc)

    async def set_members(self, room: str, count: int) -> None:
        """Record this server's count for ``room`` locally and in Redis (later, if it is down)."""
        if count:
            self._counts[room] = count
        else:
            self._counts.pop(room, None)
        client = self._client
        if client is None or not self.connected:
            self._dirty = True  # written by _register() on (re)connection
            return
        try:
            if count:
                await client.hset(self._room_key(room), self.node, count)
            else:
                await client.hdel(self._room_key(room), self.node)
        except _redis_errors() as exc:
            self._dirty = True  # the next heartbeat rewrites every count
            logger.debug("updating presence failed: %r", exc)

    async def count_members(self, room: str, local: int) -> int:
        """Sum the counts of the live servers; the local count alone if Redis is unreachable."""
        client = self._client
        if client is None or not self.connected:
            return local
        key = self._room_key(room)
        try:
            counts: dict[bytes, bytes] = await client.hgetall(key)  # bytes: no decode_responses
            others = [node for node in counts if node.decode() != self.node]
            if not others:
                return local
            alive = await client.mget([self._node_key(node.decode()) for node in others])
            total = local
            dead = []
            for node, live in zip(others, alive):
                if live is None:
                    dead.append(node)
                else:
                    total += int(counts[node])
            if dead:
                await client.hdel(key, *dead)
            return total
        except _redis_errors() as exc:
            logger.debug("counting members failed: %r", exc)
            return local
