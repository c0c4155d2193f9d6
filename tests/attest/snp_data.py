"""The vendored SEV-SNP sets (tests/data/attestation/README.md) as test inputs."""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from functools import cache

from cryptography.hazmat.primitives import serialization

from attest import SnpAttestation, decode_snp_attestation, encode_snp_attestation
from attest._snp_certs import load_certificate
from tests.conftest import ATTESTATION_DATA

#: Inside every certificate's validity (the dstack VCEK starts 2026-06-17).
NOW = int(dt.datetime(2026, 7, 1, tzinfo=dt.UTC).timestamp())
MILAN_ASK = (ATTESTATION_DATA / "virtee-sev/builtin/milan/ask.pem").read_bytes()
DSTACK_BIN = ATTESTATION_DATA / "dstack/sev-snp/sev_snp_attestation.bin"


@dataclass(frozen=True)
class SnpSet:
    name: str
    report: bytes
    ask: bytes
    vcek: bytes
    version: int
    tcb_status: str
    measurement: str  # hex prefix

    @property
    def chain(self) -> list[bytes]:
        return [self.ask, self.vcek]

    def vcek_der(self) -> bytes:
        cert = load_certificate(self.vcek, "VCEK")
        return cert.public_bytes(serialization.Encoding.DER)


@cache
def dstack_attestation() -> SnpAttestation:
    return decode_snp_attestation(DSTACK_BIN.read_bytes())


def dstack_attestation_with_certs() -> bytes:
    """The real dstack attestation with its ASK and VCEK in cert_chain (as an extended report
    delivers them); the signed report is unchanged."""
    d = ATTESTATION_DATA / "dstack/sev-snp"
    att = dataclasses.replace(
        dstack_attestation(),
        cert_chain=((d / "sev_snp_ask.pem").read_bytes(), (d / "sev_snp_vcek.pem").read_bytes()),
    )
    return encode_snp_attestation(att)


SETS = (
    SnpSet(
        "virtee",
        bytes.fromhex((ATTESTATION_DATA / "virtee-sev/report_milan.hex").read_text().strip()),
        MILAN_ASK,
        (ATTESTATION_DATA / "virtee-sev/vcek_milan.der").read_bytes(),
        2,
        "UpToDate",
        "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f",
    ),
    SnpSet(
        "trustee",
        (ATTESTATION_DATA / "trustee/snp/test-report.bin").read_bytes(),
        MILAN_ASK,
        (ATTESTATION_DATA / "trustee/snp/test-vcek.der").read_bytes(),
        2,
        "OutOfDate",
        "a1f3930413247bb38cfc1715",
    ),
    SnpSet(
        "dstack",
        dstack_attestation().report,
        (ATTESTATION_DATA / "dstack/sev-snp/sev_snp_ask.pem").read_bytes(),
        (ATTESTATION_DATA / "dstack/sev-snp/sev_snp_vcek.pem").read_bytes(),
        3,
        "OutOfDate",
        "7f51e17f72a04d5422cb2c00998166536019a217376f3aa45a630e59c805a599",
    ),
)
SET_IDS = [s.name for s in SETS]
