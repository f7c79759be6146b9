"""Codecs over real sockets: JSON or MessagePack per connection, chosen by subprotocol, on both transports.

A client offering ``aiows.msgpack`` gets binary MessagePack frames both ways:
routing, validation, error frames, requests and replies, broadcast (encoded
once per codec in use) and room history all speak it; one offering
``aiows.json``, or nothing the server has, gets JSON text frames as before.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import ormsgpack
import orjson
import pytest
from models import Add, Join, Sum
from npm import npm_packages
from websockets.asyncio.client import connect

from aiows import BaseMessage, Router, WebSocket, WebSocketServer
from aiows.broadcast.memory import MemoryBackend
from aiows.codecs import JSON, Codec, MsgPackCodec
from aiows.options import OptionError
from aiows.testing import TestClient


def make_server(**options: Any) -> WebSocketServer:
    router = Router()

    @router.message("add")
    async def add(websocket: WebSocket, message: Add) -> Sum:
        await websocket.send_json({"type": "sum", "total": message.a + message.b})
        return Sum(total=message.a + message.b)

    @router.message("join")
    async def join(websocket: WebSocket, message: Join) -> bool:
        if message.offset is None:
            return await websocket.join(message.room)
        return await websocket.join(message.room, offset=message.offset, epoch=message.epoch)

    @router.message("shout")
    async def shout(websocket: WebSocket, message: BaseMessage) -> None:
        await websocket.server.broadcast({"type": "said", "text": message.model_extra["text"]}, room="r")

    @router.message("ask")
    async def ask(websocket: WebSocket, message: BaseMessage) -> Any:
        return await websocket.request({"type": "confirm"}, timeout=5.0)

    options.setdefault("codecs", ("json", "msgpack"))
    server = WebSocketServer(**options)
    server.include_router(router)
    return server


async def test_a_client_offering_aiows_msgpack_gets_messagepack_both_ways(transport: str) -> None:
    async with TestClient(make_server()) as client:
        async with client.connect("/", codec="msgpack") as ws:
            assert ws.ws.subprotocol == "aiows.msgpack"
            assert ws.codec.name == "msgpack"
            await ws.ws.send(ormsgpack.packb({"type": "add", "a": 2, "b": 3}))
            frame = await ws.receive()
            assert isinstance(frame, bytes)  # a binary frame
            assert ormsgpack.unpackb(frame) == {"type": "sum", "total": 5}
            await ws.send_json({"type": "add", "a": 1, "b": 1, "ref": 7})
            assert await ws.receive_json() == {"type": "sum", "total": 2}
            assert await ws.receive_json() == {"type": "reply", "ref": 7, "data": {"total": 2}}


async def test_json_without_a_subprotocol_or_with_aiows_json(transport: str) -> None:
    async with TestClient(make_server()) as client:
        async with client.connect("/") as ws:
            assert ws.ws.subprotocol is None
            await ws.send_json({"type": "add", "a": 2, "b": 3})
            frame = await ws.receive()
            assert isinstance(frame, str) and orjson.loads(frame) == {"type": "sum", "total": 5}
        async with client.connect("/", codec="json") as ws:
            assert ws.ws.subprotocol == "aiows.json"
            await ws.send_json({"type": "add", "a": 2, "b": 3})
            assert isinstance(await ws.receive(), str)


async def test_the_client_preference_wins_and_unknown_offers_get_the_first_codec(transport: str) -> None:
    async with TestClient(make_server()) as client:
        offers: list[Any] = ["x.other", "aiows.msgpack", "aiows.json"]
        async with connect(client.url("/"), subprotocols=offers) as ws:
            assert ws.subprotocol == "aiows.msgpack"
        async with connect(client.url("/"), subprotocols=["x.other"]) as ws:
            assert ws.subprotocol is None
            await ws.send('{"type":"add","a":1,"b":2}')
            assert orjson.loads(await ws.recv()) == {"type": "sum", "total": 3}


async def test_a_server_without_msgpack_answers_a_msgpack_client_in_json(transport: str) -> None:
    async with TestClient(make_server(codecs=("json",))) as client:
        async with client.connect("/", codec="msgpack") as ws:
            assert ws.ws.subprotocol is None
            assert ws.codec is JSON  # what the server agreed to
            await ws.send_json({"type": "add", "a": 2, "b": 2})
            assert isinstance(await ws.receive(), str)


async def test_a_msgpack_first_server_speaks_msgpack_to_clients_that_negotiate_nothing(transport: str) -> None:
    async with TestClient(make_server(codecs=("msgpack", "json"))) as client:
        async with connect(client.url("/")) as ws:
            await ws.send(ormsgpack.packb({"type": "add", "a": 2, "b": 2}))
            assert ormsgpack.unpackb(await ws.recv()) == {"type": "sum", "total": 4}


async def test_error_frames_in_messagepack(transport: str) -> None:
    async with TestClient(make_server()) as client:
        async with client.connect("/", codec="msgpack") as ws:
            await ws.send_bytes(b"\xc1")  # a reserved marker: not MessagePack
            error = await ws.receive_json()
            assert error == {"type": "error", "code": "invalid_msgpack", "message": "message is not valid MessagePack"}
            await ws.send_bytes(ormsgpack.packb([1, 2]))
            assert (await ws.receive_json())["message"] == "message must be a MessagePack map"
            await ws.send_bytes(b"\x81\x01\x02")  # {1: 2}: map keys must be strings
            assert (await ws.receive_json())["code"] == "invalid_msgpack"
            await ws.send_json({"type": "add", "a": "x", "b": 1})
            error = await ws.receive_json()
            assert error["code"] == "validation_error" and error["errors"][0]["loc"] == ["a"]
            await ws.send_json({"type": "nope", "ref": "r1"})
            assert await ws.receive_json() == {
                "type": "error",
                "code": "unknown_type",
                "message": "no handler for message type 'nope'",
                "ref": "r1",
            }
            await ws.send_json({"type": "add", "a": 1, "b": 1})  # still served
            assert await ws.receive_json() == {"type": "sum", "total": 2}


async def test_a_text_frame_on_a_msgpack_connection(transport: str) -> None:
    async with TestClient(make_server()) as client:
        async with client.connect("/", codec="msgpack") as ws:
            await ws.send_text('{"type": "add"}')  # text is not MessagePack (0x7b is the integer 123)
            assert (await ws.receive_json())["code"] in ("invalid_message", "invalid_msgpack")
            await ws.ws.send(b"\x81\xa4type\xa3add\xff", text=True)  # valid MessagePack, invalid UTF-8 text
            assert await ws.wait_closed() == 1007


async def test_hostile_messagepack_costs_nothing_but_an_error_frame(transport: str) -> None:
    async with TestClient(make_server()) as client:
        async with client.connect("/", codec="msgpack") as ws, client.connect("/", codec="msgpack") as other:
            for payload in (
                b"\x91" * 100_000 + b"\x01",  # nested 100,000 deep
                b"\xdd\xff\xff\xff\xff",  # an array that claims 4 billion items
                b"\xdb\xff\xff\xff\xff",  # a string that claims 4 GiB
                b"\xdf\xff\xff\xff\xff" + b"\xa1a\x01" * 1000,
            ):
                await ws.send_bytes(payload)
                assert (await ws.receive_json())["code"] in ("invalid_msgpack", "invalid_message")
            await other.send_json({"type": "add", "a": 1, "b": 1})
            assert await other.receive_json() == {"type": "sum", "total": 2}


async def test_server_requests_and_client_replies_in_messagepack(transport: str) -> None:
    async with TestClient(make_server()) as client:
        async with client.connect("/", codec="msgpack") as ws:
            await ws.send_json({"type": "ask", "ref": 1})
            request = await ws.receive_json()
            assert request["type"] == "confirm"
            await ws.send_json({"type": "reply", "ref": request["ref"], "data": {"ok": True}})
            assert await ws.receive_json() == {"type": "reply", "ref": 1, "data": {"ok": True}}


async def test_a_broadcast_is_encoded_once_per_codec_in_the_room(transport: str) -> None:
    server = make_server()
    async with TestClient(server) as client:
        async with (
            client.connect("/") as json_a,
            client.connect("/") as json_b,
            client.connect("/", codec="msgpack") as pack_a,
            client.connect("/", codec="msgpack") as pack_b,
        ):
            for ws in (json_a, json_b, pack_a, pack_b):
                await ws.send_json({"type": "join", "room": "r", "ref": 0})
                assert (await ws.receive_json())["data"] is True
            before = server.broadcast_stats.encodes
            await json_a.send_json({"type": "shout", "text": "héllo"})
            for ws in (json_a, json_b):
                frame = await ws.receive()
                assert isinstance(frame, str) and orjson.loads(frame) == {"type": "said", "text": "héllo"}
            for ws in (pack_a, pack_b):
                frame = await ws.receive()
                assert isinstance(frame, bytes) and ormsgpack.unpackb(frame) == {"type": "said", "text": "héllo"}
            assert server.broadcast_stats.encodes - before == 2  # JSON once, MessagePack once
            await pack_a.close()
            await pack_b.close()
            await asyncio.sleep(0.05)
            before = server.broadcast_stats.encodes
            await json_b.send_json({"type": "shout", "text": "again"})
            assert (await json_a.receive_json())["text"] == "again"
            assert server.broadcast_stats.encodes - before == 1  # nobody speaks MessagePack now


async def test_room_history_and_recovery_in_messagepack(transport: str) -> None:
    server = make_server(broadcast=MemoryBackend(history_size=10))
    async with TestClient(server) as client:
        async with client.connect("/", codec="msgpack") as ws:
            await ws.send_json({"type": "join", "room": "r", "ref": 0})
            assert (await ws.receive_json())["data"] is True
            await ws.send_json({"type": "shout", "text": "one"})
            first = await ws.receive_json()
            assert first["room"] == "r" and first["text"] == "one" and first["offset"] == 1
        for text in ("two", "three"):
            await server.broadcast({"type": "said", "text": text}, room="r")
        async with client.connect("/", codec="msgpack") as ws:
            await ws.send_json({"type": "join", "room": "r", "offset": 1, "epoch": first["epoch"], "ref": 0})
            replayed = [await ws.receive_json() for _ in range(2)]
            assert [(item["offset"], item["text"]) for item in replayed] == [(2, "two"), (3, "three")]
            assert await ws.receive_json() == {"type": "reply", "ref": 0, "data": True}


async def test_raw_handlers_get_the_frames_as_sent(transport: str) -> None:
    router = Router()

    @router.raw()
    async def echo(websocket: WebSocket, data: str | bytes) -> None:
        await websocket.send_bytes(data if isinstance(data, bytes) else data.encode())

    server = WebSocketServer(codecs=("json", "msgpack"))
    server.include_router(router)
    async with TestClient(server) as client:
        async with client.connect("/", codec="msgpack") as ws:
            await ws.send_bytes(b"\x01\x02")
            assert await ws.receive() == b"\x01\x02"


class PrefixedJSON(Codec):
    """A codec of the app's own (interpreted, subclassing the compiled ``Codec``): JSON after a "J" byte."""

    def __init__(self) -> None:
        super().__init__("pjson", "example.pjson", "application/x-pjson", False, "prefixed JSON", "a JSON object")

    def decode(self, data: bytes) -> Any:
        if not data.startswith(b"J"):
            raise ValueError("no J")
        return orjson.loads(data[1:])

    def encode(self, value: object) -> bytes:
        return b"J" + JSON.encode(value)


