"""Request/reply over a real socket: the ``"ref"`` envelope (client to server) and ``websocket.request()``.

Every message with a ``"ref"`` gets exactly one answer with that ref: the
handler's return value as ``{"type": "reply", "ref", "data"}``, or the error
frame it would get anyway, with ``"ref"`` added. Reply frames of the client
answer the server's requests and never reach a handler. On both transports:
replies are taken from the link's queue by the dispatcher, as the front-end
delivers them.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from models import Add, Sum

from aiows import BaseMessage, RateLimitingMiddleware, Router, WebSocket, WebSocketServer
from aiows.exceptions import (
    AiowsException,
    ConnectionError,
    RequestTimeout,
    RouterError,
    TooManyPendingRequests,
)
from aiows.middleware.base import BaseMiddleware
from aiows.testing import TestClient, TestConnection
from aiows.types import JSONObject, MessageNext


class Refused(AiowsException):
    code = "refused"


SEEN: list[JSONObject] = []


class Spy(BaseMiddleware):
    """Records each message as middleware sees it (with its ref)."""

    async def on_message(self, handler: MessageNext, websocket: WebSocket, message: JSONObject) -> Any:
        SEEN.append(dict(message))
        return await handler(websocket, message)


def make_server(**options: Any) -> WebSocketServer:
    router = Router()

    @router.message("add")
    async def on_add(websocket: WebSocket, message: Add) -> Sum:
        return Sum(total=message.a + message.b)

    @router.message("echo")
    async def on_echo(websocket: WebSocket, message: BaseMessage) -> dict[str, Any]:
        return {"fields": sorted(message.model_dump(exclude={"timestamp"}))}

    @router.message("nothing")
    async def on_nothing(websocket: WebSocket, message: BaseMessage) -> None:
        await websocket.send_json({"type": "side", "note": "sent before the reply"})

    @router.message("scalar")
    async def on_scalar(websocket: WebSocket, message: BaseMessage) -> Any:
        return [1, "two", 3.5]

    @router.message("refuse")
    async def on_refuse(websocket: WebSocket, message: BaseMessage) -> None:
        raise Refused("not today")

    @router.message("boom")
    async def on_boom(websocket: WebSocket, message: BaseMessage) -> None:
        raise RuntimeError("secret detail")

    @router.message("unencodable")
    async def on_unencodable(websocket: WebSocket, message: BaseMessage) -> object:
        return object()

    @router.message("ask")
    async def on_ask(websocket: WebSocket, message: BaseMessage) -> Any:
        """Asks the client from within a handler (the reply arrives while this handler runs)."""
        answer = await websocket.request({"type": "confirm", "question": "sure?"}, timeout=5.0)
        return {"client said": answer}

    @router.message("ask_quickly")
    async def on_ask_quickly(websocket: WebSocket, message: BaseMessage) -> str:
        try:
            await websocket.request({"type": "confirm"}, timeout=0.2)
        except RequestTimeout as exc:
            assert isinstance(exc, asyncio.TimeoutError)
            return "timed out"
        return "answered"

    server = WebSocketServer(**options)
    server.add_middleware(Spy())
    server.include_router(router)
    return server


async def exchange(ws: TestConnection, frame: dict[str, Any]) -> Any:
    await ws.send_json(frame)
    return await ws.receive_json()


async def test_the_return_value_is_the_reply(transport: str) -> None:
    async with TestClient(make_server()) as client, client.connect() as ws:
        assert await exchange(ws, {"type": "add", "a": 2, "b": 3, "ref": 1}) == {
            "type": "reply", "ref": 1, "data": {"total": 5},
        }  # fmt: skip
        # A string ref, a StrictMessage that forbids extra fields: the ref is not part of the model.
        assert await exchange(ws, {"type": "add", "a": 1, "b": 1, "ref": "r-2"}) == {
            "type": "reply", "ref": "r-2", "data": {"total": 2},
        }  # fmt: skip
        reply = await exchange(ws, {"type": "echo", "x": 1, "ref": 7})
        assert reply == {"type": "reply", "ref": 7, "data": {"fields": ["type", "x"]}}  # no "ref" in the model
        assert await exchange(ws, {"type": "scalar", "ref": 8}) == {"type": "reply", "ref": 8, "data": [1, "two", 3.5]}
        # None is null; what the handler sent itself comes first.
        await ws.send_json({"type": "nothing", "ref": 9})
        assert await ws.receive_json() == {"type": "side", "note": "sent before the reply"}
        assert await ws.receive_json() == {"type": "reply", "ref": 9, "data": None}
    assert SEEN[-1]["ref"] == 9  # middleware sees the ref


async def test_without_a_ref_nothing_changes(transport: str) -> None:
    async with TestClient(make_server()) as client, client.connect() as ws:
        await ws.send_json({"type": "add", "a": 2, "b": 3})  # the return value is ignored
        await ws.send_json({"type": "nothing"})
        assert await ws.receive_json() == {"type": "side", "note": "sent before the reply"}
        error = await exchange(ws, {"type": "refuse"})
        assert error == {"type": "error", "code": "refused", "message": "not today"}


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ({"ref": 1}, "invalid_message"),
        ({"type": 5, "ref": 1}, "invalid_message"),
        ({"type": "nope", "ref": 1}, "unknown_type"),
        ({"type": "add", "a": "x", "b": 1, "ref": 1}, "validation_error"),
        ({"type": "add", "a": 1, "b": 1, "extra": True, "ref": 1}, "validation_error"),
        ({"type": "refuse", "ref": 1}, "refused"),
        ({"type": "boom", "ref": 1}, "internal_error"),
        ({"type": "unencodable", "ref": 1}, "internal_error"),
    ],
)
async def test_every_error_carries_the_ref(frame: dict[str, Any], code: str) -> None:
    for ref in (1, "abc"):
        async with TestClient(make_server()) as client, client.connect() as ws:
            answer = await exchange(ws, {**frame, "ref": ref})
            assert (answer["type"], answer["code"], answer["ref"]) == ("error", code, ref)
            if code == "internal_error":
                assert answer["message"] == "internal server error"  # no detail leaks
            # exactly one answer: the next frame answers the next message
            assert await exchange(ws, {"type": "add", "a": 1, "b": 2, "ref": 2}) == {
                "type": "reply", "ref": 2, "data": {"total": 3},
            }  # fmt: skip


@pytest.mark.parametrize("ref", [None, 1.5, True, [1], {"a": 1}, "x" * 65])
async def test_a_bad_ref_is_an_invalid_message_without_it(ref: object) -> None:
    async with TestClient(make_server()) as client, client.connect() as ws:
        answer = await exchange(ws, {"type": "add", "a": 1, "b": 2, "ref": ref})
        assert answer["type"] == "error" and answer["code"] == "invalid_message" and "ref" not in answer
        assert "ref" in answer["message"]
        ok = "x" * 64
        assert (await exchange(ws, {"type": "add", "a": 1, "b": 2, "ref": ok}))["ref"] == ok


async def test_rate_limited_requests_get_the_ref() -> None:
    server = make_server()
    server.add_middleware(RateLimitingMiddleware(60, burst=1, on_limit="error"))
    async with TestClient(server) as client, client.connect() as ws:
        assert (await exchange(ws, {"type": "add", "a": 1, "b": 1, "ref": 1}))["type"] == "reply"
        assert await exchange(ws, {"type": "add", "a": 1, "b": 1, "ref": 2}) == {
            "type": "error", "code": "rate_limited", "message": "rate limit exceeded: message dropped", "ref": 2,
        }  # fmt: skip
        assert await exchange(ws, {"type": "add", "a": 1, "b": 1}) == {
            "type": "error", "code": "rate_limited", "message": "rate limit exceeded: message dropped",
        }  # fmt: skip


def test_reply_is_a_reserved_type() -> None:
    router = Router()
    with pytest.raises(RouterError, match="reserved"):

        @router.message("reply")
        async def on_reply(websocket: WebSocket, message: BaseMessage) -> None:
            pass


async def test_replies_never_reach_a_catch_all() -> None:
    router = Router()
    seen: list[str] = []

    @router.message()
    async def everything(websocket: WebSocket, message: BaseMessage) -> None:
        seen.append(message.type)

    server = WebSocketServer()
    server.include_router(router)
    async with TestClient(server) as client, client.connect() as ws:
        answer = await exchange(ws, {"type": "reply", "ref": 99, "data": 1})
        assert answer == {
            "type": "error", "code": "unknown_ref",
            "message": "no request waits for this reply (it timed out or was answered already)",
        }  # fmt: skip
        answer = await exchange(ws, {"type": "reply", "data": 1})
        assert (answer["code"], "ref" in answer) == ("invalid_message", False)
        await ws.send_json({"type": "other"})
        await asyncio.sleep(0.05)
    assert seen == ["other"]


async def test_server_asks_from_inside_a_handler(transport: str) -> None:
    """The reply comes while the handler that asked still runs: it is taken out of the queue for it."""
    async with TestClient(make_server()) as client, client.connect() as ws:
        await ws.send_json({"type": "ask", "ref": "q"})
        request = await ws.receive_json()
        assert request == {"type": "confirm", "question": "sure?", "ref": 1}
        # A message sent before the reply waits its turn; the reply does not.
        await ws.send_json({"type": "add", "a": 1, "b": 1, "ref": "later"})
        await ws.send_json({"type": "reply", "ref": request["ref"], "data": "yes"})
        assert await ws.receive_json() == {"type": "reply", "ref": "q", "data": {"client said": "yes"}}
        assert await ws.receive_json() == {"type": "reply", "ref": "later", "data": {"total": 2}}


async def test_request_from_outside_a_handler_and_from_connect() -> None:
    router = Router()
    connected: asyncio.Queue[WebSocket] = asyncio.Queue()
    answers: list[Any] = []

    @router.connect()
    async def on_connect(websocket: WebSocket) -> None:
        answers.append(await websocket.request({"type": "hello?"}, timeout=5.0))
        await connected.put(websocket)

    server = WebSocketServer()
    server.include_router(router)
    async with TestClient(server) as client, client.connect() as ws:
        hello = await ws.receive_json()
        assert hello == {"type": "hello?", "ref": 1}
        await ws.send_json({"type": "reply", "ref": 1, "data": {"version": 3}})
        websocket = await asyncio.wait_for(connected.get(), 5)
        assert answers == [{"version": 3}]
        # From another task while the connection is idle: refs go on growing.
        asking = asyncio.ensure_future(websocket.request(Sum(total=1), timeout=5.0))
        assert await ws.receive_json() == {"total": 1, "ref": 2}
        await ws.send_json({"type": "reply", "ref": 2})  # no data: None
        assert await asking is None
        # A late reply (nobody waits any more) is an unknown_ref.
        assert (await exchange(ws, {"type": "reply", "ref": 2, "data": 1}))["code"] == "unknown_ref"
        with pytest.raises(ValueError, match="ref"):
            await websocket.request({"type": "x", "ref": 5})
        with pytest.raises(TypeError):
            await websocket.request([1, 2])


async def test_request_times_out() -> None:
    async with TestClient(make_server()) as client, client.connect() as ws:
        await ws.send_json({"type": "ask_quickly", "ref": 1})
        assert (await ws.receive_json())["type"] == "confirm"
        assert await ws.receive_json() == {"type": "reply", "ref": 1, "data": "timed out"}
        assert (await exchange(ws, {"type": "reply", "ref": 1, "data": "too late"}))["code"] == "unknown_ref"


async def test_request_fails_when_the_connection_closes() -> None:
    router = Router()
    outcome: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

    @router.message("ask")
    async def on_ask(websocket: WebSocket, message: BaseMessage) -> None:
        try:
            await websocket.request({"type": "confirm"}, timeout=10.0)
        except BaseException as exc:
            outcome.set_result(exc)
            raise

    server = WebSocketServer()
    server.include_router(router)
    async with TestClient(server) as client:
        async with client.connect() as ws:
            await ws.send_json({"type": "ask"})
            assert (await ws.receive_json())["type"] == "confirm"
        error = await asyncio.wait_for(outcome, 5)
        assert isinstance(error, ConnectionError)


async def test_pending_requests_are_bounded() -> None:
    router = Router()
    result: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()

    @router.message("flood")
    async def on_flood(websocket: WebSocket, message: BaseMessage) -> None:
        asking = [asyncio.ensure_future(websocket.request({"type": "q"}, timeout=5.0)) for _ in range(3)]
        await asyncio.sleep(0)
        try:
            await websocket.request({"type": "q"}, timeout=5.0)
        except TooManyPendingRequests as exc:
            result.set_result((len(asking), str(exc)))
        for task in asking:
            task.cancel()

    server = WebSocketServer(max_pending_requests=3)
    server.include_router(router)
    async with TestClient(server) as client, client.connect() as ws:
        await ws.send_json({"type": "flood"})
        count, message = await asyncio.wait_for(result, 5)
        assert count == 3 and "max_pending_requests" in message
    with pytest.raises(ValueError, match="max_pending_requests"):
        WebSocketServer(max_pending_requests=0)


async def test_many_concurrent_handlers_and_requests() -> None:
    """With max_concurrent_handlers, replies reach requests even when every slot is busy."""
    server = make_server(max_concurrent_handlers=2)
    async with TestClient(server) as client, client.connect() as ws:
        for ref in ("a", "b"):
            await ws.send_json({"type": "ask", "ref": ref})
        requests = [await ws.receive_json(), await ws.receive_json()]
        assert sorted(request["ref"] for request in requests) == [1, 2]
        for request in requests:
            await ws.send_json({"type": "reply", "ref": request["ref"], "data": request["ref"]})
        answers = {(frame["ref"], frame["data"]["client said"]) for frame in [await ws.receive_json() for _ in "ab"]}
        assert {ref for ref, _ in answers} == {"a", "b"} and {said for _, said in answers} == {1, 2}


async def test_a_handler_reading_the_next_frame_does_not_get_replies() -> None:
    router = Router()

    @router.message("conversation")
    async def on_conversation(websocket: WebSocket, message: BaseMessage) -> Any:
        asking = asyncio.ensure_future(websocket.request({"type": "q"}, timeout=5.0))
        following = await websocket.receive_json()  # the client's next frame, not the reply
        return {"next": following, "answer": await asking}

    server = WebSocketServer()
    server.include_router(router)
    async with TestClient(server) as client, client.connect() as ws:
        await ws.send_json({"type": "conversation", "ref": 1})
        assert await ws.receive_json() == {"type": "q", "ref": 1}
        await ws.send_json({"type": "reply", "ref": 1, "data": 42})
        await ws.send_json({"type": "next"})
        assert await ws.receive_json() == {"type": "reply", "ref": 1, "data": {"next": {"type": "next"}, "answer": 42}}
