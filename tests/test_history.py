"""Room history on ``MemoryBackend``: numbered publications, recovery with ``join(room, offset=, epoch=)``.

One process: the room's publications get offsets 1, 2, 3... and an epoch; a
client that comes back with the last position it saw gets every publication
after it, in order, before any live one, or ``False`` (and nothing replayed)
when the history does not reach back that far. ``test_history_redis.py`` runs
the same across processes.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest
from models import Join, Say

from aiows import Router, WebSocket, WebSocketServer
from aiows.broadcast import MemoryBackend
from aiows.broadcast.base import Position
from aiows.broadcast.history import history_payload, numbered
from aiows.testing import TestClient, TestConnection


def chat_server(backend: MemoryBackend | None = None, **options: Any) -> WebSocketServer:
    router = Router()

    @router.message("join")
    async def on_join(websocket: WebSocket, message: Join) -> dict[str, Any]:
        recovered = await websocket.join(message.room, offset=message.offset, epoch=message.epoch)
        return {"recovered": recovered, "position": await websocket.server.room_position(message.room)}

    @router.message("leave")
    async def on_leave(websocket: WebSocket, message: Join) -> None:
        await websocket.leave(message.room)

    @router.message("say")
    async def on_say(websocket: WebSocket, message: Say) -> int:
        return await websocket.server.broadcast({"type": "said", "text": message.text}, room=message.room)

    server = WebSocketServer(broadcast=backend or MemoryBackend(history_size=100), **options)
    server.include_router(router)
    return server


async def request(ws: TestConnection, frame: dict[str, Any], ref: int = 1) -> Any:
    """Send ``frame`` with a ref; return the reply's data (frames before it are not expected)."""
    await ws.send_json({**frame, "ref": ref})
    answer = await ws.receive_json()
    assert answer.get("type") == "reply" and answer["ref"] == ref, answer
    return answer["data"]


async def frames_until_reply(ws: TestConnection, ref: int) -> tuple[list[dict[str, Any]], Any]:
    """The frames that come before the reply to ``ref``, and the reply's data."""
    frames = []
    while True:
        frame = await ws.receive_json()
        if frame.get("type") == "reply" and frame.get("ref") == ref:
            return frames, frame["data"]
        frames.append(frame)


def test_the_fields_are_added_to_the_object() -> None:
    room = orjson.dumps("lobby")
    epoch = orjson.dumps("e1")
    assert orjson.loads(numbered(b'{"a":1}', room, 7, epoch)) == {"a": 1, "room": "lobby", "offset": 7, "epoch": "e1"}
    assert orjson.loads(numbered(b"{}", room, 1, epoch)) == {"room": "lobby", "offset": 1, "epoch": "e1"}
    assert history_payload(b' { } ') == b"{}"
    assert history_payload(b' {"a": [1]} \n') == b'{"a": [1]}'
    for bad in ({"room": 1}, {"offset": 1}, {"epoch": 1}, [1], b"[1]", b"not json", "text"):
        with pytest.raises(ValueError):
            history_payload(bad)


async def test_publications_are_numbered_and_recovered(transport: str) -> None:
    async with TestClient(chat_server()) as client:
        async with client.connect() as ann, client.connect() as bob:
            first = await request(ann, {"type": "join", "room": "lobby"})
            assert first == {"recovered": True, "position": {"epoch": first["position"]["epoch"], "offset": 0}}
            epoch = first["position"]["epoch"]
            assert isinstance(epoch, str) and epoch
            await request(bob, {"type": "join", "room": "lobby"})
            said = {"type": "said", "text": "one", "room": "lobby", "offset": 1, "epoch": epoch}
            await ann.send_json({"type": "say", "room": "lobby", "text": "one", "ref": 2})
            assert await frames_until_reply(ann, 2) == ([said], 2)  # the publication is written in the call
            assert await bob.receive_json() == said
        # ann is gone; bob says three more
        async with client.connect() as bob:
            await request(bob, {"type": "join", "room": "lobby"})
            for n, text in enumerate(("two", "three", "four"), start=2):
                await bob.send_json({"type": "say", "room": "lobby", "text": text, "ref": n})
                published, _ = await frames_until_reply(bob, n)
                assert [frame["offset"] for frame in published] == [n]
            # ann comes back from offset 1: gets 2, 3, 4 before anything live
            async with client.connect() as ann:
                await ann.send_json({"type": "join", "room": "lobby", "offset": 1, "epoch": epoch, "ref": 9})
                replayed, data = await frames_until_reply(ann, 9)
                assert [(frame["offset"], frame["text"]) for frame in replayed] == [(2, "two"), (3, "three"), (4, "four")]
                assert data == {"recovered": True, "position": {"epoch": epoch, "offset": 4}}
                await bob.send_json({"type": "say", "room": "lobby", "text": "five", "ref": 10})
                assert (await ann.receive_json())["offset"] == 5
                # up to date already: nothing to replay, True
                async with client.connect() as cid:
                    assert (await request(cid, {"type": "join", "room": "lobby", "offset": 5, "epoch": epoch}))[
                        "recovered"
                    ] is True


