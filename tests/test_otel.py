"""``OpenTelemetryMiddleware`` with the SDK's in-memory exporter, over real sockets on both transports."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import orjson
import pytest

pytest.importorskip("opentelemetry.sdk", reason='tracing needs opentelemetry: pip install "aiows[otel]" and the SDK')

from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

from aiows import (  # noqa: E402
    AuthMiddleware,
    BaseMessage,
    ChatMessage,
    OpenTelemetryMiddleware,
    Router,
    WebSocket,
    WebSocketServer,
)
from aiows.exceptions import AiowsException  # noqa: E402
from aiows.middleware.otel import CONNECTION_SPAN  # noqa: E402
from aiows.testing import TestClient  # noqa: E402

SECRET = "a-long-enough-secret"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    yield exporter
    exporter.clear()


def traced_app(exporter: InMemorySpanExporter, *, auth: bool = False) -> WebSocketServer:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("myapp")
    router = Router()

    @router.message("chat")
    async def on_chat(websocket: WebSocket, message: ChatMessage) -> None:
        with tracer.start_as_current_span("db.save"):  # the handler's own span: a child of the message's
            pass
        await websocket.send_json({"type": "chat", "text": message.text})

    @router.message("fail")
    async def on_fail(websocket: WebSocket, message: BaseMessage) -> None:
        raise AiowsException("no")

    @router.message("boom")
    async def on_boom(websocket: WebSocket, message: BaseMessage) -> None:
        raise RuntimeError("boom")

    server = WebSocketServer()
    server.add_middleware(OpenTelemetryMiddleware(provider))  # first: its spans hold the others' work
    if auth:
        server.add_middleware(AuthMiddleware(SECRET))
    server.include_router(router)
    return server


async def finished(exporter: InMemorySpanExporter, name: str, count: int = 1) -> list[ReadableSpan]:
    deadline = time.monotonic() + 5
    while True:
        spans = [span for span in exporter.get_finished_spans() if span.name == name]
        if len(spans) >= count:
            return spans
        assert time.monotonic() < deadline, [span.name for span in exporter.get_finished_spans()]
        await asyncio.sleep(0.01)


async def test_a_span_per_connection_and_a_child_per_message(exporter: InMemorySpanExporter, transport: str) -> None:
    async with TestClient(traced_app(exporter)) as client:
        async with client.connect("/room?token=secret-stuff") as ws:
            await ws.send_json({"type": "chat", "text": "hi", "user_id": 1})
            await ws.receive_json()
            await ws.send_json({"type": "chat", "text": 5})  # fails validation
            assert (await ws.receive_json())["code"] == "validation_error"
            await ws.send_json({"type": "fail"})
            assert (await ws.receive_json())["code"] == "internal_error"
            await ws.send_json({"type": "boom"})
            assert (await ws.receive_json())["code"] == "internal_error"
            await ws.close(4000, "bye")
        (connection,) = await finished(exporter, CONNECTION_SPAN)
    assert connection.kind == trace.SpanKind.SERVER
    assert connection.parent is None
    attributes = dict(connection.attributes or {})
    assert attributes["url.path"] == "/room"  # never the query string
    assert attributes["client.address"] == "127.0.0.1" and isinstance(attributes["client.port"], int)
    assert attributes["aiows.transport"] == transport
    assert attributes["websocket.close_code"] == 4000
    assert "secret-stuff" not in repr(attributes)

    chats = [span for span in exporter.get_finished_spans() if span.name == "chat"]
    assert len(chats) == 2
    for span in chats:
        assert span.parent is not None and span.parent.span_id == connection.context.span_id
        assert span.context.trace_id == connection.context.trace_id
        assert span.kind == trace.SpanKind.CONSUMER
    ok, invalid = sorted(chats, key=lambda span: span.start_time or 0)
    size = len(orjson.dumps({"type": "chat", "text": "hi", "user_id": 1}))  # what TestConnection.send_json sends
    assert dict(ok.attributes or {}) == {"aiows.message.size": size, "aiows.outcome": "ok"}
    assert ok.status.status_code == trace.StatusCode.UNSET
    assert dict(invalid.attributes or {})["aiows.error.code"] == "validation_error"
    assert invalid.status.status_code == trace.StatusCode.ERROR and not invalid.events  # no traceback recorded
    (saved,) = [span for span in exporter.get_finished_spans() if span.name == "db.save"]
    assert saved.parent is not None and saved.parent.span_id == ok.context.span_id  # current while the handler runs
    (fail,) = [span for span in exporter.get_finished_spans() if span.name == "fail"]
    assert dict(fail.attributes or {})["aiows.error.code"] == "internal_error"  # an AiowsException's own code
    (boom,) = [span for span in exporter.get_finished_spans() if span.name == "boom"]
    assert boom.status.status_code == trace.StatusCode.ERROR
    assert [event.name for event in boom.events] == ["exception"]


async def test_a_traceparent_sent_with_the_handshake_is_continued(
    exporter: InMemorySpanExporter, transport: str
) -> None:
    async with TestClient(traced_app(exporter)) as client:
        headers = {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}
        async with client.connect("/", headers=headers) as ws:
            await ws.send_json({"type": "chat", "text": "hi", "user_id": 1})
            await ws.receive_json()
        (connection,) = await finished(exporter, CONNECTION_SPAN)
    assert format(connection.context.trace_id, "032x") == TRACE_ID
    assert connection.parent is not None and format(connection.parent.span_id, "016x") == PARENT_ID
    (chat,) = await finished(exporter, "chat")
    assert format(chat.context.trace_id, "032x") == TRACE_ID


async def test_the_user_id_and_a_refused_connection(exporter: InMemorySpanExporter, transport: str) -> None:
    async with TestClient(traced_app(exporter, auth=True)) as client:
        async with client.connect("/?token=ann" + SECRET) as ws:
            await ws.send_json({"type": "chat", "text": "hi", "user_id": 1})
            await ws.receive_json()
        async with client.connect("/?token=wrong") as refused:
            assert await refused.wait_closed() == 4401
        spans = await finished(exporter, CONNECTION_SPAN, 2)
    by_code = {dict(span.attributes or {})["websocket.close_code"]: dict(span.attributes or {}) for span in spans}
    assert by_code[1000]["enduser.id"] == "ann"
    assert "enduser.id" not in by_code[4401]


def test_the_middleware_without_opentelemetry_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    import aiows

    monkeypatch.delitem(aiows.__dict__, "OpenTelemetryMiddleware", raising=False)
    monkeypatch.delitem(sys.modules, "aiows.middleware.otel", raising=False)
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(ImportError, match=r'pip install "aiows\[otel\]"'):
        aiows.OpenTelemetryMiddleware  # noqa: B018
