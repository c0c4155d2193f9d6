"""The network's certificate authority for dstack guests (docs/dstack-kms.md).

A dstack guest trusts its KMS by one key: the root CA whose certificate (`ca_cert`) it gets
from the KMS, whose SPKI it measures as its key provider (`{"name": "kms", "id":
hex(SPKI)}`), and to which the KMS's TLS server certificate must chain. tkms's CA is a P-256
key derived from the generation's KMS root (`mpc.dstack_keys.dstack_ca_secret`): every node
that gathered the root has the same CA, so a guest measures the same key provider whichever
node of the network it asks, and no other network has it. (The KMS root itself, secp256k1,
cannot be the CA: TLS stacks, dstack's rustls among them, do not verify secp256k1
certificates.) The CA and the temporary CA dstack guests sign their RA-TLS client certificates
with are deterministic: fixed names, validity and serial, RFC 6979 signatures, so every node
issues byte-identical CA certificates for a generation.

What the CA issues, in dstack's shapes (`ra-tls` `CertRequest`):

* the node's TLS server certificate for the endpoint: the node's own TLS key, the names guests
  reach it by, special usage (.4) `kms:rpc` (what dstack's guest checks), and the node's
  attestation (.8) copied from its RA-TLS certificate, which binds the same key;
* an app CA per app (`SignCert`): key `p256_child(CA, app_id, "app-ca")` as dstack derives
  it, app id (.3), special usage `app:ca`, path length 0;
* leaf certificates for an app's signing requests: the request's key, names and usages,
  special usage `app:custom`, the app id, and on request the attestation (.8) and app info (.9).

GetMeta's `bootstrap_info` ties the CA to the KMS root as dstack's bootstrap does: the serving
node's TEE quotes `keccak256("dstack-kms-genereted-keys-v1:" ‖ hex(CA SPKI) ‖ ";" ‖
hex(root) ‖ ";")` (dstack's spelling, zero-padded to 64 bytes; `bootstrap_report_data`), so a
verifier sees an approved KMS TD vouch that this CA belongs with the root the network certified.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from eth_hash.auto import keccak

from attest import AppIdentity, CertSigningRequest
from attest._ratls import (
    OID_APP_ID,
    OID_APP_INFO,
    OID_ATTESTATION,
    OID_CERT_USAGE,
    app_info_fields,
    encode_app_info,
    encode_attestation,
    octet_string,
)
from mpc.dstack_keys import (
    dstack_ca_secret,
    dstack_temp_ca_secret,
    p256_child,
    p256_public_spki,
)

#: dstack's special usages (extension .4).
USAGE_KMS_RPC: Final = "kms:rpc"
USAGE_APP_CA: Final = "app:ca"
USAGE_APP_CUSTOM: Final = "app:custom"
#: Validity of the CA certificates: fixed, so every node makes the same bytes.
CA_NOT_BEFORE: Final = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
CA_NOT_AFTER: Final = dt.datetime(2125, 1, 1, tzinfo=dt.UTC)
SERVER_CERT_LIFETIME: Final = dt.timedelta(days=365)
LEAF_LIFETIME: Final = dt.timedelta(days=3650)
#: dstack's label for the keys a KMS attests at bootstrap (`attest_keys`; the typo is dstack's).
BOOTSTRAP_LABEL: Final = "dstack-kms-genereted-keys-v1"


def bootstrap_report_data(ca_spki: bytes, k256_public: bytes) -> bytes:
    """The report_data of GetMeta's `bootstrap_info.attestation` (module docstring)."""
    text = f"{BOOTSTRAP_LABEL}:{ca_spki.hex()};{k256_public.hex()};"
    return keccak(text.encode()) + bytes(32)


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _key(secret: bytes) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(int.from_bytes(secret, "big"), ec.SECP256R1())


def _name(common: str, org: str | None = "tkms") -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)] if org else []
    return x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _serial(spki: bytes, label: bytes) -> int:
    return int.from_bytes(hashlib.sha256(label + spki).digest()[:16], "big") >> 1 or 1


def _ext(oid: x509.ObjectIdentifier, value: bytes) -> x509.UnrecognizedExtension:
    return x509.UnrecognizedExtension(oid, octet_string(value))


def _usage(*, ca: bool) -> x509.KeyUsage:
    """rcgen's key usages: digitalSignature, and for a CA keyCertSign and cRLSign."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _self_signed_ca(secret: bytes, common: str, path_length: int) -> x509.Certificate:
    key = _key(secret)
    spki = p256_public_spki(secret)
    name = _name(common)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(_serial(spki, common.encode()))
        .not_valid_before(CA_NOT_BEFORE)
        .not_valid_after(CA_NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_usage(ca=True), critical=True)
        .sign(key, hashes.SHA256(), ecdsa_deterministic=True)
    )


def _alt_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name.strip("[]")))
    except ValueError:
        return x509.DNSName(name)


@dataclass(frozen=True, slots=True)
class AppCa:
    """An app's CA (`SignCert`): the same key and certificate on every node."""

    app_id: bytes
    key: ec.EllipticCurvePrivateKey = field(repr=False)
    cert: x509.Certificate
    pem: str


