"""dstack's `VersionedAttestation` V0 carrying an AMD SEV-SNP report (quote kind 3).

The same SCALE envelope as the TDX one (`attest._versioned`), with the quote variant
``DstackAmdSevSnp(SnpQuote)`` (discriminant 3 of dstack's `AttestationQuote`)::

    0x00 (V0), 0x03, SnpQuote { report: Vec<u8>, cert_chain: Vec<Vec<u8>>, mr_config: String },
    runtime_events: Vec<RuntimeEvent { event: String, payload: Vec<u8> }>,
    report_data: [u8; 64], config: String

``report`` is the 1184-byte SNP report, ``cert_chain`` the AMD certificates the guest got with
it (``[ASK, VCEK]``; empty when the kernel gave none), ``mr_config`` the MrConfigV3 document
HOST_DATA binds (`attest._snp_identity`). The runtime events are what the guest says it did;
no register measures them on SEV-SNP, so tkms decodes them and derives nothing from them.
"""

from __future__ import annotations

from dataclasses import dataclass

from attest._versioned import (
    MAX_ATTESTATION_BYTES,
    AttestationFormatError,
    ScaleReader,
    bytes_field,
    compact,
    encode_attestation_tail,
    read_attestation_tail,
)

__all__ = [
    "DSTACK_AMD_SEV_SNP",
    "SnpAttestation",
    "attestation_kind",
    "decode_snp_attestation",
    "encode_snp_attestation",
]

DSTACK_AMD_SEV_SNP = 0x03
_V0 = 0x00
#: A report, an ASK and a VCEK are a few KiB; a longer chain is not AMD's.
MAX_CERT_CHAIN = 4


@dataclass(frozen=True, slots=True, kw_only=True)
class SnpAttestation:
    """The content of a V0 SEV-SNP attestation (unverified)."""

    report: bytes
    cert_chain: tuple[bytes, ...]
    mr_config: str
    runtime_events: tuple[tuple[str, bytes], ...]
    report_data: bytes
    config: str


def attestation_kind(data: bytes) -> int:
    """The quote kind of V0 attestation bytes (0 TDX, 3 SEV-SNP), after checking the version."""
    if len(data) < 2:
        raise AttestationFormatError("attestation is shorter than its 2-byte header")
    if data[0] != _V0:
        raise AttestationFormatError(
            f"unknown attestation version byte 0x{data[0]:02x} (V0 is 0x00)", offset=0
        )
    return data[1]


def encode_snp_attestation(att: SnpAttestation) -> bytes:
    """The V0 bytes (module docstring)."""
    out = [bytes([_V0, DSTACK_AMD_SEV_SNP]), bytes_field(att.report), compact(len(att.cert_chain))]
    out += [bytes_field(cert) for cert in att.cert_chain]
    out.append(bytes_field(att.mr_config.encode()))
    out.append(encode_attestation_tail(att.runtime_events, att.report_data, att.config))
    return b"".join(out)


def decode_snp_attestation(data: bytes) -> SnpAttestation:
    """Parse V0 SEV-SNP bytes; `AttestationFormatError` names what is wrong and where."""
    if len(data) > MAX_ATTESTATION_BYTES:
        raise AttestationFormatError(
            f"attestation is {len(data)} bytes, limit {MAX_ATTESTATION_BYTES}"
        )
    kind = attestation_kind(data)
    if kind != DSTACK_AMD_SEV_SNP:
        raise AttestationFormatError(
            f"quote kind {kind} is not DstackAmdSevSnp ({DSTACK_AMD_SEV_SNP})", offset=1
        )
    r = ScaleReader(data)
    r.take(2, "header")
    report = r.vec("report")
    start = r.pos
    count = r.compact("cert_chain")
    if count > MAX_CERT_CHAIN:
        raise AttestationFormatError(
            f"cert_chain has {count} certificates, limit {MAX_CERT_CHAIN}", offset=start
        )
    chain = tuple(r.vec(f"cert_chain[{i}]") for i in range(count))
    mr_config = r.text("mr_config")
    runtime, report_data, config = read_attestation_tail(r)
    return SnpAttestation(
        report=report,
        cert_chain=chain,
        mr_config=mr_config,
        runtime_events=runtime,
        report_data=report_data,
        config=config,
    )
