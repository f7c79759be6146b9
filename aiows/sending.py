"""The awaitable sends of ``WebSocket`` (``send_json``, ``send_text``...).

Interpreted on purpose: the handler that awaits these coroutines is
interpreted too, so no await crosses into compiled code and back (each
crossing costs about 50 ns, measured). The frame is written by the await,
at once unless the connection is corked; the await returns then, or waits
while the client is slow to read.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from .exceptions import ConnectionError
from .transports.base import CLOSED

if TYPE_CHECKING:
    from .websocket import WebSocket

__all__ = ["send_frame"]


async def send_frame(websocket: WebSocket, payload: bytes, text: bool) -> None:
    """Send ``payload`` as one text (``text=True``) or binary frame on ``websocket``'s connection.

    Waits while the client is slow to read; with the server's ``send_timeout``
    it gives up after that many seconds and closes the connection with 1013.
    A send on a closed connection raises ``aiows.exceptions.ConnectionError``.
    """
    link = websocket.link
    if not link.write(payload, text):
        raise ConnectionError("connection closed", websocket.close_code)
    if not link.paused:
        return
    drained = link.drain()
    if drained is None:
        return
    timeout = websocket.send_timeout
    try:
        if timeout is None:
            await asyncio.shield(drained)
        else:
            await asyncio.wait_for(asyncio.shield(drained), timeout)
    except asyncio.TimeoutError:
        websocket.close_soon(1013, "send timeout")
        raise ConnectionError("send timed out: the client is not reading", 1013) from None
    if link.state == CLOSED:  # gone while the frame waited in the socket's buffer
        raise ConnectionError("connection closed", websocket.close_code)