@dataclass(frozen=True)
class DstackCa:
    """A generation's dstack CA and public temporary CA (module docstring). Secret keys are
    never printed: the repr shows the generation and the key-provider id."""

    generation: int
    key_provider_id: str  # hex of the CA's SubjectPublicKeyInfo DER
    ca_cert: x509.Certificate = field(repr=False)
    ca_pem: str = field(repr=False)
    temp_cert: x509.Certificate = field(repr=False)
    temp_pem: str = field(repr=False)
    temp_key_pem: str = field(repr=False)  # public by design (dstack's GetTempCaCert)
    _secret: bytes = field(repr=False)

    @classmethod
    def derive(
        cls, root_secret: bytes, *, chain_id: int, governance: bytes, generation: int
    ) -> DstackCa:
        secret = dstack_ca_secret(root_secret, chain_id, governance, generation)
        temp = dstack_temp_ca_secret(root_secret, chain_id, governance, generation)
        ca_cert = _self_signed_ca(secret, "tkms dstack KMS CA", 1)
        temp_cert = _self_signed_ca(temp, "tkms dstack Client Temp CA", 0)
        temp_key_pem = _key(temp).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return cls(
            generation=generation,
            key_provider_id=p256_public_spki(secret).hex(),
            ca_cert=ca_cert,
            ca_pem=_pem(ca_cert),
            temp_cert=temp_cert,
            temp_pem=_pem(temp_cert),
            temp_key_pem=temp_key_pem.decode(),
            _secret=secret,
        )

    def server_certificate(
        self,
        key: ec.EllipticCurvePrivateKey,
        names: Sequence[str],
        *,
        attestation: x509.UnrecognizedExtension | None,
        now: dt.datetime,
    ) -> x509.Certificate:
        """The endpoint's TLS certificate for `key` (the node's TLS key), special usage
        `kms:rpc`, with the node's attestation extension (.8) when given."""
        if not names:
            raise ValueError("a server certificate needs at least one name")
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(names[0], org=None))
            .issuer_name(self.ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + SERVER_CERT_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_usage(ca=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
            .add_extension(x509.SubjectAlternativeName([_alt_name(n) for n in names]), False)
            .add_extension(_ext(OID_CERT_USAGE, USAGE_KMS_RPC.encode()), critical=False)
        )
        if attestation is not None:
            builder = builder.add_extension(attestation, critical=False)
        return builder.sign(_key(self._secret), hashes.SHA256())

    def app_ca(self, app_id: bytes) -> AppCa:
        """The app's CA, derived as dstack derives it under its root CA."""
        secret = p256_child(self._secret, app_id, b"app-ca")
        key = _key(secret)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name("tkms dstack App CA"))
            .issuer_name(self.ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(_serial(p256_public_spki(secret), b"app-ca"))
            .not_valid_before(CA_NOT_BEFORE)
            .not_valid_after(CA_NOT_AFTER)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_usage(ca=True), critical=True)
            .add_extension(_ext(OID_APP_ID, app_id), critical=False)
            .add_extension(_ext(OID_CERT_USAGE, USAGE_APP_CA.encode()), critical=False)
            .sign(_key(self._secret), hashes.SHA256(), ecdsa_deterministic=True)
        )
        return AppCa(app_id=app_id, key=key, cert=cert, pem=_pem(cert))


def _time(seconds: int | None, what: str) -> dt.datetime | None:
    if seconds is None:
        return None
    try:
        when = dt.datetime.fromtimestamp(seconds, dt.UTC)
    except (OverflowError, OSError, ValueError):
        raise ValueError(f"{what} {seconds} is not a usable time") from None
    if when.year >= 10000 - 1:
        raise ValueError(f"{what} {seconds} is not a usable time")
    return when


def issue_leaf(
    app_ca: AppCa,
    request: CertSigningRequest,
    *,
    identity: AppIdentity,
    report_data: bytes,
    now: dt.datetime,
) -> x509.Certificate:
    """dstack's `CaCert::sign_csr(csr, app_id, "app:custom")` with tkms's app CA."""
    config = request.config
    public = serialization.load_der_public_key(request.pubkey)
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise ValueError("the request key is not an EC key")
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] * config.usage_server_auth
    usages += [ExtendedKeyUsageOID.CLIENT_AUTH] * config.usage_client_auth
    start = _time(config.not_before, "not_before") or now - dt.timedelta(minutes=5)
    end = _time(config.not_after, "not_after") or now + LEAF_LIFETIME
    if end <= start:
        raise ValueError("not_after is not after not_before")
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(config.subject, org=config.org_name))
        .issuer_name(app_ca.cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(ca=False), critical=True)
        .add_extension(_ext(OID_APP_ID, app_ca.app_id), critical=False)
        .add_extension(_ext(OID_CERT_USAGE, USAGE_APP_CUSTOM.encode()), critical=False)
    )
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if config.subject_alt_names:
        sans = [_alt_name(n) for n in config.subject_alt_names]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if config.ext_quote:
        stripped = encode_attestation(
            request.quote, request.event_log, report_data, request.vm_config
        )
        builder = builder.add_extension(_ext(OID_ATTESTATION, stripped), critical=False)
    if config.ext_app_info:
        info = encode_app_info(app_info_fields(identity))
        builder = builder.add_extension(_ext(OID_APP_INFO, info), critical=False)
    return builder.sign(app_ca.key, hashes.SHA256())
