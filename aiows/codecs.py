"""Codecs: how messages are written on the wire, chosen per connection by subprotocol.

A ``Codec`` decodes a frame's payload into a message object and encodes an
object into a payload, sent as text or binary frames. JSON (orjson) is the
default; MessagePack (ormsgpack, ``pip install "aiows[msgpack]"``) is the
second. ``WebSocketServer(codecs=("json", "msgpack"))`` offers both: a client
that offers the subprotocol ``aiows.msgpack`` gets MessagePack both ways, one
that offers ``aiows.json`` (or nothing the server knows) gets the first codec
listed. Dispatch, ``WebSocket.send_json`` / ``send_message``, error frames,
requests and broadcast all go through the connection's codec
(``websocket.codec``).
"""

from __future__ import annotations

import importlib
from typing import Any, Final

import orjson
from mypy_extensions import mypyc_attr
from pydantic import BaseModel

__all__ = ["JSON", "Codec", "JSONCodec", "MsgPackCodec", "codec_named", "encode_default", "transcoded"]

#: ``orjson.dumps`` and ``loads``, bound once: compiled code would look the module attribute up on every message.
_dumps: Final = orjson.dumps
_loads: Final = orjson.loads


def encode_default(value: object) -> object:
    """What codecs make of objects they cannot encode themselves: pydantic models are dumped, the rest refused."""
    if isinstance(value, BaseModel):
        return value.model_dump()
    raise TypeError(f"Object of type {type(value).__name__} is not serializable")


@mypyc_attr(allow_interpreted_subclasses=True)
class Codec:
    """A wire format: subclass it (``decode``, ``encode``) to add one of your own.

    Args:
        name: The name ``WebSocketServer(codecs=...)`` knows it by (``"json"``).
        subprotocol: The WebSocket subprotocol a client offers to get it (``"aiows.json"``).
        content_type: Its media type, for the AsyncAPI document (``"application/json"``).
        text: Whether its frames are text (``True``) or binary.
        label: The format's name in error frames (``"message is not valid JSON"``).
        object_name: What a message must be, in error frames (``"a JSON object"``).
    """

    def __init__(
        self, name: str, subprotocol: str, content_type: str, text: bool, label: str, object_name: str
    ) -> None:
        self.name = name
        self.subprotocol = subprotocol
        self.content_type = content_type
        self.text = text
        self.label = label
        self.object_name = object_name
        #: The code and message of the error frame for a payload it cannot decode, and for one that is not an object.
        self.invalid_code = "invalid_" + name
        self.invalid_message = "message is not valid " + label
        self.not_object_message = "message must be " + object_name

    def decode(self, data: bytes) -> Any:
        """The message object a payload holds; ``ValueError`` if it is not valid."""
        raise NotImplementedError

    def decode_frame(self, data: bytes, text: bool) -> Any:
        """``decode()`` for a received frame: a text frame's UTF-8 is checked first where the codec is binary.

        Raises:
            ValueError: the payload is not valid (``UnicodeDecodeError`` for text that is not UTF-8; a text
                codec such as orjson checks UTF-8 itself).
        """
        if text and not self.text:
            data.decode()
        return self.decode(data)

    def encode(self, value: object) -> bytes:
        """``value`` as one payload (pydantic models are dumped first); ``TypeError`` for what it cannot hold."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class JSONCodec(Codec):
    """JSON with orjson, in text frames: the default."""

    def __init__(self) -> None:
        super().__init__("json", "aiows.json", "application/json", True, "JSON", "a JSON object")

    def decode(self, data: bytes) -> Any:
        return _loads(data)

    def encode(self, value: object) -> bytes:
        return _dumps(value, default=encode_default)


class MsgPackCodec(Codec):
    """MessagePack with ormsgpack, in binary frames (``pip install "aiows[msgpack]"``).

    Map keys must be strings, as in JSON; datetimes are sent as RFC 3339
    strings, as the JSON codec sends them.

    Raises:
        ImportError: ormsgpack is not installed.
    """

    def __init__(self) -> None:
        super().__init__("msgpack", "aiows.msgpack", "application/msgpack", False, "MessagePack", "a MessagePack map")
        try:
            module: Any = importlib.import_module("ormsgpack")
        except ImportError:
            raise ImportError('the "msgpack" codec needs ormsgpack: pip install "aiows[msgpack]"') from None
        self._packb: Any = module.packb
        self._unpackb: Any = module.unpackb

    def decode(self, data: bytes) -> Any:
        return self._unpackb(data)

    def encode(self, value: object) -> bytes:
        payload: bytes = self._packb(value, default=encode_default)
        return payload


#: The JSON codec every connection uses unless it negotiated another one.
JSON: Final = JSONCodec()


def transcoded(codec: Codec, payload: bytes) -> bytes:
    """A JSON ``payload`` (a broadcast's, as the backend carries it) re-encoded in ``codec``."""
    return codec.encode(_loads(payload))


def codec_named(name: str) -> Codec:
    """The built-in codec called ``name`` (``"json"``, ``"msgpack"``).

    Raises:
        ValueError: no built-in codec has that name.
        ImportError: its library is not installed.
    """
    if name == "json":
        return JSON
    if name == "msgpack":
        return MsgPackCodec()
    raise ValueError(f'unknown codec {name!r}: "json", "msgpack" or a Codec instance')
