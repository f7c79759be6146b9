"""An echo server on every path, built from a raw frame handler.

Run it with ``python examples/echo.py [PORT]`` (default 8000). Every text
frame comes back as text and every binary frame as binary, unparsed, up to
16 MiB: what WebSocket protocol conformance suites (such as Autobahn's)
expect from an echo server.

Options (``benchmarks/conformance.py`` uses them): ``--transport picows``
serves on the picows transport, ``--compression deflate`` negotiates
permessage-deflate, ``--host HOST`` binds another address than localhost.
"""

from __future__ import annotations

import argparse

from aiows import Router, WebSocket, WebSocketServer

router = Router()


@router.raw()
async def echo(websocket: WebSocket, data: str | bytes) -> None:
    if isinstance(data, str):
        await websocket.send_text(data)
    else:
        await websocket.send_bytes(data)


def make_server(transport: str = "websockets", compression: str | None = None) -> WebSocketServer:
    app = WebSocketServer(max_message_size=16 * 2**20, transport=transport, compression=compression)
    app.include_router(router)
    return app


server = make_server()

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="An echo server on every path.")
    parser.add_argument("port", nargs="?", type=int, default=8000)
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--transport", default="websockets", choices=("websockets", "picows"))
    parser.add_argument("--compression", default=None, choices=("deflate",))
    args = parser.parse_args()
    server = make_server(args.transport, args.compression)
    server.run(host=args.host, port=args.port)
