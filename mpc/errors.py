"""Exceptions raised by `mpc`.

    MpcError
    ├── EncodingError          bytes that are not a canonical scalar, point or message
    ├── InvalidProof           a proof (DLEQ, Schnorr) does not verify
    │   └── InvalidPartial     a node's partial failed verification; names the member
    ├── DecryptionError        a ciphertext (deal, IBE) does not open: tampered or wrong key
    ├── InvalidSignature       a signature (secp256k1 chain link, BLS certificate) is refused
    ├── NotEnoughShares        fewer than t valid shares or partials to combine
    └── ProtocolMisuse         the caller used an API wrongly (e.g. wrong phase); a bug
        └── PhaseError         a state-machine input arrived in the wrong phase

A misbehaving *peer* in the DKG is not an exception: it is recorded as a `Fault` in the
outcome (see `mpc.dkg`). Exceptions are for malformed input at our boundary and for misuse.
"""

from __future__ import annotations


class MpcError(Exception):
    """Base class of every error raised by `mpc`."""


class EncodingError(MpcError, ValueError):
    """Bytes that do not decode to a valid, canonical value.

    `what` names the value being decoded (e.g. "G1 point", "commitment C_2").
    """

    def __init__(self, what: str, problem: str) -> None:
        super().__init__(f"invalid {what}: {problem}")
        self.what = what
        self.problem = problem


class InvalidProof(MpcError):
    """A zero-knowledge proof does not verify."""


class InvalidPartial(InvalidProof):
    """A partial (derivation or signature) from `member` failed verification."""

    def __init__(self, member: int, problem: str) -> None:
        super().__init__(f"partial from member {member} rejected: {problem}")
        self.member = member
        self.problem = problem


class DecryptionError(MpcError):
    """A ciphertext does not decrypt: it was tampered with, or is for another key/context.

    Deliberately carries no detail about *why*, so it cannot serve as an oracle.
    """


class InvalidSignature(MpcError, ValueError):
    """A signature that is malformed, not canonical, or not by the expected key; the message
    says which (a verifier refuses the chain it belongs to)."""


class NotEnoughShares(MpcError):
    """Fewer than the threshold number of valid shares or partials."""

    def __init__(self, have: int, need: int, detail: str = "") -> None:
        message = f"only {have} of {need} needed shares"
        super().__init__(f"{message}: {detail}" if detail else message)
        self.have = have
        self.need = need


class ProtocolMisuse(MpcError):
    """The caller used the API wrongly; this is a bug in the caller, not a peer fault."""


class PhaseError(ProtocolMisuse):
    """A state machine received an input that is not legal in its current phase."""
