"""Per-message counters, composed into a server only when it serves metrics (``metrics_path``).

A server without ``metrics_path`` serves its messages through ``RouteTable``,
which counts nothing per message. With it, each path's table is a
``MeteredRouteTable``: the same dispatch, plus a ``TypeMeter`` per message
type (messages, handling time histogram). Bytes are counted by the links
(``aiows.transports.core.MeteredSocketLink``). ``aiows.metrics`` turns both
into Prometheus metrics when scraped. Compiled with mypyc: a message costs
two clock reads, a dict lookup and a few integer additions more.

Type labels are bounded: a message type with a route is its own label;
whatever the catch-all takes is ``"_other"``, a type nothing takes
``"_unknown"``, a message that is not a JSON object with a string ``"type"``
``"_invalid"``, and a raw frame ``"_raw"``. The client's own strings never
become labels.
"""

from __future__ import annotations

import time
from typing import Any, Final

from .dispatch import REF, RouteTable
from .router import REPLY
from .websocket import WebSocket

__all__ = ["BUCKETS", "INVALID", "OTHER", "RAW", "UNKNOWN", "MeteredRouteTable", "TypeMeter"]

#: The upper bounds (seconds) of the handling time histogram's buckets; the last bucket is +Inf.
BUCKETS: tuple[float, ...] = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

#: The same bounds in nanoseconds: the clock is read as an integer (no float made per reading).
_BOUNDS_NS: Final[tuple[int, ...]] = tuple(round(bound * 1e9) for bound in BUCKETS)

#: The type label of a message whose type has no route of its own but a catch-all handles.
OTHER: Final = "_other"
#: The type label of a message whose type no handler takes.
UNKNOWN: Final = "_unknown"
#: The type label of a frame that is not a JSON object with a string ``"type"``.
INVALID: Final = "_invalid"
#: The type label of a frame handled by a raw handler.
RAW: Final = "_raw"

#: ``time.perf_counter_ns``, bound once (compiled code would look it up on every message).
_clock: Final = time.perf_counter_ns


class TypeMeter:
    """One message type's counters: messages received, and the histogram of the time their chains took."""

    def __init__(self) -> None:
        self.messages = 0
        #: Messages handled by a chain (those refused before routing have no handling time).
        self.handled = 0
        #: Their handling time in all, in nanoseconds.
        self.nanoseconds = 0
        #: Observations per bucket of ``BUCKETS`` (not cumulative), then those above the last bound.
        self.counts: list[int] = [0] * (len(BUCKETS) + 1)

    @property
    def seconds(self) -> float:
        """The handling time of the messages handled, in all."""
        return self.nanoseconds / 1e9

    def observe(self, nanoseconds: int) -> None:
        """One message handled in ``nanoseconds``."""
        self.handled += 1
        self.nanoseconds += nanoseconds
        index = 0
        for bound in _BOUNDS_NS:  # handling times are mostly in the first buckets
            if nanoseconds <= bound:
                break
            index += 1
        self.counts[index] += 1


class MeteredRouteTable(RouteTable):
    """A ``RouteTable`` that counts each message by type and times its chain (``TypeMeter``).

    ``meters`` holds one meter per routed type (the server's meters, shared
    by its tables: one label per type whatever the path).
    """

    def __init__(
        self,
        table: RouteTable,
        meters: dict[str, TypeMeter],
        other: TypeMeter,
        unknown: TypeMeter,
        invalid: TypeMeter,
        raw: TypeMeter,
    ) -> None:
        super().__init__(
            table.routes,
            table.fallback,
            table.raw,
            table.connect,
            table.disconnect,
            table.connect_passes,
            table.errors,
        )
        self.meters = meters
        self.other = other
        self.unknown_meter = unknown
        self.invalid = invalid
        self.raw_meter = raw

    async def handle(self, websocket: WebSocket, text: bool, raw: bytes) -> None:
        """``RouteTable.handle``, counted and timed."""
        try:
            data = websocket.codec.decode_frame(raw, text)
        except ValueError:
            self.invalid.messages += 1
            sending = self.undecodable(websocket, text, raw)
            if sending is not None:
                await sending
            return
        if type(data) is not dict:
            self.invalid.messages += 1
            await self.not_object(websocket)
            return
        if REF in data:
            await self.handle_metered_request(websocket, data, len(raw))
            return
        message_type = data.get("type")
        if not isinstance(message_type, str):
            self.invalid.messages += 1
            await self.error(websocket, "invalid_message", 'message must have a string "type"')
            return
        step = self.routes.get(message_type)
        if step is None:
            if message_type == REPLY:
                self.invalid.messages += 1
                await self.error(websocket, "invalid_message", 'a "reply" must carry the "ref" of the request it answers')
                return
            step = self.fallback
            if step is None:
                self.unknown_meter.messages += 1
                await self.unknown(websocket, message_type)
                return
            meter = self.other
        else:
            meter = self.meters[message_type]
        meter.messages += 1
        websocket.message_size = len(raw)
        started = _clock()
        try:
            await step.call(websocket, data)
        except Exception as exc:
            meter.observe(_clock() - started)
            await self.failed(websocket, exc, message_type)
            return
        meter.observe(_clock() - started)

    async def handle_metered_request(self, websocket: WebSocket, data: dict[str, Any], size: int) -> None:
        """``RouteTable.handle_request``, counted by type and timed; a client's reply to ``websocket.request()``
        is not a message routed by type, and is not counted here."""
        message_type = data.get("type")
        if not isinstance(message_type, str):
            self.invalid.messages += 1
        elif message_type != REPLY:
            meter = self.meters.get(message_type)
            if meter is None:
                meter = self.other if self.fallback is not None else self.unknown_meter
            if meter is not self.unknown_meter:
                meter.messages += 1
                started = _clock()
                try:
                    await self.handle_request(websocket, data, size)
                finally:
                    meter.observe(_clock() - started)
                return
            meter.messages += 1
        await self.handle_request(websocket, data, size)

    async def handle_raw(self, websocket: WebSocket, text: bool, payload: bytes) -> None:
        """``RouteTable.handle_raw``, counted and timed."""
        meter = self.raw_meter
        meter.messages += 1
        started = _clock()
        try:
            await RouteTable.handle_raw(self, websocket, text, payload)
        finally:
            meter.observe(_clock() - started)
