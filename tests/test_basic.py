"""Models, router registration and chain composition, without a socket."""

from __future__ import annotations

import importlib.metadata
import os
import warnings
from datetime import datetime
from typing import Any, Literal

import pytest

import aiows
from aiows import (
    AuthMiddleware,
    BaseMessage,
    BaseMiddleware,
    ChatMessage,
    GameActionMessage,
    JoinRoomMessage,
    LoggingMiddleware,
    RateLimitingMiddleware,
    Router,
    WebSocket,
    WebSocketServer,
)
from aiows.chain import MessageHandlerStep, MessageMiddlewareStep, overrides
from aiows.exceptions import (
    AiowsException,
    ConnectionError,
    InvalidJSONError,
    InvalidMessageError,
    MessageValidationError,
    RouterError,
    UnknownMessageTypeError,
)


def test_build_is_the_expected_one() -> None:
    expected = os.environ.get("AIOWS_EXPECT_COMPILED")
    if expected is None:
        pytest.skip("set AIOWS_EXPECT_COMPILED=1 or 0 to check which build is installed")
    assert aiows.COMPILED is (expected == "1")


def test_version_matches_metadata() -> None:
    assert aiows.__version__ == importlib.metadata.version("aiows")


def test_base_message_defaults_timestamp_and_keeps_extra_fields() -> None:
    message = BaseMessage(type="custom", anything=[1, 2])  # type: ignore[call-arg]
    assert isinstance(message.timestamp, datetime)
    assert message.timestamp.tzinfo is not None
    assert message.model_dump()["anything"] == [1, 2]


