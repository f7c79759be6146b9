"""A WebSocket client for tests that need control over the bytes: pipelined frames in one write, broken frames.

The handshake and the server's frames go through ``websockets``' Sans-I/O
``ClientProtocol`` (public API); ``send_raw()`` writes client frames built by
hand (``client_frame``), whatever they hold, in one socket write.
"""

from __future__ import annotations

import asyncio
import struct
from types import TracebackType

from websockets.client import ClientProtocol
from websockets.frames import Close, Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

__all__ = ["RawClient", "client_frame"]

TEXT, BINARY, CONTINUATION, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


def client_frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0) -> bytes:
    """A masked client frame (mask key 0, so the payload goes as is); ``rsv`` is the 3 reserved bits."""
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    size = len(payload)
    if size < 126:
        header = bytes((first, 0x80 | size))
    elif size < 65536:
        header = bytes((first, 0x80 | 126)) + struct.pack("!H", size)
    else:
        header = bytes((first, 0x80 | 127)) + struct.pack("!Q", size)
    return header + b"\0\0\0\0" + payload


def close_payload(code: int, reason: str = "") -> bytes:
    """A close frame's payload with any code, valid or not."""
    return struct.pack("!H", code) + reason.encode()


class RawClient:
    """``async with RawClient(url) as client``: ``send_raw(*frames)``, ``recv()``, ``close_code``."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.url = url
        self.protocol = ClientProtocol(parse_uri(url), max_size=None)
        self.headers = headers or {}
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.frames: asyncio.Queue[Frame | None] = asyncio.Queue()
        self.response: Response | None = None
        self._reading: asyncio.Task[None] | None = None

    async def __aenter__(self) -> RawClient:
        uri = parse_uri(self.url)
        self.reader, self.writer = await asyncio.open_connection(uri.host, uri.port)
        request = self.protocol.connect()
        for name, value in self.headers.items():
            request.headers[name] = value
        self.protocol.send_request(request)
        self._flush()
        opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._reading = asyncio.create_task(self._read(opened))
        await asyncio.wait_for(opened, 5)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self.writer is not None and self._reading is not None
        self.writer.close()
        self._reading.cancel()
        try:
            await self._reading
        except (asyncio.CancelledError, ConnectionError):
            pass

    async def _read(self, opened: asyncio.Future[None]) -> None:
        assert self.reader is not None
        try:
            while True:
                try:
                    data = await self.reader.read(65536)
                except ConnectionError:  # reset by the server
                    data = b""
                if not data:
                    self.protocol.receive_eof()
                    break
                self.protocol.receive_data(data)
                for event in self.protocol.events_received():
                    if isinstance(event, Response):
                        self.response = event
                        if not opened.done():
                            opened.set_result(None)
                    elif isinstance(event, Frame):
                        self.frames.put_nowait(event)
                self._flush()
        finally:
            if not opened.done():
                opened.set_exception(ConnectionError("the handshake did not complete"))
            self.frames.put_nowait(None)

    def _flush(self) -> None:
        assert self.writer is not None
        for data in self.protocol.data_to_send():
            if data and not self.writer.is_closing():
                try:
                    self.writer.write(data)
                except ConnectionError:
                    pass

    def send_raw(self, *frames: bytes) -> None:
        """Write ``frames`` (from ``client_frame``) in one socket write."""
        assert self.writer is not None
        self.writer.write(b"".join(frames))

    def send_texts(self, *texts: str) -> None:
        """Several text frames in one socket write."""
        self.send_raw(*(client_frame(TEXT, text.encode()) for text in texts))

    async def recv_frame(self, timeout: float = 5.0) -> Frame | None:
        """The server's next frame (control frames included); ``None`` once the connection ended."""
        return await asyncio.wait_for(self.frames.get(), timeout)

    async def recv(self, timeout: float = 5.0) -> str | bytes:
        """The next data message (unfragmented), ``str`` for text; ``ConnectionError`` at a close frame."""
        while True:
            frame = await self.recv_frame(timeout)
            if frame is None or frame.opcode is Opcode.CLOSE:
                raise ConnectionError(f"closed: {self.close_code}")
            if frame.opcode is Opcode.TEXT:
                return bytes(frame.data).decode()
            if frame.opcode is Opcode.BINARY:
                return bytes(frame.data)

    async def wait_closed(self, timeout: float = 5.0) -> int | None:
        """Read until the server's close frame and the end of the connection; its close code."""
        assert self._reading is not None
        await asyncio.wait_for(asyncio.shield(self._reading), timeout)
        return self.close_code

    @property
    def close_frame(self) -> Close | None:
        """The server's close frame, once it came."""
        return self.protocol.close_rcvd

    @property
    def close_code(self) -> int | None:
        """The code of the server's close frame (``None`` while none came)."""
        close = self.protocol.close_rcvd
        return None if close is None else int(close.code)
