"""``ServerOptions``: every ``WebSocketServer`` option in one frozen object, checked once.

``WebSocketServer(**options)`` builds one (``server.options``); the
front-ends, the dispatcher and the broadcast hub read it instead of keeping
defaults of their own. ``WebSocketServer``'s docstring documents each.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Literal

from .codecs import Codec, codec_named
from .transports import FRONT_ENDS

__all__ = ["DEFAULT_MAX_MESSAGE_SIZE", "LOOPS", "OptionError", "ServerOptions"]

#: Default largest incoming message, in bytes (1 MiB); larger ones close with 1009.
DEFAULT_MAX_MESSAGE_SIZE = 2**20

#: The ``loop=`` choices of ``run()``.
LOOPS = ("auto", "asyncio", "uvloop")


class OptionError(ValueError):
    """An option with a value it cannot take; ``option`` names it (``AiowsSettings`` names its variable)."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(message)
        self.option = option


@dataclass(frozen=True)
class ServerOptions:
    """The options of one ``WebSocketServer``: each field is its keyword argument of the same name.

    Raises:
        ValueError: an option is out of range or not one of its choices.
    """

    max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0
    compression: str | None = None
    open_timeout: float | None = 10.0
    close_timeout: float | None = 10.0
    idle_timeout: float | None = None
    send_timeout: float | None = None
    max_queue: int | None = 16
    max_concurrent_handlers: int = 1
    max_pending_requests: int = 64
    max_connections: int | None = None
    max_connections_per_ip: int | None = None
    max_connections_per_ip_per_minute: int | None = None
    origins: tuple[str, ...] | None = None
    trusted_proxies: tuple[str, ...] = ()
    health_path: str | None = "/healthz"
    health_detail: bool = False
    metrics_path: str | None = None
    asyncapi_path: str | None = "/asyncapi.json"
    docs_path: str | None = "/docs"
    title: str = "aiows app"
    version: str = "0.1.0"
    shutdown_grace: float = 10.0
    outgoing_queue_size: int = 256
    outgoing_overflow: Literal["close", "drop_oldest"] = "close"
    transport: str = "websockets"
    loop: str = "auto"
    client_script_path: str | None = "/aiows.js"
    codecs: tuple[str | Codec, ...] = ("json",)

    def __post_init__(self) -> None:
        self.offered_codecs  # noqa: B018 (checked now, kept for the server)
        if self.compression not in (None, "deflate"):
            raise OptionError("compression", f'compression must be None or "deflate", not {self.compression!r}')
        if self.transport not in FRONT_ENDS:
            raise OptionError(
                "transport", f"transport must be one of {', '.join(map(repr, FRONT_ENDS))}, not {self.transport!r}"
            )
        if self.loop not in LOOPS:
            raise OptionError("loop", f'loop must be "auto", "asyncio" or "uvloop", not {self.loop!r}')
        if not FRONT_ENDS[self.transport].peer_at_handshake and (
            self.max_connections_per_ip is not None or self.max_connections_per_ip_per_minute is not None
        ):
            raise OptionError(
                "max_connections_per_ip" if self.max_connections_per_ip is not None else "max_connections_per_ip_per_minute",
                "max_connections_per_ip and max_connections_per_ip_per_minute need the client address during "
                f'the handshake, which transport="{self.transport}" does not provide: use transport="websockets"',
            )
        if self.max_concurrent_handlers < 1:
            raise OptionError("max_concurrent_handlers", "max_concurrent_handlers must be at least 1")
        if self.max_pending_requests < 1:
            raise OptionError(
                "max_pending_requests", f"max_pending_requests must be at least 1, not {self.max_pending_requests}"
            )
        if self.client_script_path is not None and not self.client_script_path.startswith("/"):
            raise OptionError(
                "client_script_path",
                f"client_script_path must start with '/' (or be None), not {self.client_script_path!r}",
            )
        if self.outgoing_queue_size < 1:
            raise OptionError(
                "outgoing_queue_size", f"outgoing_queue_size must be at least 1, not {self.outgoing_queue_size}"
            )
        if self.outgoing_overflow not in ("close", "drop_oldest"):
            raise OptionError(
                "outgoing_overflow", f'outgoing_overflow must be "close" or "drop_oldest", not {self.outgoing_overflow!r}'
            )
        for name in ("max_message_size", "max_queue", "max_connections", "max_connections_per_ip"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise OptionError(name, f"{name} must be at least 1 (or None for no limit), not {value}")
        for name in ("health_path", "metrics_path", "asyncapi_path", "docs_path"):
            path = getattr(self, name)
            if path is not None and not path.startswith("/"):
                raise OptionError(name, f"{name} must start with '/' (or be None), not {path!r}")
        if self.metrics_path is not None and self.metrics_path == self.health_path:
            raise OptionError("metrics_path", f"metrics_path and health_path are both {self.metrics_path!r}")

    @functools.cached_property
    def offered_codecs(self) -> tuple[Codec, ...]:
        """The codecs offered, in order (the first is the one a client gets that negotiates none).

        Raises:
            OptionError: an unknown name, none at all, two with one subprotocol, or a codec whose library
                is not installed.
        """
        if not self.codecs:
            raise OptionError("codecs", 'codecs must name at least one codec, such as ("json",)')
        codecs: list[Codec] = []
        for item in self.codecs:
            if isinstance(item, Codec):
                codecs.append(item)
                continue
            try:
                codecs.append(codec_named(item))
            except (ValueError, ImportError) as exc:
                raise OptionError("codecs", str(exc)) from None
        subprotocols = [codec.subprotocol for codec in codecs]
        if len(set(subprotocols)) != len(subprotocols):
            raise OptionError("codecs", f"two codecs share a subprotocol: {subprotocols}")
        return tuple(codecs)

    @functools.cached_property
    def subprotocols(self) -> tuple[str, ...]:
        """The subprotocols of the codecs offered (``"aiows.json"``...), in order."""
        return tuple(codec.subprotocol for codec in self.offered_codecs)

    def replace(self, **changes: object) -> ServerOptions:
        """A copy with ``changes`` applied (checked again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

