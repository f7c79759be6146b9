"""The README's MessagePack browser snippet, as written, in headless Chromium against a real server.

The page is the README's ``html`` block (section "Contract"); ``/msgpack.min.js`` is
``@msgpack/msgpack``'s browser build from the npm registry (pinned), and ``/aiows.js`` the client
every aiows server serves. The server sees a MessagePack connection and the page logs the answer.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from doc_blocks import README, blocks, section
from npm import npm_packages
from test_chat_page import WAIT, browser  # noqa: F401  (the fixture: headless Chromium under chromedriver)

from aiows import ChatMessage, Router, WebSocket, WebSocketServer
from aiows.http import HTTPRequest, HTTPResponse
from aiows.testing import TestClient

#: @msgpack/msgpack, pinned.
MSGPACK = {"@msgpack/msgpack": "3.1.3"}


def readme_snippet() -> str:
    """The ``html`` block of the README's "Contract" section."""
    text = section(README, "## Contract")
    (block,) = [block for block in blocks(README) if block.language == "html" and block.code in text]
    return block.code


async def test_the_readmes_browser_snippet_speaks_messagepack(browser: Any) -> None:  # noqa: F811
    library = (npm_packages(MSGPACK) / "node_modules" / "@msgpack" / "msgpack" / "dist.umd" / "msgpack.min.js").read_bytes()
    page = f"<!doctype html><html><head><title>msgpack</title></head><body>{readme_snippet()}</body></html>"
    codecs: list[str] = []

    router = Router()

    @router.message("chat")  # the README's quick start handler
    async def on_chat(websocket: WebSocket, message: ChatMessage) -> None:
        codecs.append(websocket.codec.name)
        await websocket.send_json({"type": "chat", "text": message.text.upper()})

    server = WebSocketServer(codecs=("json", "msgpack"))
    server.include_router(router)

    def serve_page(request: HTTPRequest) -> HTTPResponse:
        return HTTPResponse(200, page.encode(), "text/html; charset=utf-8")

    def serve_library(request: HTTPRequest) -> HTTPResponse:
        return HTTPResponse(200, library, "text/javascript")

    server.add_http_route("/", serve_page)
    server.add_http_route("/msgpack.min.js", serve_library)
    async with TestClient(server) as client:
        await asyncio.to_thread(browser.get, f"http://127.0.0.1:{client.port}/")
        logged: list[str] = []
        end = time.monotonic() + WAIT
        while not any("chat" in line and "HI" in line for line in logged):
            if time.monotonic() > end:
                pytest.fail(f"the page logged no answer within {WAIT} s: {logged}")
            await asyncio.sleep(0.1)
            logged += [entry["message"] for entry in await asyncio.to_thread(browser.get_log, "browser")]
        assert codecs == ["msgpack"]  # the server decoded MessagePack (and answered in it)
        assert not [line for line in logged if "error" in line.lower()], logged
