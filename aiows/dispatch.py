"""The hot path: decode a frame, find its route, run its chain, answer errors.

``Dispatcher`` also runs each connection's life: the connect chain, then one
message at a time in arrival order, then the disconnect chain.
"""

from __future__ import annotations

import logging
from collections.abc import Coroutine
from typing import Any

import orjson

from .chain import ConnectStep, DisconnectStep, MessageStep
from .exceptions import AiowsException, MessageValidationError
from .transport import OPEN, Connection
from .websocket import WebSocket

__all__ = ["Dispatcher", "disconnect_reason"]

logger = logging.getLogger("aiows")


def disconnect_reason(code: int | None, reason: str | None) -> str:
    """The disconnect handlers' ``reason``: ``"1000 (bye)"``, or ``"1006"`` without a reason."""
    if code is None:
        code = 1006
    return f"{code} ({reason})" if reason else str(code)


class Dispatcher:
    """Routes messages of every connection through chains composed once.

    ``connections`` holds the admitted connections that are still open.
    """

    def __init__(
        self,
        routes: dict[str, MessageStep],
        fallback: MessageStep | None,
        connect: ConnectStep,
        disconnect: DisconnectStep,
        connect_passes: int,
    ) -> None:
        self.routes = routes
        self.fallback = fallback
        self.connect = connect
        self.disconnect = disconnect
        self.connect_passes = connect_passes
        self.connections: set[WebSocket] = set()

    async def serve(self, connection: Connection) -> None:
        """Run one connection from connect to disconnect."""
        websocket = WebSocket(connection)
        if not await self.admit(websocket):
            return
        self.connections.add(websocket)
        try:
            while connection.state == OPEN:
                raw = await connection.recv(decode=False)
                await self.handle(websocket, raw)
        except Exception:
            if not websocket.closed:
                logger.exception("connection failed")
        finally:
            self.connections.discard(websocket)
            await connection.wait_closed()
            reason = disconnect_reason(connection.close_code, connection.close_reason)
            try:
                await self.disconnect.call(websocket, reason)
            except Exception:
                logger.exception("disconnect middleware failed")

    async def admit(self, websocket: WebSocket) -> bool:
        """Run the connect chain; ``True`` if every part of it let the connection in."""
        try:
            await self.connect.call(websocket)
        except Exception:
            if websocket.closed:
                return False  # the client left during the connect chain
            logger.exception("connect handler or middleware failed")
            await websocket.close(1011, "internal error")
            return False
        if websocket.closed:
            return False
        if websocket.connect_passes != self.connect_passes:
            await websocket.close(1008, "connection refused")
            return False
        return True

    async def handle(self, websocket: WebSocket, raw: bytes | str) -> None:
        """Dispatch one frame; every failure becomes one error frame."""
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            await send_error(websocket, "invalid_json", "message is not valid JSON")
            return
        if type(data) is not dict:
            await send_error(websocket, "invalid_message", "message must be a JSON object")
            return
        message_type = data.get("type")
        if not isinstance(message_type, str):
            await send_error(websocket, "invalid_message", 'message must have a string "type"')
            return
        step = self.routes.get(message_type)
        if step is None:
            step = self.fallback
            if step is None:
                await send_error(websocket, "unknown_type", f"no handler for message type {message_type!r}")
                return
        websocket.message_size = len(raw)
        try:
            await step.call(websocket, data)
        except MessageValidationError as exc:
            await send_error(websocket, exc.code, exc.message, exc.errors)
        except AiowsException as exc:
            if websocket.closed:
                raise  # this client is gone: end its loop
            await send_error(websocket, exc.code, exc.message)
        except Exception:
            if websocket.closed:
                raise
            await internal_error(websocket, message_type)


def internal_error(websocket: WebSocket, message_type: str) -> Coroutine[Any, Any, None]:
    """Log the exception being handled with its traceback; tell the client nothing more (await the result)."""
    logger.exception("handler for message type %r failed", message_type)
    return send_error(websocket, "internal_error", "internal server error")


def send_error(
    websocket: WebSocket, code: str, message: str, errors: list[dict[str, Any]] | None = None
) -> Coroutine[Any, Any, None]:
    """One ``{"type": "error", "code", "message"}`` frame (with ``errors`` for validation), sent when awaited.

    A plain function returning the send's coroutine: a compiled coroutine in
    between would cost more than it saves (measured).
    """
    frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if errors is not None:
        frame["errors"] = errors
    return websocket.send_json(frame)
