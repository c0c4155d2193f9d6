"""DCAP verification of TDX quotes with the dcap-qvl wheel, then tkms policy.

Steps of `verify_quote`:
1. parse the quote strictly (attest/_quote.py): SGX, v3, odd certification data are refused;
   the embedded PCK chain must parse and end in the trusted root (dcap-qvl itself ignores
   the embedded root certificate and uses its own anchor; we want a tampered one reported);
2. refuse TD attribute bits tkms never accepts (migratable, profiling, reserved);
3. dcap-qvl (`dcap_qvl.verify`) at the explicit `now`: TCB info and QE identity signatures,
   issuer chains and CRLs against Intel's root, validity windows, the PCK chain, the QE
   report signature (by the PCK key), the QE report_data binding of the attestation key,
   the quote signature over header+body, FMSPC match, TCB level, QE identity;
4. tkms policy (attest/policy.py) on the result.

Why step 3 can end in our own TCB evaluation: dcap-qvl 0.7.0 always rejects debug TDs,
non-zero MR_SERVICETD and SEPT_VE_DISABLE=0, as its *last* check, after every signature,
chain, time and TCB-level check has passed (verify.rs `validate_attrs`). Those verdicts are
tkms policy decisions, so when dcap-qvl fails with exactly one of them we recompute the TCB
status from the same collateral (attest/_tcb.py, Intel's rules) and let the policy decide.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, replace

import dcap_qvl
from cryptography.hazmat.primitives.serialization import Encoding

from attest._collateral import Collateral
from attest._quote import parse_quote
from attest._quote_pck import read_pck_info
from attest._quote_types import Quote
from attest._tcb import evaluate_tdx_tcb
from attest.errors import PolicyError, QuoteParseError, VerificationError
from attest.policy import AllOf, Policy

# SHA-256 of the DER of the Intel SGX Root CA, the trust anchor dcap-qvl uses by default.
INTEL_SGX_ROOT_CA_SHA256 = bytes.fromhex(
    "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"
)

# TDATTRIBUTES bits tkms can accept: DEBUG (policy), SEPT_VE_DISABLE (policy), PKS, KL, PERFMON.
_ACCEPTABLE_TD_ATTRIBUTES = (1 << 0) | (1 << 28) | (1 << 30) | (1 << 31) | (1 << 63)

# dcap-qvl's attribute verdicts that are tkms policy questions, with the quote property that
# must agree (so a different failure can never be mistaken for one of these).
_POLICY_VERDICTS: dict[str, Callable[[Quote], bool]] = {
    "Debug mode is enabled": lambda q: q.is_debug,
    "Invalid MR service TD": lambda q: q.has_service_td,
    "SEPT_VE_DISABLE is not enabled": lambda q: not q.sept_ve_disabled,
}

# dcap-qvl failure (substring) -> what it means, for operators.
_REASONS = (
    ("No matching TCB level", "no matching TCB level (platform TCB is below every level)"),
    ("Fmspc mismatch", "FMSPC mismatch between the quote's PCK certificate and the TCB info"),
    ("ISV enclave report signature", "quote signature invalid (attestation key over header+body)"),
    ("QE report hash mismatch", "QE report_data does not bind the attestation key/auth data"),
    ("Signature is invalid for qe_report", "QE report signature invalid (PCK key)"),
    ("Signature is invalid for tcb_info", "TCB info signature invalid"),
    ("Signature is invalid for qe_identity", "QE identity signature invalid"),
    ("TCBInfo expired", "collateral expired (TCB info nextUpdate is before now)"),
    ("QE Identity expired", "collateral expired (QE identity nextUpdate is before now)"),
    ("issue date is in the future", "collateral not yet valid (issued after now)"),
    ("certificate", "certificate chain invalid"),
    ("CRL", "certificate revocation list invalid or expired"),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedQuote:
    """A quote that passed DCAP verification and the caller's policy.

    `checks` lists what ran, in order; `tcb_source` says who computed the TCB status
    ("dcap-qvl", or "tkms" when dcap-qvl stopped at a policy verdict, see module docstring).
    """

    quote: Quote
    tcb_status: str
    advisory_ids: tuple[str, ...]
    ppid: bytes
    fmspc: str
    checks: tuple[str, ...]
    tcb_source: str


def verify_quote(
    quote_bytes: bytes,
    collateral: Collateral,
    *,
    now: int,
    policy: Policy,
    root_ca_der: bytes | None = None,
) -> VerifiedQuote:
    """Verify a TDX quote at time `now` (unix seconds) and apply `policy`.

    `root_ca_der` replaces Intel's SGX Root CA as trust anchor (private PKIs, tests).
    Raises `QuoteParseError`, `VerificationError` or `PolicyError`; returns only on accept.
    """
    authentic = verify_quote_authenticity(quote_bytes, collateral, now=now, root_ca_der=root_ca_der)
    # (4) policy
    policy.verify(authentic)
    names = policy.names if isinstance(policy, AllOf) else (policy.name,)
    return replace(authentic, checks=authentic.checks + tuple(f"policy:{n}" for n in names))


def verify_quote_authenticity(
    quote_bytes: bytes, collateral: Collateral, *, now: int, root_ca_der: bytes | None = None
) -> VerifiedQuote:
    """Steps 1-3 only: the quote is genuine and its TCB status known, but no policy ran.

    For reporting (the CLI shows the TCB status of a quote the policy rejects); a caller
    deciding about key release must use `verify_quote`.
    """
    if isinstance(now, bool) or not isinstance(now, int) or not 0 <= now < 2**63:
        raise ValueError(f"now must be unix seconds as a non-negative int, got {now!r}")
    # (1) structure
    quote = parse_quote(quote_bytes)
    _check_chain_root(quote, root_ca_der)
    checks = ["parse", "pck-chain-root"]
    # (2) attribute bits no policy may accept
    _check_td_attributes(quote)
    checks.append("td-attributes")
    # (3) DCAP
    tcb_source = "dcap-qvl"
    try:
        if root_ca_der is None:
            report = dcap_qvl.verify(quote.raw, collateral.qvl, now)
        else:
            report = dcap_qvl.verify_with_root_ca(quote.raw, collateral.qvl, root_ca_der, now)
        status, advisories = str(report.status), tuple(report.advisory_ids)
        ppid = bytes(report.ppid)
    except ValueError as exc:
        reason = _dcap_reason(exc)
        verdict = _POLICY_VERDICTS.get(reason)
        if verdict is None or not verdict(quote):
            raise VerificationError(
                _explain(reason, quote, collateral, now), reason=reason
            ) from exc
        status, advisories, ppid = _own_tcb(quote, collateral)
        tcb_source = "tkms"
    checks.append("dcap-qvl")
    return VerifiedQuote(
        quote=quote,
        tcb_status=status,
        advisory_ids=advisories,
        ppid=ppid,
        fmspc=collateral.fmspc,
        checks=tuple(checks),
        tcb_source=tcb_source,
    )


def _check_chain_root(quote: Quote, root_ca_der: bytes | None) -> None:
    certs = quote.pck_certificates()
    if len(certs) < 2:
        raise QuoteParseError(
            f"PCK certificate chain has {len(certs)} certificate(s); expected leaf, "
            "intermediate and root",
            offset=quote.signed_length,
            field="pck_cert_chain",
        )
    found = hashlib.sha256(certs[-1].public_bytes(Encoding.DER)).digest()
    expected = (
        INTEL_SGX_ROOT_CA_SHA256 if root_ca_der is None else hashlib.sha256(root_ca_der).digest()
    )
    if not hmac.compare_digest(found, expected):
        raise VerificationError(
            f"PCK chain root certificate (sha256 {found.hex()}) is not the trusted root "
            f"(sha256 {expected.hex()})",
            reason="untrusted PCK chain root",
        )


def _check_td_attributes(quote: Quote) -> None:
    attrs = quote.td_report.td_attributes_int
    extra = attrs & ~_ACCEPTABLE_TD_ATTRIBUTES
    if extra:
        bits = ", ".join(str(b) for b in range(64) if extra >> b & 1)
        raise PolicyError(
            f"TDATTRIBUTES {quote.td_report.td_attributes.hex()} set bit(s) {bits} that tkms "
            "never accepts (migratable, profiling or reserved); expected only DEBUG, "
            "SEPT_VE_DISABLE, PKS, KL, PERFMON",
            check="td-attributes",
            found=f"0x{attrs:016x}",
            expected=f"subset of 0x{_ACCEPTABLE_TD_ATTRIBUTES:016x}",
        )


def _dcap_reason(exc: ValueError) -> str:
    message = " ".join(str(exc).split())  # anyhow chains span lines
    prefix = "Verification failed: "
    return message[len(prefix) :] if message.startswith(prefix) else message


def _explain(reason: str, quote: Quote, collateral: Collateral, now: int) -> str:
    meaning = next((m for key, m in _REASONS if key in reason), "DCAP verification failed")
    if reason.startswith("Fmspc mismatch"):
        quote_fmspc = read_pck_info(quote).fmspc_hex
        meaning = f"FMSPC mismatch: quote is {quote_fmspc}, collateral is for {collateral.fmspc}"
    if "expired" in reason or "in the future" in reason:
        meaning += f" at now={now}"
    return f"{meaning} [dcap-qvl: {reason}]"


def _own_tcb(quote: Quote, collateral: Collateral) -> tuple[str, tuple[str, ...], bytes]:
    pck = read_pck_info(quote)
    report = quote.td_report
    result = evaluate_tdx_tcb(
        collateral.tcb_info,
        collateral.qe_identity,
        cpu_svn=pck.cpu_svn,
        pce_svn=pck.pce_svn,
        tee_tcb_svn=report.tee_tcb_svn,
        mr_signer_seam=report.mr_signer_seam,
        seam_attributes=report.seam_attributes,
        qe_isv_svn=quote.signature.qe_report.isv_svn,
    )
    return result.status, result.advisory_ids, pck.ppid