async def test_recovery_fails_when_it_cannot_be_complete() -> None:
    async with TestClient(chat_server(MemoryBackend(history_size=3))) as client, client.connect() as bob:
        epoch = (await request(bob, {"type": "join", "room": "r"}))["position"]["epoch"]
        for n in range(1, 11):
            await bob.send_json({"type": "say", "room": "r", "text": str(n), "ref": n + 1})
            await frames_until_reply(bob, n + 1)
        cases = [
            (6, epoch, False),  # 7..10 is four publications: the history keeps three
            (7, epoch, True),
            (10, epoch, True),
            (11, epoch, False),  # ahead of the room
            (7, "another-epoch", False),
        ]
        for ref, (offset, client_epoch, expected) in enumerate(cases, start=100):
            async with client.connect() as ws:
                await ws.send_json({"type": "join", "room": "r", "offset": offset, "epoch": client_epoch, "ref": ref})
                replayed, data = await frames_until_reply(ws, ref)
                assert data["recovered"] is expected, (offset, client_epoch)
                assert [frame["offset"] for frame in replayed] == (list(range(offset + 1, 11)) if expected else [])


async def test_history_ttl_and_a_new_epoch() -> None:
    backend = MemoryBackend(history_size=10, history_ttl=0.2)
    first = await backend.append("r", b'{"a":1}')
    assert first.offset == 1
    assert (await backend.read("r", 0)).entries == [(1, b'{"a":1}')]
    await asyncio.sleep(0.3)  # no publication for longer than the TTL: the room starts over
    history = await backend.read("r", 0)
    assert history.position.epoch != first.epoch and history.position.offset == 0
    assert (await backend.append("r", b"{}")) == Position(history.position.epoch, 1)


async def test_entries_older_than_the_ttl_are_not_replayed() -> None:
    backend = MemoryBackend(history_size=10, history_ttl=0.5)
    await backend.append("r", b'{"n":1}')
    await asyncio.sleep(0.3)
    await backend.append("r", b'{"n":2}')
    await asyncio.sleep(0.3)  # the first is older than the TTL, the room is not
    history = await backend.read("r", 0)
    assert history.entries == [(2, b'{"n":2}')] and not history.complete
    assert (await backend.read("r", 1)).complete


async def test_broadcast_refuses_reserved_keys_and_non_objects() -> None:
    server = chat_server()
    async with TestClient(server):
        for bad in ({"type": "x", "room": "r"}, {"offset": 1}, {"epoch": "e"}, [1, 2], "text", b"[1]"):
            with pytest.raises(ValueError):
                await server.broadcast(bad, room="r")
        assert await server.broadcast({"room": "anything"}) == 0  # no room: no history, sent as it is
        await server.broadcast(b'{"raw": true}', room="r")  # encoded already: fields added all the same
        assert (await server.room_position("r"))["offset"] == 1


async def test_room_position_needs_history() -> None:
    server = WebSocketServer()
    with pytest.raises(RuntimeError, match="history_size"):
        await server.room_position("r")
    with pytest.raises(ValueError):
        MemoryBackend(history_size=-1)
    with pytest.raises(ValueError):
        MemoryBackend(history_size=1, history_ttl=0)


async def test_join_with_an_offset_without_history_is_false() -> None:
    server = chat_server(MemoryBackend())
    async with TestClient(server) as client, client.connect() as ws:
        router_reply = await ws.send_json({"type": "join", "room": "r", "offset": 0, "epoch": "x", "ref": 1})
        assert router_reply is None
        answer = await ws.receive_json()
        # room_position() raises without history: the handler fails after join() returned False
        assert answer["code"] == "internal_error"


