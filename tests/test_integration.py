"""The documented API end to end: a real server on 127.0.0.1 and real websockets clients."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone
from typing import Any, Literal

import pytest
from pydantic import BaseModel

from aiows import BaseMessage, ChatMessage, GameActionMessage, JoinRoomMessage, Router, WebSocket, WebSocketServer
from aiows.exceptions import AiowsException
from aiows.testing import TestClient

#: Every test here runs once per transport (see the ``transport`` fixture in conftest.py).
pytestmark = pytest.mark.usefixtures("transport")


class Shout(BaseMessage):
    type: Literal["shout"] = "shout"
    volume: int


class Reply(BaseModel):
    kind: str
    at: datetime


def make_server() -> tuple[WebSocketServer, dict[str, list[Any]]]:
    """A server exercising every handler kind; ``events`` records what ran."""
    events: dict[str, list[Any]] = {"connect": [], "disconnect": []}
    router = Router()

    @router.connect()
    async def on_connect(websocket: WebSocket) -> None:
        events["connect"].append(websocket.path)
        await websocket.send_json({"type": "welcome", "message": "Connected!"})

    @router.message("chat")
    async def on_chat(websocket: WebSocket, message: ChatMessage) -> None:
        assert isinstance(message, ChatMessage)
        await websocket.send_json({"type": "chat_response", "echo": message.dict()})

    @router.message("plain")
    async def on_plain(websocket, message):  # type: ignore[no-untyped-def]
        assert type(message) is BaseMessage
        await websocket.send_json({"type": "plain", "echo": message.model_dump()})

    @router.message("shout")
    async def on_shout(websocket: WebSocket, message: Shout) -> None:
        await websocket.send_json({"type": "shouted", "volume": message.volume * 2})

    @router.message("join_room")
    async def on_join(websocket: WebSocket, message: JoinRoomMessage) -> None:
        websocket.context["room"] = message.room_id
        await websocket.send_json({"type": "joined", "room": websocket.context["room"]})

    @router.message("game_action")
    async def on_game(websocket: WebSocket, message: GameActionMessage) -> None:
        await websocket.send_message(message)

    @router.message("whoami")
    async def on_whoami(websocket: WebSocket, message: BaseMessage) -> None:
        await websocket.send_json({"type": "you", "room": websocket.context.get("room")})

    @router.message("boom")
    async def on_boom(websocket: WebSocket, message: BaseMessage) -> None:
        raise RuntimeError("secret internals")

    @router.message("refuse")
    async def on_refuse(websocket: WebSocket, message: BaseMessage) -> None:
        raise AiowsException("refused on purpose")

    @router.message("kinds")
    async def on_kinds(websocket: WebSocket, message: BaseMessage) -> None:
        when = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
        await websocket.send_json([1, "two", None])
        await websocket.send_json(Reply(kind="model", at=when))
        await websocket.send_json({"at": when})

    @router.message("ask")
    async def on_ask(websocket: WebSocket, message: BaseMessage) -> None:
        await websocket.send_json({"type": "question"})
        answer = await websocket.receive_json()
        await websocket.send_json({"type": "answered", "answer": answer})

    @router.message("slow")
    async def on_slow(websocket: WebSocket, message: BaseMessage) -> None:
        await asyncio.sleep(0.05)
        await websocket.send_json({"type": "slow_done", "n": message.model_dump()["n"]})

    @router.message("fast")
    async def on_fast(websocket: WebSocket, message: BaseMessage) -> None:
        await websocket.send_json({"type": "fast_done", "n": message.model_dump()["n"]})

    @router.message("request")
    async def on_request(websocket: WebSocket, message: BaseMessage) -> None:
        await websocket.send_json(
            {
                "path": websocket.path,
                "query": websocket.query_params,
                "header": websocket.headers.get("X-Test"),
                "host": websocket.remote_address[0],
                "closed": websocket.closed,
                "size": websocket.message_size,
            }
        )

    @router.message("bye")
    async def on_bye(websocket: WebSocket, message: BaseMessage) -> None:
        await websocket.close(4000, "server says bye")

    @router.disconnect()
    async def on_disconnect(websocket: WebSocket, reason: str) -> None:
        events["disconnect"].append((reason, websocket.close_code))

    server = WebSocketServer()
    server.include_router(router)
    return server, events


async def test_connect_chat_and_disconnect_reason() -> None:
    server, events = make_server()
    async with TestClient(server) as client:
        async with client.connect() as ws:
            assert await ws.receive_json() == {"type": "welcome", "message": "Connected!"}
            await ws.send_json({"type": "chat", "text": "hello", "user_id": 42})
            answer = await ws.receive_json()
            assert answer["type"] == "chat_response"
            assert answer["echo"]["text"] == "hello" and answer["echo"]["user_id"] == 42
            assert answer["echo"]["type"] == "chat" and "timestamp" in answer["echo"]
            await ws.close(1000, "bye")
        await asyncio.sleep(0.05)
    assert events["connect"] == ["/"]
    assert events["disconnect"] == [("1000 (bye)", 1000)]


async def test_unannotated_handler_gets_base_message_with_every_field() -> None:
    server, _ = make_server()
    async with TestClient(server) as client, client.connect() as ws:
        await ws.receive_json()
        await ws.send_json({"type": "plain", "a": 1, "nested": {"b": [1, 2]}})
        echo = (await ws.receive_json())["echo"]
        assert echo["a"] == 1 and echo["nested"] == {"b": [1, 2]} and echo["type"] == "plain"


async def test_user_defined_models_and_builtin_models() -> None:
    server, _ = make_server()
    async with TestClient(server) as client, client.connect() as ws:
        await ws.receive_json()
        await ws.send_json({"type": "shout", "volume": 5})
        assert await ws.receive_json() == {"type": "shouted", "volume": 10}
        await ws.send_json({"type": "game_action", "action": "move", "coordinates": [1, 2]})
        game = await ws.receive_json()
        assert game["action"] == "move" and game["coordinates"] == [1, 2] and game["type"] == "game_action"


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", "invalid_json"),
        ("", "invalid_json"),
        (b"\xff\xfe binary garbage", "invalid_json"),
        ("[1, 2, 3]", "invalid_message"),
        ('"just a string"', "invalid_message"),
        ("{}", "invalid_message"),
        ('{"type": 5}', "invalid_message"),
        ('{"type": "nobody_handles_this"}', "unknown_type"),
        ('{"type": "chat", "text": "x"}', "validation_error"),
        ('{"type": "boom"}', "internal_error"),
    ],
)
async def test_bad_input_gets_one_error_frame_and_the_connection_stays(frame: str | bytes, code: str) -> None:
    server, _ = make_server()
    async with TestClient(server) as client, client.connect() as ws:
        await ws.receive_json()
        if isinstance(frame, bytes):
            await ws.send_bytes(frame)
        else:
            await ws.send_text(frame)
        error = await ws.receive_json()
        assert error["type"] == "error" and error["code"] == code
        assert isinstance(error["message"], str) and error["message"]
        await ws.send_json({"type": "whoami"})
        assert (await ws.receive_json())["type"] == "you"


async def test_unknown_type_error_names_the_type() -> None:
    server, _ = make_server()
    async with TestClient(server) as client, client.connect() as ws:
        await ws.receive_json()
        await ws.send_json({"type": "nobody's type"})
        error = await ws.receive_json()
        assert error["message"] == "no handler for message type \"nobody's type\""


async def test_validation_error_lists_errors_without_echoing_input() -> None:
    server, _ = make_server()
    async with TestClient(server) as client, client.connect() as ws:
        await ws.receive_json()
        await ws.send_json({"type": "chat", "text": "SECRET-INPUT", "user_id": "not-a-number"})
        error = await ws.receive_json()
        assert error["code"] == "validation_error"
        assert error["errors"] == [
            {"loc": ["user_id"], "msg": error["errors"][0]["msg"], "type": "int_parsing"}
        ]
        assert "not-a-number" not in str(error) and "SECRET-INPUT" not in str(error)


async def test_internal_error_hides_details_and_logs_traceback(caplog: pytest.LogCaptureFixture) -> None:
    server, _ = make_server()
    with caplog.at_level(logging.ERROR, logger="aiows"):
        async with TestClient(server) as client, client.connect() as ws:
            await ws.receive_json()
            await ws.send_json({"type": "boom"})
            error = await ws.receive_json()
    assert error == {"type": "error", "code": "internal_error", "message": "internal server error"}
    failures = [record for record in caplog.records if record.exc_info]
    assert failures and "secret internals" in str(failures[0].exc_info[1])


async def test_aiows_exception_from_handler_uses_its_message() -> None:
    server, _ = make_server()
    async with TestClient(server) as client, client.connect() as ws:
        await ws.receive_json()
        await ws.send_json({"type": "refuse"})
        assert await ws.receive_json() == {"type": "error", "code": "internal_error", "message": "refused on purpose"}


async def test_binary_frames_with_json_are_handled_like_text() -> None:
    server, _ = make_server()
    async with TestClient(server) as client, client.connect() as ws:
        await ws.receive_json()
        await ws.send_bytes(b'{"type": "shout", "volume": 2}')
        assert await ws.receive_json() == {"type": "shouted", "volume": 4}


async def test_send_json_encodes_lists_models_and_datetimes() -> None:
    server, _ = make_server()
    async with TestClient(server) as client, client.connect() as ws:
        await ws.receive_json()
        await ws.send_json({"type": "kinds"})
        assert await ws.receive_json() == [1, "two", None]
        assert await ws.receive_json() == {"kind": "model", "at": "2024-01-02T03:04:05+00:00"}
        assert await ws.receive_json() == {"at": "2024-01-02T03:04:05+00:00"}


async def test_receive_json_in_a_handler_gets_the_next_frame() -> None:
    server, _ = make_server()
    async with TestClient(server) as client, client.connect() as ws:
        await ws.receive_json()
        await ws.send_json({"type": "ask"})
        assert await ws.receive_json() == {"type": "question"}
        await ws.send_json({"answer": 42})
        assert await ws.receive_json() == {"type": "answered", "answer": {"answer": 42}}


async def test_messages_on_one_connection_are_handled_in_order() -> None:
    server, _ = make_server()
    async with TestClient(server) as client, client.connect() as ws:
        await ws.receive_json()
        for n in range(6):
            await ws.send_json({"type": "slow" if n % 2 == 0 else "fast", "n": n})
        replies = [await ws.receive_json() for _ in range(6)]
        assert [reply["n"] for reply in replies] == list(range(6))


async def test_connections_are_handled_concurrently_with_private_context() -> None:
    server, _ = make_server()
    async with TestClient(server) as client:
        async with client.connect() as a, client.connect() as b, client.connect() as c:
            for ws in (a, b, c):
                await ws.receive_json()
            await a.send_json({"type": "join_room", "room_id": "red", "user_name": "a"})
            await b.send_json({"type": "join_room", "room_id": "blue", "user_name": "b"})
            assert (await a.receive_json())["room"] == "red"
            assert (await b.receive_json())["room"] == "blue"
            # A slow handler on one connection does not hold up another.
            await a.send_json({"type": "slow", "n": 1})
            await c.send_json({"type": "fast", "n": 2})
            assert (await c.receive_json())["type"] == "fast_done"
            assert (await a.receive_json())["type"] == "slow_done"
            for ws, room in ((a, "red"), (b, "blue"), (c, None)):
                await ws.send_json({"type": "whoami"})
                assert (await ws.receive_json())["room"] == room


async def test_request_details_are_visible_to_handlers() -> None:
    server, _ = make_server()
    async with TestClient(server) as client:
        async with client.connect("/room/7?user=ann&x=1", headers={"X-Test": "yes"}) as ws:
            await ws.receive_json()
            await ws.send_json({"type": "request"})
            details = await ws.receive_json()
    assert details == {
        "path": "/room/7",
        "query": {"user": "ann", "x": "1"},
        "header": "yes",
        "host": "127.0.0.1",
        "closed": False,
        "size": len('{"type":"request"}'),
    }


async def test_server_close_from_handler_reaches_client_and_disconnect_handler() -> None:
    server, events = make_server()
    async with TestClient(server) as client, client.connect() as ws:
        await ws.receive_json()
        await ws.send_json({"type": "bye"})
        assert await ws.wait_closed() == 4000
        assert ws.close_reason == "server says bye"
    await asyncio.sleep(0.05)
    assert events["disconnect"] == [("4000 (server says bye)", 4000)]


async def test_client_vanishing_runs_disconnect_once_with_1006() -> None:
    server, events = make_server()
    async with TestClient(server) as client, client.connect() as ws:
        await ws.receive_json()
        ws.ws.transport.abort()
        for _ in range(100):
            if events["disconnect"]:
                break
            await asyncio.sleep(0.01)
    assert events["disconnect"] == [("1006", 1006)]


async def test_oversized_message_closes_1009() -> None:
    server, events = make_server()
    server.options = server.options.replace(max_message_size=1024)
    async with TestClient(server) as client, client.connect() as ws:
        await ws.receive_json()
        await ws.send_json({"type": "plain", "blob": "x" * 2048})
        assert await ws.wait_closed() == 1009


async def test_several_routers_and_nested_routers_are_all_served() -> None:
    first, second, nested = Router(), Router(), Router()
    second.include_router(nested)

    @first.message("one")
    async def one(websocket: WebSocket, message: BaseMessage) -> None:
        await websocket.send_json({"from": "first"})

    @second.message("two")
    async def two(websocket: WebSocket, message: BaseMessage) -> None:
        await websocket.send_json({"from": "second"})

    @nested.message("three")
    async def three(websocket: WebSocket, message: BaseMessage) -> None:
        await websocket.send_json({"from": "nested"})

    @nested.message()
    async def anything(websocket: WebSocket, message: BaseMessage) -> None:
        await websocket.send_json({"from": "catch-all", "type": message.type})

    server = WebSocketServer()
    server.include_router(first)
    server.include_router(second)
    async with TestClient(server) as client, client.connect() as ws:
        for message_type, source in (("one", "first"), ("two", "second"), ("three", "nested")):
            await ws.send_json({"type": message_type})
            assert await ws.receive_json() == {"from": source}
        await ws.send_json({"type": "other"})
        assert await ws.receive_json() == {"from": "catch-all", "type": "other"}


async def test_many_clients_at_once() -> None:
    server, _ = make_server()

    async def session(client: TestClient, n: int) -> int:
        async with client.connect() as ws:
            await ws.receive_json()
            total = 0
            for i in range(10):
                await ws.send_json({"type": "shout", "volume": n * 100 + i})
                total += (await ws.receive_json())["volume"]
            return total

    async with TestClient(server) as client:
        totals = await asyncio.gather(*(session(client, n) for n in range(20)))
    assert totals == [sum(2 * (n * 100 + i) for i in range(10)) for n in range(20)]
