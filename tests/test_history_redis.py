"""Room history, recovery and presence on ``RedisBackend``, against a real ``redis-server``.

Recovery across a disconnect in one process; across two processes on one
Redis; after every aiows process restarted (the history comes from Redis);
the epoch changes after ``FLUSHALL``; publications that arrive during the
join (from this server and from another) leave no gap and no duplicate and
keep their order; a history trimmed past the client's offset gives
``False``. Presence across servers, and the fix of member counts left short
by a burst of joins. Skipped without ``redis-server`` (``.ci/run`` installs it).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
from typing import Any

import orjson
import pytest
from models import Join, Say
from processes import free_port
from test_broadcast_redis import (  # noqa: F401
    RedisProcess, backend_of, needs_redis, redis_server, start_chat, stop, wait_connected,
)
from websockets.asyncio.client import ClientConnection, connect

from aiows import Router, WebSocket, WebSocketServer
from aiows.broadcast import RedisBackend
from aiows.exceptions import BackendUnavailable
from aiows.testing import TestClient, TestConnection

pytestmark = needs_redis


def history_server(redis_url: str, history_size: int = 100, **backend: Any) -> WebSocketServer:
    router = Router()

    @router.connect()
    async def on_connect(websocket: WebSocket) -> None:
        user = websocket.query_params.get("user")
        if user:
            websocket.context["user_id"] = user

    @router.message("join")
    async def on_join(websocket: WebSocket, message: Join) -> dict[str, Any]:
        recovered = await websocket.join(message.room, offset=message.offset, epoch=message.epoch)
        return {"recovered": recovered}

    @router.message("say")
    async def on_say(websocket: WebSocket, message: Say) -> None:
        await websocket.server.broadcast({"type": "said", "text": message.text}, room=message.room)

    options = {"backoff_min": 0.05, "backoff_max": 0.5, **backend}
    server = WebSocketServer(broadcast=RedisBackend(redis_url, history_size=history_size, **options))
    server.include_router(router)
    return server


async def join(ws: TestConnection, room: str, ref: int, position: dict[str, Any] | None = None) -> tuple[list[Any], bool]:
    """Join (from ``position``); the frames before the reply (the recovered ones) and whether it recovered."""
    frame: dict[str, Any] = {"type": "join", "room": room, "ref": ref}
    if position is not None:
        frame.update(offset=position["offset"], epoch=position["epoch"])
    await ws.send_json(frame)
    before = []
    while True:
        answer = await ws.receive_json()
        if answer.get("ref") == ref:
            assert answer["type"] == "reply", answer
            return before, answer["data"]["recovered"]
        before.append(answer)


async def test_recovery_across_a_disconnect_in_one_process(redis_server: RedisProcess) -> None:
    server = history_server(redis_server.url)
    async with TestClient(server) as client:
        assert await wait_connected(server)
        async with client.connect() as ann:
            assert await join(ann, "r", 1) == ([], True)
            await server.broadcast({"n": 1}, room="r")
            seen = await ann.receive_json()
        position = await server.room_position("r")
        assert seen == {"n": 1, "room": "r", "offset": 1, "epoch": position["epoch"]}
        for n in (2, 3):
            await server.broadcast({"n": n}, room="r")
        async with client.connect() as ann:
            replayed, recovered = await join(ann, "r", 2, seen)
            assert recovered and [(frame["n"], frame["offset"]) for frame in replayed] == [(2, 2), (3, 3)]
            await server.broadcast({"n": 4}, room="r")
            assert (await ann.receive_json())["offset"] == 4


async def chat_receive(ws: ClientConnection) -> Any:
    return orjson.loads(await asyncio.wait_for(ws.recv(), 10))


async def chat_join(ws: ClientConnection, name: str, position: dict[str, Any] | None = None) -> tuple[list[Any], Any]:
    """Join the chat example's "lobby" with a ref: the frames before the reply, and the reply's data."""
    frame: dict[str, Any] = {"type": "join", "room": "lobby", "name": name, "ref": 1}
    if position is not None:
        frame.update(offset=position["offset"], epoch=position["epoch"])
    await ws.send(orjson.dumps(frame).decode())
    before = []
    while True:
        answer = await chat_receive(ws)
        if answer.get("type") == "reply":
            return before, answer["data"]
        before.append(answer)


async def chat_say(ws: ClientConnection, text: str) -> dict[str, Any]:
    """Say ``text`` in the lobby; return the publication as the sender got it."""
    await ws.send(orjson.dumps({"type": "say", "room": "lobby", "text": text}).decode())
    while True:
        frame = await chat_receive(ws)
        if frame.get("type") == "said" and frame["text"] == text:
            return dict(frame)


def position_of(frame: dict[str, Any]) -> dict[str, Any]:
    return {"epoch": frame["epoch"], "offset": frame["offset"]}


async def test_recovery_across_two_processes_and_after_every_process_restarted(redis_server: RedisProcess) -> None:
    """``examples/simple_chat.py`` in two processes on one Redis; then both stopped and one started again."""
    port_a, port_b = free_port(), free_port()
    a = start_chat(port_a, redis_server.url)
    b = start_chat(port_b, redis_server.url)
    try:
        async with connect(f"ws://127.0.0.1:{port_a}") as ann:
            assert (await chat_receive(ann))["type"] == "welcome"
            await chat_join(ann, "ann")
            last = position_of(await chat_say(ann, "ann was here"))
        # ann is gone; bob talks on process B
        async with connect(f"ws://127.0.0.1:{port_b}") as bob:
            await chat_receive(bob)
            await chat_join(bob, "bob")
            for text in ("b1", "b2", "b3"):
                await chat_say(bob, text)
            # ann comes back, to process B: everything after her last position, once, in order
            async with connect(f"ws://127.0.0.1:{port_b}") as ann:
                await chat_receive(ann)
                missed, data = await chat_join(ann, "ann", last)
                assert data["recovered"] is True
                offsets = [frame["offset"] for frame in missed]
                assert offsets == list(range(last["offset"] + 1, last["offset"] + 1 + len(missed)))
                said = [frame["text"] for frame in missed if frame["type"] == "said"]
                assert said == ["b1", "b2", "b3"]
                assert [frame["type"] for frame in missed][:2] == ["left", "joined"]  # ann left, bob joined
                last = position_of(missed[-1])
                await chat_say(bob, "b4")
        # every aiows process stops; the history lives on in Redis
        stop(a)
        stop(b)
        a = start_chat(port_a, redis_server.url)
        async with connect(f"ws://127.0.0.1:{port_a}") as ann:
            await chat_receive(ann)
            missed, data = await chat_join(ann, "ann", last)
            assert data["recovered"] is True
            offsets = [frame["offset"] for frame in missed]
            assert offsets == list(range(last["offset"] + 1, last["offset"] + 1 + len(missed)))
            assert (missed[0]["type"], missed[0]["text"]) == ("said", "b4")
            # then bob and ann left (the stopped processes ran their disconnect handlers), and ann joined again
            assert sorted(frame["name"] for frame in missed if frame["type"] == "left") == ["ann", "bob"]
            assert (missed[-1]["type"], missed[-1]["name"]) == ("joined", "ann")
            b = start_chat(port_b, redis_server.url)
    finally:
        for process in (a, b):
            if process.poll() is None:
                stop(process)


async def test_the_epoch_changes_after_flushall(redis_server: RedisProcess) -> None:
    from redis.asyncio import Redis

    server = history_server(redis_server.url)
    async with TestClient(server) as client, client.connect() as live:
        assert await wait_connected(server)
        await join(live, "r", 1)
        for n in range(3):
            await server.broadcast({"n": n}, room="r")
        frames = [await live.receive_json() for _ in range(3)]
        old = position_of(frames[-1])
        assert old["offset"] == 3
        redis = Redis.from_url(redis_server.url)
        try:
            await redis.flushall()
        finally:
            await redis.aclose()
        await server.broadcast({"n": "after"}, room="r")
        after = await live.receive_json()  # the live member follows the new history from its start
        assert after["n"] == "after" and after["offset"] == 1 and after["epoch"] != old["epoch"]
        assert await server.room_position("r") == position_of(after)
        async with client.connect() as back:
            assert await join(back, "r", 2, old) == ([], False)  # nothing replayed: the app sends a snapshot
            async with client.connect() as other:
                replayed, recovered = await join(other, "r", 3, {"epoch": after["epoch"], "offset": 0})
                assert recovered and [frame["n"] for frame in replayed] == ["after"]


async def test_trimmed_history_gives_false(redis_server: RedisProcess) -> None:
    server = history_server(redis_server.url, history_size=3)
    async with TestClient(server) as client:
        assert await wait_connected(server)
        epoch = (await server.room_position("r"))["epoch"]
        for n in range(1, 11):
            await server.broadcast({"n": n}, room="r")
        for ref, (offset, expected) in enumerate([(6, False), (0, False), (7, True), (10, True), (11, False)]):
            async with client.connect() as ws:
                replayed, recovered = await join(ws, "r", ref, {"epoch": epoch, "offset": offset})
                assert recovered is expected, offset
                assert [frame["n"] for frame in replayed] == (list(range(offset + 1, 11)) if expected else [])


async def test_history_ttl_on_redis(redis_server: RedisProcess) -> None:
    server = history_server(redis_server.url, history_ttl=0.5)
    async with TestClient(server) as client:
        assert await wait_connected(server)
        await server.broadcast({"n": 1}, room="r")
        old = await server.room_position("r")
        await asyncio.sleep(0.7)  # the stream expired: a new epoch
        new = await server.room_position("r")
        assert new["epoch"] != old["epoch"] and new["offset"] == 0
        async with client.connect() as ws:
            assert await join(ws, "r", 1, {"epoch": old["epoch"], "offset": 0}) == ([], False)


async def test_publications_during_the_join_across_servers(redis_server: RedisProcess) -> None:
    """Two servers on one Redis publish without pause (each its own publications, and the other's through
    Redis) while clients rejoin one of them from older offsets: every client sees each offset once, in order."""
    one, two = history_server(redis_server.url), history_server(redis_server.url)
    async with TestClient(one) as client_one, TestClient(two):
        assert await wait_connected(one, two)
        epoch = (await one.room_position("busy"))["epoch"]
        stop_publishing = asyncio.Event()

        async def publish(server: WebSocketServer, name: str) -> None:
            n = 0
            end = time.monotonic() + 60
            while not stop_publishing.is_set() and time.monotonic() < end:
                n += 1
                await server.broadcast({"by": name, "n": n}, room="busy")
                if n % 3 == 0:
                    await asyncio.sleep(0.001)

        publishers = [asyncio.ensure_future(publish(one, "one")), asyncio.ensure_future(publish(two, "two"))]
        try:
            async with client_one.connect() as watcher:  # a member of the room from the start
                await join(watcher, "busy", 1)
                watched: list[int] = []
                for round_ in range(8):
                    await asyncio.sleep(0.02)
                    now = (await one.room_position("busy"))["offset"]
                    start = max(0, now - 15)
                    async with client_one.connect() as ws:
                        replayed, recovered = await join(ws, "busy", 1, {"epoch": epoch, "offset": start})
                        assert recovered, round_
                        offsets = [frame["offset"] for frame in replayed]
                        while len(offsets) < len(replayed) + 40:
                            offsets.append((await ws.receive_json())["offset"])
                        assert offsets == list(range(start + 1, start + 1 + len(offsets))), round_
                    while len(watched) < 50 * (round_ + 1):
                        watched.append((await watcher.receive_json())["offset"])
                assert watched == list(range(watched[0], watched[0] + len(watched)))
        finally:
            stop_publishing.set()
            await asyncio.gather(*publishers)
        by = {frame_by for frame_by in ("one", "two")}
        assert by == {"one", "two"}


async def test_missed_publications_are_read_after_a_reconnection(redis_server: RedisProcess) -> None:
    """Server one loses its subscription while two publishes: once back, it delivers what it missed, in order."""
    from redis.asyncio import Redis

    one, two = history_server(redis_server.url, client_name="one"), history_server(redis_server.url)
    async with TestClient(one) as client_one, TestClient(two):
        assert await wait_connected(one, two)
        async with client_one.connect() as member:
            await join(member, "r", 1)
            await two.broadcast({"n": 1}, room="r")
            assert (await member.receive_json())["n"] == 1
            redis = Redis.from_url(redis_server.url)
            try:  # drop server one's subscription: it reconnects (with backoff)
                for connection in await redis.client_list(_type="pubsub"):
                    if connection["name"] == "one":
                        await redis.client_kill_filter(_id=connection["id"])
            finally:
                await redis.aclose()
            end = time.monotonic() + 10
            while backend_of(one).connected and time.monotonic() < end:
                await asyncio.sleep(0.005)
            assert not backend_of(one).connected
            for n in range(2, 6):  # made while one is not subscribed
                await two.broadcast({"n": n}, room="r")
            assert [(await member.receive_json())["n"] for _ in range(4)] == [2, 3, 4, 5]
            assert backend_of(one).disconnections == 1 and backend_of(one).connected
            await two.broadcast({"n": 6}, room="r")
            assert (await member.receive_json())["offset"] == 6


async def test_without_redis_publications_to_rooms_with_history_fail_and_joins_work() -> None:
    server = history_server(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    async with TestClient(server) as client, client.connect() as ws:
        assert await join(ws, "r", 1) == ([], True)
        with pytest.raises(BackendUnavailable):
            await server.broadcast({"n": 1}, room="r")
        await ws.send_json({"type": "say", "room": "r", "text": "x", "ref": 2})
        assert (await ws.receive_json())["code"] == "backend_unavailable"
        await server.broadcast({"n": 1})  # to every connection: no history, no Redis needed
        assert await ws.receive_json() == {"n": 1}
        assert await join(ws, "q", 3, {"epoch": "e", "offset": 0}) == ([], False)


async def test_member_counts_are_not_left_short_by_a_burst_of_joins(
    redis_server: RedisProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many joins at once: the count written last is the latest.

    The writes used to go out at once over the connection pool, where they land
    in any order; each Redis command is delayed here by a random 0-3 ms, as
    connections that open or run at different speeds delay them (the old code
    left 8 of 10 such bursts short).
    """
    import random

    from redis.asyncio import Redis
    from redis.asyncio.client import Pipeline

    one, two = history_server(redis_server.url, 0), history_server(redis_server.url, 0)
    async with TestClient(one) as client_one, TestClient(two):
        assert await wait_connected(one, two)
        backend = backend_of(one)
        redis = Redis.from_url(redis_server.url)
        try:
            command, pipeline = Redis.execute_command, Pipeline.execute

            async def late_command(self: Redis, *args: Any, **kwargs: Any) -> Any:
                await asyncio.sleep(random.random() * 0.003)
                return await command(self, *args, **kwargs)

            async def late_pipeline(self: Pipeline, *args: Any, **kwargs: Any) -> Any:
                await asyncio.sleep(random.random() * 0.003)
                return await pipeline(self, *args, **kwargs)

            for burst in range(10):
                with monkeypatch.context() as patch:
                    patch.setattr(Redis, "execute_command", late_command)
                    patch.setattr(Pipeline, "execute", late_pipeline)
                    await asyncio.gather(*(backend.set_members(f"crowd{burst}", count) for count in range(1, 101)))
                stored = await redis.hget(f"aiows:room:crowd{burst}", backend.node)
                assert stored is not None and int(stored) == 100, burst
                assert await two.room_members(f"crowd{burst}") == 100
        finally:
            await redis.aclose()
        connections = [client_one.connect() for _ in range(60)]
        opened = [await connection.__aenter__() for connection in connections]
        try:
            await asyncio.gather(*(ws.send_json({"type": "join", "room": "real"}) for ws in opened))
            end = time.monotonic() + 10
            while await two.room_members("real") != 60 and time.monotonic() < end:
                await asyncio.sleep(0.02)
            assert await two.room_members("real") == 60
        finally:
            for connection in connections:
                await connection.__aexit__(None, None, None)


