"""The contract as data (``aiows.contract``): the AsyncAPI document built from routers and models, served
over HTTP on the WebSocket port (both transports), the docs page, the TypeScript text, ``emits``.

The document is checked by the official AsyncAPI parser, and the TypeScript by ``tsc``, in
``tests/test_contract_tools.py``; the docs page in a browser in ``tests/test_contract_page.py``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any, Literal, Optional

import orjson
import pytest
from pydantic import BaseModel, ConfigDict, Field

from aiows import AuthMiddleware, BaseMessage, RateLimitingMiddleware, Router, WebSocket, WebSocketServer
from aiows.broadcast import MemoryBackend
from aiows.cli import main
from aiows.contract import asyncapi_document
from aiows.contract.docs import docs_page
from aiows.contract.typescript import typescript_declarations
from aiows.exceptions import AiowsException, RouterError
from aiows.testing import TestClient

SECRET = "a-test-secret-that-is-long-enough-for-aiows"


class Move(BaseMessage):
    """A move on the board."""

    type: Literal["move"] = "move"
    x: int = Field(ge=0, le=7, description="The column, 0 to 7.")
    y: int = Field(ge=0, le=7)
    piece: Literal["pawn", "queen"] = "pawn"


class Moved(BaseModel):
    """A move, told to both players."""

    type: Literal["moved"] = "moved"
    x: int
    y: int
    at: datetime


class Color(str, Enum):
    WHITE = "white"
    BLACK = "black"


class Board(BaseModel):
    """The board, sent on connecting."""

    type: Literal["board"] = "board"
    cells: list[list[str]]
    turn: Color = Color.WHITE
    scores: list[Optional[dict[str, int]]] = []


class IllegalMove(AiowsException):
    code = "illegal_move"


class Code(BaseMessage):
    type: Literal["code"] = "code"
    value: str = Field(pattern=r"^[A-Z]{3}$")


class Tricky(BaseMessage):
    """<script>alert(1)</script>"""

    type: Literal["tricky"] = "tricky"
    note: str = Field("</pre>", description="<b>bold</b>")


class Opaque:
    """A type pydantic has no JSON Schema for."""


class HoldsOpaque(BaseMessage):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    type: Literal["odd"] = "odd"
    thing: Opaque | None = None


def game_server(**options: Any) -> WebSocketServer:
    router = Router()

    @router.connect(emits=[Board])
    async def on_connect(websocket: WebSocket) -> None:
        await websocket.send_message(Board(cells=[["."] * 8] * 8))

    @router.message("move", emits=[Moved, IllegalMove])
    async def on_move(websocket: WebSocket, message: Move) -> None:
        """Move a piece.

        The other player gets ``moved`` too.
        """
        await websocket.send_message(Moved(x=message.x, y=message.y, at=message.timestamp))

    @router.message("ping")
    async def on_ping(websocket: WebSocket, message: BaseMessage) -> None:
        await websocket.send_json({"type": "pong"})

    lobby = Router()

    @lobby.message("hello")
    async def on_hello(websocket: WebSocket, message: BaseMessage) -> None:
        """Say hello."""

    server = WebSocketServer(title="Chess", version="2.1.0", **options)
    server.include_router(router, path="/game")
    server.include_router(lobby)
    return server


def messages_of(document: dict[str, Any], channel: str) -> dict[str, dict[str, Any]]:
    """The messages of a channel, by key, resolved from ``components/messages``."""
    refs = document["channels"][channel]["messages"]
    return {key: document["components"]["messages"][ref["$ref"].rpartition("/")[2]] for key, ref in refs.items()}


def test_document_has_a_channel_per_path_with_its_messages_operations_and_schemas() -> None:
    document = asyncapi_document(game_server())
    assert document["asyncapi"] == "3.0.0"
    assert document["info"]["title"] == "Chess" and document["info"]["version"] == "2.1.0"
    assert {key: channel["address"] for key, channel in document["channels"].items()} == {"game": "/game", "root": "/"}
    game = messages_of(document, "game")
    # The routers mounted without a path serve /game too: "hello" is there, as the route table has it.
    replies = ["client.reply", "server.reply"]  # request/reply: every JSON channel has both
    assert sorted(game) == sorted(["client.hello", "client.move", "client.ping", "server.board", "server.error", "server.moved", *replies])
    assert sorted(messages_of(document, "root")) == sorted(["client.hello", "server.error", *replies])
    move = game["client.move"]
    assert move["name"] == "move" and move["title"] == "Move"
    assert move["description"] == "Move a piece.\n\nThe other player gets ``moved`` too."  # the handler's docstring
    assert move["payload"] == {"$ref": "#/components/schemas/Move"}
    schema = document["components"]["schemas"]["Move"]
    assert schema["description"] == "A move on the board."
    assert schema["properties"]["x"] == {
        "description": "The column, 0 to 7.", "maximum": 7, "minimum": 0, "title": "X", "type": "integer"
    }  # fmt: skip
    assert schema["required"][0] == "type"  # routing needs it, though the model has a default
    assert "piece" not in schema["required"]
    # A handler annotated with BaseMessage: its type is pinned by the payload.
    assert game["client.ping"]["payload"]["allOf"][1] == {"properties": {"type": {"const": "ping"}}, "required": ["type"]}
    operations = document["operations"]
    assert operations["game.client.move"] == {
        "action": "receive",
        "channel": {"$ref": "#/channels/game"},
        "messages": [{"$ref": "#/channels/game/messages/client.move"}],
        "summary": "Move a piece.",
        # Sent with a "ref", it is answered with the reply frame (its data untyped: the handler returns None).
        "reply": {"channel": {"$ref": "#/channels/game"}, "messages": [{"$ref": "#/channels/game/messages/server.reply"}]},
    }
    assert operations["game.server.moved"]["action"] == "send"
    assert "security" not in operations["game.client.move"] and "securitySchemes" not in document["components"]


def test_error_frame_lists_the_codes_the_channel_can_send() -> None:
    server = game_server()
    server.routers[1].add_middleware(RateLimitingMiddleware(10, on_limit="error"))
    document = asyncapi_document(server)
    codes = {
        key: messages_of(document, key)["server.error"]["payload"]["allOf"][1]["properties"]["code"]["enum"]
        for key in ("game", "root")
    }
    builtin = ["invalid_json", "invalid_message", "unknown_type", "validation_error", "internal_error", "unknown_ref"]
    assert codes["root"] == [*builtin, "rate_limited"]  # the lobby's middleware answers with an error frame
    assert codes["game"] == [*builtin, "rate_limited", "illegal_move"]  # the lobby serves /game too


def test_examples_validate_against_their_models() -> None:
    document = asyncapi_document(game_server())
    examples = {key: message["examples"][0]["payload"] for key, message in document["components"]["messages"].items()}
    assert examples["client.move"] == {"type": "move", "timestamp": "2026-01-01T12:00:00Z", "x": 0, "y": 0, "piece": "pawn"}
    Move.model_validate(examples["client.move"])
    Moved.model_validate(examples["server.moved"])
    assert examples["client.ping"]["type"] == "ping"
    assert examples["server.error"]["code"] == "invalid_json"


def test_an_example_the_model_refuses_is_left_out() -> None:
    router = Router()

    @router.message("code")
    async def on_code(websocket: WebSocket, message: Code) -> None:
        pass

    server = WebSocketServer()
    server.include_router(router)
    assert "examples" not in asyncapi_document(server)["components"]["messages"]["client.code"]


def test_auth_middleware_adds_security_schemes_and_first_message_auth_its_frames() -> None:
    server = game_server()
    server.add_middleware(AuthMiddleware(verify=lambda token: token or None, first_message_auth=True))
    document = asyncapi_document(server)
    assert document["components"]["securitySchemes"] == {
        "token": {"type": "httpApiKey", "name": "token", "in": "query", "description": "A token in the handshake URL: ?token=..."},
        "bearer": {"type": "http", "scheme": "bearer", "description": "A token in the handshake's Authorization: Bearer header."},
    }  # fmt: skip
    assert document["operations"]["game.client.move"]["security"] == [
        {"$ref": "#/components/securitySchemes/token"},
        {"$ref": "#/components/securitySchemes/bearer"},
    ]
    game = messages_of(document, "game")
    assert game["client.auth"]["examples"][0]["payload"] == {"type": "auth", "token": "text"}
    assert document["components"]["schemas"]["AuthOk"]["required"] == ["type", "user_id"]


def test_raw_channel_and_catch_all() -> None:
    raw, anything = Router(), Router()

    @raw.raw()
    async def on_frame(websocket: WebSocket, data: str | bytes) -> None:
        """Echo every frame."""

    @anything.message()
    async def on_any(websocket: WebSocket, message: BaseMessage) -> None:
        """Whatever the type."""

    server = WebSocketServer()
    server.include_router(raw, path="/echo")
    server.include_router(anything, path="/any")
    document = asyncapi_document(server)
    echo = messages_of(document, "echo")
    assert echo == {
        "client.text": {"name": "text", "contentType": "text/plain", "payload": {"type": "string"}, "description": "Echo every frame."},
        "client.binary": {
            "name": "binary", "contentType": "application/octet-stream", "payload": {"type": "string", "format": "binary"},
            "description": "Echo every frame.",
        },
    }  # fmt: skip
    catch_all = messages_of(document, "any")["client.any_type"]
    assert catch_all["name"] == "*" and catch_all["payload"] == {"$ref": "#/components/schemas/BaseMessage"}
    assert "export type ClientMessage = BaseMessage | ReplyFrame;" in typescript_declarations(document)


def test_message_types_that_are_not_keys_are_renamed() -> None:
    router = Router()

    @router.message("chat/send it")
    async def on_send(websocket: WebSocket, message: BaseMessage) -> None:
        pass

    server = WebSocketServer()
    server.include_router(router, path="/a b")
    document = asyncapi_document(server)
    assert list(document["channels"]) == ["a_b"]
    assert messages_of(document, "a_b")["client.chat_send_it"]["name"] == "chat/send it"


def test_emits_refuses_what_cannot_be_a_message() -> None:
    class NoType(BaseModel):
        text: str

    class Loose(BaseModel):
        type: str

    router = Router()
    for item in (NoType, Loose, dict, "chat"):
        with pytest.raises(RouterError):
            router.emits(item)  # type: ignore[arg-type]
    with pytest.raises(RouterError, match="NoType declares no message type"):
        router.message("x", emits=[NoType])
    router.emits(Moved, IllegalMove, Moved)
    assert router.outgoing == [Moved, IllegalMove]


def test_typescript_declares_an_interface_per_model_and_the_two_unions() -> None:
    text = typescript_declarations(asyncapi_document(game_server()))
    assert "/** A move on the board. */\nexport interface Move {\n  type: \"move\";\n  timestamp?: string;\n" in text
    assert '  /** The column, 0 to 7. */\n  x: number;\n  y: number;\n  piece?: "pawn" | "queen";\n}' in text
    assert 'export type Color = "white" | "black";' in text
    board = 'export interface Board {\n  type: "board";\n  cells: string[][];\n  turn?: Color;\n'
    assert board + "  scores?: ({\n    [key: string]: number;\n  } | null)[];\n}" in text
    assert "export type ClientPing = BaseMessage & {\n  type: \"ping\";\n};" in text
    assert "export type ClientMessage = Move | ClientPing | BaseMessage & " not in text
    assert "export type ClientMessage = Move | ClientPing | ClientHello | ReplyFrame;" in text
    assert "export type ServerMessage = Board | Moved | ReplyFrame | ServerError | ServerError2;" in text


def test_docs_page_escapes_what_it_shows() -> None:
    router = Router()

    @router.message("tricky")
    async def on_tricky(websocket: WebSocket, message: Tricky) -> None:
        """<img src=x onerror=alert(1)>"""

    server = WebSocketServer(title="<i>T</i>")
    server.include_router(router)
    page = docs_page(asyncapi_document(server))
    assert "<script" not in page and "<img" not in page and "<b>" not in page and "<i>" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page and "&lt;/pre&gt;" in page


class GetUser(BaseMessage):
    type: Literal["get_user"] = "get_user"
    id: int = Field(ge=1)


class UserInfo(BaseModel):
    """A user, as ``get_user`` answers."""

    id: int
    name: str
    since: datetime


def reply_server() -> WebSocketServer:
    router = Router()

    @router.message("get_user")
    async def get_user(websocket: WebSocket, message: GetUser) -> UserInfo:
        """Look a user up."""
        return UserInfo(id=message.id, name="ann", since=message.timestamp)

    @router.message("find")
    async def find(websocket: WebSocket, message: BaseMessage) -> list[UserInfo] | None:
        return None

    @router.message("count")
    async def count(websocket: WebSocket, message: BaseMessage) -> int:
        return 3

    @router.message("odd")
    async def odd(websocket: WebSocket, message: BaseMessage) -> Opaque:  # no JSON Schema: untyped
        raise IllegalMove("never answered")

    @router.message("note")
    async def note(websocket: WebSocket, message: BaseMessage) -> None:
        pass

    @router.message("bare")
    async def bare(websocket, message):  # type: ignore[no-untyped-def]
        pass

    @router.message()
    async def anything(websocket: WebSocket, message: BaseMessage) -> dict[str, int]:
        return {"n": 1}

    server = WebSocketServer()
    server.include_router(router)
    return server


def test_a_handlers_return_annotation_types_the_data_of_its_reply() -> None:
    document = asyncapi_document(reply_server())
    operations, messages = document["operations"], document["components"]["messages"]
    replies = {
        key.removeprefix("root.client."): operation["reply"]["messages"][0]["$ref"].rpartition("/")[2]
        for key, operation in operations.items()
        if "reply" in operation
    }
    assert replies == {
        "get_user": "server.reply.get_user", "find": "server.reply.find", "count": "server.reply.count",
        "odd": "server.reply", "note": "server.reply", "bare": "server.reply", "any_type": "server.reply.any_type",
    }  # fmt: skip
    for operation in operations.values():  # a reply is sent on the operation's channel, one of its messages
        if "reply" in operation:
            assert operation["reply"]["channel"] == operation["channel"] == {"$ref": "#/channels/root"}
            assert operation["reply"]["messages"][0]["$ref"].startswith("#/channels/root/messages/")
    assert all(key.startswith("server.reply") for key in messages_of(document, "root") if key.startswith("server.r"))
    assert not any(key.startswith("root.server.reply.") for key in operations)  # the replies of their operations
    typed = messages["server.reply.get_user"]
    assert typed["name"] == "reply" and typed["title"] == "ReplyFrame[UserInfo]"
    assert typed["payload"] == {
        "allOf": [
            {"$ref": "#/components/schemas/ReplyFrame"},
            {"properties": {"data": {"$ref": "#/components/schemas/UserInfo"}}, "required": ["data"]},
        ]
    }
    example = typed["examples"][0]["payload"]
    assert example["type"] == "reply" and UserInfo.model_validate(example["data"])
    assert document["components"]["schemas"]["UserInfo"]["required"] == ["id", "name", "since"]
    data = {key: messages[f"server.reply.{key}"]["payload"]["allOf"][1]["properties"]["data"] for key in ("find", "count")}
    assert data == {
        "find": {"anyOf": [{"type": "array", "items": {"$ref": "#/components/schemas/UserInfo"}}, {"type": "null"}]},
        "count": {"type": "integer"},
    }
    assert messages["server.reply.find"]["title"] == "ReplyFrame[list[UserInfo] | None]"

    text = typescript_declarations(document)
    frame = 'export interface ReplyFrame<T = unknown> {\n  type: "reply";\n'
    assert frame in text and "  /** What the handler returned (T). */\n  data: T;\n}" in text
    assert "export interface RequestReplyMap {\n  get_user: UserInfo;\n  find: UserInfo[] | null;\n  count: number;\n" in text
    assert "  odd: unknown;\n  note: unknown;\n  bare: unknown;\n}" in text  # the catch-all has no type to key
    assert "export type ServerMessage = ReplyFrame | ServerError;" in text  # each typed reply is a ReplyFrame<T>

    page = docs_page(document)
    assert page.count('<p class="reply">') == 4
    assert '<code>data</code>: <a href="#type-UserInfo">UserInfo</a></p>' in page and 'id="type-UserInfo"' in page


@pytest.mark.usefixtures("transport")
async def test_the_reply_on_the_wire_is_what_the_contract_says() -> None:
    server = reply_server()
    document = asyncapi_document(server)
    user = document["components"]["schemas"]["UserInfo"]
    async with TestClient(server) as client, client.connect() as ws:
        await ws.send_json({"type": "get_user", "ref": "r1", "id": 5})
        reply = await ws.receive_json()
        assert sorted(reply) == ["data", "ref", "type"] and reply["ref"] == "r1"
        assert sorted(reply["data"]) == sorted(user["properties"]) and reply["data"]["id"] == 5
        UserInfo.model_validate(reply["data"])
        await ws.send_json({"type": "count", "ref": 2})
        assert await ws.receive_json() == {"type": "reply", "ref": 2, "data": 3}
        await ws.send_json({"type": "note", "ref": 3})
        assert await ws.receive_json() == {"type": "reply", "ref": 3, "data": None}  # -> None: data is null


class Played(BaseModel):
    """A move, told to the room."""

    type: Literal["played"] = "played"
    x: int


def room_server(history_size: int) -> WebSocketServer:
    router = Router()
    router.emits(Played, room=True)

    @router.message("move")
    async def on_move(websocket: WebSocket, message: Move) -> None:
        await websocket.join("board")
        await websocket.server.broadcast(Played(x=message.x), room="board")

    server = WebSocketServer(broadcast=MemoryBackend(history_size=history_size))
    server.include_router(router)
    return server


@pytest.mark.usefixtures("transport")
async def test_publications_in_rooms_with_history_carry_the_fields_the_contract_adds() -> None:
    server = room_server(history_size=10)
    document = asyncapi_document(server)
    published = messages_of(document, "root")["server.played.room"]
    assert published["payload"] == {"allOf": [{"$ref": "#/components/schemas/Played"}, {"$ref": "#/components/schemas/InRoom"}]}
    assert published["description"].startswith("A move, told to the room.\n\nPublished to a room with history")
    assert published["examples"][0]["payload"] == {"type": "played", "x": 1, "room": "text", "offset": 1, "epoch": "text"}
    in_room = document["components"]["schemas"]["InRoom"]
    assert in_room["required"] == ["room", "offset", "epoch"] and in_room["properties"]["offset"]["minimum"] == 1
    assert "server.played" not in messages_of(document, "root")  # declared as published only
    assert "export type ServerPlayedRoom = Played & InRoom;" in typescript_declarations(document)
    async with TestClient(server) as client, client.connect() as ws:
        await ws.send_json({"type": "move", "x": 3, "y": 0})
        frame = await ws.receive_json()
    fields = [*document["components"]["schemas"]["Played"]["properties"], *in_room["properties"]]
    assert sorted(frame) == sorted(fields) and frame["room"] == "board" and frame["offset"] == 1


@pytest.mark.usefixtures("transport")
async def test_without_history_a_rooms_publications_are_documented_as_they_are_sent() -> None:
    server = room_server(history_size=0)
    document = asyncapi_document(server)
    assert messages_of(document, "root")["server.played"]["payload"] == {"$ref": "#/components/schemas/Played"}
    assert "server.played.room" not in messages_of(document, "root") and "InRoom" not in document["components"]["schemas"]
    async with TestClient(server) as client, client.connect() as ws:
        await ws.send_json({"type": "move", "x": 3, "y": 0})
        assert await ws.receive_json() == {"type": "played", "x": 3}


def test_a_model_that_forbids_extra_fields_is_published_with_the_room_fields_merged_in() -> None:
    class Strict(BaseModel):
        """Published to the room, strictly."""

        model_config = ConfigDict(extra="forbid")

        type: Literal["strict"] = "strict"
        x: int

    server = room_server(history_size=10)
    server.routers[0].emits(Strict, room=True)
    document = asyncapi_document(server)
    payload = messages_of(document, "root")["server.strict.room"]["payload"]
    assert payload["additionalProperties"] is False and payload["title"] == "Strict"
    assert list(payload["properties"]) == ["type", "x", "room", "offset", "epoch"]
    assert payload["required"] == ["type", "x", "room", "offset", "epoch"]
    assert document["components"]["schemas"]["Strict"]["properties"].keys() == {"type", "x"}  # the model, as it is
    example = messages_of(document, "root")["server.strict.room"]["examples"][0]["payload"]
    assert example == {"type": "strict", "x": 1, "room": "text", "offset": 1, "epoch": "text"}
    text = typescript_declarations(document)
    assert "export type ServerStrictRoom = {\n  type: \"strict\";\n  x: number;\n" in text


def test_only_models_are_published_to_rooms() -> None:
    router = Router()
    with pytest.raises(RouterError, match="only models are published to rooms"):
        router.emits(IllegalMove, room=True)
    router.emits(Played, room=True)
    router.emits(Played)
    assert router.published == [Played] and router.outgoing == [Played]


async def http_get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    """A plain HTTP/1.1 GET over a raw socket: status, headers, body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    lines = head.decode().split("\r\n")
    fields = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:] if line)}
    body = await asyncio.wait_for(reader.readexactly(int(fields.get("content-length", "0"))), 5)
    writer.close()
    return int(lines[0].split()[1]), fields, body


