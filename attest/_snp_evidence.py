"""The evidence check a KMS node runs on an SEV-SNP guest (the SNP side of design §6.3, 1-4).

Input: dstack's `VersionedAttestation` V0 with an SEV-SNP quote (`attest._versioned_snp`), the
bytes a dstack guest agent's ``Attest`` returns on SNP. Steps, each failure an `EvidenceError`
naming it (the same step names as for TDX; SNP has nothing to replay):

1. ``quote``    decode; the envelope's report_data is the report's; the report verifies
                (`make_snp_report_verifier`: AMD's chain and policy, or the simulator's when
                the policy allows it);
2. ``identity`` HOST_DATA binds the carried MrConfigV3 document; the identity is read from it
                (`attest._snp_identity`), its os_image_hash is the SEV-SNP platform hash;
3. ``binding``  report_data == SHA-512(label || key) for the key the caller expects.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from attest._binding import BindingLabel, verify_report_data
from attest._evidence import EvidenceError
from attest._identity import AppIdentity
from attest._snp_identity import MrConfigV3, compute_snp_identity, mr_config_document
from attest._snp_verify import SnpPolicy, VerifiedSnpReport, verify_amd_snp_report
from attest._versioned import AttestationFormatError
from attest._versioned_snp import SnpAttestation, decode_snp_attestation
from attest.errors import AttestError
from attest.providers._snp_simulator import is_simulator_snp_chain, verify_simulator_snp_report

__all__ = [
    "SnpReportVerifier",
    "VerifiedSnpEvidence",
    "make_snp_report_verifier",
    "verify_snp_evidence",
]

#: Checks a raw report with its [ASK, VCEK] and returns it verified, or raises `AttestError`.
SnpReportVerifier = Callable[[bytes, Sequence[bytes]], VerifiedSnpReport]


def make_snp_report_verifier(*, now: int, policy: SnpPolicy) -> SnpReportVerifier:
    """Real reports against AMD's pinned ARKs; simulator reports only if `policy` allows them."""

    def verify(report: bytes, cert_chain: Sequence[bytes]) -> VerifiedSnpReport:
        if is_simulator_snp_chain(cert_chain):
            return verify_simulator_snp_report(report, cert_chain, now=now, policy=policy)
        return verify_amd_snp_report(report, cert_chain, now=now, policy=policy)

    return verify


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedSnpEvidence:
    """SEV-SNP evidence that passed every step: the report, the document, the identity."""

    verified_report: VerifiedSnpReport
    attestation: SnpAttestation
    mr_config: MrConfigV3
    identity: AppIdentity
    binding: BindingLabel | None

    platform = "amd-sev-snp"

    @property
    def tcb_status(self) -> str:
        return self.verified_report.tcb_status

    @property
    def advisory_ids(self) -> tuple[str, ...]:
        return self.verified_report.advisory_ids

    @property
    def simulated(self) -> bool:
        return self.verified_report.simulated


def verify_snp_evidence(
    attestation: bytes,
    *,
    verify_report: SnpReportVerifier,
    binding: tuple[BindingLabel, bytes] | None,
    vm_config: str | None = None,
) -> VerifiedSnpEvidence:
    """Run steps 1-3 (module docstring). `binding=None` skips step 3 (display tools only).

    `vm_config` (host-supplied, unmeasured) overrides the attestation's own config; either only
    gives `identity.claimed_os_image_hash`.
    """
    # (1) the report
    try:
        att = decode_snp_attestation(attestation)
        verified = verify_report(att.report, att.cert_chain)
        if not hmac.compare_digest(att.report_data, verified.report.report_data):
            raise AttestationFormatError(
                f"report_data {att.report_data.hex()} is not the report's "
                f"{verified.report.report_data.hex()}"
            )
    except AttestError as exc:
        raise EvidenceError("quote", exc) from exc
    # (2) identity
    try:
        document = mr_config_document(att.mr_config, att.config)
        identity, config = compute_snp_identity(
            verified.report, document, vm_config=vm_config or att.config or None
        )
    except AttestError as exc:
        raise EvidenceError("identity", exc) from exc
    # (3) binding
    if binding is not None:
        label, key = binding
        try:
            verify_report_data(verified.report.report_data, label, key)
        except AttestError as exc:
            raise EvidenceError("binding", exc) from exc
    return VerifiedSnpEvidence(
        verified_report=verified,
        attestation=att,
        mr_config=config,
        identity=identity,
        binding=None if binding is None else binding[0],
    )
