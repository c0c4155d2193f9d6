"""Verification of SEV-SNP attestation reports: AMD's chain, the VCEK's signature, tkms policy.

`verify_amd_snp_report(report, cert_chain, now=…, policy=…)` runs, in order:

1. strict parse (`attest._snp_report`);
2. the certificates: ``cert_chain`` is ``[ASK, VCEK]`` (PEM or DER each, as a guest gets them
   from the host with an extended report); ARK -> ASK -> VCEK up to the pinned ARK of the
   report's product (`attest._snp_certs`). tkms never fetches a VCEK from AMD's KDS on its own:
   evidence without its certificates is refused. (A chain under the public simulator ASK is
   checked by `attest.providers._snp_simulator` instead, and only with ``allow_simulator``.)
3. the VCEK is this chip's and this TCB's: its ``hwID`` is the report's CHIP_ID and its SPLs
   are the report's REPORTED_TCB (the firmware signs with the VCEK of the reported TCB);
4. the ECDSA P-384/SHA-384 signature over bytes 0x000-0x29F;
5. invariants no configuration relaxes (dstack's `validate_amd_snp_report_policy`): the report
   was requested at VMPL 0; the guest policy forbids a migration agent; it is signed by a VCEK
   (not a VLEK, not masked); a platform running SMT, RAPL or without ciphertext hiding is one
   the guest policy accepts;
6. `SnpPolicy`: no debug guest (POLICY.DEBUG, the host could read and write guest memory),
   and the TCB status is accepted (default UpToDate only).

TCB status, as dstack computes it: ``UpToDate`` when CURRENT, REPORTED, COMMITTED and LAUNCH
TCB are all equal, else ``OutOfDate`` (firmware was updated or rolled back since the VCEK the
report names, or since launch). AMD publishes no advisory list in reports or VCEKs, so
``advisory_ids`` is empty.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from attest._snp_certs import load_certificate, read_vcek_claims, verify_amd_chain
from attest._snp_report import (
    KEY_INFO_MASK_CHIP_KEY,
    PLATFORM_CIPHERTEXT_HIDING,
    PLATFORM_RAPL_DISABLED,
    PLATFORM_SMT_ENABLED,
    POLICY_CIPHERTEXT_HIDING,
    POLICY_MIGRATE_MA,
    POLICY_RAPL_DIS,
    POLICY_SMT_ALLOWED,
    SIGNING_KEY_VCEK,
    SIGNING_KEY_VLEK,
    SnpProduct,
    SnpReport,
    SnpTcb,
    parse_snp_report,
)
from attest.errors import PolicyError, VerificationError

__all__ = [
    "SNP_TCB_STATUSES",
    "SnpPolicy",
    "VerifiedSnpReport",
    "check_snp_report",
    "snp_tcb_status",
    "split_cert_chain",
    "verify_amd_snp_report",
]

#: The statuses an SEV-SNP report can have (dstack's rule, module docstring).
SNP_TCB_STATUSES = ("UpToDate", "OutOfDate")


@dataclass(frozen=True, slots=True, kw_only=True)
class SnpPolicy:
    """What tkms accepts of a genuine report. The defaults are the production ones."""

    accepted_tcb_statuses: tuple[str, ...] = ("UpToDate",)
    allow_debug: bool = False
    #: UNSAFE: accept reports signed under the public simulator ASK (dev chains only).
    allow_simulator: bool = False

    def __post_init__(self) -> None:
        unknown = set(self.accepted_tcb_statuses) - set(SNP_TCB_STATUSES)
        if unknown or not self.accepted_tcb_statuses:
            raise ValueError(
                f"accepted_tcb_statuses must be a non-empty subset of {SNP_TCB_STATUSES}"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedSnpReport:
    """A report whose signature, chain and policy checks all passed."""

    report: SnpReport
    product: SnpProduct
    tcb_status: str
    reported_tcb: SnpTcb
    current_tcb: SnpTcb
    committed_tcb: SnpTcb
    launch_tcb: SnpTcb
    #: "amd" (chained to a pinned ARK) or "simulator" (the public, insecure simulator ASK).
    source: str
    checks: tuple[str, ...]
    advisory_ids: tuple[str, ...] = ()

    @property
    def simulated(self) -> bool:
        return self.source == "simulator"


def snp_tcb_status(report: SnpReport) -> str:
    """UpToDate when the four TCB versions agree, else OutOfDate (module docstring)."""
    tcbs = {report.current_tcb, report.reported_tcb, report.committed_tcb, report.launch_tcb}
    return "UpToDate" if len(tcbs) == 1 else "OutOfDate"


def split_cert_chain(cert_chain: Sequence[bytes]) -> tuple[x509.Certificate, x509.Certificate]:
    """(ASK, VCEK) from ``[ASK, VCEK]``; refuses anything else with a message saying why."""
    if not cert_chain:
        raise VerificationError(
            "the evidence carries no AMD certificates (ASK, VCEK); tkms does not fetch them "
            "from AMD's KDS: send them with the report (extended report / cert_chain)",
            reason="no vcek",
        )
    if len(cert_chain) != 2:
        raise VerificationError(
            f"cert_chain must be [ASK, VCEK], got {len(cert_chain)} certificates",
            reason="certificate chain",
        )
    return load_certificate(cert_chain[0], "cert_chain[0] (ASK)"), load_certificate(
        cert_chain[1], "cert_chain[1] (VCEK)"
    )


def _policy_error(check: str, message: str, found: str, expected: str) -> PolicyError:
    return PolicyError(message, check=check, found=found, expected=expected)


def _invariants(report: SnpReport) -> None:
    if report.vmpl != 0:
        raise _policy_error(
            "snp-vmpl0",
            f"the report was requested at VMPL {report.vmpl}; tkms accepts VMPL 0 only",
            str(report.vmpl),
            "0",
        )
    if report.policy & POLICY_MIGRATE_MA:
        raise _policy_error(
            "snp-no-migration-agent",
            f"guest policy 0x{report.policy:x} allows a migration agent (bit 18)",
            "MIGRATE_MA=1",
            "MIGRATE_MA=0",
        )
    if report.key_info & KEY_INFO_MASK_CHIP_KEY:
        raise _policy_error(
            "snp-vcek-signed", "the report masks the chip key (KEY_INFO bit 1)", "masked", "VCEK"
        )
    if report.signing_key != SIGNING_KEY_VCEK:
        what = "a VLEK" if report.signing_key == SIGNING_KEY_VLEK else "no key"
        raise _policy_error(
            "snp-vcek-signed",
            f"the report is signed by {what} (KEY_INFO.SIGNING_KEY {report.signing_key}); "
            "tkms verifies VCEK-signed reports only",
            str(report.signing_key),
            "0 (VCEK)",
        )
    pairs = (
        (PLATFORM_SMT_ENABLED, POLICY_SMT_ALLOWED, True, "SMT is enabled but the guest policy"),
        (PLATFORM_RAPL_DISABLED, POLICY_RAPL_DIS, False, "the guest policy requires RAPL off but"),
        (PLATFORM_CIPHERTEXT_HIDING, POLICY_CIPHERTEXT_HIDING, False, "ciphertext hiding is"),
    )
    for platform_bit, policy_bit, platform_on, what in pairs:
        on, wanted = bool(report.platform_info & platform_bit), bool(report.policy & policy_bit)
        if (platform_on and on and not wanted) or (not platform_on and wanted and not on):
            raise _policy_error(
                "snp-platform-matches-policy",
                f"{what} does not match (PLATFORM_INFO 0x{report.platform_info:x}, "
                f"POLICY 0x{report.policy:x})",
                f"PLATFORM_INFO 0x{report.platform_info:x}",
                "a platform the guest policy accepts",
            )


def _check_claims(report: SnpReport, vcek: x509.Certificate, reported: SnpTcb) -> None:
    claims = read_vcek_claims(vcek)
    hw = claims.hw_id
    chip = report.chip_id
    # Turin VCEKs name the chip by its first 8 bytes; the rest of CHIP_ID is zero there.
    if not (
        len(hw) in (8, 64) and hmac.compare_digest(hw, chip[: len(hw)]) and not any(chip[len(hw) :])
    ):
        raise VerificationError(
            f"the VCEK is for chip {hw.hex()}, the report's CHIP_ID is {chip.hex()}",
            reason="vcek chip",
        )
    wanted = reported.spls()
    if claims.spls != wanted:
        raise VerificationError(
            f"the VCEK is for TCB {claims.spls}, the report's REPORTED_TCB is {wanted}",
            reason="vcek tcb",
        )


def _check_signature(report: SnpReport, vcek: x509.Certificate) -> None:
    key = vcek.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)  # verify_amd_chain / the simulator checked
    signature = encode_dss_signature(report.signature_r, report.signature_s)
    try:
        key.verify(signature, report.signed_region, ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        raise VerificationError(
            "the report's signature (offset 0x2a0) does not verify with the VCEK over bytes "
            "0x000-0x29f: the report was modified or the VCEK is another chip's",
            reason="report signature",
        ) from None


def check_snp_report(
    report: SnpReport,
    vcek: x509.Certificate,
    product: SnpProduct,
    *,
    policy: SnpPolicy,
    source: str,
) -> VerifiedSnpReport:
    """Steps 3-6 of the module docstring for a report whose VCEK chain was checked."""
    tcb = {
        name: SnpTcb.decode(getattr(report, f"{name}_tcb"), product)
        for name in ("reported", "current", "committed", "launch")
    }
    _check_claims(report, vcek, tcb["reported"])
    _check_signature(report, vcek)
    _invariants(report)
    if report.debug_allowed and not policy.allow_debug:
        raise _policy_error(
            "snp-not-debug",
            f"debug guest (POLICY 0x{report.policy:x} has DEBUG = 1; expected 0)",
            "DEBUG=1",
            "DEBUG=0",
        )
    status = snp_tcb_status(report)
    if status not in policy.accepted_tcb_statuses:
        raise _policy_error(
            "snp-tcb-status",
            f"TCB status {status} is not accepted (reported {tcb['reported']}, current "
            f"{tcb['current']}, committed {tcb['committed']}, launch {tcb['launch']}; "
            f"accepted: {', '.join(policy.accepted_tcb_statuses)})",
            status,
            " | ".join(policy.accepted_tcb_statuses),
        )
    return VerifiedSnpReport(
        report=report,
        product=product,
        tcb_status=status,
        reported_tcb=tcb["reported"],
        current_tcb=tcb["current"],
        committed_tcb=tcb["committed"],
        launch_tcb=tcb["launch"],
        source=source,
        checks=(
            "parse",
            "certificate-chain",
            "vcek-claims",
            "report-signature",
            "snp-invariants",
            "snp-not-debug",
            "snp-tcb-status",
        ),
    )


def verify_amd_snp_report(
    raw: bytes, cert_chain: Sequence[bytes], *, now: int, policy: SnpPolicy
) -> VerifiedSnpReport:
    """Every step of the module docstring for a report chained to AMD (no simulator)."""
    report = parse_snp_report(raw)
    ask, vcek = split_cert_chain(cert_chain)
    product = verify_amd_chain(ask, vcek, product=report.product, now=now)
    return check_snp_report(report, vcek, product, policy=policy, source="amd")
