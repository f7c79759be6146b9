"""Log output: one JSON object per line (``aiows run --log-format json``), or the classic text lines.

``configure_logging(level, "json")`` puts a ``JSONFormatter`` on the root
logger: every record becomes ``{"time", "level", "logger", "message"}``, and
the records of ``LoggingMiddleware`` carry its stable keys instead of a
message: ``event`` (``connect``, ``message``, ``disconnect``), ``path``,
``peer``, ``user_id``, ``type``, ``size``, ``ms`` and ``code`` (``null`` where
they do not apply). Credentials are redacted from messages and tracebacks
(``aiows.redaction``), whatever logger they come from.
"""

from __future__ import annotations

import logging
import sys
from datetime import datetime, timezone
from typing import Any

import orjson

from .redaction import redact

__all__ = ["FIELDS", "JSONFormatter", "TEXT_FORMAT", "announce", "configure_logging"]

#: The keys of ``LoggingMiddleware``'s records, always all present.
FIELDS = ("event", "path", "peer", "user_id", "type", "size", "ms", "code")

#: The text format of ``aiows run``'s log lines.
TEXT_FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"

_json_lines = False


class JSONFormatter(logging.Formatter):
    """Formats each record as one JSON object on one line (``time`` in UTC, ISO 8601)."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
        }
        fields = getattr(record, "aiows", None)
        if isinstance(fields, dict):
            data.update(fields)
        else:
            data["message"] = redact(record.getMessage())
        if record.exc_info:
            data["exception"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            data["exception"] = redact(record.exc_text)
        return orjson.dumps(data, default=str).decode()


def configure_logging(level: str = "info", format: str = "text") -> None:
    """Log to stderr from ``level`` up, as text lines or (``format="json"``) one JSON object per line.

    What ``aiows run --log-level LEVEL --log-format FORMAT`` does; like
    ``logging.basicConfig``, it does nothing if the root logger has handlers already.
    """
    global _json_lines
    if format not in ("text", "json"):
        raise ValueError(f'format must be "text" or "json", not {format!r}')
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if format == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    _json_lines = format == "json"


def announce(message: str) -> None:
    """A line the server or ``aiows run`` prints on stderr (``aiows: serving on ...``); JSON with ``--log-format json``."""
    if _json_lines:
        line = orjson.dumps(
            {
                "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                "level": "INFO",
                "logger": "aiows",
                "message": message,
            }
        ).decode()
    else:
        line = f"aiows: {message}"
    # One write() for the line and its newline: stderr is unbuffered, and print() writes the newline apart, so the
    # lines of several workers sharing the stream could interleave.
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
