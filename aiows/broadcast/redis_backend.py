"""``RedisBackend``: rooms and broadcast across processes and machines sharing one Redis.

Needs the ``redis`` package: ``pip install "aiows[redis]"``.

How it uses Redis (every key starts with ``prefix``, ``"aiows"`` by default):

- broadcasts: one pub/sub channel, ``{prefix}:broadcast``. A publication is
  ``[node, room]`` as JSON, a newline, then the encoded frame; each server
  skips its own publications (it has delivered them locally already);
- presence: a hash per room, ``{prefix}:room:{room}``, maps each server's
  node id to its number of members, and ``{prefix}:users:{room}`` to the JSON
  list of their distinct user ids; each server refreshes a liveness key
  ``{prefix}:node:{node}`` every ``presence_ttl / 3`` seconds, so the members of
  a crashed server stop counting after ``presence_ttl`` seconds (its stale
  hash fields are removed when next counted). A server's writes for one room
  never overlap (the last one written carries its latest count), so a burst
  of joins cannot leave a short count behind;
- history (``history_size > 0``): a stream per room, ``{prefix}:history:{room}``,
  whose entry ids are the offsets (``N-0``), each entry holding the epoch, the
  time and the payload (the first one, ``0-1``, only the epoch of a room that
  has no publication yet). One Lua script reads the last offset, adds the
  next entry (``XADD ... MAXLEN ~ history_size``) and publishes it with its
  position in the header (``[node, room, offset, epoch]``), atomically: the
  offset grows by exactly 1 per publication across every server, and every
  server receives a room's publications in offset order. The epoch lives and
  dies with the stream: when Redis is flushed or the key expires (after
  ``history_ttl`` seconds without a publication), the next one starts a new
  epoch at offset 1. History survives a restart of every aiows process.

When Redis goes away the backend logs it, counts every publication it cannot
send in ``lost_publications``, keeps serving local connections, and reconnects
with exponential backoff (``backoff_min`` doubling up to ``backoff_max``
seconds); once back it re-registers this server's presence. Publications made
by other servers while this one was disconnected are not replayed, except in
rooms with history: those are read from the stream and delivered, in order.
A publication to a room with history needs Redis: while it is unreachable,
``broadcast()`` to such a room raises ``BackendUnavailable``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

import orjson

from ..exceptions import BackendUnavailable
from .base import (
    BroadcastBackend,
    History,
    Position,
    Receive,
    ReceivePublication,
    check_history_options,
    user_order,
)
from .memory import new_epoch

__all__ = ["RedisBackend"]

logger = logging.getLogger("aiows.broadcast")

_MISSING_EXTRA = 'RedisBackend needs the redis package: pip install "aiows[redis]"'


def _redis_errors() -> tuple[type[BaseException], ...]:
    from redis.exceptions import RedisError

    return (RedisError, OSError)


#: Number, store and publish one publication, atomically. KEYS: the stream. ARGV: a new epoch (used when the
#: room has no history yet), MAXLEN, the time (ms), the payload, the TTL (ms, 0: none), the channel, the header
#: up to the offset (``["node","room",``).
APPEND = """
local key = KEYS[1]
local last = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)
local epoch = ARGV[1]
local offset = 0
if #last == 0 then
  redis.call('DEL', key)
else
  epoch = last[1][2][2]
  offset = tonumber(string.match(last[1][1], '^(%d+)'))
end
offset = offset + 1
redis.call('XADD', key, 'MAXLEN', '~', ARGV[2], string.format('%d-0', offset), 'e', epoch, 't', ARGV[3], 'p', ARGV[4])
if ARGV[5] ~= '0' then
  redis.call('PEXPIRE', key, ARGV[5])
end
redis.call('PUBLISH', ARGV[6], ARGV[7] .. string.format('%d', offset) .. ',' .. cjson.encode(epoch) .. ']\\n' .. ARGV[4])
return {epoch, offset}
"""

#: A room's position and the entries after an offset, atomically (a room without history gets its epoch: the
#: ``0-1`` entry). KEYS: the stream. ARGV: a new epoch, the TTL (ms, 0: none), the offset (-1: none), COUNT.
READ = """
local key = KEYS[1]
local last = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)
if #last == 0 then
  redis.call('DEL', key)
  redis.call('XADD', key, '0-1', 'e', ARGV[1])
  if ARGV[2] ~= '0' then
    redis.call('PEXPIRE', key, ARGV[2])
  end
  return {ARGV[1], 0, {}}
