"""Prometheus metrics on the WebSocket port: ``WebSocketServer(metrics_path="/metrics")``.

Needs ``pip install "aiows[metrics]"`` (``prometheus-client``, used only to
render the text exposition format when scraped). Nothing is counted through
prometheus-client on the hot path: the server keeps plain counters
(``aiows.stats.ServerCounters`` per connection and failure,
``aiows.metering.TypeMeter`` per message type, ``aiows.transports.core.LinkMeter``
for bytes) and a collector reads them at each scrape.

With ``aiows run --workers N`` each worker writes its counters to a directory
the supervisor made (every ``SHARE_INTERVAL`` seconds, and when it stops), and
a scrape of any worker reports the sum over all of them: its own counters as
they are now, the others' as of their last write. The counters of a worker
that died stay in the sum (counters never go down); its open connections do not.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import orjson

from .dispatch import RouteTable
from .metering import BUCKETS, INVALID, OTHER, RAW, UNKNOWN, MeteredRouteTable, TypeMeter
from .transports.core import LinkMeter

if TYPE_CHECKING:
    from .server import WebSocketServer

__all__ = ["METRICS", "SHARE_INTERVAL", "Metrics", "Sample", "mark_dead", "merge"]

logger = logging.getLogger("aiows")

#: Seconds between two writes of a worker's counters to the shared directory.
SHARE_INTERVAL = 1.0

#: Every metric: name -> (type, help, label names). Counters get ``_total`` in the exposition.
METRICS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "aiows_connections_open": ("gauge", "Open WebSocket connections.", ("path", "transport")),
    "aiows_connections_opened": (
        "counter", "WebSocket connections whose handshake completed.", ("path", "transport")
    ),
    "aiows_connections_closed": (
        "counter",
        "WebSocket connections that ended, by close code (1006: no close frame; 3xxx/4xxx: a client's own code).",
        ("path", "transport", "code"),
    ),
    "aiows_messages_received": (
        "counter",
        "Messages received, by type (_other: the catch-all's, _unknown: no handler, _invalid: not a JSON object "
        "with a string type, _raw: raw frames).",
        ("type",),
    ),
    "aiows_message_handling_seconds": (
        "histogram", "Time a message's middleware chain and handler took, by type.", ("type",)
    ),
    "aiows_error_frames": ("counter", "Error frames sent, by code.", ("code",)),
    "aiows_received_bytes": ("counter", "Payload bytes of the data frames received.", ()),
    "aiows_sent_bytes": ("counter", "Payload bytes of the data frames sent.", ()),
    "aiows_broadcasts": ("counter", "server.broadcast() calls.", ()),
    "aiows_broadcast_deliveries": ("counter", "Broadcast messages written to local connections.", ()),
    "aiows_broadcast_received": ("counter", "Broadcasts received from other servers through the backend.", ()),
    "aiows_broadcast_drops": (
        "counter", 'Broadcast messages dropped from full outgoing queues (outgoing_overflow="drop_oldest").', ()
    ),
    "aiows_broadcast_overflow_closes": ("counter", "Connections closed with 1013: outgoing queue full.", ()),
    "aiows_auth_failures": ("counter", "Connections refused by AuthMiddleware (closed with 4401).", ()),
    "aiows_rate_limited": (
        "counter", "Messages refused by RateLimitingMiddleware, by action (close: 4429, error: an error frame).",
        ("action",),
    ),
}  # fmt: skip

#: One process's metrics: name -> label values (a JSON list, as text) -> value; for a histogram the value is the
#: bucket counts (not cumulative) followed by the sum of the observations.
Sample = dict[str, dict[str, Any]]


def _key(*labels: str) -> str:
    return orjson.dumps(labels).decode()


def merge(samples: list[Sample], *, with_gauges: list[bool] | None = None) -> Sample:
    """The sum of ``samples``; gauges only from the samples whose ``with_gauges`` entry is true."""
    total: Sample = {}
    for index, sample in enumerate(samples):
        gauges = with_gauges is None or with_gauges[index]
        for name, series in sample.items():
            spec = METRICS.get(name)
            if spec is None or (spec[0] == "gauge" and not gauges):
                continue
            into = total.setdefault(name, {})
            for labels, value in series.items():
                if isinstance(value, list):
                    previous = into.get(labels)
                    into[labels] = value if previous is None else [a + b for a, b in zip(previous, value)]
                else:
                    into[labels] = into.get(labels, 0) + value
    return total


def mark_dead(directory: str, pid: int) -> None:
    """Keep the counters of worker ``pid`` (which died) in the sums, but no longer its open connections."""
    try:
        os.replace(os.path.join(directory, f"{pid}.json"), os.path.join(directory, f"{pid}.dead.json"))
    except OSError:
        pass  # it never wrote any


class Metrics:
    """The metrics of one server (``server.metrics``): its meters, and a Prometheus ``registry``.

    ``registry`` is a ``prometheus_client.CollectorRegistry`` of its own: register
    your collectors in it to serve them at the same path.
    """

    def __init__(self, server: WebSocketServer) -> None:
        try:
            from prometheus_client import CollectorRegistry
        except ImportError:
            raise ImportError('metrics_path needs prometheus-client: pip install "aiows[metrics]"') from None
        self.server = server
        #: Bytes in and out, counted by the links.
        self.link_meter = LinkMeter()
        #: Messages and handling times by type label.
        self.types: dict[str, TypeMeter] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_Collector(self))
        #: The directory the workers of ``aiows run --workers N`` share their counters in (``None``: one process).
        self.shared_dir: str | None = None
        self._timer: asyncio.TimerHandle | None = None

    # -- meters --------------------------------------------------------------

    def meter(self, label: str) -> TypeMeter:
        """The meter of type label ``label`` (made on first use)."""
        meter = self.types.get(label)
        if meter is None:
            meter = self.types[label] = TypeMeter()
        return meter

    def metered(self, table: RouteTable) -> MeteredRouteTable:
        """``table`` with its messages counted by type and timed (done once per path, at start)."""
        return MeteredRouteTable(
            table,
            {message_type: self.meter(message_type) for message_type in table.routes},
            self.meter(OTHER),
            self.meter(UNKNOWN),
            self.meter(INVALID),
            self.meter(RAW),
        )

    def messages_by_type(self) -> dict[str, int]:
        """Messages received so far by type label (labels with none left out)."""
        return {label: meter.messages for label, meter in sorted(self.types.items()) if meter.messages}

    # -- this process's numbers, and everyone's -------------------------------

    def sample(self) -> Sample:
        """This process's metrics now."""
        counters = self.server.counters
        broadcast = self.server.broadcast_stats
        sample: Sample = {
            "aiows_connections_open": {_key(*key): value for key, value in counters.open.items()},
            "aiows_connections_opened": {_key(*key): value for key, value in counters.opened.items()},
            "aiows_connections_closed": {_key(*key): value for key, value in counters.closed.items()},
            "aiows_messages_received": {},
            "aiows_message_handling_seconds": {},
            "aiows_error_frames": {_key(code): value for code, value in counters.errors.items()},
            "aiows_received_bytes": {_key(): self.link_meter.bytes_in},
            "aiows_sent_bytes": {_key(): self.link_meter.bytes_out},
            "aiows_broadcasts": {_key(): broadcast.broadcasts},
            "aiows_broadcast_deliveries": {_key(): broadcast.delivered},
            "aiows_broadcast_received": {_key(): broadcast.received},
            "aiows_broadcast_drops": {_key(): broadcast.overflow_drops},
            "aiows_broadcast_overflow_closes": {_key(): broadcast.overflow_closes},
            "aiows_auth_failures": {_key(): counters.auth_failures},
            "aiows_rate_limited": {_key(action): value for action, value in counters.rate_limited.items()},
        }
        for label, meter in self.types.items():
            if meter.messages:
                sample["aiows_messages_received"][_key(label)] = meter.messages
            if meter.handled:
                sample["aiows_message_handling_seconds"][_key(label)] = [*meter.counts, meter.seconds]
        return sample

    def total(self) -> Sample:
        """This process's metrics, plus those the other workers last shared."""
        own = self.sample()
        directory = self.shared_dir
        if directory is None:
            return own
        samples = [own]
        alive = [True]
        mine = f"{os.getpid()}.json"
        try:
            names = os.listdir(directory)
        except OSError:
            return own
        for name in names:
            if not name.endswith(".json") or name == mine:
                continue
            try:
                with open(os.path.join(directory, name), "rb") as file:
                    samples.append(orjson.loads(file.read()))
            except (OSError, orjson.JSONDecodeError):
                continue  # gone meanwhile
            alive.append(not name.endswith(".dead.json"))
        return merge(samples, with_gauges=alive)

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition of the registry, and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    # -- sharing between workers ---------------------------------------------

    def share(self, directory: str) -> None:
        """Write this process's counters to ``directory`` while serving; scrapes sum every worker's there."""
        self.shared_dir = directory

    def start_sharing(self) -> None:
        """Write the counters now and every ``SHARE_INTERVAL`` seconds (the server started)."""
        if self.shared_dir is not None and self._timer is None:
            self._write_periodically()

    def stop_sharing(self) -> None:
        """Write the counters a last time and stop (the server stopped)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self.write_share()

    def _write_periodically(self) -> None:
        self.write_share()
        self._timer = asyncio.get_running_loop().call_later(SHARE_INTERVAL, self._write_periodically)

    def write_share(self) -> None:
        """Write this process's sample to the directory the workers share (``aiows run --workers``)."""
        directory = self.shared_dir
        if directory is None:
            return
        path = os.path.join(directory, f"{os.getpid()}.json")
        try:
            with open(path + ".tmp", "wb") as file:
                file.write(orjson.dumps(self.sample()))
            os.replace(path + ".tmp", path)  # readers never see half a file
        except OSError:
            logger.warning("cannot write the metrics of this worker to %s", directory, exc_info=True)


class _Collector:
    """Turns ``Metrics.total()`` into Prometheus metric families at each scrape."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def describe(self) -> list[Any]:
        return list(self._families({}))

    def collect(self) -> Iterator[Any]:
        return self._families(self.metrics.total())

    def _families(self, total: Sample) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        bounds = [format(bound, "g") for bound in BUCKETS] + ["+Inf"]
        for name, (kind, documentation, labels) in METRICS.items():
            series = total.get(name, {})
            family: Any
            if kind == "counter":
                family = CounterMetricFamily(name, documentation, labels=labels)
            elif kind == "gauge":
                family = GaugeMetricFamily(name, documentation, labels=labels)
            else:
                family = HistogramMetricFamily(name, documentation, labels=labels)
            for key, value in sorted(series.items()):
                values = orjson.loads(key)
                if kind == "histogram":
                    cumulative = 0
                    buckets = []
                    for bound, count in zip(bounds, value[:-1]):
                        cumulative += count
                        buckets.append((bound, cumulative))
                    family.add_metric(values, buckets, value[-1])
                else:
                    family.add_metric(values, value)
            yield family