async def test_presence_across_servers(redis_server: RedisProcess) -> None:
    one, two = history_server(redis_server.url, 0), history_server(redis_server.url, 0)
    async with TestClient(one) as client_one, TestClient(two) as client_two:
        assert await wait_connected(one, two)
        async with client_one.connect("/?user=bob") as b1, client_two.connect("/?user=bob") as b2, \
                client_two.connect("/?user=ann") as a, client_one.connect("/") as anonymous:  # fmt: skip
            for ref, ws in enumerate((b1, b2, a, anonymous)):
                await join(ws, "r", ref)
            for server in (one, two):
                assert await server.presence("r") == {"connections": 4, "users": ["ann", "bob"]}
            await a.close()
            end = time.monotonic() + 10
            while await one.presence("r") != {"connections": 3, "users": ["bob"]} and time.monotonic() < end:
                await asyncio.sleep(0.02)
            assert await one.presence("r") == {"connections": 3, "users": ["bob"]}
        end = time.monotonic() + 10
        while await one.presence("r") != {"connections": 0, "users": []} and time.monotonic() < end:
            await asyncio.sleep(0.02)
        assert await one.presence("r") == {"connections": 0, "users": []}


CRASHING = textwrap.dedent(
    """
    import asyncio, sys
    from aiows.broadcast import RedisBackend

    async def main():
        backend = RedisBackend(sys.argv[1], presence_ttl=1.0)
        await backend.start(lambda room, payload: None)
        while not backend.connected:
            await asyncio.sleep(0.02)
        await backend.set_members("r", 2)
        await backend.set_users("r", ["zed", "yan"])
        print("ready", flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


async def test_presence_of_a_crashed_process_expires(redis_server: RedisProcess) -> None:
    crashing = subprocess.Popen([sys.executable, "-c", CRASHING, redis_server.url], stdout=subprocess.PIPE)
    try:
        assert crashing.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(crashing.stdout.readline), 20)
        assert line.strip() == b"ready"
        backend = RedisBackend(redis_server.url, presence_ttl=1.0)
        await backend.start(lambda room, payload: None)
        try:
            end = time.monotonic() + 10
            while not backend.connected and time.monotonic() < end:
                await asyncio.sleep(0.02)
            assert await backend.presence("r", 1, ["ann"]) == (3, ["ann", "yan", "zed"])
            crashing.kill()
            crashing.wait(timeout=10)
            end = time.monotonic() + 10
            while await backend.presence("r", 1, ["ann"]) != (1, ["ann"]) and time.monotonic() < end:
                await asyncio.sleep(0.1)
            assert await backend.presence("r", 1, ["ann"]) == (1, ["ann"])
        finally:
            await backend.stop()
    finally:
        crashing.kill()
        crashing.wait(timeout=10)
