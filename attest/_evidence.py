"""The combined evidence check a KMS node runs before releasing anything (design §6.3, 1-4).

Steps, in order; a failure raises `EvidenceError` whose `step` names it and whose cause is the
underlying error:

1. ``quote``    the quote is authentic and passes policy (DCAP with collateral, or the
                simulator chain when the policy contains `SimulatorAllowed`);
2. ``replay``   the event log reproduces the quote's RTMRs (every RTMR the log has events for,
                and always RTMR3; RTMR0-2 of a log stripped to RTMR3, as dstack puts in
                certificates, stay covered by the quote itself and by mr_aggregated);
3. ``identity`` the dstack identity is derived from the replayed runtime events;
4. ``binding``  report_data == SHA-512(label || key) for the key the caller expects.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from attest._binding import BindingLabel, verify_report_data
from attest._collateral import Collateral
from attest._dcap import VerifiedQuote, verify_quote
from attest._eventlog import EventLogEntry, parse_event_log
from attest._identity import AppIdentity, compute_app_identity, has_runtime_events
from attest._quote import parse_quote
from attest._quote_types import Quote
from attest._replay import ReplayedRtmrs, verify_replay
from attest.errors import AttestError, CollateralError
from attest.policy import Policy
from attest.providers._simulator_ca import simulator_root_public_key_der
from attest.providers._simulator_verify import verify_simulator_quote

__all__ = [
    "EvidenceError",
    "QuoteVerifier",
    "VerifiedEvidence",
    "is_simulator_quote",
    "make_quote_verifier",
    "verify_evidence",
]

#: Checks a raw quote and returns it verified, or raises an `AttestError`.
QuoteVerifier = Callable[[bytes], VerifiedQuote]

_STEPS = {
    "quote": "1 (quote verification)",
    "replay": "2 (event log replay)",
    "identity": "3 (app identity)",
    "binding": "4 (report_data binding)",
}


class EvidenceError(AttestError):
    """Evidence was rejected; `step` is one of quote, replay, identity, binding."""

    def __init__(self, step: str, cause: AttestError) -> None:
        self.step = step
        self.cause = cause
        super().__init__(f"evidence rejected at step {_STEPS[step]}: {cause}")

    def diagnostics(self) -> str:
        return f"evidence rejected at step {_STEPS[self.step]}: {self.cause.diagnostics()}"


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedEvidence:
    """Evidence that passed every step: the verified quote, the replay and the identity."""

    verified_quote: VerifiedQuote
    replayed: ReplayedRtmrs
    replayed_rtmrs: tuple[int, ...]
    identity: AppIdentity | None
    binding: BindingLabel | None

    @property
    def quote(self) -> Quote:
        """The verified quote."""
        return self.verified_quote.quote

    platform = "tdx"

    @property
    def simulated(self) -> bool:
        """True when the quote came from the (insecure) simulator."""
        return self.verified_quote.tcb_source == "simulator"

    @property
    def tcb_status(self) -> str:
        return self.verified_quote.tcb_status

    @property
    def advisory_ids(self) -> tuple[str, ...]:
        return tuple(self.verified_quote.advisory_ids)


def is_simulator_quote(quote: Quote) -> bool:
    """True when the quote's PCK chain ends in the simulator root CA (unverified)."""
    try:
        certs = quote.pck_certificates()
    except (AttestError, x509.InvalidVersion):
        return False
    if not certs:
        return False
    try:
        key = certs[-1].public_key()
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return False  # not the simulator's key; DCAP verification will reject the chain
    spki = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return spki == simulator_root_public_key_der()


def make_quote_verifier(
    *, now: int, policy: Policy, collateral: Collateral | None = None
) -> QuoteVerifier:
    """A verifier for real quotes (DCAP with `collateral`) and simulator quotes.

    A quote chained to the simulator root goes to `verify_simulator_quote`, which refuses it
    unless `policy` contains `SimulatorAllowed`. Any other quote needs `collateral`.
    """

    def verify(raw: bytes) -> VerifiedQuote:
        quote = parse_quote(raw)
        if is_simulator_quote(quote):
            return verify_simulator_quote(raw, now=now, policy=policy)
        if collateral is None:
            raise CollateralError("hardware quote, but no collateral was supplied to verify it")
        return verify_quote(raw, collateral, now=now, policy=policy)

    return verify


def _replay_indices(entries: Sequence[EventLogEntry]) -> tuple[int, ...]:
    present = {e.imr for e in entries}
    return tuple(i for i in range(4) if i in present or i == 3)


def verify_evidence(
    quote: bytes,
    event_log: Sequence[EventLogEntry] | str | bytes,
    *,
    verify_quote: QuoteVerifier,
    binding: tuple[BindingLabel, bytes] | None,
    vm_config: str | None = None,
    require_identity: bool = True,
) -> VerifiedEvidence:
    """Run steps 1-4 (module docstring). `binding` is (label, expected key bytes).

    `binding=None` skips step 4 (only for display tools, never for key release).
    """
    # (1) quote
    try:
        verified = verify_quote(quote)
    except AttestError as exc:
        raise EvidenceError("quote", exc) from exc
    td = verified.quote.td_report
    # (2) replay
    try:
        entries = parse_event_log(event_log) if isinstance(event_log, str | bytes) else event_log
        indices = _replay_indices(entries)
        replayed = verify_replay(entries, td.rtmrs, indices=indices)
    except AttestError as exc:
        raise EvidenceError("replay", exc) from exc
    # (3) identity
    identity: AppIdentity | None = None
    try:
        if require_identity or has_runtime_events(entries):
            identity = compute_app_identity(entries, td, ppid=verified.ppid, vm_config=vm_config)
    except AttestError as exc:
        raise EvidenceError("identity", exc) from exc
    # (4) binding
    if binding is not None:
        label, key = binding
        try:
            verify_report_data(td.report_data, label, key)
        except AttestError as exc:
            raise EvidenceError("binding", exc) from exc
    return VerifiedEvidence(
        verified_quote=verified,
        replayed=replayed,
        replayed_rtmrs=indices,
        identity=identity,
        binding=None if binding is None else binding[0],
    )