end
local offset = tonumber(string.match(last[1][1], '^(%d+)'))
local after = tonumber(ARGV[3])
local entries = {}
if after >= 0 and after < offset then
  entries = redis.call('XRANGE', key, string.format('%d-0', after + 1), '+', 'COUNT', ARGV[4])
end
return {last[1][2][2], offset, entries}
"""


class RedisBackend(BroadcastBackend):
    """Share rooms, broadcasts and presence through Redis: ``RedisBackend("redis://localhost:6379/0")``.

    Args:
        url: a ``redis://`` (or ``rediss://``, ``unix://``) URL.
        prefix: prefix of the channel and keys, to let several apps share one Redis.
        presence_ttl: seconds after which a server that stopped refreshing its
            presence (crashed, or cut off from Redis) no longer counts.
        backoff_min / backoff_max: reconnection delays, in seconds.
        history_size: with a value above 0, each room keeps its last
            ``history_size`` publications in a Redis stream, numbered across
            every server, so a client can recover what it missed
            (``websocket.join(room, offset=, epoch=)``), even after every aiows
            process restarted.
        history_ttl: seconds a publication is kept at most (the stream of a room
            without a publication for that long expires: its next one starts
            a new epoch). ``None``: until newer ones replace it.
        redis_options: more keyword arguments for ``redis.asyncio.Redis.from_url``.

    Raises:
        ImportError: the ``redis`` package is not installed.
    """

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        prefix: str = "aiows",
        presence_ttl: float = 30.0,
        backoff_min: float = 0.1,
        backoff_max: float = 10.0,
        history_size: int = 0,
        history_ttl: float | None = None,
        **redis_options: Any,
    ) -> None:
        try:
            import redis.asyncio  # noqa: F401
        except ImportError:
            raise ImportError(_MISSING_EXTRA) from None
        if presence_ttl <= 0:
            raise ValueError("presence_ttl must be positive")
        check_history_options(history_size, history_ttl)
        self.history_size = history_size
        self.history_ttl = history_ttl
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
        #: This server's distinct users per room, as the JSON written to Redis.
        self._users: dict[str, bytes] = {}
        self._users_changed: set[str] = set()
        #: Rooms whose presence is being written, and those to write again once that is done.
        self._writing: set[str] = set()
        self._rewrite: set[str] = set()
        self._receive_publication: ReceivePublication | None = None
        #: The last position seen in each room with local members (read again after a reconnection).
        self._seen: dict[str, Position] = {}
        self._append: Any = None  # the registered scripts, once started
        self._read: Any = None
        self._dirty = False
        self._failures = 0
        self._tasks: list[asyncio.Task[None]] = []
        #: Resolved by the listener's first attempt to connect, whether it succeeded or not.
        self._first_attempt: asyncio.Future[None] | None = None
        self._down_since = 0.0
        self._lost_at_outage = 0

    def _room_key(self, room: str) -> str:
        return f"{self.prefix}:room:{room}"

    def _node_key(self, node: str) -> str:
        return f"{self.prefix}:node:{node}"

    def _users_key(self, room: str) -> str:
        return f"{self.prefix}:users:{room}"

    def _history_key(self, room: str) -> str:
        return f"{self.prefix}:history:{room}"

    # -- lifecycle ---------------------------------------------------------

    async def start(self, receive: Receive) -> None:
        """Connect, subscribe and keep presence fresh; Redis may be down (then all of it goes on in the background).

        Waits for the first attempt to connect (bounded by ``socket_connect_timeout``,
        5 s by default), so a server whose Redis is up serves its first
        connection with the backend connected.
        """
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
        self._append = self._client.register_script(APPEND)
        self._read = self._client.register_script(READ)
        self._receive = receive
        loop = asyncio.get_running_loop()
        first = self._first_attempt = loop.create_future()
        self._tasks = [loop.create_task(self._listen()), loop.create_task(self._heartbeat())]
        await asyncio.shield(first)

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
                    for room in self._users:
                        pipe.hdel(self._users_key(room), self.node)
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
            node, room, *position = orjson.loads(header)
            if position:
                offset, epoch = position
                if type(offset) is not int or not isinstance(epoch, str) or not isinstance(room, str):
                    raise ValueError(header)
        except (orjson.JSONDecodeError, ValueError, TypeError):
            logger.warning("ignoring a malformed publication on %s", self.channel.decode())
            return
        if node == self.node:  # delivered by this server already (a numbered one, as append() returned)
            return
        if position:
            numbered = Position(epoch, offset)
            self._saw(room, numbered)
            if self._receive_publication is not None:
                self._receive_publication(room, payload, numbered)
        elif self._receive is not None:
            self._receive(room, payload)

    # -- history -------------------------------------------------------------

    def bind_history(self, receive: ReceivePublication) -> None:
        """Where other servers' publications in rooms with history go."""
        if not self.history_size:
            super().bind_history(receive)
        self._receive_publication = receive

    def _saw(self, room: str, position: Position) -> None:
        if room in self._counts:
            self._seen[room] = position

    def _ttl_ms(self) -> int:
        return 0 if self.history_ttl is None else max(1, int(self.history_ttl * 1000))

    async def append(self, room: str, payload: bytes) -> Position:
        """Number, store and publish ``payload`` in one script; ``BackendUnavailable`` without Redis."""
        if not self.history_size:
            return await super().append(room, payload)
        client = self._client
        if client is None or not self.connected:
            self._lose()
            raise BackendUnavailable(f"Redis is unreachable: the publication to room {room!r} was not made")
        header = orjson.dumps([self.node, room])[:-1] + b","
        args = [new_epoch(), self.history_size, int(time.time() * 1000), payload, self._ttl_ms(), self.channel, header]
        try:
            epoch, offset = await self._append(keys=[self._history_key(room)], args=args, client=client)
        except _redis_errors() as exc:
            self._lose()
            raise BackendUnavailable(f"the publication to room {room!r} failed ({exc})") from exc
        position = Position(epoch.decode(), int(offset))
        self._saw(room, position)
        return position

    async def read(self, room: str, after: int) -> History:
        """The room's position and the entries after ``after`` still kept (by number and by age)."""
        if not self.history_size:
            return await super().read(room, after)
        client = self._client
        if client is None or not self.connected:
            raise BackendUnavailable(f"Redis is unreachable: cannot read the history of room {room!r}")
        args = [new_epoch(), self._ttl_ms(), after, self.history_size]
        try:
            epoch, offset, raw = await self._read(keys=[self._history_key(room)], args=args, client=client)
        except _redis_errors() as exc:
            raise BackendUnavailable(f"reading the history of room {room!r} failed ({exc})") from exc
        position = Position(epoch.decode(), int(offset))
        if after < 0 or after >= position.offset:
            return History(position, [], after == position.offset)
        oldest = None if self.history_ttl is None else time.time() * 1000 - self.history_ttl * 1000
        entries: list[tuple[int, bytes]] = []
        for entry_id, fields in raw:
            values = dict(zip(fields[::2], fields[1::2]))
            if oldest is not None and int(values[b"t"]) < oldest:
                continue
            entries.append((int(entry_id.split(b"-")[0]), values[b"p"]))
        missed = position.offset - after
        complete = missed <= self.history_size and len(entries) == missed
        return History(position, entries, complete)

    async def _resync(self) -> None:
        """Back after an outage: deliver what other servers published meanwhile in rooms with local members."""
        receive = self._receive_publication
        if receive is None:
            return
        for room, seen in list(self._seen.items()):
            if room not in self._counts:
                continue
            try:
                history = await self.read(room, seen.offset)
                if history.position.epoch != seen.epoch:  # the history started over meanwhile
                    history = await self.read(room, 0)
            except BackendUnavailable as exc:
                logger.debug("reading the history of room %r after reconnecting failed: %r", room, exc)
                continue
            epoch = history.position.epoch
            for offset, payload in history.entries:
                self._saw(room, Position(epoch, offset))
                receive(room, payload, Position(epoch, offset))

    async def _listen(self) -> None:
        """Subscribe, deliver publications; on failure reconnect with exponential backoff."""
        try:
            await self._subscribe_forever()
        finally:
            self._attempted()  # stopped, or failed unexpectedly: start() waits no more

    async def _subscribe_forever(self) -> None:
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
                reconnected = self.disconnections > 0
                self._came_up()
                if reconnected and self.history_size:
                    await self._resync()
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
        self._attempted()
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
        self._attempted()

    def _attempted(self) -> None:
        first = self._first_attempt
        if first is not None and not first.done():
            first.set_result(None)

    # -- presence ----------------------------------------------------------

    async def _register(self) -> None:
        """Write this server's liveness key, then every room count and users (raises if Redis is down)."""
        client = self._client
        async with client.pipeline(transaction=False) as pipe:
            pipe.set(self._node_key(self.node), b"1", px=int(self.presence_ttl * 1000))
            for room, count in self._counts.items():
                pipe.hset(self._room_key(room), self.node, count)
            for room, users in self._users.items():
                pipe.hset(self._users_key(room), self.node, users)
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
            self._seen.pop(room, None)
        await self._write_room(room)

    async def set_users(self, room: str, users: list[Any]) -> None:
        """Record this server's distinct users in ``room`` locally and in Redis (later, if it is down)."""
        if users:
            self._users[room] = orjson.dumps(users)
        else:
            self._users.pop(room, None)
        self._users_changed.add(room)
        await self._write_room(room)

    async def _write_room(self, room: str) -> None:
        """Write this server's count (and users, if changed) for ``room``.

        Writes for one room never overlap: a call made while one is in flight
        only asks it to write once more, with the figures of that moment. (They
        used to be sent at once over the connection pool, where they could land
        in any order, and leave a short count behind after a burst of joins.)
        """
        client = self._client
        if client is None or not self.connected:
            self._dirty = True  # written by _register() on (re)connection
            return
        if room in self._writing:
            self._rewrite.add(room)
            return
        self._writing.add(room)
        try:
            while True:
                self._rewrite.discard(room)
                count = self._counts.get(room, 0)
                write_users = room in self._users_changed
                self._users_changed.discard(room)
                users = self._users.get(room)
                try:
                    async with client.pipeline(transaction=False) as pipe:
                        if count:
                            pipe.hset(self._room_key(room), self.node, count)
                        else:
                            pipe.hdel(self._room_key(room), self.node)
                        if write_users:
                            if users:
                                pipe.hset(self._users_key(room), self.node, users)
                            else:
                                pipe.hdel(self._users_key(room), self.node)
                        await pipe.execute()
                except _redis_errors() as exc:
                    self._dirty = True  # the next heartbeat rewrites every count
                    logger.debug("updating presence failed: %r", exc)
                    return
                if room not in self._rewrite:
                    return
        finally:
            self._writing.discard(room)
            self._rewrite.discard(room)

    async def count_members(self, room: str, local: int) -> int:
        """Sum the counts of the live servers; the local count alone if Redis is unreachable."""
        return (await self._cluster(room, local, None))[0]

    async def presence(self, room: str, local_count: int, local_users: list[Any]) -> tuple[int, list[Any]]:
        """Connections and distinct users of the live servers; the local figures if Redis is unreachable."""
        return await self._cluster(room, local_count, local_users)

    async def _cluster(self, room: str, local: int, local_users: list[Any] | None) -> tuple[int, list[Any]]:
        """``room``'s count (and users, unless ``local_users`` is ``None``) across the live servers."""
        client = self._client
        fallback = (local, local_users or [])
        if client is None or not self.connected:
            return fallback
        key = self._room_key(room)
        users_key = self._users_key(room)
        try:
            if local_users is None:
                counts: dict[bytes, bytes] = await client.hgetall(key)  # bytes: no decode_responses
                users: dict[bytes, bytes] = {}
            else:
                async with client.pipeline(transaction=False) as pipe:
                    pipe.hgetall(key)
                    pipe.hgetall(users_key)
                    counts, users = await pipe.execute()
            others = sorted(node for node in counts.keys() | users.keys() if node.decode() != self.node)
            if not others:
                return fallback
            alive = await client.mget([self._node_key(node.decode()) for node in others])
            total = local
            merged = set(local_users or ())
            dead = []
            for node, live in zip(others, alive):
                if live is None:
                    dead.append(node)
                    continue
                if node in counts:
                    total += int(counts[node])
                if node in users:
                    merged.update(orjson.loads(users[node]))
            if dead:
                async with client.pipeline(transaction=False) as pipe:
                    pipe.hdel(key, *dead)
                    pipe.hdel(users_key, *dead)
                    await pipe.execute()
            return total, sorted(merged, key=user_order)
        except _redis_errors() as exc:
            logger.debug("counting members failed: %r", exc)
            return fallback
