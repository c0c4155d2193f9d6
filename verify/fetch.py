"""Reaching a name over HTTPS the way a browser does, and reading what it serves.

`Target` is a host name with the port to connect to and the address it resolves to: names
under `.localhost` resolve to 127.0.0.1 (RFC 6761 §6.3, as browsers and curl do; the testnet's
names live there); others resolve through the system. `get_json` speaks HTTP/1.1 over TLS
with the name as SNI and Host, trusting `context` (a CA file, the system store, or nothing at
all for reading evidence that verifies itself); `peer_certificate` reads the leaf a name
serves, verified or not.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

MAX_BODY = 4 << 20


class FetchError(Exception):
    """The name could not be reached, its TLS failed, or it answered something unusable."""


@dataclass(frozen=True)
class Target:
    name: str
    port: int = 443
    address: str = ""  # where to connect; "" = resolve `name`

    @classmethod
    def parse(cls, text: str) -> Target:
        """`NAME[:PORT]` (an `https://` prefix and a path are ignored)."""
        rest = text.removeprefix("https://").split("/", 1)[0]
        name, sep, port = rest.rpartition(":")
        if not sep:
            name, port = rest, "443"
        if not name or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{text!r} is not NAME[:PORT]")
        return cls(name.lower().rstrip("."), int(port))

    def with_name(self, name: str) -> Target:
        return Target(name, self.port, self.address)

    @property
    def connect_host(self) -> str:
        if self.address:
            return self.address
        if self.name == "localhost" or self.name.endswith(".localhost"):
            return "127.0.0.1"
        return self.name

    def __str__(self) -> str:
        return f"{self.name}:{self.port}"


def trust(ca_file: str | None) -> ssl.SSLContext:
    """A verifying context: the CA file if given, else the system's roots."""
    try:
        return (
            ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
        )
    except (OSError, ssl.SSLError) as exc:
        raise FetchError(f"cannot load the CA file {ca_file}: {exc}") from None


def unverified() -> ssl.SSLContext:
    """For reading what a name serves when trust comes from what is inside (quotes)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def spki_of(der: bytes) -> bytes:
    """The SubjectPublicKeyInfo DER of a DER certificate."""
    cert = x509.load_der_x509_certificate(der)
    return cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def _connect(target: Target, context: ssl.SSLContext, timeout: float) -> ssl.SSLSocket:
    try:
        raw = socket.create_connection((target.connect_host, target.port), timeout=timeout)
    except OSError as exc:
        raise FetchError(f"cannot connect to {target} ({target.connect_host}): {exc}") from None
    try:
        return context.wrap_socket(raw, server_hostname=target.name)
    except (ssl.SSLError, OSError) as exc:
        raw.close()
        raise FetchError(f"TLS with {target} failed: {exc}") from None


def peer_certificate(target: Target, context: ssl.SSLContext, timeout: float = 10.0) -> bytes:
    """The DER leaf `target` serves for its name (FetchError if TLS fails under `context`)."""
    with _connect(target, context, timeout) as tls:
        der = tls.getpeercert(binary_form=True)
    if not der:
        raise FetchError(f"{target} presented no certificate")
    return der


class _Connection(http.client.HTTPSConnection):
    def __init__(self, target: Target, context: ssl.SSLContext, timeout: float) -> None:
        super().__init__(target.name, target.port, timeout=timeout, context=context)
        self._target = target
        self._tls_context = context
        self.peer_der = b""

    def connect(self) -> None:
        self.sock = _connect(self._target, self._tls_context, self.timeout or 10.0)
        self.peer_der = self.sock.getpeercert(binary_form=True) or b""


def get(
    target: Target, path: str, context: ssl.SSLContext, timeout: float = 15.0
) -> tuple[int, bytes, bytes]:
    """(status, body, served leaf DER) of `GET path` on `target`."""
    connection = _Connection(target, context, timeout)
    try:
        connection.request("GET", path, headers={"Connection": "close"})
        response = connection.getresponse()
        body = response.read(MAX_BODY + 1)
    except (OSError, http.client.HTTPException) as exc:
        raise FetchError(f"GET https://{target}{path}: {exc}") from None
    finally:
        connection.close()
    if len(body) > MAX_BODY:
        raise FetchError(f"GET https://{target}{path}: answer larger than {MAX_BODY} bytes")
    return response.status, body, connection.peer_der


def get_json(
    target: Target, path: str, context: ssl.SSLContext, timeout: float = 15.0
) -> tuple[Any, bytes]:
    """(decoded JSON, served leaf DER) of a 200 answer; FetchError with the reason otherwise."""
    status, body, der = get(target, path, context, timeout)
    try:
        decoded = json.loads(body)
    except ValueError:
        raise FetchError(f"GET https://{target}{path}: HTTP {status}, not JSON") from None
    if status != 200:
        error = decoded.get("error") if isinstance(decoded, dict) else None
        raise FetchError(f"GET https://{target}{path}: HTTP {status}: {error or body[:200]!r}")
    return decoded, der
