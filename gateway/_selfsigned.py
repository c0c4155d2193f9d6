"""Throwaway certificates for the proxy's benchmark and tests: a CA and leaves it issues.

Not for production: keys are generated in memory, live for a day, and the CA signs whatever
names it is given.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Issued:
    """A certificate (and its issuer's, for a chain) with its key, in PEM."""

    cert_pem: bytes
    key_pem: bytes
    chain_pem: bytes  # the leaf followed by its issuer (just the cert for the CA)
    sha256: bytes  # fingerprint of the DER certificate, to tell which one a client saw

    def __repr__(self) -> str:
        return f"Issued(sha256={self.sha256.hex()[:16]}..., <key redacted>)"


@dataclass(frozen=True)
class ThrowawayCA:
    """A self-signed CA that issues leaf certificates for DNS names and IP addresses."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def create(cls, name: str = "tkms test CA") -> ThrowawayCA:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        cert = (
            _builder(subject, subject, key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        return cls(cert=cert, key=key)

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, *names: str, expired: bool = False) -> Issued:
        """A leaf for `names` (DNS names, wildcards or IP addresses); the first is the CN.

        `expired`: one that ended yesterday, to test that it is refused."""
        key = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = []
        for name in names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                sans.append(x509.DNSName(name))
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
        cert = (
            _builder(subject, self.cert.subject, key.public_key(), shift_days=-2 if expired else 0)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return Issued(
            cert_pem=cert_pem,
            key_pem=key_pem,
            chain_pem=cert_pem + self.cert_pem,
            sha256=cert.fingerprint(hashes.SHA256()),
        )


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    shift_days: int = 0,
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=shift_days)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )
