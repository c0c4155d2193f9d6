"""What a guest's TEE gives the KMS client: a TDX quote with its event log, or an AMD SEV-SNP
attestation, and their wire form (the `Evidence` message, design §6.3)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from protos.tkms.v1 import common_pb2

__all__ = ["EvidenceSource", "QuoteSource", "SnpEvidence", "evidence_message"]


@dataclass(frozen=True, slots=True)
class SnpEvidence:
    """An AMD SEV-SNP guest's evidence: dstack's VersionedAttestation with the report, its
    [ASK, VCEK] and the MrConfigV3 document (`attest.SnpAttestation`)."""

    attestation: bytes


#: Given report_data, returns (quote, event log JSON) from the app's TDX TEE.
QuoteSource = Callable[[bytes], tuple[bytes, str]]
#: A `QuoteSource`, or one returning an SEV-SNP guest's `SnpEvidence`. Keys do not depend on
#: which: they are the app id's.
EvidenceSource = Callable[[bytes], tuple[bytes, str] | SnpEvidence]


def evidence_message(produced: tuple[bytes, str] | SnpEvidence) -> common_pb2.Evidence:
    """The wire form of what an `EvidenceSource` produced."""
    if isinstance(produced, SnpEvidence):
        return common_pb2.Evidence(attestation=produced.attestation)
    quote, event_log = produced
    return common_pb2.Evidence(quote=quote, event_log=event_log)
