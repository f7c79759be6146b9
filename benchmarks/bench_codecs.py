"""JSON vs MessagePack: decode + validate + encode, per message, with aiows' own codecs.

    python benchmarks/bench_codecs.py            # 5 rounds of 20,000 messages per row: about 30 s
    python benchmarks/bench_codecs.py --quick    # a smoke run, not a measurement

What a server does for each message it handles, without the socket: the
payload is decoded by the connection's codec (``aiows.codecs``), validated
into its pydantic model through one cached ``TypeAdapter`` (as dispatch does),
and an answer model is encoded by the same codec. Two shapes:

- small: a chat line, ``{"type": "chat", "text": ..., "user_id": ...}`` (about 60 bytes of JSON);
- 4 KiB: a game state, 40 players each with an id, a name, x/y floats, a score and flags (about 4 KiB of JSON).

Reported: microseconds per message (median over the rounds) for each step and
in all, the payload size, and MessagePack's time as a ratio of JSON's in the
same run. One process, one core, no event loop.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, TypeAdapter

from aiows.codecs import JSON, Codec, MsgPackCodec


class Chat(BaseModel):
    type: Literal["chat"]
    text: str
    user_id: int


class Player(BaseModel):
    id: int
    name: str
    x: float
    y: float
    score: int
    alive: bool
    team: str


class State(BaseModel):
    type: Literal["state"]
    tick: int
    players: list[Player]


SMALL: dict[str, Any] = {"type": "chat", "text": "hello, how is everyone doing today?", "user_id": 42}
LARGE: dict[str, Any] = {
    "type": "state",
    "tick": 123456,
    "players": [
        {
            "id": 1000 + i,
            "name": f"player-{i:03d}-abcdefghijklmnop",
            "x": 10.25 * i,
            "y": -3.5 * i,
            "score": 17 * i,
            "alive": i % 3 != 0,
            "team": "red" if i % 2 else "blue",
        }
        for i in range(40)
    ],
}


def per_message(step: Callable[[], object], count: int, rounds: int) -> float:
    """Median microseconds per call of ``step`` over ``rounds`` rounds of ``count`` calls."""
    timings = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(count):
            step()
        timings.append((time.perf_counter() - started) / count * 1e6)
    return statistics.median(timings)


def measure(codec: Codec, model: type[BaseModel], message: dict[str, Any], count: int, rounds: int) -> dict[str, float]:
    """The µs per message of decode, validate and encode (and their sum) for ``message`` in ``codec``."""
    adapter: TypeAdapter[BaseModel] = TypeAdapter(model)
    payload = codec.encode(message)
    data = codec.decode(payload)
    validated = adapter.validate_python(data)
    decode = per_message(lambda: codec.decode(payload), count, rounds)
    validate = per_message(lambda: adapter.validate_python(data), count, rounds)
    encode = per_message(lambda: codec.encode(validated), count, rounds)
    whole = per_message(lambda: codec.encode(adapter.validate_python(codec.decode(payload))), count, rounds)
    return {"bytes": float(len(payload)), "decode": decode, "validate": validate, "encode": encode, "all": whole}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: few messages, one round")
    args = parser.parse_args()
    count, rounds = (500, 1) if args.quick else (20_000, 5)
    codecs: list[Codec] = [JSON, MsgPackCodec()]
    print(f"decode + validate + encode per message, {count} messages x {rounds} rounds, median µs")
    print(f"{'shape':8} {'codec':8} {'bytes':>6} {'decode':>8} {'validate':>9} {'encode':>8} {'all':>8} {'vs JSON':>8}")
    for shape, model, message in (("small", Chat, SMALL), ("4 KiB", State, LARGE)):
        reference = 0.0
        for codec in codecs:
            row = measure(codec, model, message, count, rounds)
            if codec is JSON:
                reference = row["all"]
            print(
                f"{shape:8} {codec.name:8} {row['bytes']:6.0f} {row['decode']:8.2f} {row['validate']:9.2f} "
                f"{row['encode']:8.2f} {row['all']:8.2f} {row['all'] / reference:7.2f}x"
            )


if __name__ == "__main__":
    main()
