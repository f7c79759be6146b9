"""``OpenTelemetryMiddleware``: a span per connection and a child span per message.

Needs ``pip install "aiows[otel]"`` (opentelemetry-api; your application sets
up the SDK and an exporter):

```python
from aiows import OpenTelemetryMiddleware, WebSocketServer

server = WebSocketServer()
server.add_middleware(OpenTelemetryMiddleware())  # first, so its spans hold the others' work
```

The connection span (``websocket.connection``, kind SERVER) runs from the
handshake to the TCP close and continues the trace of a ``traceparent``
header sent with the handshake (the globally configured propagator). Its
attributes: ``url.path`` (never the query string), ``client.address``,
``client.port``, ``enduser.id`` (``context["user_id"]``, once known),
``aiows.transport`` (``asgi`` under ``server.asgi()``) and, at the end, ``websocket.close_code``. Each message
that reaches the middleware gets a child span named after its type (kind
CONSUMER), current while its handler runs, with ``aiows.message.size``,
``aiows.outcome`` (``ok`` or ``error``) and ``aiows.error.code`` (the error
frame's code); a failure sets the span's status to ERROR. Messages refused
before routing (invalid JSON, unknown types) reach no middleware: the metrics
count them.
"""

from __future__ import annotations

import asyncio
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider

from .. import __version__
from ..exceptions import MessageValidationError
from ..transports.asgi import ASGILink
from ..types import ConnectHandler, JSONObject, MessageNext
from ..websocket import WebSocket
from .base import BaseMiddleware
from .logging import error_code

__all__ = ["CONNECTION_SPAN", "OpenTelemetryMiddleware"]

#: The name of every connection's span.
CONNECTION_SPAN = "websocket.connection"


class OpenTelemetryMiddleware(BaseMiddleware):
    """Trace each connection and each of its messages (see the module's documentation).

    ``tracer_provider``: the provider to take the tracer from (default: the
    global one, ``opentelemetry.trace.set_tracer_provider``).
    """

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        self.tracer = trace.get_tracer("aiows", __version__, tracer_provider=tracer_provider)
        #: The open connections' spans (each ends, and is forgotten, when its connection closes).
        self.spans: dict[WebSocket, Span] = {}

    async def on_connect(self, handler: ConnectHandler, websocket: WebSocket) -> Any:
        parent = propagate.extract(websocket.headers)  # a traceparent sent with the handshake
        address = websocket.remote_address
        attributes: dict[str, Any] = {"url.path": websocket.path, "client.address": websocket.client_ip}
        if isinstance(address, tuple) and len(address) >= 2 and isinstance(address[1], int):
            attributes["client.port"] = address[1]
        server = websocket._server
        if isinstance(websocket.link, ASGILink):
            attributes["aiows.transport"] = "asgi"
        elif server is not None:
            attributes["aiows.transport"] = server.options.transport
        span = self.tracer.start_span(CONNECTION_SPAN, context=parent, kind=SpanKind.SERVER, attributes=attributes)
        self.spans[websocket] = span
        websocket.link.closed_future().add_done_callback(lambda _: self._closed(websocket))
        try:
            with trace.use_span(span, end_on_exit=False):
                return await handler(websocket)
        finally:
            self._user(span, websocket)

    def _user(self, span: Span, websocket: WebSocket) -> None:
        user_id = websocket.context.get("user_id")
        if user_id is not None:
            span.set_attribute("enduser.id", str(user_id))

    def _closed(self, websocket: WebSocket) -> None:
        span = self.spans.pop(websocket, None)
        if span is None:
            return
        self._user(span, websocket)
        code = websocket.close_code
        if code is not None:
            span.set_attribute("websocket.close_code", code)
        span.end()

    async def on_message(self, handler: MessageNext, websocket: WebSocket, message: JSONObject) -> Any:
        connection = self.spans.get(websocket)
        parent = trace.set_span_in_context(connection) if connection is not None else None
        name = message.get("type")
        with self.tracer.start_as_current_span(
            name if isinstance(name, str) else "message",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={"aiows.message.size": websocket.message_size},
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                result = await handler(websocket, message)
            except asyncio.CancelledError:
                span.set_attribute("aiows.outcome", "cancelled")
                raise
            except Exception as exc:
                code = error_code(exc)
                span.set_attribute("aiows.outcome", "error")
                span.set_attribute("aiows.error.code", code)
                span.set_status(Status(StatusCode.ERROR, code))
                if not isinstance(exc, MessageValidationError):
                    span.record_exception(exc)
                raise
            span.set_attribute("aiows.outcome", "ok")
            return result
