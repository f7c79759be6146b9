"""``AiowsSettings``: every server option, and how to run it, from ``AIOWS_*`` environment variables.

Needs ``pip install "aiows[settings]"`` (pydantic-settings):

```python
from aiows import AiowsSettings, WebSocketServer

server = WebSocketServer.from_settings()           # AiowsSettings(): the environment and .env
server = WebSocketServer.from_settings(AiowsSettings(max_message_size=65536))
```

Each field is read from ``AIOWS_<NAME>`` (``AIOWS_MAX_MESSAGE_SIZE=65536``),
then from a ``.env`` file in the current directory, then its default (the
``WebSocketServer`` default: ``ServerOptions``). Values given to the
constructor win over both; ``aiows run``'s flags are given so. Optional
numbers and paths take ``none`` (or an empty value) for ``None``; lists
(``origins``, ``trusted_proxies``) are comma-separated or a JSON list.
A value that does not fit raises ``SettingsError`` naming the variable and the
problem (``AIOWS_MAX_MESSAGE_SIZE: Input should be a valid integer...``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import orjson
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .options import OptionError, ServerOptions

__all__ = ["ENV_PREFIX", "AiowsSettings", "SettingsError"]

#: The prefix of every variable.
ENV_PREFIX = "AIOWS_"

_DEFAULTS = ServerOptions()

#: The fields that are ``ServerOptions`` (the rest say how to run the server).
SERVER_OPTIONS = tuple(field.name for field in dataclasses.fields(ServerOptions))

#: Fields whose values are never shown in an error (they may hold a password).
_SECRET = frozenset({"redis_url"})


class SettingsError(ValueError):
    """Settings that do not fit: one line per problem, each naming its ``AIOWS_*`` variable."""


class AiowsSettings(BaseSettings):
    """Every ``WebSocketServer`` option, plus host, port, workers, TLS files and logging.

    The guide "Operations" (docs/guides/operations.md, "Settings") lists the variables.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    # How to run it (aiows run, or server.run() on a server made by WebSocketServer.from_settings()).
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1)
    certfile: str | None = None
    keyfile: str | None = None
    ca_certs: str | None = None
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    log_format: Literal["text", "json"] = "text"
    #: ``RedisBackend(redis_url)`` for rooms and broadcast across processes (``None``: in memory).
    redis_url: str | None = None

    # WebSocketServer's options (aiows.options.ServerOptions), with its defaults.
    max_message_size: int | None = _DEFAULTS.max_message_size
    ping_interval: float | None = _DEFAULTS.ping_interval
    ping_timeout: float | None = _DEFAULTS.ping_timeout
    compression: Literal["deflate"] | None = None
    open_timeout: float | None = _DEFAULTS.open_timeout
    close_timeout: float | None = _DEFAULTS.close_timeout
    idle_timeout: float | None = _DEFAULTS.idle_timeout
    send_timeout: float | None = _DEFAULTS.send_timeout
    max_queue: int | None = _DEFAULTS.max_queue
    max_concurrent_handlers: int = _DEFAULTS.max_concurrent_handlers
    max_pending_requests: int = _DEFAULTS.max_pending_requests
    max_connections: int | None = _DEFAULTS.max_connections
    max_connections_per_ip: int | None = _DEFAULTS.max_connections_per_ip
    max_connections_per_ip_per_minute: int | None = _DEFAULTS.max_connections_per_ip_per_minute
    # Unions: pydantic-settings hands a value that is not JSON ("a,b") on to _list() for a union with a list type,
    # 2.2.1 (the floor) as the latest (NoDecode, the newer way, needs pydantic-settings 2.7, hence pydantic 2.7).
    origins: tuple[str, ...] | None = _DEFAULTS.origins
    #: ``None`` (``AIOWS_TRUSTED_PROXIES=none``) is no proxy, as ``()``.
    trusted_proxies: tuple[str, ...] | None = _DEFAULTS.trusted_proxies
    health_path: str | None = _DEFAULTS.health_path
    health_detail: bool = _DEFAULTS.health_detail
    metrics_path: str | None = _DEFAULTS.metrics_path
    client_script_path: str | None = _DEFAULTS.client_script_path
    asyncapi_path: str | None = _DEFAULTS.asyncapi_path
    docs_path: str | None = _DEFAULTS.docs_path
    title: str = _DEFAULTS.title
    version: str = _DEFAULTS.version
    shutdown_grace: float = _DEFAULTS.shutdown_grace
    outgoing_queue_size: int = _DEFAULTS.outgoing_queue_size
    outgoing_overflow: Literal["close", "drop_oldest"] = _DEFAULTS.outgoing_overflow
    transport: Literal["websockets", "picows"] = "websockets"
    loop: Literal["auto", "asyncio", "uvloop"] = "auto"
    #: Codec names (``AIOWS_CODECS=json,msgpack``); ``Codec`` objects are given to ``WebSocketServer`` itself.
    codecs: tuple[str, ...] = ("json",)

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise SettingsError(_describe(exc)) from None

    @field_validator("*", mode="before")
    @classmethod
    def _none(cls, value: Any) -> Any:
        """``none``, ``null`` or an empty value is ``None`` (checked by the field's type)."""
        if isinstance(value, str) and value.strip().lower() in ("", "none", "null"):
            return None
        return value

    @field_validator("origins", "trusted_proxies", "codecs", mode="before")
    @classmethod
    def _list(cls, value: Any) -> Any:
        """``a,b`` or ``["a", "b"]``."""
        if isinstance(value, str):
            text = value.strip()
            if text.lower() in ("", "none", "null"):
                return None
            if text.startswith("["):
                return orjson.loads(text)
            return [item.strip() for item in text.split(",") if item.strip()]
        return value

    @model_validator(mode="after")
    def _check(self) -> AiowsSettings:
        try:
            ServerOptions(**self.server_options())
        except OptionError as exc:
            raise ValueError(f"{ENV_PREFIX}{exc.option.upper()}: {exc}") from None
        if self.certfile is None and (self.keyfile is not None or self.ca_certs is not None):
            raise ValueError(f"{ENV_PREFIX}KEYFILE and {ENV_PREFIX}CA_CERTS need {ENV_PREFIX}CERTFILE")
        return self

    def server_options(self) -> dict[str, Any]:
        """The ``WebSocketServer`` keyword arguments these settings hold (without ``broadcast``)."""
        options = {name: getattr(self, name) for name in SERVER_OPTIONS}
        options["trusted_proxies"] = self.trusted_proxies or ()
        return options


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors(include_url=False):
        location = error["loc"]
        if location:
            name = str(location[0])
            where = f"{ENV_PREFIX}{name.upper()}"
            value = error.get("input")
            shown = "" if name in _SECRET or value is None or isinstance(value, dict) else f" (got {value!r})"
            lines.append(f"{where}: {error['msg']}{shown}")
        else:  # the checks of _check(): the message names the variable
            lines.append(str(error["msg"]).removeprefix("Value error, "))
    return "invalid aiows settings: " + "; ".join(lines)