async def test_publications_during_the_join_no_gap_no_duplicate() -> None:
    """A publisher keeps publishing while clients rejoin from older offsets: each sees every offset once, in order."""
    server = chat_server()
    async with TestClient(server) as client:
        async with client.connect() as first:
            epoch = (await request(first, {"type": "join", "room": "busy"}))["position"]["epoch"]
        stop = asyncio.Event()

        async def publish() -> None:
            n = 0
            end = time.monotonic() + 30
            while not stop.is_set() and time.monotonic() < end:
                n += 1
                await server.broadcast({"type": "tick", "n": n}, room="busy")
                await asyncio.sleep(0.001 if n % 4 == 0 else 0)

        publisher = asyncio.ensure_future(publish())
        try:
            for round_ in range(5):
                await asyncio.sleep(0.01)
                start = (await server.room_position("busy"))["offset"]
                async with client.connect() as ws:
                    await ws.send_json({"type": "join", "room": "busy", "offset": max(0, start - 20), "epoch": epoch, "ref": 1})
                    replayed, data = await frames_until_reply(ws, 1)
                    assert data["recovered"] is True
                    seen = [frame["offset"] for frame in replayed]
                    for _ in range(30):
                        seen.append((await ws.receive_json())["offset"])
                    assert seen == list(range(max(0, start - 20) + 1, seen[-1] + 1)), round_
        finally:
            stop.set()
            await publisher


async def test_leaving_and_rejoining_cleans_up() -> None:
    server = chat_server()
    async with TestClient(server) as client, client.connect() as ws:
        await request(ws, {"type": "join", "room": "r"})
        assert set(server.hub.logs) == {"r"}
        await ws.send_json({"type": "leave", "room": "r"})
        await asyncio.sleep(0.05)
        assert server.hub.logs == {} and server.hub.rooms == {}
        await server.broadcast({"n": 1}, room="r")  # nobody here: kept in the history only
        epoch = (await server.room_position("r"))["epoch"]
        await ws.send_json({"type": "join", "room": "r", "offset": 0, "epoch": epoch, "ref": 2})
        replayed, data = await frames_until_reply(ws, 2)
        assert data["recovered"] is True and replayed == [{"n": 1, "room": "r", "offset": 1, "epoch": epoch}]


async def test_a_slow_reader_gets_its_recovery_in_order() -> None:
    """Many replayed publications (more than the outgoing queue), then live ones: all in order."""
    server = chat_server(MemoryBackend(history_size=1000), outgoing_queue_size=16)
    async with TestClient(server) as client:
        epoch = (await server.room_position("big"))["epoch"]
        for n in range(500):
            await server.broadcast({"n": n, "text": "x" * 200}, room="big")
        async with client.connect() as ws:
            await ws.send_json({"type": "join", "room": "big", "offset": 0, "epoch": epoch, "ref": 1})
            replayed, data = await frames_until_reply(ws, 1)
            assert data["recovered"] and [frame["offset"] for frame in replayed] == list(range(1, 501))


async def test_presence_counts_distinct_users() -> None:
    router = Router()

    @router.connect()
    async def on_connect(websocket: WebSocket) -> None:
        user = websocket.query_params.get("user")
        if user is not None:
            websocket.context["user_id"] = int(user) if user.isdigit() else user

    @router.message("join")
    async def on_join(websocket: WebSocket, message: Join) -> None:
        await websocket.join(message.room)

    server = WebSocketServer()
    server.include_router(router)
    async with TestClient(server) as client:
        async with client.connect("/?user=bob") as b1, client.connect("/?user=bob") as b2, client.connect(
            "/?user=ann"
        ) as a, client.connect("/?user=7") as seven, client.connect("/") as anonymous:
            for ws in (b1, b2, a, seven, anonymous):
                await request(ws, {"type": "join", "room": "r"})
            assert await server.presence("r") == {"connections": 5, "users": [7, "ann", "bob"]}
            await b1.close()
            await a.close()
            end = time.monotonic() + 5
            while (await server.presence("r"))["connections"] != 3 and time.monotonic() < end:
                await asyncio.sleep(0.02)
            assert await server.presence("r") == {"connections": 3, "users": [7, "bob"]}
        assert await server.presence("r") == {"connections": 0, "users": []}
        assert server.hub.room_users == {}
