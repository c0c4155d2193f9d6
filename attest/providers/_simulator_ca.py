"""The simulator's certificate authority: an INSECURE root CA anyone can re-create.

.. warning::
   The simulator root CA private key is derived from a public seed
   (``SHA-256("tkms simulator root CA v1 -- INSECURE, PUBLIC SEED")`` reduced to a P-256
   scalar). Anyone can derive it and mint "simulator" quotes for any measurements. That is the
   point: any process can verify simulator quotes without shared files, and simulator evidence
   is only ever accepted where the caller's policy names `SimulatorAllowed` (testnets with
   ``simulatorAllowed == true`` on chain). It proves nothing about the code that runs.

The root certificate is built deterministically (fixed names, serial, validity, RFC 6979
signature), so every process produces byte-identical DER. PCK certificates issued under it carry
an Intel-shaped SGX extension (PPID, TCB, PCE-ID, FMSPC, SGX type) so that device_id and the PCK
reader work on simulator quotes exactly as on real ones.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from functools import cache

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = [
    "SIMULATOR_FMSPC",
    "SIMULATOR_ROOT_SEED",
    "insecure_ca_certificate",
    "issue_simulator_pck",
    "simulator_name",
    "simulator_root_ca",
    "simulator_root_public_key_der",
]

SIMULATOR_ROOT_SEED = b"tkms simulator root CA v1 -- INSECURE, PUBLIC SEED"
#: Not an Intel FMSPC: no real TCB info exists for it.
SIMULATOR_FMSPC = bytes.fromhex("00000054534d")  # "TSM"
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_SGX_EXT = "1.2.840.113741.1.13.1"
_NOT_BEFORE = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
_NOT_AFTER = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)


def _der(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def _oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    body = bytearray([40 * parts[0] + parts[1]])
    for p in parts[2:]:
        chunk = [p & 0x7F]
        p >>= 7
        while p:
            chunk.append(0x80 | (p & 0x7F))
            p >>= 7
        body += bytes(reversed(chunk))
    return _der(0x06, bytes(body))


def der_integer(n: int) -> bytes:
    """A DER INTEGER (non-negative `n`)."""
    body = n.to_bytes(n.bit_length() // 8 + 1, "big")
    return _der(0x02, body)


def _seq(*items: bytes) -> bytes:
    return _der(0x30, b"".join(items))


def _pair(oid: str, value: bytes) -> bytes:
    return _seq(_oid(oid), value)


def _sgx_extension(ppid: bytes, cpu_svn: bytes, pce_svn: int) -> bytes:
    """Intel's SGX extension value (SGX PCK Certificate and CRL Profile, section 3.5)."""
    base = _SGX_EXT
    tcb = [_pair(f"{base}.2.{i + 1}", der_integer(cpu_svn[i])) for i in range(16)]
    tcb.append(_pair(f"{base}.2.17", der_integer(pce_svn)))
    tcb.append(_pair(f"{base}.2.18", _der(0x04, cpu_svn)))
    return _seq(
        _pair(f"{base}.1", _der(0x04, ppid)),
        _pair(f"{base}.2", _seq(*tcb)),
        _pair(f"{base}.3", _der(0x04, b"\x00\x00")),
        _pair(f"{base}.4", _der(0x04, SIMULATOR_FMSPC)),
        _pair(f"{base}.5", _der(0x0A, b"\x00")),
    )


@cache
def _root_key() -> ec.EllipticCurvePrivateKey:
    scalar = int.from_bytes(hashlib.sha256(SIMULATOR_ROOT_SEED).digest(), "big")
    return ec.derive_private_key(scalar % (_P256_ORDER - 1) + 1, ec.SECP256R1())


def simulator_name(cn: str) -> x509.Name:
    """The subject of a simulator certificate: the organisation says INSECURE."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tkms INSECURE simulator"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def insecure_ca_certificate(
    key: ec.EllipticCurvePrivateKey, cn: str, algorithm: hashes.SHA256 | hashes.SHA384
) -> x509.Certificate:
    """A deterministic self-signed CA certificate (fixed names, serial, validity; RFC 6979)
    for a simulator key everyone can derive."""
    name = simulator_name(cn)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(_NOT_BEFORE)
        .not_valid_after(_NOT_AFTER)
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
        .sign(key, algorithm, ecdsa_deterministic=True)
    )


@cache
def simulator_root_ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The (deterministic) simulator root certificate and its publicly derivable key."""
    key = _root_key()
    return insecure_ca_certificate(key, "tkms simulator root CA (INSECURE)", hashes.SHA256()), key


def simulator_root_public_key_der() -> bytes:
    """SubjectPublicKeyInfo DER of the simulator root: the simulator's trust anchor."""
    return (
        _root_key()
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def issue_simulator_pck(
    pck_key: ec.EllipticCurvePublicKey,
    *,
    ppid: bytes,
    cpu_svn: bytes = bytes(16),
    pce_svn: int = 0,
    not_before: dt.datetime = _NOT_BEFORE,
    not_after: dt.datetime = _NOT_AFTER,
) -> x509.Certificate:
    """A simulator PCK certificate for `pck_key`, signed by the simulator root."""
    if len(ppid) != 16 or len(cpu_svn) != 16:
        raise ValueError("ppid and cpu_svn must be 16 bytes each")
    root, root_key = simulator_root_ca()
    return (
        x509.CertificateBuilder()
        .subject_name(simulator_name("tkms simulator PCK certificate"))
        .issuer_name(root.subject)
        .public_key(pck_key)
        .serial_number(int.from_bytes(hashlib.sha256(ppid).digest()[:16], "big") >> 1)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.UnrecognizedExtension(
                x509.ObjectIdentifier(_SGX_EXT), _sgx_extension(ppid, cpu_svn, pce_svn)
            ),
            critical=False,
        )
        .sign(root_key, hashes.SHA256(), ecdsa_deterministic=True)
    )
