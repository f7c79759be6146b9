"""``transport="picows"``: picows' public listener API in front of a ``SocketLink``.

picows parses the handshake and the frames (in C) and answers pings; this
module checks what picows leaves to its user (RSV bits, close codes, the
closing handshake), undoes compression with ``websockets``' permessage-deflate
extension, and hands data frames to the link, which writes its frames
straight to picows' underlying asyncio transport. Only picows' documented API
is used: ``ws_create_server``, ``WSListener`` and its callbacks (including
``pause_writing`` / ``resume_writing``), ``WSTransport.send_close`` /
``send_ping`` / ``send`` / ``disconnect`` / ``underlying_transport``,
``WSFrame`` and ``WSUpgradeResponse``.

picows does not show the client's address during the handshake, so the
per-IP limits are refused with this transport (``ServerOptions``).
"""

from __future__ import annotations

import http
import logging
from collections.abc import MutableMapping
from typing import Any

import picows  # type: ignore[import-not-found,unused-ignore]
from multidict import CIMultiDict  # type: ignore[import-not-found,unused-ignore]  # a picows dependency
from picows import (  # type: ignore[import-not-found,unused-ignore]
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
)
from websockets.datastructures import Headers
from websockets.exceptions import PayloadTooBig, ProtocolError
from websockets.extensions.base import Extension
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.server import ServerProtocol

from ..options import ServerOptions
from .base import Gate, HandshakeRequest, Listener, Reply
from .core import Front, LinkLimits, LinkMeter, SocketLink, valid_close_code

__all__ = ["PicowsListener", "serve"]

_TEXT = WSMsgType.TEXT
_BINARY = WSMsgType.BINARY
_CONTINUATION = WSMsgType.CONTINUATION
_CLOSE = WSMsgType.CLOSE
_PONG = WSMsgType.PONG
_OPCODES = {_TEXT: Opcode.TEXT, _BINARY: Opcode.BINARY, _CONTINUATION: Opcode.CONT}
_KINDS = {_TEXT: 1, _BINARY: 2, _CONTINUATION: 0}

#: picows starts each connection with a 16 KiB read buffer (it doubles on demand); 1 KiB keeps idle connections small.
READ_BUFFER = 512


class QuietLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """picows' logger: its per-connection lines (and parser errors: a client's fault) are DEBUG on ``aiows.picows``.

    Being a ``LoggerAdapter`` and not a ``Logger``, it also keeps picows from
    making a child logger per connection, which the redaction filter (on
    ``aiows.picows`` itself) would not see.
    """

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        level = min(level, logging.DEBUG)
        if self.isEnabledFor(level):
            self.logger.log(level, msg, *args, **kwargs)


LOGGER = QuietLogger(logging.getLogger("aiows.picows"), {})

logger = logging.getLogger("aiows")


class PicowsListener(WSListener):  # type: ignore[misc,unused-ignore]
    """One connection: picows' frames to its ``SocketLink``; also the link's ``Wire``."""

    __slots__ = ("close_sent", "extension", "front", "link", "request", "subprotocol", "transport")

    def __init__(
        self, front: Front, request: HandshakeRequest, extension: Extension | None, subprotocol: str | None
    ) -> None:
        super().__init__()
        self.front = front
        self.request = request
        self.extension = extension
        self.subprotocol = subprotocol
        self.transport: Any = None
        self.link: SocketLink | None = None
        self.close_sent = False

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        underlying = transport.underlying_transport
        link = self.link = self.front.new_link(
            underlying,
            self,
            self.request,
            underlying.get_extra_info("peername"),
            self.extension is not None,
            self.subprotocol,
        )
        link.opened()
        self.front.gate.opened(link, self)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        link = self.link
        if link is None:
            return
        if not link.batching:
            link.cork()
        try:
            self.handle_frame(link, frame)
        except Exception:  # aiows' own fault: say so, and end this connection only
            logger.exception("failed to handle a frame")
            link.fail(1011, "internal error")
        finally:
            if frame.last_in_buffer:
                link.uncork()

    def handle_frame(self, link: SocketLink, frame: WSFrame) -> None:
        """One frame from picows: RSV bits checked, data inflated and given to ``link``, close and pong handled."""
        msg_type = frame.msg_type
        kind = _KINDS.get(msg_type)
        if frame.rsv2 or frame.rsv3 or (frame.rsv1 and (self.extension is None or kind is None)):
            link.fail(1002, "reserved bits must be 0")
        elif kind is not None:
            payload = frame.get_payload_as_bytes()
            extension = self.extension
            if extension is not None:
                try:
                    payload = self.inflate(extension, frame, payload, link.limits)
                except PayloadTooBig:
                    link.fail(1009, "message too big")
                    return
                except ProtocolError as exc:
                    link.fail(1002, str(exc))
                    return
            link.data(kind, bool(frame.fin), payload)
        elif msg_type is _CLOSE:
            self.handle_close(link, frame)
        elif msg_type is _PONG:
            link.pong(frame.get_payload_as_bytes())

    @staticmethod
    def inflate(extension: Extension, frame: WSFrame, payload: bytes, limits: LinkLimits) -> bytes:
        """A compressed data frame's payload, inflated by ``websockets``' permessage-deflate extension."""
        decoded = extension.decode(
            Frame(_OPCODES[frame.msg_type], payload, frame.fin, frame.rsv1),
            max_size=limits.max_message_size or None,
        )
        return bytes(decoded.data)

    def handle_close(self, link: SocketLink, frame: WSFrame) -> None:
        """The peer's close frame: its code checked, answered with the same code, then the connection closed."""
        if frame.payload_size == 0:
            code: int | None = None
            reason = ""
        else:
            code = int(frame.get_close_code().value)
            if not valid_close_code(code):
                link.fail(1002, f"invalid close code {code}")
                return
            reason = frame.get_close_reason() or ""
        link.close_received(code, reason)
        transport = self.transport
        if not self.close_sent:  # answer with the same code, as websockets does (an empty frame for an empty one)
            self.close_sent = True
            if code is None:
                transport.send(_CLOSE, b"")
            else:
                transport.send_close(code, reason.encode())
        transport.disconnect()
        link.closing()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.front.gate.release(self)
        if self.link is not None:
            self.link.connection_lost()

    def pause_writing(self) -> None:
        if self.link is not None:
            self.link.pause_writing()

    def resume_writing(self) -> None:
        if self.link is not None:
            self.link.resume_writing()

    # -- the link's Wire --------------------------------------------------

    def send_close(self, code: int, reason: str) -> None:
        self.close_sent = True
        self.transport.send_close(code, reason.encode())

    def send_ping(self, data: bytes) -> None:
        self.transport.send_ping(data)

    def fail(self, code: int, reason: str) -> None:
        if not self.close_sent:
            self.close_sent = True
            self.transport.send_close(code, reason.encode())
        self.transport.disconnect()

    def encode(self, payload: bytes, text: bool) -> bytes:
        assert self.extension is not None
        frame = Frame(Opcode.TEXT if text else Opcode.BINARY, payload)
        return frame.serialize(mask=False, extensions=[self.extension])