@pytest.mark.usefixtures("transport")
async def test_server_serves_the_document_and_the_docs_page() -> None:
    server = game_server()
    async with TestClient(server) as client:
        status, headers, body = await http_get(client.port, "/asyncapi.json")
        assert (status, headers["content-type"]) == (200, "application/json")
        assert orjson.loads(body) == orjson.loads(orjson.dumps(asyncapi_document(server)))
        status, headers, page = await http_get(client.port, "/docs")
        assert (status, headers["content-type"]) == (200, "text/html; charset=utf-8")
        assert headers["content-security-policy"] == "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
        assert b'<a href="asyncapi.json">' in page and b"Chess" in page
        async with client.connect("/game") as ws:  # the WebSocket still works, and gets what it declared
            assert (await ws.receive_json())["type"] == "board"


@pytest.mark.usefixtures("transport")
async def test_endpoints_move_and_turn_off() -> None:
    server = game_server(asyncapi_path="/api/contract.json", docs_path="/api/docs/")
    async with TestClient(server) as client:
        assert (await http_get(client.port, "/api/contract.json"))[0] == 200
        status, _, page = await http_get(client.port, "/api/docs/")
        assert status == 200 and b'<a href="../contract.json">' in page
        assert (await http_get(client.port, "/asyncapi.json"))[0] == 426  # now just a path the lobby serves
    server = game_server(asyncapi_path=None, docs_path=None)
    async with TestClient(server) as client:
        assert (await http_get(client.port, "/asyncapi.json"))[0] == 426
        assert (await http_get(client.port, "/docs"))[0] == 426
    only_docs = game_server(asyncapi_path=None)
    async with TestClient(only_docs) as client:
        status, _, page = await http_get(client.port, "/docs")
        assert status == 200 and b"AsyncAPI document (JSON)" not in page


