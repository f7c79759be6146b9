"""The default front-end: an asyncio protocol of aiows driving ``websockets``' Sans-I/O ``ServerProtocol``.

``websockets`` parses the handshake and the frames, answers pings, checks RSV
bits, opcodes, close codes and sizes, and negotiates compression; everything
else (assembly, writes, flow control, keepalive, closing) is the
``SocketLink``'s. Only public APIs of ``websockets`` are used:
``ServerProtocol.receive_data`` / ``receive_eof`` / ``events_received`` /
``data_to_send`` / ``accept`` / ``reject`` / ``send_response`` / ``send_*`` /
``fail``, the ``Request``, ``Response`` and ``Frame`` events, and the
permessage-deflate extension factory.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

from websockets.frames import Opcode
from websockets.http11 import Request
from websockets.server import ServerProtocol

from ..options import ServerOptions
from .base import Gate, HandshakeRequest, Listener, Reply
from .core import Front, LinkMeter, SocketLink

__all__ = ["WebsocketsProtocol", "serve"]

_TEXT: Final = Opcode.TEXT
_BINARY: Final = Opcode.BINARY
_CONT: Final = Opcode.CONT
_PONG: Final = Opcode.PONG
_CLOSE: Final = Opcode.CLOSE

#: ``websockets``' own logger: its DEBUG lines (request line, headers, frames) go through aiows' redaction.
LOGGER: Final = logging.getLogger("websockets.server")


class WebsocketsProtocol(asyncio.BufferedProtocol):
    """One TCP connection: the handshake, then frames to its ``SocketLink``; also the link's ``Wire``.

    A buffered protocol: the event loop reads into one buffer shared by every
    connection of the server (``Front.buffer``), instead of allocating a
    256 KiB ``bytes`` for each read as plain asyncio protocols get.
    """

    def __init__(self, front: Front) -> None:
        self.front = front
        self.protocol = ServerProtocol(
            extensions=front.extensions(),
            subprotocols=front.subprotocols,
            select_subprotocol=front.select_subprotocol,
            max_size=front.max_size,
            logger=LOGGER,
        )
        self.transport: Any = None
        self.peer: Any = None
        self.link: SocketLink | None = None
        self.open_timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol -------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.peer = transport.get_extra_info("peername")
        self.front.handshakes.add(self)
        timeout = self.front.open_timeout
        if timeout is not None:
            self.open_timer = asyncio.get_running_loop().call_later(timeout, self.abort)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.front.view

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self.front.buffer[:nbytes])

    def data_received(self, data: bytes | bytearray) -> None:
        protocol = self.protocol
        protocol.receive_data(data)
        events = protocol.events_received()
        link = self.link
        if link is None:
            self.handle_request(events)
        elif events:
            self.handle_frames(link, events)
        writes = protocol.data_to_send()
        if writes:
            self.write_out(writes)

    def eof_received(self) -> None:
        self.protocol.receive_eof()
        self.write_out(self.protocol.data_to_send())

    def connection_lost(self, exc: BaseException | None) -> None:
        front = self.front
        front.handshakes.discard(self)
        if self.open_timer is not None:
            self.open_timer.cancel()
            self.open_timer = None
        front.gate.release(self)
        if self.link is not None:
            self.link.connection_lost()

    def pause_writing(self) -> None:
        if self.link is not None:
            self.link.pause_writing()

    def resume_writing(self) -> None:
        if self.link is not None:
            self.link.resume_writing()

    # -- handshake and frames ---------------------------------------------

    def handle_request(self, events: list[Any]) -> None:
        """The opening request: answered by the gate (HTTP), or accepted and handed over as a ``SocketLink``."""
        if not events:
            return  # the request has not fully arrived (or was malformed: websockets closes)
        request = events[0]
        if not isinstance(request, Request):
            return
        protocol = self.protocol
        headers = request.headers
        handshake = HandshakeRequest(request.path, headers)
        upgrade = "websocket" in (value.lower() for value in headers.get_all("Upgrade"))
        reply = self.front.gate.admit(handshake, upgrade, self, self.peer)
        if reply is not None:
            protocol.send_response(self.rejection(reply))
            return
        response = protocol.accept(request)
        protocol.send_response(response)
        if response.status_code != 101:
            return
        self.write_out(protocol.data_to_send())  # the 101 goes out before anything the app writes
        self.front.handshakes.discard(self)
        if self.open_timer is not None:
            self.open_timer.cancel()
            self.open_timer = None
        link = self.link = self.front.new_link(
            self.transport, self, handshake, self.peer, bool(protocol.extensions), protocol.subprotocol
        )
        link.opened()
        self.front.gate.opened(link, self)
        if len(events) > 1:  # frames the client sent right behind its request
            self.handle_frames(link, events[1:])

    def rejection(self, reply: Reply) -> Any:
        """``reply`` as the ``websockets`` response that refuses the upgrade."""
        response = self.protocol.reject(reply.status, "")
        response.body = reply.body
        headers = response.headers
        for name, value in reply.headers:
            if name in headers:
                del headers[name]
            headers[name] = value
        del headers["Content-Length"]
        headers["Content-Length"] = str(len(reply.body))
        return response

    def handle_frames(self, link: SocketLink, events: list[Any]) -> None:
        """The frames of one read, given to ``link`` while it is corked (its replies go out in one write)."""
        link.cork()
        for frame in events:
            opcode = frame.opcode
            if opcode is _TEXT:
                link.data(1, frame.fin, frame.data)
            elif opcode is _BINARY:
                link.data(2, frame.fin, frame.data)
            elif opcode is _CONT:
                link.data(0, frame.fin, frame.data)
            elif opcode is _CLOSE:
                close = self.protocol.close_rcvd
                link.close_received(
                    None if close is None else int(close.code), None if close is None else close.reason
                )
            elif opcode is _PONG:
                link.pong(bytes(frame.data))
        link.uncork()

    def write_out(self, writes: list[bytes]) -> None:
        """Write what ``websockets`` has to send; its end-of-stream marker closes the TCP connection."""
        transport = self.transport
        for data in writes:
            if data:
                transport.write(data)
            else:  # websockets' end-of-stream marker: the server closes the TCP connection
                transport.close()
                if self.link is not None:
                    self.link.closing()

    def abort(self) -> None:
        """Drop the connection (a handshake that took longer than ``open_timeout``, or the server stops)."""
        self.open_timer = None
        if self.transport is not None:
            self.transport.abort()

    # -- the link's Wire --------------------------------------------------

    def send_close(self, code: int, reason: str) -> None:
        self.protocol.send_close(code, reason)
        self.write_out(self.protocol.data_to_send())

    def send_ping(self, data: bytes) -> None:
        self.protocol.send_ping(data)
        self.write_out(self.protocol.data_to_send())

    def fail(self, code: int, reason: str) -> None:
        self.protocol.fail(code, reason)
        self.write_out(self.protocol.data_to_send())

    def encode(self, payload: bytes, text: bool) -> bytes:
        if text:
            self.protocol.send_text(payload)
        else:
            self.protocol.send_binary(payload)
        return b"".join(self.protocol.data_to_send())


async def serve(
    gate: Gate, options: ServerOptions, host: str, port: int, meter: LinkMeter | None = None, **kwargs: Any
) -> Listener:
    """Listen on ``host:port``; ``kwargs`` go to ``loop.create_server`` (``reuse_port``, ``backlog``,
    ``ssl``, ``ssl_handshake_timeout``). With ``meter``, the links count their bytes.
    """
    front = Front(gate, options, meter)
    server = await asyncio.get_running_loop().create_server(lambda: WebsocketsProtocol(front), host, port, **kwargs)
    return Listener(server, front.abort_handshakes)