def _response(reply: Reply) -> Any:
    response = WSUpgradeResponse()
    response.version = b"HTTP/1.1"
    response.status = http.HTTPStatus(reply.status)
    response.headers = CIMultiDict(reply.headers)
    response.body = reply.body
    return response


def _negotiate(
    front: Front, request: WSUpgradeRequest, path: str
) -> tuple[Extension | None, str | None, dict[str, str]]:
    """permessage-deflate and the subprotocol, negotiated by ``websockets``' own handshake code; the headers to
    send back."""
    headers = request.headers
    deflate = front.compression is not None and "Sec-WebSocket-Extensions" in headers
    if not deflate and "Sec-WebSocket-Protocol" not in headers:
        return None, None, {}
    protocol = ServerProtocol(
        extensions=front.extensions(), subprotocols=front.subprotocols, select_subprotocol=front.select_subprotocol
    )
    response = protocol.accept(Request(path, Headers(list(headers.items()))))
    if response.status_code != 101:
        return None, None, {}
    extra: dict[str, str] = {}
    for name in ("Sec-WebSocket-Extensions", "Sec-WebSocket-Protocol"):
        value = response.headers.get(name)
        if value is not None:
            extra[name] = value
    extension = protocol.extensions[0] if protocol.extensions else None
    return extension, protocol.subprotocol, extra


async def serve(
    gate: Gate, options: ServerOptions, host: str, port: int, meter: LinkMeter | None = None, **kwargs: Any
) -> Listener:
    """Listen on ``host:port`` with picows; ``kwargs`` go to ``loop.create_server`` (``reuse_port``, ``backlog``,
    ``ssl``, ``ssl_handshake_timeout``). With ``meter``, the links count their bytes.
    """
    front = Front(gate, options, meter)

    def listener_factory(upgrade_request: WSUpgradeRequest) -> Any:
        path = upgrade_request.path.decode("latin-1")
        headers: MutableMapping[str, str] = upgrade_request.headers
        request = HandshakeRequest(path, headers)
        upgrade = headers.get("Upgrade", "").lower() == "websocket"
        extension, subprotocol, extra_headers = _negotiate(front, upgrade_request, path) if upgrade else (None, None, {})
        listener = PicowsListener(front, request, extension, subprotocol)
        reply = gate.admit(request, upgrade, listener, None)
        if reply is not None:
            gate.release(listener)
            return WSUpgradeResponseWithListener(_response(reply), None)
        return WSUpgradeResponseWithListener(WSUpgradeResponse.create_101_response(extra_headers), listener)

    max_size = options.max_message_size
    server = await picows.ws_create_server(
        listener_factory,
        host,
        port,
        websocket_handshake_timeout=options.open_timeout,
        enable_auto_ping=False,
        enable_auto_pong=True,
        max_frame_size=2**31 - 1 if max_size is None else max_size,
        logger_name=LOGGER,
        read_buffer_init_size=READ_BUFFER,
        use_aiofastnet=False,  # its transport costs 5 KiB more per connection, and no less CPU (measured on uvloop)
        **kwargs,
    )
    return Listener(server, lambda: None)
