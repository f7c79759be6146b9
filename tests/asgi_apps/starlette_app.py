"""Starlette with an HTTP route and aiows mounted at ``/ws``; no lifespan wiring: aiows starts on first use."""

from __future__ import annotations

from chat import chat_app
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route


async def index(request: Request) -> JSONResponse:
    return JSONResponse({"hello": "starlette"})


app = Starlette(routes=[Route("/", index), Mount("/ws", app=chat_app)])
