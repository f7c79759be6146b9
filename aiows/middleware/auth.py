"""``AuthMiddleware``: admit a connection only with a valid token."""

from __future__ import annotations

import asyncio
import hmac
import inspect
import logging
from collections.abc import Mapping
from typing import Any, Callable

from ..auth import verify_token
from ..exceptions import AiowsException
from ..redaction import register_secret
from ..stats import record_failure
from ..types import ConnectHandler
from ..websocket import WebSocket
from .base import BaseMiddleware

__all__ = [
    "AUTH_FAILED",
    "DEFAULT_AUTH_TIMEOUT",
    "MIN_SECRET_BYTES",
    "AuthMiddleware",
    "TokenVerifier",
    "request_token",
]

logger = logging.getLogger("aiows")

#: Close code for a missing or invalid token (an HTTP 401 in the 4000 range).
AUTH_FAILED = 4401

#: Seconds a client has to send ``{"type": "auth", "token": ...}`` with ``first_message_auth``.
DEFAULT_AUTH_TIMEOUT = 10.0

#: Secrets shorter than this (in bytes) get a warning when the middleware is created.
MIN_SECRET_BYTES = 32

#: ``verify=``: takes the token, returns the user id, a claims mapping, or ``None``; may be async.
TokenVerifier = Callable[[str], Any]


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
    """Admit a connection only if it carries a valid token; close the others with 4401.

    The token comes from the ``token`` query parameter or an
    ``Authorization: Bearer <token>`` header, or, with
    ``first_message_auth=True``, from a first message
    ``{"type": "auth", "token": ...}`` sent within ``auth_timeout`` seconds
    (answered with ``{"type": "auth_ok", "user_id": ...}``).

    Accepted tokens:

    - signed tokens from ``aiows.auth.issue_token(user_id, secret_key)``
      (HMAC-SHA256, with an expiry);
    - the plain form ``<user_id><secret_key>`` (``user123your-secret-key`` is
      user ``"user123"``), unless ``allow_plain_tokens=False``. A plain token
      contains the secret, so anyone holding one can forge any user id: turn
      it off once your clients use signed tokens;
    - or, with ``verify=callable``, whatever the callable accepts: it takes
      the token and returns the user id, a claims mapping (its ``"user_id"``
      or ``"sub"`` becomes the user id; the mapping goes to
      ``context["claims"]``) or ``None``; it may be async. It replaces the
      built-in checks.

    Comparisons are constant-time. On success ``context["user_id"]`` and
    ``context["authenticated"]`` are set before any connect handler runs;
    otherwise the connection is closed with 4401 and no handler runs for it.
    """

    def __init__(
        self,
        secret_key: str | bytes | None = None,
        *,
        allow_plain_tokens: bool = True,
        verify: TokenVerifier | None = None,
        first_message_auth: bool = False,
        auth_timeout: float = DEFAULT_AUTH_TIMEOUT,
    ) -> None:
        if verify is not None and secret_key is not None:
            raise ValueError("pass either secret_key or verify to AuthMiddleware, not both")
        if verify is None and not secret_key:
            raise ValueError("AuthMiddleware needs a non-empty secret key (or verify=callable)")
        if auth_timeout <= 0:
            raise ValueError("auth_timeout must be positive")
        self._secret = b""
        if secret_key is not None:
            self._secret = secret_key.encode() if isinstance(secret_key, str) else bytes(secret_key)
            register_secret(self._secret)
            if len(self._secret) < MIN_SECRET_BYTES:
                # Logged, not warnings.warn(): a warning shows the caller's source line, which holds the secret.
                logger.warning(
                    "AuthMiddleware: the secret key is %d bytes long; use at least %d random bytes "
                    "(for example secrets.token_urlsafe(32)) so tokens cannot be guessed",
                    len(self._secret),
                    MIN_SECRET_BYTES,
                )
        self.allow_plain_tokens = allow_plain_tokens
        self.verifier = verify
        self.first_message_auth = first_message_auth
        self.auth_timeout = auth_timeout

    def verify(self, token: str) -> str | None:
        """The user id a token carries by the built-in rules (signed, then plain), or ``None``."""
        if not self._secret:
            return None
        user_id = verify_token(token, self._secret)
        if user_id is not None or not self.allow_plain_tokens:
            return user_id
        try:
            raw = token.encode()
        except UnicodeEncodeError:  # a header byte that is not UTF-8 (kept as a lone surrogate): no secret has it
            return None
        size = len(self._secret)
        if len(raw) <= size:
            return None
        if not hmac.compare_digest(raw[-size:], self._secret):
            return None
        return raw[:-size].decode(errors="replace")

    async def authenticate(self, websocket: WebSocket, token: str) -> bool:
        """Check ``token``; on success store the user id (and claims) in the context."""
        verifier = self.verifier
        if verifier is None:
            result: Any = self.verify(token)
        else:
            try:
                result = verifier(token)
                if inspect.isawaitable(result):
                    result = await result
            except Exception as exc:
                # Only the type: a message could quote the token.
                logger.warning("AuthMiddleware: the verify callable raised %s", type(exc).__name__)
                return False
        if result is None or result is False or result == "":
            return False
        if isinstance(result, Mapping):
            websocket.context["claims"] = dict(result)
            user_id = result.get("user_id", result.get("sub"))
        else:
            user_id = result
        websocket.context["user_id"] = user_id
        websocket.context["authenticated"] = True
        return True

    async def first_message_token(self, websocket: WebSocket) -> str | None:
        """Wait for ``{"type": "auth", "token": ...}``; ``None`` on timeout or any other frame."""
        try:
            message = await asyncio.wait_for(websocket.receive_json(), self.auth_timeout)
        except (asyncio.TimeoutError, AiowsException):
            return None
        if type(message) is not dict or message.get("type") != "auth":
            return None
        token = message.get("token")
        if not isinstance(token, str) or not token:
            return None
        return token

    async def on_connect(self, handler: ConnectHandler, websocket: WebSocket) -> Any:
        token = request_token(websocket)
        first_message = token is None and self.first_message_auth
        if first_message:
            token = await self.first_message_token(websocket)
        if token is None or not await self.authenticate(websocket, token):
            if not websocket.closed:
                record_failure(websocket, "auth_failure")
                await websocket.close(AUTH_FAILED, "authentication failed")
            return None
        if first_message:
            await websocket.send_json({"type": "auth_ok", "user_id": websocket.context["user_id"]})
        return await handler(websocket)