async def test_a_document_that_cannot_be_built_is_a_500_without_details(caplog: pytest.LogCaptureFixture) -> None:
    router = Router()

    @router.message("odd")
    async def on_odd(websocket: WebSocket, message: HoldsOpaque) -> None:
        pass

    server = WebSocketServer()
    server.include_router(router)
    with caplog.at_level(logging.ERROR, logger="aiows"):
        async with TestClient(server) as client:
            status, _, body = await http_get(client.port, "/asyncapi.json")
    assert (status, body) == (500, b"Internal Server Error\n")
    assert "could not build the AsyncAPI document" in caplog.text


def test_paths_are_checked_and_routes_cannot_hide_the_endpoints() -> None:
    with pytest.raises(ValueError, match="docs_path must start with '/'"):
        WebSocketServer(docs_path="docs")
    server = WebSocketServer()
    for path in ("/docs", "/asyncapi.json", "/healthz"):
        with pytest.raises(RouterError, match="pass .*=None or another path"):
            server.add_http_route(path, lambda request: None)  # type: ignore[arg-type,return-value]
    WebSocketServer(docs_path=None).add_http_route("/docs", lambda request: None)  # type: ignore[arg-type,return-value]


APP = """
from typing import Literal

from pydantic import BaseModel

from aiows import BaseMessage, Router, WebSocket, WebSocketServer


class Pong(BaseModel):
    type: Literal["pong"] = "pong"


router = Router()


@router.message("ping", emits=[Pong])
async def on_ping(websocket: WebSocket, message: BaseMessage) -> None:
    await websocket.send_message(Pong())


server = WebSocketServer(title="Ping", version="3.0.0")
server.include_router(router)
"""


