"""Smoke test for an installed aiows wheel: the build is the expected one and a real server answers a real client.

Run it outside the source tree, against the installed package (``.ci/wheels.sh`` and cibuildwheel's
``test-command`` do)::

    python tests/wheel_smoke.py            # the wheel must be compiled (aiows.COMPILED)
    python tests/wheel_smoke.py --pure     # the py3-none-any wheel: aiows.COMPILED must be False

It starts a ``WebSocketServer`` on 127.0.0.1 (port 0), connects with websockets' asyncio client, sends
one message and checks the reply. Exit status 0 on success.
"""

from __future__ import annotations

import asyncio
import json
import platform
import sys
from pathlib import Path

from websockets.asyncio.client import connect

import aiows
from aiows import BaseMessage, Router, WebSocket, WebSocketServer


async def round_trip() -> dict[str, object]:
    """Serve a router with one handler and return its reply to one message."""
    router = Router()

    @router.message("ping")
    async def on_ping(websocket: WebSocket, message: BaseMessage) -> None:
        await websocket.send_json({"type": "pong", "echo": message.model_dump(exclude={"timestamp"})})

    server = WebSocketServer()
    server.include_router(router)
    async with server.serve("127.0.0.1", 0) as running:
        async with connect(running.url) as client:
            await client.send(json.dumps({"type": "ping", "n": 1}))
            reply: dict[str, object] = json.loads(await asyncio.wait_for(client.recv(), timeout=10))
    return reply


def main(argv: list[str]) -> int:
    expect_compiled = "--pure" not in argv
    source = Path(aiows.__file__).resolve().parent
    print(
        f"aiows {aiows.__version__} from {source}, compiled: {aiows.COMPILED}; "
        f"Python {platform.python_version()} ({platform.machine()}, {sys.platform})"
    )
    if aiows.COMPILED is not expect_compiled:
        print(f"FAIL: expected compiled={expect_compiled}")
        return 1
    reply = asyncio.run(round_trip())
    expected = {"type": "pong", "echo": {"type": "ping", "n": 1}}
    if reply != expected:
        print(f"FAIL: the server answered {reply!r}, expected {expected!r}")
        return 1
    print("OK: a real server answered a real client")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
