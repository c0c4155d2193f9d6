"""Verification of simulator quotes, and `SimulatorAllowed`, the policy that permits them.

.. warning::
   Accepting simulator evidence means accepting evidence anyone can forge (the simulator root
   key is public). `SimulatorAllowed` exists for development and testnets whose governance
   says ``simulatorAllowed == true``; it logs a warning every time it is used, like sigstore's
   `UnsafeNoOp`. Without it in the caller's policy, `verify_simulator_quote` always refuses.

Steps, mirroring DCAP: (1) the policy allows simulators; (2) parse; (3) the PEM chain is
exactly simulator PCK -> simulator root, the root's key is the publicly derived one, both
certificates valid at `now`; (4) the QE report is signed by the PCK key; (5) QE report_data
is SHA-256(attestation key || QE auth data); (6) the quote is signed by the attestation key;
(7) the caller's policy (debug TD, SEPT_VE_DISABLE, ...) runs on the result.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from attest._dcap import VerifiedQuote
from attest._quote import parse_quote
from attest._quote_pck import read_pck_info
from attest.errors import PolicyError, VerificationError
from attest.policy import AllOf, Policy
from attest.providers._simulator_ca import simulator_root_public_key_der

__all__ = ["SimulatorAllowed", "policy_allows_simulator", "verify_simulator_quote"]

_log = logging.getLogger("attest.simulator")


class SimulatorAllowed:
    """UNSAFE: lets simulator quotes verify. Warns on every use."""

    name = "simulator-allowed"

    def verify(self, verified: VerifiedQuote) -> None:
        _log.warning(
            "simulator evidence is allowed by policy: quotes signed by the public simulator "
            "root CA prove nothing about the code running (quote tcb_source=%s)",
            verified.tcb_source,
        )


def policy_allows_simulator(policy: Policy) -> bool:
    """True when `policy` is, or is an `AllOf` containing, `SimulatorAllowed`."""
    if isinstance(policy, SimulatorAllowed):
        return True
    return isinstance(policy, AllOf) and any(isinstance(c, SimulatorAllowed) for c in policy.checks)


def _fail(step: str, detail: str) -> VerificationError:
    return VerificationError(f"simulator quote rejected: {detail}", reason=step)


def _verify_sig(key: ec.EllipticCurvePublicKey, raw_sig: bytes, data: bytes, what: str) -> None:
    der = encode_dss_signature(
        int.from_bytes(raw_sig[:32], "big"), int.from_bytes(raw_sig[32:], "big")
    )
    try:
        key.verify(der, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise _fail(what, f"{what} is invalid") from None


def _check_chain(pem: bytes, now: int) -> ec.EllipticCurvePublicKey:
    try:
        return _chain_key(pem, now)
    except (ValueError, TypeError, UnsupportedAlgorithm, x509.InvalidVersion) as exc:
        # cryptography raises these for certificates that parse but hold bad keys or fields.
        raise _fail("pck-chain", f"PCK chain is malformed: {exc}") from None


def _chain_key(pem: bytes, now: int) -> ec.EllipticCurvePublicKey:
    certs = x509.load_pem_x509_certificates(pem.rstrip(b"\0"))
    if len(certs) != 2:
        raise _fail("pck-chain", f"PCK chain has {len(certs)} certificates, expected 2")
    leaf, root = certs
    spki = root.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if not hmac.compare_digest(spki, simulator_root_public_key_der()):
        raise _fail("pck-chain", "chain root is not the simulator root CA")
    when = dt.datetime.fromtimestamp(now, dt.UTC)
    for cert, what in ((root, "simulator root"), (leaf, "simulator PCK certificate")):
        if not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
            raise _fail("pck-chain", f"{what} is not valid at {when.isoformat()}")
    try:
        root.verify_directly_issued_by(root)
        leaf.verify_directly_issued_by(root)
    except InvalidSignature as exc:
        raise _fail("pck-chain", f"certificate chain signature invalid ({exc})") from None
    key = leaf.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise _fail("pck-chain", "PCK key is not an EC key")
    return key


def verify_simulator_quote(quote_bytes: bytes, *, now: int, policy: Policy) -> VerifiedQuote:
    """Verify a simulator quote at `now` (unix seconds) under `policy` (numbered steps above).

    Raises `PolicyError` when the policy does not allow simulators (or rejects the quote),
    `QuoteParseError` on malformed bytes, `VerificationError` on any signature or chain failure.
    """
    # (1) only an explicit SimulatorAllowed lets a simulator quote through
    if not policy_allows_simulator(policy):
        raise PolicyError(
            "simulator quote, but the policy does not allow simulators",
            check="simulator-allowed",
            found="simulator quote",
            expected="hardware TDX quote",
        )
    quote = parse_quote(quote_bytes)  # (2)
    sig = quote.signature
    pck_key = _check_chain(sig.pck_chain_pem, now)  # (3)
    _verify_sig(pck_key, sig.qe_report_signature, sig.qe_report.raw, "QE report signature")  # (4)
    expected = hashlib.sha256(sig.attestation_key + sig.qe_auth_data).digest() + bytes(32)
    if not hmac.compare_digest(sig.qe_report.report_data, expected):  # (5)
        raise _fail("qe-report-data", "QE report_data is not SHA-256(attestation key || auth)")
    try:
        att_key = ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP256R1(), b"\x04" + sig.attestation_key
        )
    except ValueError:
        raise _fail("attestation-key", "attestation key is not a P-256 point") from None
    _verify_sig(att_key, sig.ecdsa_signature, quote.signed_region, "quote signature")  # (6)
    pck = read_pck_info(quote)
    checks = ["parse", "simulator-chain", "simulator-signatures"]
    verified = VerifiedQuote(
        quote=quote,
        tcb_status="UpToDate",
        advisory_ids=(),
        ppid=pck.ppid,
        fmspc=pck.fmspc_hex,
        checks=tuple(checks),
        tcb_source="simulator",
    )
    policy.verify(verified)  # (7)
    names = policy.names if isinstance(policy, AllOf) else (policy.name,)
    checks.extend(f"policy:{n}" for n in names)
    return VerifiedQuote(
        quote=quote,
        tcb_status="UpToDate",
        advisory_ids=(),
        ppid=pck.ppid,
        fmspc=pck.fmspc_hex,
        checks=tuple(checks),
        tcb_source="simulator",
    )
