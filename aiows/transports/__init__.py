"""The front-ends that carry aiows' connections, by ``transport=`` name.

- ``"websockets"`` (default): ``aiows.transports.websockets``, an asyncio
  protocol of aiows driving ``websockets``' Sans-I/O ``ServerProtocol``;
- ``"picows"``: ``aiows.transports.picows``, picows' listener API
  (``pip install "aiows[fast]"``).

Both hand open connections to the server as ``aiows.transports.base.Link``
objects built on one shared core (``aiows.transports.core.SocketLink``).
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .base import Listener

__all__ = ["FRONT_ENDS", "FrontEnd", "Serve", "serve_function"]

#: ``serve(gate, options, host, port, meter=None, **create_server_kwargs) -> Listener`` of one front-end.
Serve = Callable[..., Awaitable[Listener]]


@dataclass(frozen=True)
class FrontEnd:
    """One ``transport=`` choice: its module, the extra it needs, what it can tell during a handshake."""

    #: The module (``aiows.transports.<module>``) whose ``serve()`` runs it.
    module: str
    #: The pip extra that installs its library (``None``: a dependency of aiows).
    extra: str | None
    #: Whether the client's address is known during the handshake (the per-IP limits need it).
    peer_at_handshake: bool


#: The ``transport=`` choices.
FRONT_ENDS = {
    "websockets": FrontEnd("websockets", None, True),
    "picows": FrontEnd("picows", "fast", False),
}


def serve_function(transport: str) -> Serve:
    """The ``serve()`` of front-end ``transport``; a clear ``ImportError`` if its extra is not installed."""
    front_end = FRONT_ENDS[transport]
    try:
        module = importlib.import_module(f"{__name__}.{front_end.module}")
    except ImportError as exc:
        raise ImportError(
            f'transport="{transport}" needs the {front_end.module} package: pip install "aiows[{front_end.extra}]"'
        ) from exc
    serve: Serve = module.serve
    return serve
