"""The keys the agent holds for one key generation: the app seed and what the network certified.

An agent holds one generation, or two during a rotation's retirement window (design §3.3):
the new one and the one apps still read by default until the window ends (`guest.serving`
decides which is served). Everything here is derived once, when the generation's keys
arrive, so concurrent requests never see half-made material.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from guest import keys
from guest.kms_types import IssuedAppKey
from mpc import G1, NetworkContext

#: Signatures remembered per generation before the cache starts over.
SIGNATURE_CACHE = 4096


def app_ca(key: ec.EllipticCurvePrivateKey, app_id: bytes) -> x509.Certificate:
    """The app's CA certificate; its key is derived, so it is the same in every instance."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"tkms app 0x{app_id.hex()} CA")])
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
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


@dataclass(repr=False)  # it holds the app seed: never print it
class GenerationKeys:
    """One generation's app seed, IBE key and certificates, and the keys made from them."""

    app_id: bytes
    #: Where the keys come from: chain id, governance, key generation and epoch.
    network: NetworkContext
    seed: bytes
    ibe_key: G1
    #: The network's BLS signature (under PK2) over the app key's `tkms-app-pubkey:v1`.
    app_certificate: bytes
    #: dstack's KMS signature over the app key (chain element 1), with the root's certificate.
    issued: IssuedAppKey
    app_key: keys.DerivedKey = field(init=False)
    ca_key: ec.EllipticCurvePrivateKey = field(init=False)
    ca_cert: x509.Certificate = field(init=False)
    _signatures: dict[tuple[str, bytes], bytes] = field(default_factory=dict, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        self.app_key = keys.app_key(self.seed, self.app_id)
        self.ca_key = keys.ca_key(self.seed)
        self.ca_cert = app_ca(self.ca_key, self.app_id)

    @property
    def generation(self) -> int:
        return int(self.network.generation)

    def chain(self, purpose: str, public_key: bytes) -> list[bytes]:
        """dstack's signature chain of a derived key (see guest.keys)."""
        return [self._app_signature(purpose, public_key), self.issued.signature]

    def certificates(self) -> dict[str, object]:
        """What ties the chain to the network's PK2 (the GetKey/Sign reply's `tkms` field)."""
        return {
            "generation": self.generation,
            "app_public_key": self.app_key.public.hex(),
            "app_key_certificate": self.app_certificate.hex(),
            "kms_root": self.issued.root.hex(),
            "kms_root_certificate": self.issued.certificate.hex(),
        }

    def _app_signature(self, purpose: str, public_key: bytes) -> bytes:
        # Deterministic (RFC 6979) and ~5 ms in pure Python: worth remembering per key.
        cached = self._signatures.get((purpose, public_key))
        if cached is None:
            cached = keys.app_signature(self.app_key, purpose, public_key)
            with self._lock:
                if len(self._signatures) >= SIGNATURE_CACHE:
                    self._signatures.clear()
                self._signatures[(purpose, public_key)] = cached
        return cached
