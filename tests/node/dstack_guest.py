"""An unmodified dstack guest's side of the KMS protocol, for tests against real nodes.

What dstack-util's `request_app_keys_from_kms_url` does at boot, in its wire shapes: pRPC
over HTTPS, `POST <kms_url>/prpc/<Method>?json` with a serde-JSON body (bytes as hex, `null`
for Empty), a 200 with the JSON response or a 400 with `{"error": ...}`. First GetTempCaCert
with no TLS verification, then an RA-TLS client certificate (fresh P-256 key, quote bound by
`ratls-cert:`, signed by the temporary CA) for GetAppKey, the server checked against the
`ca_cert` from the first call and its special usage `kms:rpc`. The protobuf form of the same
calls is here too (`call_proto`), as pRPC serves both.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import ssl
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from attest import create_ratls_certificate, load_pem_pair
from attest._ratls import OID_CERT_USAGE, unwrap_octet_string
from attest.providers import SimulatorProvider
from guest.measure import compose_hash

#: The RTMR3 events a dstack guest has measured when it asks its KMS for keys
#: (dstack-util's Stage0 before `request_app_keys_from_kms`): no os-image-hash, key-provider
#: or system-ready yet; those follow the answer.
BOOT_EVENTS = ("system-preparing", "app-id", "compose-hash", "instance-id", "boot-mr-done")


@dataclass
class PrpcError(Exception):
    status: int
    body: dict[str, Any] | bytes

    def __str__(self) -> str:
        return f"HTTP {self.status}: {self.body!r}"

    @property
    def message(self) -> str:
        assert isinstance(self.body, dict), self.body
        return str(self.body["error"])


def _connect(
    host: str, port: int, context: ssl.SSLContext, timeout: float
) -> http.client.HTTPSConnection:
    return http.client.HTTPSConnection(host, port, context=context, timeout=timeout)


def _post(
    conn: http.client.HTTPSConnection, path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, bytes, bytes]:
    """(status, body, the server's certificate DER)."""
    try:
        conn.request("POST", path, body=body, headers=headers)
        sock = conn.sock  # read before the response takes the connection over
        cert = sock.getpeercert(binary_form=True) if isinstance(sock, ssl.SSLSocket) else None
        response = conn.getresponse()
        return response.status, response.read(), cert or b""
    finally:
        conn.close()


def no_check_context() -> ssl.SSLContext:
    """`RaClient::new(url, true)`: TLS with no certificate verification."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@dataclass
class DstackGuest:
    """A simulated dstack CVM: its TEE with dstack's boot-time RTMR3 events, and its KMS URL."""

    host: str
    port: int
    app_id: bytes
    compose: bytes
    instance_id: bytes = field(default_factory=lambda: os.urandom(20))
    provider: SimulatorProvider = field(default_factory=SimulatorProvider)
    vm_config: str = '{"os_image_hash": "' + "00" * 32 + '", "cpu_count": 1}'
    timeout: float = 30.0
    #: The server certificate of the last mTLS call (DER), as the guest's validator sees it.
    server_cert: bytes = b""

    def __post_init__(self) -> None:
        payloads = {
            "app-id": self.app_id,
            "compose-hash": compose_hash(self.compose),
            "instance-id": self.instance_id,
        }
        for name in BOOT_EVENTS:
            self.provider.extend_rtmr(3, name, payloads.get(name, b""))

    # -- pRPC, as dstack's RaClient sends it ------------------------------------------------

    def call_json(
        self, method: str, body: object, context: ssl.SSLContext | None = None
    ) -> dict[str, Any]:
        """`POST /prpc/<method>?json` with serde's JSON; the decoded answer or PrpcError."""
        conn = _connect(self.host, self.port, context or no_check_context(), self.timeout)
        status, data, self.server_cert = _post(
            conn, f"/prpc/{method}?json", json.dumps(body).encode(), {}
        )
        doc = json.loads(data) if data else None
        if status != 200:
            raise PrpcError(status, doc if isinstance(doc, dict) else data)
        assert isinstance(doc, dict), data
        return doc

    def call_proto(
        self, method: str, body: bytes, context: ssl.SSLContext | None = None
    ) -> tuple[int, bytes]:
        """`POST /prpc/KMS.<method>` with a protobuf body: (status, response bytes)."""
        conn = _connect(self.host, self.port, context or no_check_context(), self.timeout)
        headers = {"Content-Type": "application/octet-stream"}
        status, data, _ = _post(conn, f"/prpc/KMS.{method}", body, headers)
        return status, data

    # -- the boot flow --------------------------------------------------------------------

    def temp_ca(self) -> dict[str, Any]:
        return self.call_json("GetTempCaCert", None)

    def client_certificate(
        self, temp: dict[str, Any], provider: SimulatorProvider | None = None
    ) -> tuple[bytes, bytes]:
        """dstack's `generate_ra_cert`: (certificate PEM, key PEM) signed by the temp CA."""
        ca_cert = x509.load_pem_x509_certificate(temp["temp_ca_cert"].encode())
        ca_key = serialization.load_pem_private_key(temp["temp_ca_key"].encode(), None)
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        key = ec.generate_private_key(ec.SECP256R1())
        cert = create_ratls_certificate(
            key,
            provider or self.provider,
            subject="RA-TLS TEMP Cert",
            issuer=(ca_cert, ca_key),
            not_before=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1),
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return cert.public_bytes(serialization.Encoding.PEM), key_pem

    def mtls_context(self, ca_cert: str, cert_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
        """The RaClient of GetAppKey: only `ca_cert` trusted, the client certificate shown."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(cadata=ca_cert)
        load_pem_pair(context, cert_pem, key_pem)
        return context

    def get_app_key(
        self, temp: dict[str, Any] | None = None, client: tuple[bytes, bytes] | None = None
    ) -> dict[str, Any]:
        """GetTempCaCert, then GetAppKey over mTLS; checks the server as dstack-util does."""
        temp = temp or self.temp_ca()
        cert_pem, key_pem = client or self.client_certificate(temp)
        context = self.mtls_context(temp["ca_cert"], cert_pem, key_pem)
        keys = self.call_json("GetAppKey", {"api_version": 1, "vm_config": self.vm_config}, context)
        usage = server_usage(self.server_cert)
        if usage != "kms:rpc":  # dstack-util's validate_kms_rpc_cert
            raise AssertionError(f"Invalid server cert usage: {usage}")
        return keys

    def finish_boot(self, os_image_hash: bytes, key_provider_id: str) -> None:
        """What dstack-util measures after the keys: os-image-hash, key-provider, ready."""
        self.provider.extend_rtmr(3, "os-image-hash", os_image_hash)
        provider = json.dumps({"name": "kms", "id": key_provider_id}).encode()
        self.provider.extend_rtmr(3, "key-provider", provider)
        self.provider.extend_rtmr(3, "system-ready", b"")


def unhex(text: str) -> bytes:
    """prpc's `bytes_as_hex_str` read: hex after any leading "0x"."""
    while text.startswith("0x"):
        text = text[2:]
    return bytes.fromhex(text)


def server_usage(der: bytes) -> str | None:
    """The special usage (extension .4) of a certificate, as `get_special_usage` reads it."""
    cert = x509.load_der_x509_certificate(der)
    try:
        ext = cert.extensions.get_extension_for_oid(OID_CERT_USAGE).value
    except x509.ExtensionNotFound:
        return None
    assert isinstance(ext, x509.UnrecognizedExtension)
    return unwrap_octet_string(ext.value).decode()


def key_provider_id(ca_pem: str) -> str:
    """dstack-util's key-provider id: hex of the root CA's SubjectPublicKeyInfo DER."""
    cert = x509.load_pem_x509_certificate(ca_pem.encode())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return spki.hex()
