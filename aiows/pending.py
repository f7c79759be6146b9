"""Server-to-client requests: ``data = await websocket.request(payload, timeout=5.0)``.

The server sends ``payload`` with a ``"ref"`` it chose (an integer, unique on
the connection) and waits for the client's ``{"type": "reply", "ref": REF,
"data": ...}``. The dispatcher (``aiows.dispatch``) takes reply frames out of
the connection's messages and hands them to ``PendingRequests.resolve()``:
they never reach routing or handlers. At most ``limit`` requests wait on one
connection (the server's ``max_pending_requests``, 64 by default), so a client
cannot make the server hold unbounded state.

Interpreted on purpose: no per-message path runs through it (the dispatcher
only calls ``resolve()`` for a reply), and its coroutine is awaited by the
user's handler, interpreted too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from .exceptions import ConnectionError, RequestTimeout, TooManyPendingRequests

if TYPE_CHECKING:
    from .websocket import WebSocket

__all__ = ["DEFAULT_MAX_PENDING_REQUESTS", "PendingRequests", "request_fields"]

#: Requests that may wait for a reply on one connection, unless the server says otherwise.
DEFAULT_MAX_PENDING_REQUESTS = 64


def request_fields(payload: object, ref: int) -> dict[str, Any]:
    """``payload`` (a dict or a pydantic model) as a dict with ``"ref": ref`` added."""
    if isinstance(payload, BaseModel):
        fields = payload.model_dump()
    elif isinstance(payload, Mapping):
        fields = dict(payload)
    else:
        raise TypeError(f"a request is a dict or a pydantic model, not {type(payload).__name__}")
    if "ref" in fields:
        raise ValueError('a request must not have a "ref" of its own: the server chooses it')
    fields["ref"] = ref
    return fields


class PendingRequests:
    """The requests one connection's server is waiting on, by ``ref``."""

    __slots__ = ("futures", "last_ref", "limit")

    def __init__(self, limit: int = DEFAULT_MAX_PENDING_REQUESTS) -> None:
        self.futures: dict[int, asyncio.Future[Any]] = {}
        self.last_ref = 0
        self.limit = limit

    async def request(self, websocket: WebSocket, payload: object, timeout: float) -> Any:
        """Send ``payload`` with a fresh ``ref``; return the ``data`` of the client's reply.

        Raises:
            RequestTimeout: no reply within ``timeout`` seconds (sending included).
            ConnectionError: the connection is closed, or closes before the reply.
            TooManyPendingRequests: ``limit`` requests wait already (raised at once).
        """
        if not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
        if websocket.closed:
            raise ConnectionError("connection closed", websocket.close_code)
        if len(self.futures) >= self.limit:
            raise TooManyPendingRequests(
                f"{self.limit} requests already wait for this client's replies (max_pending_requests)"
            )
        self.last_ref += 1
        ref = self.last_ref
        fields = request_fields(payload, ref)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.futures[ref] = future
        try:
            return await asyncio.wait_for(self._exchange(websocket, fields, future), timeout)
        except asyncio.TimeoutError:
            raise RequestTimeout(f"no reply to request {ref} within {timeout:g} s") from None
        finally:
            self.futures.pop(ref, None)

    async def _exchange(self, websocket: WebSocket, fields: dict[str, Any], future: asyncio.Future[Any]) -> Any:
        await websocket.send_json(fields)
        return await future

    def resolve(self, ref: object, data: object) -> bool:
        """The client's reply for ``ref``: wake its request; ``False`` if no request waits for it."""
        if type(ref) is not int:  # the server's refs are integers (True is not 1 here)
            return False
        future = self.futures.pop(ref, None)
        if future is None or future.done():
            return False
        future.set_result(data)
        return True

    def close(self, close_code: int | None) -> None:
        """The connection is closed: every waiting request raises ``ConnectionError``."""
        futures = list(self.futures.values())
        self.futures.clear()
        for future in futures:
            if not future.done():
                future.set_exception(ConnectionError("connection closed before the reply", close_code))
