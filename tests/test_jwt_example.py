"""examples/jwt_auth.py: JWTs verified with PyJWT (the ``aiows[jwt]`` extra) through ``verify=``."""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import json
from pathlib import Path
from types import ModuleType

import jwt  # the aiows[jwt] extra; CI installs it with the test extra
import pytest
from websockets.exceptions import ConnectionClosed

from aiows.testing import TestClient, TestConnection

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "jwt_auth.py"


@pytest.fixture(scope="module")
def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("jwt_auth_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def rejected(ws: TestConnection) -> bool:
    with contextlib.suppress(ConnectionClosed):
        await ws.send_json({"type": "whoami"})
    return await ws.wait_closed() == 4401


async def test_a_valid_jwt_in_the_url_header_or_first_message(example: ModuleType) -> None:
    token = example.make_jwt("alice")
    async with TestClient(example.server) as client:
        async with client.connect(f"/?token={token}") as ws:
            welcome = await ws.receive_json()
            assert welcome["user_id"] == "alice" and welcome["exp"] == jwt.decode(token, options={"verify_signature": False})["exp"]
            await ws.send_json({"type": "whoami"})
            assert await ws.receive_json() == {"type": "you_are", "user_id": "alice"}
        async with client.connect(headers={"Authorization": f"Bearer {token}"}) as ws:
            assert (await ws.receive_json())["user_id"] == "alice"
        async with client.connect() as ws:
            await ws.send_json({"type": "auth", "token": token})
            assert await ws.receive_json() == {"type": "auth_ok", "user_id": "alice"}
            assert (await ws.receive_json())["type"] == "welcome"


async def test_expired_foreign_unsigned_or_incomplete_jwts_close_4401(example: ModuleType) -> None:
    header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "typ": "JWT"}).encode()).rstrip(b"=").decode()
    claims = base64.urlsafe_b64encode(json.dumps({"sub": "admin", "exp": 2**40}).encode()).rstrip(b"=").decode()
    bad = [
        example.make_jwt("alice", expires_in=-10),  # expired
        example.make_jwt("alice", key="someone-elses-key-0123456789abcdef0123"),
        f"{header}.{claims}.",  # alg "none"
        jwt.encode({"sub": "alice"}, example.JWT_SECRET, algorithm="HS256"),  # no exp
        "not-a-jwt",
    ]
    async with TestClient(example.server) as client:
        for token in bad:
            async with client.connect(f"/?token={token}") as ws:
                assert await rejected(ws), token
            async with client.connect() as ws:
                await ws.send_json({"type": "auth", "token": token})
                assert await rejected(ws), token
