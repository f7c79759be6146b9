"""The front-ends that carry aiows' connections, by ``transport=`` name.

- ``"websockets"`` (default): ``aiows.transports.websockets``, an asyncio
  protocol of aiows driving ``websockets``' Sans-I/O ``ServerProtocol``;
- ``"picows"``: ``aiows.transports.picows``, picows' listener API
  (``pip install "aiows[fast]"``).

Both hand open connections to the server as ``aiows.transports.base.Link``
objects built on one shared core (``aiows.transports.core.SocketLink``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from .base import Listener

__all__ = ["Serve", "serve_function"]

#: ``serve(gate, options, host, port, meter=None, **create_server_kwargs) -> Listener`` of one front-end.
Serve = Callable[..., Awaitable[Listener]]


def serve_function(transport: str) -> Serve:
    """The ``serve()`` of front-end ``transport``; a clear ``ImportError`` if its extra is not installed."""
    if transport == "picows":
        try:
            from .picows import serve as picows_serve
        except ImportError as exc:
            raise ImportError('transport="picows" needs the picows package: pip install "aiows[fast]"') from exc
        return picows_serve
    from .websockets import serve

    return serve
