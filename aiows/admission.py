"""Admission at the handshake: plain HTTP on the WebSocket port, paths, origins, connection limits."""

from __future__ import annotations

import logging
import posixpath
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from .http import HTTPRequest, HTTPResponse, json_response
from .transports.base import Gate, HandshakeRequest, Link, Reply

if TYPE_CHECKING:
    from .dispatch import Dispatcher
    from .server import WebSocketServer

__all__ = ["ConnectionLimiter", "ServerGate", "text_reply"]

logger = logging.getLogger("aiows")

#: Seconds a reserved slot may wait for its connection to start before it counts as abandoned.
ABANDONED_AFTER = 30.0


class ConnectionLimiter:
    """Counts connections from handshake to close, and refuses those over a limit.

    ``reserve()`` is called when a handshake request arrives and returns the
    HTTP status to refuse it with (503 for the total, 429 per IP) or ``None``;
    ``release()`` frees the slot when the connection ends or its handshake
    fails. A slot whose handshake vanished without either is reclaimed once it
    is older than ``ABANDONED_AFTER`` seconds and a limit is reached.
    """

    def __init__(
        self,
        max_connections: int | None = None,
        max_connections_per_ip: int | None = None,
        max_connections_per_ip_per_minute: int | None = None,
    ) -> None:
        self.max_connections = max_connections
        self.max_connections_per_ip = max_connections_per_ip
        self.max_connections_per_ip_per_minute = max_connections_per_ip_per_minute
        self.slots: dict[object, tuple[str, float]] = {}
        self.started: set[object] = set()
        self.per_ip: dict[str, int] = {}
        self.recent: dict[str, deque[float]] = {}

    def reserve(self, key: object, ip: str) -> int | None:
        """Take a slot for connection ``key`` from ``ip``; the refusal status if over a limit."""
        now = time.monotonic()
        if self.max_connections is not None and len(self.slots) >= self.max_connections:
            self._reclaim(now)
            if len(self.slots) >= self.max_connections:
                return 503
        if self.max_connections_per_ip is not None and self.per_ip.get(ip, 0) >= self.max_connections_per_ip:
            self._reclaim(now)
            if self.per_ip.get(ip, 0) >= self.max_connections_per_ip:
                return 429
        if self.max_connections_per_ip_per_minute is not None and not self._admit_rate(ip, now):
            return 429
        self.slots[key] = (ip, now)
        self.per_ip[ip] = self.per_ip.get(ip, 0) + 1
        return None

    def start(self, key: object) -> None:
        """The connection ``key`` completed its handshake and is being served."""
        if key in self.slots:
            self.started.add(key)

    def release(self, key: object) -> None:
        """Free the slot of connection ``key`` (idempotent)."""
        slot = self.slots.pop(key, None)
        self.started.discard(key)
        if slot is not None:
            ip = slot[0]
            remaining = self.per_ip[ip] - 1
            if remaining:
                self.per_ip[ip] = remaining
            else:
                del self.per_ip[ip]

    def _reclaim(self, now: float) -> None:
        abandoned = [
            key for key, (_, since) in self.slots.items() if key not in self.started and now - since > ABANDONED_AFTER
        ]
        for key in abandoned:
            self.release(key)

    def _admit_rate(self, ip: str, now: float) -> bool:
        limit = self.max_connections_per_ip_per_minute
        assert limit is not None
        window = self.recent.get(ip)
        if window is None:
            if len(self.recent) >= 10_000:  # bound memory: forget addresses idle for a minute
                for idle in [addr for addr, times in self.recent.items() if now - times[-1] >= 60.0]:
                    del self.recent[idle]
            window = self.recent[ip] = deque()
        while window and now - window[0] >= 60.0:
            window.popleft()
        if len(window) >= limit:
            return False
        window.append(now)
        return True


