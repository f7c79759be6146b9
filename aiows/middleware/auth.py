"""``AuthMiddleware``: admit a connection only with a valid token."""

from __future__ import annotations

import hmac
from typing import Any

from ..types import ConnectHandler
from ..websocket import WebSocket
from .base import BaseMiddleware

__all__ = ["AUTH_FAILED", "AuthMiddleware", "request_token"]

#: Close code for a missing or invalid token (an HTTP 401 in the 4000 range).
AUTH_FAILED = 4401


def request_token(websocket: WebSocket) -> str | None:
    """The token of a request: the ``token`` query parameter, else ``Authorization: Bearer``."""
    token = websocket.query_params.get("token")
    if token:
        return token
    authorization = websocket.headers.get("Authorization")
    if authorization is not None:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
    return None


class AuthMiddleware(BaseMiddleware):
    """Admit a connection only if it carries a valid token.

    The token comes from the ``token`` query parameter or an
    ``Authorization: Bearer <token>`` header, in the form
    ``<user_id><secret_key>`` (``user123your-secret-key`` is user ``"user123"``).
    It is compared in constant time. On success ``context["user_id"]`` and
    ``context["authenticated"]`` are set before any connect handler runs;
    otherwise the connection is closed with 4401 and no handler runs for it.
    """

    def __init__(self, secret_key: str) -> None:
        if not secret_key:
            raise ValueError("AuthMiddleware needs a non-empty secret key")
        self._secret = secret_key.encode()

    def verify(self, token: str) -> str | None:
        """The user id a token carries, or ``None`` if the token is not valid."""
        raw = token.encode()
        size = len(self._secret)
        if len(raw) <= size:
            return None
        if not hmac.compare_digest(raw[-size:], self._secret):
            return None
        return raw[:-size].decode()

    async def on_connect(self, handler: ConnectHandler, websocket: WebSocket) -> Any:
        token = request_token(websocket)
        user_id = self.verify(token) if token is not None else None
        if user_id is None:
            await websocket.close(AUTH_FAILED, "authentication failed")
            return None
        websocket.context["user_id"] = user_id
        websocket.context["authenticated"] = True
        return await handler(websocket)
