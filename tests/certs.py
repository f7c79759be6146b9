"""Certificates made for a test: a CA, a server certificate for 127.0.0.1 and localhost, a client certificate.

Made with the ``cryptography`` package (in the ``test`` extra); each call makes new keys.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Certs:
    """PEM files in one directory: ``ca`` signs ``server`` (with ``server_key``) and ``client`` (``client_key``)."""

    ca: Path
    server: Path
    server_key: Path
    client: Path
    client_key: Path

    def client_context(self, *, with_certificate: bool = False) -> ssl.SSLContext:
        """A client context that trusts the test CA (and presents the client certificate if asked)."""
        context = ssl.create_default_context(cafile=str(self.ca))
        if with_certificate:
            context.load_cert_chain(str(self.client), str(self.client_key))
        return context

    def server_context(self, *, verify_clients: bool = False) -> ssl.SSLContext:
        from aiows.tls import server_context

        return server_context(str(self.server), str(self.server_key), ca_certs=str(self.ca) if verify_clients else None)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


def make_certs(directory: Path) -> Certs:
    """A CA and the certificates it signs, written to ``directory``."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("aiows test CA"))
        .issuer_name(_name("aiows test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    def issue(common_name: str, usage: x509.ObjectIdentifier, names: list[x509.GeneralName]) -> tuple[bytes, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
            )
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM), key

    server_pem, server_key = issue(
        "127.0.0.1",
        ExtendedKeyUsageOID.SERVER_AUTH,
        [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")],
    )
    client_pem, client_key = issue("aiows test client", ExtendedKeyUsageOID.CLIENT_AUTH, [])
    certs = Certs(
        directory / "ca.pem", directory / "server.pem", directory / "server.key",
        directory / "client.pem", directory / "client.key",
    )  # fmt: skip
    certs.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    certs.server.write_bytes(server_pem)
    _write_key(server_key, certs.server_key)
    certs.client.write_bytes(client_pem)
    _write_key(client_key, certs.client_key)
    return certs
