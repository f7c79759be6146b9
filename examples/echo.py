"""An echo server on every path, built from a raw frame handler.

Run it with ``python examples/echo.py [PORT]`` (default 8000). Every text
frame comes back as text and every binary frame as binary, unparsed, up to
16 MiB: what WebSocket protocol conformance suites (such as Autobahn's)
expect from an echo server.
"""

from __future__ import annotations

import sys

from aiows import Router, WebSocket, WebSocketServer

router = Router()


@router.raw()
async def echo(websocket: WebSocket, data: str | bytes) -> None:
    if isinstance(data, str):
        await websocket.send_text(data)
    else:
        await websocket.send_bytes(data)


server = WebSocketServer(max_message_size=16 * 2**20)
server.include_router(router)

if __name__ == "__main__":
    server.run(host="localhost", port=int(sys.argv[1]) if len(sys.argv) > 1 else 8000)