def test_dict_works_without_deprecation_warning() -> None:
    message = ChatMessage(text="hi", user_id=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert message.dict() == message.model_dump()
    assert message.dict()["type"] == "chat"


def test_builtin_models() -> None:
    chat = ChatMessage.model_validate({"type": "chat", "text": "hello", "user_id": 7})
    assert (chat.text, chat.user_id) == ("hello", 7)
    join = JoinRoomMessage.model_validate({"type": "join_room", "room_id": "r1", "user_name": "ann"})
    assert (join.room_id, join.user_name) == ("r1", "ann")
    move = GameActionMessage.model_validate({"type": "game_action", "action": "move", "coordinates": [3, 4]})
    assert move.coordinates == (3, 4)
    with pytest.raises(ValueError):
        ChatMessage.model_validate({"type": "join_room", "text": "x", "user_id": 1})


def test_exceptions_hierarchy_and_codes() -> None:
    for cls in (ConnectionError, InvalidJSONError, InvalidMessageError, MessageValidationError, RouterError):
        assert issubclass(cls, AiowsException)
    assert MessageValidationError("bad", [{"loc": ["x"], "msg": "m", "type": "t"}]).errors[0]["loc"] == ["x"]
    assert UnknownMessageTypeError("zzz").code == "unknown_type"
    assert InvalidJSONError().code == "invalid_json"


def test_handlers_must_be_async() -> None:
    router = Router()
    with pytest.raises(RouterError, match="async def"):

        @router.message("chat")
        def not_async(websocket: WebSocket, message: BaseMessage) -> None: ...


def test_duplicate_handlers_in_one_router_are_rejected() -> None:
    router = Router()

    @router.message("chat")
    async def first(websocket: WebSocket, message: BaseMessage) -> None: ...

    with pytest.raises(RouterError, match="already has a handler"):

        @router.message("chat")
        async def second(websocket: WebSocket, message: BaseMessage) -> None: ...

    @router.message()
    async def catch_all(websocket: WebSocket, message: BaseMessage) -> None: ...

    with pytest.raises(RouterError, match="catch-all"):

        @router.message()
        async def another(websocket: WebSocket, message: BaseMessage) -> None: ...


def test_router_tree_rejects_cycles_and_second_parents() -> None:
    root, child, grandchild = Router(), Router(), Router()
    root.include_router(child)
    child.include_router(grandchild)
    with pytest.raises(RouterError, match="itself"):
        root.include_router(root)
    with pytest.raises(RouterError, match="cycle"):
        grandchild.include_router(root)
    with pytest.raises(RouterError, match="already included"):
        Router().include_router(child)
    assert root.walk() == [root, child, grandchild]
    server = WebSocketServer()
    with pytest.raises(RouterError, match="already included"):
        server.include_router(child)
    server.include_router(root)
    with pytest.raises(RouterError, match="already included"):
        server.include_router(root)


def test_middleware_must_be_basemiddleware() -> None:
    # The compiled build rejects the wrong type at the call boundary: a TypeError either way.
    with pytest.raises(TypeError, match="BaseMiddleware"):
        WebSocketServer().add_middleware(object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="BaseMiddleware"):
        Router().add_middleware(object())  # type: ignore[arg-type]


class Passthrough(BaseMiddleware):
    async def on_message(self, handler: Any, websocket: WebSocket, message: Any) -> Any:
        return await handler(websocket, message)


class ConnectOnly(BaseMiddleware):
    def __init__(self) -> None:  # no super().__init__() on purpose
        self.seen = 0

    async def on_connect(self, handler: Any, websocket: WebSocket) -> Any:
        self.seen += 1
        return await handler(websocket)


def test_hooks_not_overridden_are_skipped() -> None:
    assert overrides(Passthrough(), "on_message")
    assert not overrides(Passthrough(), "on_connect")
    assert overrides(ConnectOnly(), "on_connect")
    assert not overrides(ConnectOnly(), "on_message")
    assert ConnectOnly().seen == 0
    assert overrides(AuthMiddleware("s"), "on_connect")
    assert not overrides(AuthMiddleware("s"), "on_message")
    assert overrides(RateLimitingMiddleware(), "on_message")
    assert all(overrides(LoggingMiddleware(), hook) for hook in ("on_connect", "on_message", "on_disconnect"))


def test_chains_are_composed_once_with_only_overriding_middleware() -> None:
    router = Router()
    router.add_middleware(Passthrough())

    @router.message("chat")
    async def on_chat(websocket: WebSocket, message: ChatMessage) -> None: ...

    server = WebSocketServer()
    server.add_middleware(ConnectOnly())  # no on_message: not in the message chain
    server.add_middleware(Passthrough())
    server.include_router(router)
    table = server.dispatcher().default
    assert table is not None
    step = table.routes["chat"]
    assert isinstance(step, MessageMiddlewareStep)
    assert isinstance(step.next_step, MessageMiddlewareStep)
    assert isinstance(step.next_step.next_step, MessageHandlerStep)
    assert table.fallback is None
    assert table.connect_passes == 2  # the server's chain and the one router


class Shout(BaseMessage):
    type: Literal["shout"] = "shout"
    volume: int


def test_first_router_wins_and_catch_all_comes_after_typed_handlers() -> None:
    first, second, nested = Router(), Router(), Router()
    second.include_router(nested)

    @first.message()
    async def first_catch_all(websocket: WebSocket, message: BaseMessage) -> None: ...

    @first.message("shout")
    async def first_shout(websocket: WebSocket, message: Shout) -> None: ...

    @second.message("shout")
    async def second_shout(websocket: WebSocket, message: Shout) -> None: ...

    @nested.message("whisper")
    async def nested_whisper(websocket: WebSocket, message: BaseMessage) -> None: ...

    server = WebSocketServer()
    server.include_router(first)
    server.include_router(second)
    table = server.dispatcher().default
    assert table is not None
    shout = table.routes["shout"]
    assert isinstance(shout, MessageHandlerStep) and shout.handler is first_shout
    whisper = table.routes["whisper"]
    assert isinstance(whisper, MessageHandlerStep) and whisper.handler is nested_whisper
    fallback = table.fallback
    assert isinstance(fallback, MessageHandlerStep) and fallback.handler is first_catch_all


def test_message_handler_needs_a_message_parameter() -> None:
    router = Router()

    @router.message("chat")
    async def only_websocket(websocket: WebSocket) -> None: ...  # type: ignore[type-var]

    server = WebSocketServer()
    server.include_router(router)
    with pytest.raises(RouterError, match=r"\(websocket, message\)"):
        server.dispatcher()


def test_compression_option_is_checked() -> None:
    with pytest.raises(ValueError, match="compression"):
        WebSocketServer(compression="gzip")
