"""Signed tokens: issue and verify compact, URL-safe, expiring tokens (HMAC-SHA256).

```python
from aiows.auth import issue_token, verify_token

token = issue_token("user123", SECRET, expires_in=3600)   # put it in ?token= or the auth message
verify_token(token, SECRET)                               # "user123", or None if not valid
```

A token is ``<payload>.<signature>``, both base64url without padding: the
payload is the JSON object ``{"sub": user_id, "exp": unix_seconds}``; the
signature is HMAC-SHA256 of the encoded payload with the server's secret.
Unlike the plain ``<user_id><secret_key>`` form, a token does not contain the
secret, so holding one token does not let anyone forge another user's.

Verification checks the signature in constant time before reading the
payload, and refuses a token at or after its expiry, with no clock-skew
leeway unless you ask for one. Standard library only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

__all__ = [
    "DEFAULT_EXPIRES_IN",
    "InvalidToken",
    "decode_token",
    "issue_token",
    "verify_token",
]

#: Default lifetime of an issued token, in seconds (one hour).
DEFAULT_EXPIRES_IN = 3600.0

#: Longest token ``decode_token`` looks at; longer input is refused before any work.
MAX_TOKEN_LENGTH = 4096


class InvalidToken(ValueError):
    """A token that is malformed, wrongly signed or expired; ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _key(secret: str | bytes) -> bytes:
    key = secret.encode() if isinstance(secret, str) else bytes(secret)
    if not key:
        raise ValueError("the secret must not be empty")
    return key


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    if not text or any(c not in _B64_ALPHABET for c in text):
        raise InvalidToken("malformed")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise InvalidToken("malformed") from None


_B64_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def _sign(payload: str, key: bytes) -> bytes:
    return hmac.new(key, payload.encode("ascii"), hashlib.sha256).digest()


def issue_token(
    user_id: str | int,
    secret: str | bytes,
    expires_in: float = DEFAULT_EXPIRES_IN,
    *,
    claims: Mapping[str, Any] | None = None,
    now: float | None = None,
) -> str:
    """A signed token for ``user_id`` (kept as a string) that expires ``expires_in`` seconds from now.

    ``claims`` adds JSON values to the payload (``"sub"`` and ``"exp"`` are
    reserved); ``now`` (Unix seconds) replaces the current time, for tests.
    The token is URL-safe: it can go in ``?token=`` as is.
    """
    if expires_in <= 0:
        raise ValueError("expires_in must be positive")
    if not str(user_id):
        raise ValueError("user_id must not be empty")
    payload: dict[str, Any] = dict(claims or {})
    if "sub" in payload or "exp" in payload:
        raise ValueError('"sub" and "exp" are set by issue_token, not by claims')
    issued = time.time() if now is None else now
    payload["sub"] = str(user_id)
    payload["exp"] = int(issued + expires_in)
    encoded = _b64encode(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
    return f"{encoded}.{_b64encode(_sign(encoded, _key(secret)))}"


def decode_token(
    token: str, secret: str | bytes, *, leeway: float = 0.0, now: float | None = None
) -> dict[str, Any]:
    """The claims of a valid token (``"sub"``, ``"exp"``, and any extra claims).

    Raises ``InvalidToken`` (``reason`` ``"malformed"``, ``"bad signature"`` or
    ``"expired"``). The signature is compared in constant time and checked
    before the payload is decoded. A token is expired from its ``exp`` second
    on; ``leeway`` seconds of clock skew may be allowed (default none).
    """
    key = _key(secret)
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 1:
        raise InvalidToken("malformed")
    encoded, _, signature = token.partition(".")
    given = _b64decode(signature)
    _b64decode(encoded)  # the payload must be base64url too (checked before the signature for shape only)
    if not hmac.compare_digest(given, _sign(encoded, key)):
        raise InvalidToken("bad signature")
    try:
        payload = json.loads(_b64decode(encoded))
    except ValueError:
        raise InvalidToken("malformed") from None
    if not isinstance(payload, dict):
        raise InvalidToken("malformed")
    subject, expiry = payload.get("sub"), payload.get("exp")
    if not isinstance(subject, str) or not subject:
        raise InvalidToken("malformed")
    if not isinstance(expiry, int) or isinstance(expiry, bool):
        raise InvalidToken("malformed")
    current = time.time() if now is None else now
    if current >= expiry + leeway:
        raise InvalidToken("expired")
    return payload


def verify_token(token: str, secret: str | bytes, *, leeway: float = 0.0, now: float | None = None) -> str | None:
    """The user id of a valid token as a string, or ``None`` if it is malformed, forged or expired."""
    try:
        subject: str = decode_token(token, secret, leeway=leeway, now=now)["sub"]
        return subject
    except InvalidToken:
        return None
