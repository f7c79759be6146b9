"""Authenticate with JWTs (PyJWT) through ``AuthMiddleware(verify=...)``.

Needs the ``jwt`` extra: ``pip install "aiows[jwt]"``. Run it with
``python examples/jwt_auth.py [PORT]`` (default 8000); it prints a token to
try, valid for an hour. Connect with ``ws://localhost:8000?token=<jwt>``, the
header ``Authorization: Bearer <jwt>``, or send ``{"type": "auth", "token":
<jwt>}`` as the first message (browsers cannot set headers, and a token in a
URL ends up in proxy logs and browser history).

The key comes from the ``JWT_SECRET`` environment variable; the default below
is for trying the example only.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

try:
    import jwt
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError('this example needs PyJWT: pip install "aiows[jwt]"') from exc

from aiows import AuthMiddleware, BaseMessage, Router, WebSocket, WebSocketServer

JWT_SECRET = os.environ.get("JWT_SECRET", "example-only-jwt-secret-change-me-0123456789")
JWT_ALGORITHMS = ["HS256"]  # pin the algorithms: never let the token choose ("none", RS/HS confusion)


def verify_jwt(token: str) -> dict[str, Any] | None:
    """The claims of a valid, unexpired JWT signed with ``JWT_SECRET``; ``None`` otherwise."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token, JWT_SECRET, algorithms=JWT_ALGORITHMS, options={"require": ["exp", "sub"]}
        )
    except jwt.InvalidTokenError:
        return None
    return claims


def make_jwt(user_id: str, expires_in: float = 3600.0, key: str = JWT_SECRET) -> str:
    """A JWT for ``user_id`` (``sub``) expiring in ``expires_in`` seconds: what your login service issues."""
    return jwt.encode({"sub": user_id, "exp": int(time.time() + expires_in)}, key, algorithm="HS256")


router = Router()


@router.connect()
async def on_connect(websocket: WebSocket) -> None:
    claims = websocket.context["claims"]  # the JWT's claims, set by AuthMiddleware
    await websocket.send_json({"type": "welcome", "user_id": websocket.context["user_id"], "exp": claims["exp"]})


@router.message("whoami")
async def on_whoami(websocket: WebSocket, message: BaseMessage) -> None:
    await websocket.send_json({"type": "you_are", "user_id": websocket.context["user_id"]})


server = WebSocketServer()
server.add_middleware(AuthMiddleware(verify=verify_jwt, first_message_auth=True))
server.include_router(router)

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    print(f"try: ws://localhost:PORT?token={make_jwt('demo-user')}", file=sys.stderr)
    server.run(host="localhost", port=int(sys.argv[1]) if len(sys.argv) > 1 else 8000)