async def test_a_codec_of_the_apps_own(transport: str) -> None:
    async with TestClient(make_server(codecs=("json", PrefixedJSON()))) as client:
        async with client.connect("/", codec=PrefixedJSON()) as ws:
            assert ws.ws.subprotocol == "example.pjson"
            await ws.send_bytes(b'J{"type": "add", "a": 1, "b": 2}')
            assert await ws.receive() == b'J{"type":"sum","total":3}'
            await ws.send_bytes(b"{}")
            assert await ws.receive_json() == {
                "type": "error",
                "code": "invalid_pjson",
                "message": "message is not valid prefixed JSON",
            }


def test_codecs_option_is_checked() -> None:
    with pytest.raises(OptionError, match="unknown codec 'cbor'") as info:
        WebSocketServer(codecs=("json", "cbor"))
    assert info.value.option == "codecs"
    with pytest.raises(OptionError, match="at least one"):
        WebSocketServer(codecs=())
    with pytest.raises(OptionError, match="share a subprotocol"):
        WebSocketServer(codecs=("msgpack", MsgPackCodec()))
    assert [codec.name for codec in WebSocketServer(codecs=["msgpack", "json"]).options.offered_codecs] == [
        "msgpack",
        "json",
    ]


def test_the_asyncapi_document_lists_the_codecs() -> None:
    from aiows.contract import asyncapi_document

    document = asyncapi_document(make_server(codecs=("msgpack", "json")))
    assert document["defaultContentType"] == "application/msgpack"
    assert document["x-codecs"] == [
        {"name": "msgpack", "subprotocol": "aiows.msgpack", "contentType": "application/msgpack"},
        {"name": "json", "subprotocol": "aiows.json", "contentType": "application/json"},
    ]
    assert "application/json in text frames (subprotocol aiows.json)" in document["info"]["description"]
    (channel,) = document["channels"].values()
    header = channel["bindings"]["ws"]["headers"]["properties"]["Sec-WebSocket-Protocol"]
    assert header["enum"] == ["aiows.msgpack", "aiows.json"]
    error = document["components"]["messages"]["server.error"]
    codes = error["payload"]["allOf"][1]["properties"]["code"]["enum"]
    assert {"invalid_json", "invalid_msgpack"} <= set(codes)


def test_a_msgpack_servers_document_passes_the_asyncapi_parser(tmp_path: Path) -> None:
    from test_contract_tools import PACKAGES, VALIDATE, parse

    from aiows.contract import asyncapi_document

    tools = npm_packages(PACKAGES)
    (tools / "validate.js").write_text(VALIDATE)
    document = tmp_path / "asyncapi.json"
    document.write_bytes(orjson.dumps(asyncapi_document(make_server(codecs=("json", "msgpack")))))
    verdict = parse(tools, document)
    assert verdict["parsed"], verdict
    assert {d["code"] for d in verdict["diagnostics"]} <= {"asyncapi-latest-version"}, verdict
