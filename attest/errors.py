"""Errors raised by attest/.

Hierarchy::

    AttestError                      base; `diagnostics()` says what failed and what to check
    ├── QuoteParseError              the bytes are not a well-formed quote (carries offset, field)
    │   └── UnsupportedQuoteError    well-formed, but a kind tkms does not accept (SGX, v3, P-384)
    ├── CollateralError              collateral missing, malformed, or could not be fetched
    ├── VerificationError            DCAP verification failed (signature, chain, TCB, time)
    ├── PolicyError                  verified, but tkms policy rejects it (found vs expected)
    ├── EventLogError                a JSON or CCEL event log is malformed (entry/offset)
    ├── ReplayError                  the event log does not replay to the quote's RTMRs
    ├── IdentityError                no dstack identity can be derived from the log
    ├── BindingError                 report_data does not bind the expected key
    ├── ProviderError                the TEE (configfs-tsm, RTMR sysfs) failed
    ├── RaTlsError                   an RA-TLS certificate is malformed or inconsistent
    ├── KeyPinError                  a certificate is not for the pinned (registered) TLS key
    └── EvidenceError                the combined check failed; `step` names which

Every message names the field (and byte offset for parse errors) and, where a value was
compared, both the value found and the value expected.
"""

from __future__ import annotations


class AttestError(Exception):
    """Base class for every error attest/ raises on bad evidence or bad input."""

    def diagnostics(self) -> str:
        """A short operator-facing explanation: what failed and what to check."""
        return f"{type(self).__name__}: {self}"


class QuoteParseError(AttestError):
    """The quote is truncated or structurally inconsistent.

    `offset` is the byte offset in the quote where the problem was found and `field` the
    structure being read there.
    """

    def __init__(self, message: str, *, offset: int, field: str) -> None:
        super().__init__(message)
        self.offset = offset
        self.field = field

    def diagnostics(self) -> str:
        return (
            f"malformed quote: {self} (field {self.field!r}, byte offset {self.offset}); "
            "check that the whole quote was transferred and decoded (binary vs hex)"
        )


class UnsupportedQuoteError(QuoteParseError):
    """A well-formed quote of a kind tkms does not accept (SGX, unknown version or key type)."""


class CollateralError(AttestError):
    """Collateral could not be loaded, parsed or fetched."""

    def diagnostics(self) -> str:
        return f"collateral problem: {self}; check the collateral file or the PCCS URL"


class VerificationError(AttestError):
    """DCAP verification failed: signatures, certificate chains, TCB matching or validity time.

    `reason` is the underlying verifier's message (dcap-qvl's), kept verbatim for operators.
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason

    def diagnostics(self) -> str:
        return (
            f"quote verification failed: {self}; the quote may have been modified, the "
            "collateral may not match it, or `now` lies outside the collateral's validity"
        )


class PolicyError(AttestError):
    """The evidence is authentic, but tkms policy rejects it.

    `check` names the policy check; `found` and `expected` are what was seen and required.
    """

    def __init__(self, message: str, *, check: str, found: str, expected: str) -> None:
        super().__init__(message)
        self.check = check
        self.found = found
        self.expected = expected

    def diagnostics(self) -> str:
        return f"rejected by policy {self.check}: {self}"
