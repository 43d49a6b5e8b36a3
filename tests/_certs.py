"""Certificates made by the tests (trustme), written as the PEM files an operator has.

One private CA issues a certificate for `127.0.0.1` and `localhost`; nothing here is
trusted anywhere but in the tests that name `ca` explicitly.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class Certs:
    ca: Path
    """The CA bundle to trust (PEM)."""
    cert: Path
    """The server's certificate chain (PEM)."""
    key: Path
    """The server's private key (PEM)."""
    authority: trustme.CA

    def server_context(self) -> ssl.SSLContext:
        """A TLS server context with the certificate, for the tests' own servers."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts the CA and nothing else."""
        ctx = ssl.create_default_context(cafile=str(self.ca))
        return ctx


def make_certs(folder: Path) -> Certs:
    folder.mkdir(parents=True, exist_ok=True)
    authority = trustme.CA()
    issued = authority.issue_cert("127.0.0.1", "localhost")
    ca, cert, key = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    authority.cert_pem.write_to_path(str(ca))
    issued.private_key_pem.write_to_path(str(key))
    cert.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    return Certs(ca, cert, key, authority)
