"""TLS in one place: the server's certificate and key, and what outbound clients trust.

Every outbound HTTP client of the project (the Python client and the CLI, downstream
deliveries, `get` and `scrape`) verifies certificates against the same trust, built by
`client_context`: the system's CA store, certifi's bundle (so a Python without a system
store still verifies public sites, as httpx does), and an extra CA bundle the operator
names (`--ssl-ca-certs`, `WIZ_CA_CERTS`) for executors and sources behind a private CA.
Nothing here turns verification off.

The server side (`server_context`) loads the certificate and key the executor serves
with, before the server starts, so that a missing, unreadable or mismatched file is one
clear `TLSError` naming it rather than a traceback from deep inside the HTTP server.
The options stay file paths, not a server's own objects, so the HTTP front can change.
"""

from __future__ import annotations

import functools
import os
import re
import ssl
from pathlib import Path
from typing import Literal, TypeAlias

import httpx

from .errors import TLSError

SERVER_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL:!eNULL"
"""TLS 1.2 cipher suites the server offers: forward secret with authenticated
encryption only, as Mozilla's "intermediate" profile (TLS 1.3 suites are always on and
not affected). Python's default server list also has CBC suites, and older uvicorn
releases passed "TLSv1", which adds SHA-1 and NULL-encryption ones: stated here, the
list does not depend on the HTTP server's version."""

Verify: TypeAlias = Literal[True] | str | os.PathLike[str] | ssl.SSLContext
"""What a client verifies servers against: True (the default trust), a CA bundle to
trust besides it, or an `ssl.SSLContext` of the caller's own."""

CA_CERTS_HINT = "give the CA that signed it with --ssl-ca-certs or WIZ_CA_CERTS"


@functools.cache
def _default_context() -> ssl.SSLContext:
    """The default trust, built once per process: loading the CA stores takes tens of
    milliseconds, which a client per chunk (or per test) would otherwise spend each time.
    SSL_CERT_FILE / SSL_CERT_DIR, when set, replace certifi's bundle (httpx's rule) and
    the system store's location (OpenSSL's)."""
    ctx = httpx.create_ssl_context()
    ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    return ctx


def client_context(ca_certs: str | os.PathLike[str] | None = None) -> ssl.SSLContext:
    """A context that verifies servers (certificate chain and host name) against the
    default trust, plus the CA bundle `ca_certs` (a PEM file, or a folder of hashed
    certificates) when given. Raises `TLSError` naming the bundle when it is unusable."""
    if ca_certs is None:
        return _default_context()
    path = Path(ca_certs)
    ctx = httpx.create_ssl_context()
    ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    try:
        if path.is_dir():
            ctx.load_verify_locations(capath=path)
        else:
            ctx.load_verify_locations(cafile=path)
    except OSError as exc:  # ssl.SSLError is an OSError too
        raise TLSError(str(path), f"cannot use the CA bundle {path}: {_reason(exc)}") from None
    return ctx


_PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]+-----END CERTIFICATE-----"
)
_HASHED_NAME = re.compile(r"[0-9a-f]{8}\.[0-9]+")
"""The names OpenSSL's lookup in a folder (`capath`) reads: `<subject hash>.<n>`."""


def ca_bundle_pem(ca_certs: str | os.PathLike[str]) -> str:
    """The certificates of the CA bundle `ca_certs` (a PEM file, or a folder of them) as
    PEM text, for a process that cannot read the path (a Ray actor on another node)
    to build the same trust with `pem_context`. Call it on a bundle `client_context`
    accepted.

    Only what OpenSSL would trust goes: the certificate blocks (a bundle's comments may
    be UTF-8, which `cadata` refuses, and a file may hold a private key beside its
    certificate, which must not travel), and of a folder only the files its lookup
    reads, named by subject hash (a stray `leaf.pem` there is no trust anchor to the
    executor, so none to its actors)."""
    path = Path(ca_certs)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and _HASHED_NAME.fullmatch(p.name))
    else:
        files = [path]
    blocks = [block for p in files for block in _PEM_CERTIFICATE.findall(p.read_bytes())]
    return "\n".join(block.decode("ascii") for block in blocks)


def pem_context(pem: str) -> ssl.SSLContext:
    """`client_context` for a CA bundle given as PEM text (`ca_bundle_pem`): the default
    trust plus those certificates."""
    ctx = httpx.create_ssl_context()
    ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if pem:
        ctx.load_verify_locations(cadata=pem)
    return ctx


def verify_context(verify: Verify) -> ssl.SSLContext:
    """The context for a client's `verify=` argument. False is refused: a client that
    does not verify can be talked to by anyone on the path, so switching verification
    off takes an `ssl.SSLContext` the caller configured that way on purpose."""
    if isinstance(verify, ssl.SSLContext):
        return verify
    if verify is True:
        return client_context()
    if isinstance(verify, str | os.PathLike):
        return client_context(verify)
    raise ValueError(
        f"verify={verify!r} is not supported: pass True, a CA bundle's path, or an "
        "ssl.SSLContext (verification is never switched off by a flag)"
    )


def server_context(
    certfile: str | os.PathLike[str],
    keyfile: str | os.PathLike[str],
    password: str | None = None,
) -> ssl.SSLContext:
    """The context the executor would serve with, loaded now to check the files: each
    readable, the certificate file holding a PEM certificate, the key file a PEM private
    key matching it (decrypted with `password`). Never prompts for a password on the
    terminal, as OpenSSL would for an encrypted key without one."""
    cert, key = Path(certfile), Path(keyfile)
    for flag, path in (("--ssl-certfile", cert), ("--ssl-keyfile", key)):
        try:
            path.read_bytes()
        except OSError as exc:
            raise TLSError(str(path), f"cannot read {flag} {path}: {_reason(exc)}") from None
    try:  # a throwaway context, only to see that the file holds certificates
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=cert)
    except ssl.SSLError:
        raise TLSError(
            str(cert), f"--ssl-certfile {cert} holds no PEM certificate (-----BEGIN CERTIFICATE)"
        ) from None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(SERVER_CIPHERS)

    def no_password() -> str:
        raise TLSError(
            str(key),
            f"--ssl-keyfile {key} is encrypted: give its password with "
            "--ssl-keyfile-password or WIZ_SSL_KEYFILE_PASSWORD",
        )

    try:
        ctx.load_cert_chain(cert, key, password if password is not None else no_password)
    except ssl.SSLError as exc:
        text = f"{exc.reason or ''} {exc}".lower()
        if "key_values_mismatch" in text or "key values mismatch" in text:
            message = (
                f"the key in --ssl-keyfile {key} does not belong to the certificate in "
                f"--ssl-certfile {cert}"
            )
        elif password is not None and b"ENCRYPTED" in key.read_bytes():
            message = f"--ssl-keyfile-password does not decrypt --ssl-keyfile {key}"
        else:
            message = f"--ssl-keyfile {key} holds no usable PEM private key ({_reason(exc)})"
        raise TLSError(str(key), message) from None
    return ctx


def verification_failure(exc: BaseException) -> str | None:
    """Why a server's certificate was refused, when that is what `exc` (an httpx error,
    or anything wrapping one) comes from; None for any other failure. Such a failure is
    final: retrying cannot make an untrusted certificate trusted."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            why = current.verify_message or current.reason or str(current)
            return f"its TLS certificate could not be verified ({why})"
        current = current.__cause__ or current.__context__
    return None


def _reason(exc: OSError) -> str:
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    return exc.strerror or str(exc)
