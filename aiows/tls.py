"""TLS for the WebSocket port: ``wss://`` and HTTPS on the same socket.

``server.run(..., ssl=context)`` and ``server.serve(..., ssl=context)`` take an
``ssl.SSLContext``; ``server_context()`` builds one from PEM files, as
``aiows run --certfile F --keyfile F [--ca-certs F]`` does:

```python
from aiows.tls import server_context

server.run("0.0.0.0", 8443, ssl=server_context("cert.pem", "key.pem"))
```

The context is the standard library's server default
(``ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)``: TLS 1.2 or newer,
the library's cipher choice). With ``ca_certs`` every client must present a
certificate signed by one of those authorities (mutual TLS).
"""

from __future__ import annotations

import ssl

__all__ = ["TLSError", "server_context"]


class TLSError(ValueError):
    """A certificate, key or CA file that cannot be loaded; the message names the file and the cause."""


def server_context(
    certfile: str,
    keyfile: str | None = None,
    *,
    ca_certs: str | None = None,
    password: str | None = None,
) -> ssl.SSLContext:
    """A server-side ``ssl.SSLContext`` for ``certfile`` (PEM, the chain after the certificate) and ``keyfile``.

    ``keyfile`` may be left out when ``certfile`` holds the private key too;
    ``password`` decrypts an encrypted key. ``ca_certs`` (a PEM file of CA
    certificates) turns on client certificate verification: a client without
    a certificate signed by one of them fails the TLS handshake.

    Raises:
        TLSError: a file is missing or unreadable, or is not a matching PEM certificate and key.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(certfile, keyfile, password)
    except (OSError, ssl.SSLError) as exc:
        files = certfile if keyfile is None else f"{certfile} and {keyfile}"
        raise TLSError(f"cannot load the TLS certificate and key from {files}: {_cause(exc)}") from None
    if ca_certs is not None:
        try:
            context.load_verify_locations(cafile=ca_certs)
        except (OSError, ssl.SSLError) as exc:
            raise TLSError(f"cannot load the CA certificates from {ca_certs}: {_cause(exc)}") from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _cause(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