class ServerGate(Gate):
    """A running server's handshake checks: plain HTTP (health, routes), paths, drain, origins, limits."""

    def __init__(self, app: WebSocketServer, dispatcher: Dispatcher) -> None:
        self.app = app
        self.dispatcher = dispatcher
        options = app.options
        self.origins = options.origins
        self.health_path = options.health_path
        self.health_detail = options.health_detail
        self.contract_paths = {path for path in (options.asyncapi_path, options.docs_path) if path is not None}
        self.contract: dict[str, HTTPResponse] = {}  # built on the first request for it
        limits = (options.max_connections, options.max_connections_per_ip, options.max_connections_per_ip_per_minute)
        self.limiter = ConnectionLimiter(*limits) if any(limit is not None for limit in limits) else None

    def admit(self, request: HandshakeRequest, upgrade: bool, key: object, peer: Any) -> Reply | None:
        url = urlsplit(request.path)
        dispatcher = self.dispatcher
        if not upgrade:
            return self.http(url.path, url.query, request)
        if dispatcher.draining:
            return text_reply(503, "Server is shutting down.\n")
        if dispatcher.table_for(url.path) is None:
            return text_reply(404, "No WebSocket endpoint at this path.\n")
        if self.origins is not None:
            origin = request.headers.get("Origin")
            if origin is not None and origin not in self.origins:
                return text_reply(403, "Origin not allowed.\n")
        limiter = self.limiter
        if limiter is None:
            return None
        ip = dispatcher.client_ip(peer, request.headers) if peer is not None else ""
        refusal = limiter.reserve(key, ip)
        if refusal is not None:
            logger.info("refused a connection from %s: HTTP %d", ip or "a client", refusal)
            return text_reply(refusal, "Too many connections.\n" if refusal == 429 else "Server is at capacity.\n")
        return None

    def release(self, key: object) -> None:
        if self.limiter is not None:
            self.limiter.release(key)

    def opened(self, link: Link, key: object) -> None:
        if self.limiter is not None:
            self.limiter.start(key)
        self.dispatcher.open(link)

    def http(self, path: str, query: str, request: HandshakeRequest) -> Reply:
        """The answer to a plain HTTP request (no WebSocket upgrade)."""
        app = self.app
        dispatcher = self.dispatcher
        if self.health_path is not None and path == self.health_path:
            health: dict[str, object] = {
                "status": "draining" if dispatcher.draining else "ok",
                "connections": len(dispatcher.connections),
            }
            if self.health_detail:
                health["stats"] = app.stats().as_dict()
            response = json_response(health, 503 if dispatcher.draining else 200)
        elif app.metrics is not None and path == app.options.metrics_path:
            body, content_type = app.metrics.render()
            return Reply(200, body, [("Content-Type", content_type)])
        elif path in app.http_routes:
            route: Callable[[HTTPRequest], object] = app.http_routes[path]  # user code: check what it returns
            try:
                answer = route(HTTPRequest(path, dict(parse_qsl(query)), request.headers))
            except Exception:
                logger.exception("HTTP route %r failed", path)
                return text_reply(500, "Internal Server Error\n")
            if not isinstance(answer, HTTPResponse):
                logger.error("HTTP route %r must return an HTTPResponse synchronously", path)
                return text_reply(500, "Internal Server Error\n")
            response = answer
        elif path in self.contract_paths:
            response = self.contract_page(path)
        elif dispatcher.table_for(path) is not None:
            reply = text_reply(426, "Failed to open a WebSocket connection: not a WebSocket request.\n")
            reply.headers.append(("Upgrade", "websocket"))
            return reply
        else:
            return text_reply(404, "Not Found\n")
        return Reply(response.status, response.body, [("Content-Type", response.content_type), *response.headers.items()])

    def contract_page(self, path: str) -> HTTPResponse:
        """The AsyncAPI document or the docs page: built once, on the first request for either."""
        if not self.contract:
            from .contract.asyncapi import asyncapi_document
            from .contract.docs import CONTENT_SECURITY_POLICY, docs_page

            options = self.app.options
            try:
                document = asyncapi_document(self.app)
            except Exception:
                logger.exception("could not build the AsyncAPI document")
                return HTTPResponse(500, b"Internal Server Error\n")
            nosniff = {"X-Content-Type-Options": "nosniff"}
            if options.asyncapi_path is not None:
                self.contract[options.asyncapi_path] = HTTPResponse(
                    200, orjson.dumps(document), "application/json", nosniff
                )
            if options.docs_path is not None:
                link = options.asyncapi_path
                if link is not None:
                    link = posixpath.relpath(link, posixpath.dirname(options.docs_path))
                page = docs_page(document, link).encode()
                headers = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, **nosniff}
                self.contract[options.docs_path] = HTTPResponse(200, page, "text/html; charset=utf-8", headers)
        return self.contract[path]


def text_reply(status: int, text: str) -> Reply:
    """A plain-text HTTP reply."""
    return Reply(status, text.encode(), [("Content-Type", "text/plain; charset=utf-8")])
