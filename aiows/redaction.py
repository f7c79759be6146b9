"""Keep credentials out of logs: aiows' own lines and the ``websockets`` library's DEBUG lines.

``websockets`` logs, at DEBUG, the request line (with the query string, so
``?token=...``), every request header (so ``Authorization``) and a preview of
every frame (so a first-message ``{"type": "auth", "token": ...}``). Those
records are emitted on the ``websockets.server`` / ``websockets.client``
loggers themselves, with the values in ``record.args``; a filter on the parent
``websockets`` logger would not see them. ``install_redaction()`` puts a
``RedactingFilter`` on each of those loggers and on ``aiows``; the server calls
it once when it starts.

The filter rewrites a record in place: the message is rendered, credentials
are replaced by ``[REDACTED]``, and the record keeps the result with no
arguments. It only runs for records that pass the logger's level, so it costs
nothing when DEBUG is off.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import threading
import traceback
from urllib.parse import unquote_plus

__all__ = [
    "REDACTED",
    "REDACTED_LOGGERS",
    "RedactingFilter",
    "install_redaction",
    "redact",
    "register_secret",
]

#: What a credential is replaced with.
REDACTED = "[REDACTED]"

#: Loggers that get a ``RedactingFilter``: a filter only sees records logged on its own logger.
REDACTED_LOGGERS = ("aiows", "aiows.picows", "websockets.server", "websockets.client", "websockets")

#: Names whose values are credentials, in a query string or a JSON object (compared decoded, lowercase).
_TOKEN_KEY = re.compile(r"(?:access_|auth_|id_)?token")

#: ``name=value`` in a query string: ``?token=...``, also spelled ``?%74oken=...`` (decoded before comparing).
_QUERY_PAIR = re.compile(r"([?&;])([^=&;\s#'\"?]+)=([^&;\s#'\"]*)")

#: ``"name": "value"`` in JSON, the value possibly cut short by a log preview; ``"\u0074oken"`` is ``"token"``.
_JSON_PAIR = re.compile(r'"((?:[^"\\]|\\.)*)"(\s*:\s*")((?:[^"\\]|\\.)*)')


def _query_pair(match: re.Match[str]) -> str:
    if _TOKEN_KEY.fullmatch(unquote_plus(match.group(2)).lower()):
        return f"{match.group(1)}{match.group(2)}={REDACTED}"
    return match.group(0)


def _json_pair(match: re.Match[str]) -> str:
    key = match.group(1)
    if "\\" in key:
        try:
            key = json.loads(f'"{key}"')
        except ValueError:
            pass
    if _TOKEN_KEY.fullmatch(key.lower()):
        return f'"{match.group(1)}"{match.group(2)}{REDACTED}'
    return match.group(0)


_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # credential headers, as websockets logs them ("< Authorization: Bearer x") or inline
    (
        re.compile(r"(?im)^([<>]?\s*(?:authorization|proxy-authorization|cookie|set-cookie)\s*:\s*).*$"),
        r"\1" + REDACTED,
    ),
    (re.compile(r"(?i)('|\")?(authorization|cookie)('|\")?(\s*[:=]\s*)('|\")[^'\"]*"), r"\1\2\3\4\5" + REDACTED),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), r"\1 " + REDACTED),
)

_secrets: set[str] = set()
_lock = threading.Lock()


def register_secret(secret: str | bytes) -> None:
    """Redact ``secret`` wherever it appears in a filtered log line (``AuthMiddleware`` registers its key)."""
    text = secret.decode(errors="replace") if isinstance(secret, bytes) else secret
    if len(text) >= 4:  # shorter strings would blank out ordinary words
        with _lock:
            _secrets.add(text)


def redact(text: str) -> str:
    """``text`` with tokens, credential headers and registered secrets replaced by ``[REDACTED]``."""
    text = _QUERY_PAIR.sub(_query_pair, text)
    text = _JSON_PAIR.sub(_json_pair, text)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    for secret in tuple(_secrets):
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _redact_arg(arg: object) -> object:
    """A frame argument (``websockets.frames.Frame``) rendered from its redacted full payload.

    The frame's own ``str()`` elides the middle of long payloads, which could
    cut a ``"token"`` key off while keeping its value: redact the whole
    payload first, then let the frame elide it.
    """
    data = getattr(arg, "data", None)
    if not isinstance(data, (bytes, bytearray, memoryview)) or not dataclasses.is_dataclass(arg):
        return arg
    text = bytes(data).decode(errors="replace")
    cleaned = redact(text)
    if cleaned == text:
        return arg
    try:
        return str(dataclasses.replace(arg, data=cleaned.encode()))  # type: ignore[type-var]
    except Exception:
        return f"{getattr(getattr(arg, 'opcode', None), 'name', 'FRAME')} {REDACTED}"


class RedactingFilter(logging.Filter):
    """A ``logging.Filter`` that redacts credentials in every record it sees; it drops nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            args = record.args
            changed = False
            if isinstance(args, tuple) and args:
                new_args = tuple(_redact_arg(arg) for arg in args)
                changed = any(new is not old for new, old in zip(new_args, args))
                record.args = new_args
            message = record.getMessage()
            cleaned = redact(message)
            if changed or cleaned != message:
                record.msg = cleaned
                record.args = ()
            if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
                record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
            if record.exc_text:
                record.exc_text = redact(record.exc_text)
        except Exception:  # a broken record must not break logging; drop its details instead
            record.msg = "[log record could not be redacted]"
            record.args = ()
            record.exc_info = None
            record.exc_text = None
        return True


_FILTER = RedactingFilter()


def install_redaction() -> None:
    """Put the redacting filter on the ``aiows`` and ``websockets`` loggers (once; safe to call again)."""
    for name in REDACTED_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(existing, RedactingFilter) for existing in logger.filters):
            logger.addFilter(_FILTER)