def test_commands_write_the_document_and_the_declarations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pingapp.py").write_text(APP)
    monkeypatch.syspath_prepend(str(tmp_path))
    output = tmp_path / "out" / "asyncapi.json"
    assert main(["asyncapi", "pingapp:server", "--app-dir", str(tmp_path), "-o", str(output)]) == 1
    assert "cannot write" in capsys.readouterr().err  # no such directory
    output.parent.mkdir()
    assert main(["asyncapi", "pingapp:server", "--app-dir", str(tmp_path), "-o", str(output)]) == 0
    document = json.loads(output.read_text())
    assert document["info"] == {
        "title": "Ping", "version": "3.0.0",
        "description": 'A WebSocket API: messages are objects routed by their "type" field, application/json in text frames (subprotocol aiows.json).',
    }  # fmt: skip
    assert main(["typescript", "pingapp:server", "--app-dir", str(tmp_path)]) == 0
    assert "export type ServerMessage = Pong | ReplyFrame | ServerError;" in capsys.readouterr().out
    assert main(["typescript", "pingapp:nothing", "--app-dir", str(tmp_path)]) == 1
    assert "aiows: error: module 'pingapp' has no attribute 'nothing'" in capsys.readouterr().err


def test_asyncapi_yaml_is_the_json_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    yaml = pytest.importorskip("yaml", reason="--yaml needs PyYAML (aiows[yaml])")
    (tmp_path / "pingapp.py").write_text(APP)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["asyncapi", "pingapp:server", "--app-dir", str(tmp_path)]) == 0
    document = json.loads(capsys.readouterr().out)
    output = tmp_path / "asyncapi.yaml"
    assert main(["asyncapi", "pingapp:server", "--app-dir", str(tmp_path), "--yaml", "-o", str(output)]) == 0
    text = output.read_text()
    assert text.startswith("asyncapi: 3.0.0\n") and "&id" not in text  # YAML, with no anchors
    assert yaml.safe_load(text) == document
    assert main(["asyncapi", "pingapp:server", "--app-dir", str(tmp_path), "--yaml"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == document


def test_asyncapi_yaml_without_pyyaml_is_a_one_line_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "yaml", None)  # what Python does for a module that is not installed
    output = tmp_path / "asyncapi.yaml"
    assert main(["asyncapi", "nowhere:server", "--yaml", "-o", str(output)]) == 2
    assert capsys.readouterr().err == 'aiows: error: --yaml needs PyYAML: pip install "aiows[yaml]"\n'
    assert not output.exists()
    with pytest.raises(SystemExit) as exited:
        main(["typescript", "nowhere:server", "--yaml"])  # only asyncapi writes YAML
    assert exited.value.code == 2
