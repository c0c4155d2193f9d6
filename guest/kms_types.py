"""What the app's KMS client works with: the committee, key requests, results and errors.

Plain data, no I/O: modules that only name a committee or a result (the agent's committee
source, the relay check, the verifiers) import these without the gRPC client.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mpc import G1, G2, KeyRequest, NetworkContext


@dataclass(frozen=True, slots=True)
class Member:
    index: int
    endpoint: str
    verification_key: G1
    #: SHA-256 of the member's TLS SubjectPublicKeyInfo as registered on chain: the pin.
    tls_key_hash: bytes
    #: The node's Ethereum address (20 bytes; empty where the source does not say).
    address: bytes = b""


@dataclass(frozen=True, slots=True)
class Committee:
    network: NetworkContext
    threshold: int
    members: tuple[Member, ...]
    group_key: G2


@dataclass(frozen=True, slots=True)
class AppKeyRequest:
    """What the app asks for: an app key (`purpose`) or its IBE identity key (`ibe=True`)."""

    app_id: bytes
    purpose: bytes = b""
    ibe: bool = False

    def to_request(self) -> KeyRequest:
        return (
            KeyRequest.ibe_key(self.app_id)
            if self.ibe
            else KeyRequest.app_key(self.app_id, self.purpose)
        )


class DerivationError(Exception):
    """Fewer than t members answered with valid partials; `failures` names each node's fault."""

    def __init__(
        self, have: int, need: int, failures: dict[int, str], endpoints: dict[int, str]
    ) -> None:
        detail = ", ".join(
            f"node-{i} ({endpoints.get(i, '?')}) {why}" for i, why in sorted(failures.items())
        )
        super().__init__(f"only {have} of {need} needed partials: {detail or 'no answers'}")
        self.have = have
        self.need = need
        self.failures = failures


@dataclass(slots=True)
class DerivationResult:
    sigmas: list[G1]
    answered: list[int]
    #: Members whose answers failed on the way (wrong partials, errors), and why.
    failures: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class IssuedAppKey:
    """dstack's KMS signature over an app key, by a KMS root the network certified."""

    #: The generation's KMS root, 33 bytes SEC1-compressed.
    root: bytes
    #: 65 bytes r‖s‖v over keccak("dstack-kms-issued:" ‖ app_id ‖ app key): chain element 1.
    signature: bytes
    #: The network's BLS signature (48 bytes, under PK2) over the root's `tkms-k256-root:v1`.
    certificate: bytes
    #: The member whose root signed.
    member: int


@dataclass(frozen=True, slots=True)
class SignedStatement:
    """The network's threshold BLS signature (48 bytes, min-sig) over `statement`."""

    statement: bytes
    signature: bytes
    signers: tuple[int, ...]
    #: Members whose answers failed on the way (wrong statement or proof, errors), and why.
    failures: dict[int, str] = field(default_factory=dict)
