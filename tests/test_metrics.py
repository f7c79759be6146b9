"""Prometheus metrics at ``metrics_path``: scraped over HTTP on both transports and parsed with
``prometheus_client.parser``; bounded labels; nothing composed when off; the sum over ``aiows run --workers 2``;
a real Prometheus server (Debian's ``prometheus`` package) scraping a running app."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

pytest.importorskip("prometheus_client", reason='the metrics need prometheus-client: pip install "aiows[metrics]"')

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402

from aiows import (  # noqa: E402
    AuthMiddleware,
    BaseMessage,
    ChatMessage,
    RateLimitingMiddleware,
    Router,
    WebSocket,
    WebSocketServer,
)
from aiows.dispatch import RouteTable  # noqa: E402
from aiows.metering import MeteredRouteTable  # noqa: E402
from aiows.metrics import METRICS, SHARE_INTERVAL, mark_dead, merge  # noqa: E402
from aiows.testing import TestClient  # noqa: E402
from aiows.transports.core import MeteredSocketLink, SocketLink  # noqa: E402
from processes import free_port  # noqa: E402

SECRET = "a-long-enough-secret"

#: One series: its sample name and labels.
Series = tuple[str, frozenset[tuple[str, str]]]


def app(**options: Any) -> WebSocketServer:
    chat = Router()

    @chat.message("chat")
    async def on_chat(websocket: WebSocket, message: ChatMessage) -> None:
        await websocket.send_json({"type": "chat", "text": message.text})

    everywhere = Router()

    @everywhere.message("ping")
    async def on_ping(websocket: WebSocket, message: BaseMessage) -> None:
        await websocket.send_json({"type": "pong"})

    @everywhere.message("shout")
    async def on_shout(websocket: WebSocket, message: BaseMessage) -> None:
        await websocket.server.broadcast({"type": "shout"})

    @everywhere.message("boom")
    async def on_boom(websocket: WebSocket, message: BaseMessage) -> None:
        raise RuntimeError("boom")

    options.setdefault("metrics_path", "/metrics")
    server = WebSocketServer(**options)
    server.include_router(chat, path="/chat")
    server.include_router(everywhere)
    return server


def fetch(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status), str(response.headers["Content-Type"]), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, str(exc.headers["Content-Type"]), exc.read()


def parse(text: str) -> dict[Series, float]:
    """Every sample of a scrape, parsed by prometheus_client's own parser."""
    samples: dict[Series, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


async def scrape(port: int, path: str = "/metrics") -> dict[Series, float]:
    status, content_type, body = await asyncio.to_thread(fetch, f"http://127.0.0.1:{port}{path}")
    assert status == 200, body
    assert content_type.startswith("text/plain; version=")  # the text exposition format
    return parse(body.decode())


def value(samples: dict[Series, float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def labels_of(samples: dict[Series, float], name: str, label: str) -> set[str]:
    return {dict(labels)[label] for sample, labels in samples if sample == name}


async def wait_for(check: Callable[[], Any], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_scrape_counts_connections_messages_errors_bytes_and_broadcasts(transport: str) -> None:
    server = app()
    sent = received = 0
    async with TestClient(server) as client:
        async with client.connect("/chat") as chat, client.connect("/") as other:
            samples = await scrape(client.port)
            assert value(samples, "aiows_connections_open", path="/chat", transport=transport) == 1
            assert value(samples, "aiows_connections_open", path="*", transport=transport) == 1

            async def exchange(ws: Any, data: bytes) -> Any:
                nonlocal sent, received
                await ws.send_text(data.decode())
                sent += len(data)
                reply = await ws.receive()
                received += len(reply)
                return orjson.loads(reply)

            for _ in range(3):
                assert (await exchange(chat, b'{"type":"chat","text":"hi","user_id":1}'))["type"] == "chat"
            assert (await exchange(chat, b'{"type":"chat","text":5}'))["code"] == "validation_error"
            request = b'{"type":"chat","text":"hi","user_id":1,"ref":7}'  # a request: counted by its type too
            assert (await exchange(chat, request))["type"] == "chat"
            reply = await chat.receive()
            received += len(reply)
            assert orjson.loads(reply) == {"type": "reply", "ref": 7, "data": None}
            assert (await exchange(other, b'{"type":"mystery","ref":8}'))["code"] == "unknown_type"
            for number in range(50):  # the client's own types: one label value
                assert (await exchange(other, b'{"type":"mystery-%d"}' % number))["code"] == "unknown_type"
            assert (await exchange(other, b"{not json"))["code"] == "invalid_json"
            assert (await exchange(other, b"[1]"))["code"] == "invalid_message"
            assert (await exchange(other, b'{"type":"boom"}'))["code"] == "internal_error"
            assert await exchange(other, b'{"type":"shout"}') == {"type": "shout"}
            received += len(await chat.receive())
            await other.close(4000)

            async def closed() -> bool:
                return value(await scrape(client.port), "aiows_connections_open", path="*", transport=transport) == 0

            await wait_for(closed)
            samples = await scrape(client.port)
    assert value(samples, "aiows_connections_opened_total", path="/chat", transport=transport) == 1
    assert value(samples, "aiows_connections_closed_total", path="*", transport=transport, code="4xxx") == 1
    assert value(samples, "aiows_messages_received_total", type="chat") == 5
    assert value(samples, "aiows_messages_received_total", type="_unknown") == 51
    assert value(samples, "aiows_messages_received_total", type="_invalid") == 2
    assert labels_of(samples, "aiows_messages_received_total", "type") == {"chat", "_unknown", "_invalid", "boom", "shout"}
    assert value(samples, "aiows_message_handling_seconds_count", type="chat") == 5
    assert value(samples, "aiows_message_handling_seconds_bucket", type="chat", le="+Inf") == 5
    assert 0 < value(samples, "aiows_message_handling_seconds_sum", type="chat") < 1
    assert value(samples, "aiows_error_frames_total", code="unknown_type") == 51
    for code in ("validation_error", "invalid_json", "invalid_message", "internal_error"):
        assert value(samples, "aiows_error_frames_total", code=code) == 1
    assert value(samples, "aiows_received_bytes_total") == sent
    assert value(samples, "aiows_sent_bytes_total") == received
    assert value(samples, "aiows_broadcasts_total") == 1
    assert value(samples, "aiows_broadcast_deliveries_total") == 2
    names = {name for name, _ in samples}
    for name, (kind, _, _) in METRICS.items():  # every metric is there, under its Prometheus name
        if name != "aiows_rate_limited":  # no series until a message is refused
            assert {"counter": name + "_total", "gauge": name, "histogram": name + "_count"}[kind] in names
    assert server.stats().messages_by_type == {"_invalid": 2, "_unknown": 51, "boom": 1, "chat": 5, "shout": 1}


async def test_scrape_counts_auth_failures_and_rate_limiting(transport: str) -> None:
    server = app()
    server.add_middleware(AuthMiddleware(SECRET))
    server.add_middleware(RateLimitingMiddleware(60, burst=1))
    async with TestClient(server) as client:
        async with client.connect("/?token=wrong") as refused:
            assert await refused.wait_closed() == 4401
        async with client.connect("/?token=ann" + SECRET) as ws:
            await ws.send_json({"type": "ping"})
            await ws.send_json({"type": "ping"})
            assert await ws.wait_closed() == 4429

        async def counted() -> bool:
            samples = await scrape(client.port)
            return value(samples, "aiows_connections_closed_total", path="*", transport=transport, code="4429") == 1

        await wait_for(counted)
        samples = await scrape(client.port)
    assert value(samples, "aiows_auth_failures_total") == 1
    assert value(samples, "aiows_rate_limited_total", action="close") == 1
    assert value(samples, "aiows_connections_closed_total", path="*", transport=transport, code="4401") == 1


async def test_metrics_and_health_are_served_over_https_too(transport: str, tmp_path: Path) -> None:
    from certs import make_certs

    certs = make_certs(tmp_path)
    async with TestClient(app(), ssl=certs.server_context()) as client:
        context = certs.client_context()

        def get() -> bytes:
            with urllib.request.urlopen(f"https://127.0.0.1:{client.port}/metrics", context=context) as answer:
                return bytes(answer.read())

        assert "aiows_connections_opened_total" in (await asyncio.to_thread(get)).decode()


async def test_without_metrics_path_nothing_is_metered_and_no_endpoint_exists(transport: str) -> None:
    server = app(metrics_path=None)
    assert server.metrics is None
    dispatcher = server.dispatcher()
    assert dispatcher.default is not None and type(dispatcher.default) is RouteTable
    assert all(type(table) is RouteTable for table in dispatcher.tables.values())
    async with TestClient(server) as client, client.connect("/chat") as ws:
        link = next(iter(client.running.dispatcher.sessions)).link
        assert type(link) is SocketLink
        status, _, _ = await asyncio.to_thread(fetch, f"http://127.0.0.1:{client.port}/metrics")
        assert status == 426  # a WebSocket path (routers included without a path serve every path), not metrics
        await ws.send_json({"type": "ping"})
        await ws.receive_json()

    metered = app()
    assert all(isinstance(table, MeteredRouteTable) for table in metered.dispatcher().tables.values())
    async with TestClient(metered) as client, client.connect("/chat"):
        assert type(next(iter(client.running.dispatcher.sessions)).link) is MeteredSocketLink


def test_metrics_path_without_prometheus_client_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import fails
    with pytest.raises(ImportError, match=r'pip install "aiows\[metrics\]"'):
        WebSocketServer(metrics_path="/metrics")
    assert WebSocketServer().metrics is None


async def test_your_own_collectors_are_served_at_the_same_path() -> None:
    from prometheus_client import Counter

    server = app()
    assert server.metrics is not None
    jobs = Counter("myapp_jobs", "Jobs done.", registry=server.metrics.registry)
    jobs.inc(3)
    async with TestClient(server) as client:
        assert value(await scrape(client.port), "myapp_jobs_total") == 3


def test_merge_sums_counters_and_histograms_and_keeps_gauges_of_live_workers_only() -> None:
    one = {
        "aiows_connections_open": {'["*","websockets"]': 2},
        "aiows_messages_received": {'["chat"]': 5},
        "aiows_message_handling_seconds": {'["chat"]': [1, 2, 0.5]},
    }
    two = {
        "aiows_connections_open": {'["*","websockets"]': 3},
        "aiows_messages_received": {'["chat"]': 7, '["ping"]': 1},
        "aiows_message_handling_seconds": {'["chat"]': [0, 1, 0.25]},
    }
    total = merge([one, two], with_gauges=[True, False])
    assert total["aiows_connections_open"] == {'["*","websockets"]': 2}
    assert total["aiows_messages_received"] == {'["chat"]': 12, '["ping"]': 1}
    assert total["aiows_message_handling_seconds"] == {'["chat"]': [1, 3, 0.75]}


def test_mark_dead_keeps_the_counters_of_a_worker_that_died(tmp_path: Path) -> None:
    (tmp_path / "123.json").write_text("{}")
    mark_dead(str(tmp_path), 123)
    mark_dead(str(tmp_path), 456)  # never wrote any: nothing to do
    assert sorted(path.name for path in tmp_path.iterdir()) == ["123.dead.json"]


# -- the Grafana dashboard (docs/grafana-dashboard.json) -----------------------------------------------------

DASHBOARD = Path(__file__).resolve().parent.parent / "docs" / "grafana-dashboard.json"


def dashboard_queries() -> list[str]:
    """Every PromQL expression of the dashboard, with Grafana's variables filled in as Grafana would."""
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    return [expr.replace("$__rate_interval", "1m").replace("$job", ".*") for expr in expressions]


def test_the_grafana_dashboard_charts_every_metric_and_only_those() -> None:
    exposed = set()
    for name, (kind, _, _) in METRICS.items():
        exposed |= {"counter": {name + "_total"}, "gauge": {name}, "histogram": {name + "_bucket"}}[kind]
    used = {name for expr in dashboard_queries() for name in re.findall(r"\baiows_[a-z_]+", expr)}
    assert used == exposed


# -- aiows run --workers 2: a scrape of any worker reports the sum ------------------------------------

WORKER_APP = """
import os

from aiows import BaseMessage, Router, WebSocket, WebSocketServer

router = Router()

@router.message("whoami")
async def whoami(websocket: WebSocket, message: BaseMessage) -> None:
    await websocket.send_json({"type": "pid", "pid": os.getpid()})

server = WebSocketServer(metrics_path="/metrics", close_timeout=2)
server.include_router(router)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="--workers needs Linux SO_REUSEPORT")
async def test_workers_report_the_sum_over_all_workers(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(WORKER_APP)
    port = free_port()
    log = tmp_path / "stderr.txt"
    with log.open("w") as output:
        cli = subprocess.Popen(
            [sys.executable, "-m", "aiows", "run", "app:server", "--port", str(port), "--workers", "2"],
            cwd=tmp_path, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        pids: dict[int, int] = {}  # pid -> messages it answered
        deadline = time.monotonic() + 30
        while (len(pids) < 2 or sum(pids.values()) < 20) and time.monotonic() < deadline:
            try:
                async with connect(f"ws://127.0.0.1:{port}/", open_timeout=5) as ws:
                    await ws.send('{"type":"whoami"}')
                    pid = orjson.loads(await asyncio.wait_for(ws.recv(), 5))["pid"]
                    pids[pid] = pids.get(pid, 0) + 1
            except OSError:
                await asyncio.sleep(0.1)  # not listening yet
        assert len(pids) == 2, log.read_text()
        total = sum(pids.values())

        async def summed() -> bool:  # every worker shares its counters within a second
            samples = await scrape(port)
            return value(samples, "aiows_messages_received_total", type="whoami") == total

        for _ in range(4):  # whichever worker answers the scrape, it reports both
            await wait_for(summed, timeout=10)

        # A worker that dies: its counts stay in the sum (counters never go down), as of its last write.
        await asyncio.sleep(SHARE_INTERVAL + 0.5)  # so that write has all of them
        victim = min(pids)
        os.kill(victim, signal.SIGKILL)
        await asyncio.sleep(0.5)
        for _ in range(4):
            await wait_for(summed, timeout=15)
    finally:
        cli.send_signal(signal.SIGTERM)
        try:
            assert cli.wait(30) == 0, log.read_text()
        finally:
            if cli.poll() is None:
                cli.kill()
                cli.wait(10)
    assert "metrics: a scrape of any worker reports the sum over all" in log.read_text()
    assert not list(Path(tempfile.gettempdir()).glob(f"aiows-metrics-{cli.pid}-*")), "the shared directory is removed"


# -- a real Prometheus server ------------------------------------------------------------------------------

PROMETHEUS = shutil.which("prometheus")


@pytest.mark.skipif(
    PROMETHEUS is None, reason="needs Prometheus: apt-get install prometheus (Debian's package; .ci/run installs it)"
)
async def test_a_real_prometheus_server_scrapes_the_app(tmp_path: Path) -> None:
    assert PROMETHEUS is not None
    server = app()
    async with TestClient(server) as client:
        async with client.connect("/chat") as ws:
            for _ in range(7):
                await ws.send_json({"type": "chat", "text": "hi", "user_id": 1})
                await ws.receive_json()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
            "scrape_configs:\n  - job_name: aiows\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{client.port}']\n"
        )
        web = free_port()
        log = tmp_path / "prometheus.log"
        with log.open("w") as output:
            prometheus = subprocess.Popen(
                [
                    PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
                    f"--web.listen-address=127.0.0.1:{web}",
                ],
                stdout=output, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:

            def query(expression: str) -> list[Any]:
                url = f"http://127.0.0.1:{web}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
                with urllib.request.urlopen(url, timeout=5) as answer:  # a query Prometheus refuses: HTTP 400
                    reply = json.load(answer)
                    assert reply["status"] == "success", (expression, reply)
                    result: list[Any] = reply["data"]["result"]
                    return result

            async def scraped() -> bool:
                assert prometheus.poll() is None, log.read_text()
                try:
                    result = await asyncio.to_thread(query, 'aiows_messages_received_total{type="chat"}')
                except OSError:
                    return False  # not listening yet
                return bool(result) and float(result[0]["value"][1]) == 7

            await wait_for(scraped, timeout=60)
            up = await asyncio.to_thread(query, 'up{job="aiows"}')
            assert [float(series["value"][1]) for series in up] == [1.0]
            quantile = await asyncio.to_thread(
                query, 'histogram_quantile(0.5, sum by (le) (aiows_message_handling_seconds_bucket{type="chat"}))'
            )
            assert 0 < float(quantile[0]["value"][1]) <= 0.1
            for expression in dashboard_queries():  # every chart of the dashboard is a query Prometheus accepts
                await asyncio.to_thread(query, expression)
            opened = await asyncio.to_thread(query, dashboard_queries()[0])
            assert opened, "the dashboard's first chart has a series"
        finally:
            prometheus.terminate()
            try:
                prometheus.wait(20)
            except subprocess.TimeoutExpired:
                prometheus.kill()
                prometheus.wait(10)
