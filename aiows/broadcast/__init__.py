"""Rooms and broadcast backends.

``MemoryBackend`` (the default) serves one process; ``RedisBackend`` shares
rooms, broadcasts and presence between any number of processes and machines:

```python
from aiows import WebSocketServer
from aiows.broadcast import RedisBackend

server = WebSocketServer(broadcast=RedisBackend("redis://localhost:6379/0"))
```

Write your own backend by subclassing ``BroadcastBackend`` (five methods, see
``aiows.broadcast.base``).
"""

from __future__ import annotations

from .base import BroadcastBackend, Receive
from .hub import BroadcastStats, Hub, OverflowPolicy
from .memory import MemoryBackend
from .redis_backend import RedisBackend

__all__ = [
    "BroadcastBackend",
    "BroadcastStats",
    "Hub",
    "MemoryBackend",
    "OverflowPolicy",
    "Receive",
    "RedisBackend",
]
