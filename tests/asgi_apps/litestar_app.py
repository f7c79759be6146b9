"""Litestar with an HTTP route and aiows mounted at ``/ws`` by an ``asgi`` route handler."""

from __future__ import annotations

from chat import chat_app
from litestar import Litestar, asgi, get
from litestar.types import Receive, Scope, Send


@get("/")
async def index() -> dict[str, str]:
    return {"hello": "litestar"}


@asgi("/ws", is_mount=True, copy_scope=True)
async def aiows_mount(scope: Scope, receive: Receive, send: Send) -> None:
    await chat_app(scope, receive, send)


app = Litestar([index, aiows_mount], on_startup=[chat_app.startup], on_shutdown=[chat_app.shutdown])
