"""Plain HTTP on the WebSocket port: the health endpoint and user routes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import orjson

__all__ = ["HTTPRequest", "HTTPResponse", "HTTPHandler", "json_response"]


@dataclass(frozen=True)
class HTTPRequest:
    """A plain HTTP GET request: ``path`` without the query, ``query`` and ``headers``."""

    path: str
    query: dict[str, str]
    headers: Any


@dataclass
class HTTPResponse:
    """What an HTTP route answers: status, body and content type."""

    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


#: ``def handler(request) -> HTTPResponse`` for ``server.add_http_route()`` (synchronous).
HTTPHandler = Callable[[HTTPRequest], HTTPResponse]


def json_response(data: object, status: int = 200) -> HTTPResponse:
    """An ``application/json`` response encoded with orjson."""
    return HTTPResponse(status, orjson.dumps(data), "application/json")
