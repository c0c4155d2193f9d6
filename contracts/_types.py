"""Typed views of the contracts' enums and structs, as the client returns them."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from eth_abi.abi import encode as abi_encode
from eth_utils.crypto import keccak

from contracts._hexargs import parse_address, parse_bytes32

BlockRef = int | str  # a block number, or "latest" / "safe" / "finalized" / "pending"


class NodeStatus(enum.IntEnum):
    NONE = 0
    PENDING = 1
    APPROVED = 2
    REMOVED = 3


class EpochKind(enum.IntEnum):
    DKG = 0
    RESHARE = 1
    REFRESH = 2
    ROTATE = 3


class EpochStatus(enum.IntEnum):
    NONE = 0
    RUNNING = 1
    ACTIVE = 2
    SUPERSEDED = 3
    FAILED = 4


class Phase(enum.IntEnum):
    """Where a running epoch is at a given block; FINISHED once active, superseded or failed."""

    NONE = 0
    KEYS = 1
    DEAL = 2
    COMPLAIN = 3
    JUSTIFY = 4
    CONFIRM = 5
    EXPIRED = 6
    FINISHED = 7


class GenerationStatus(enum.IntEnum):
    NONE = 0
    ACTIVE = 1
    RETIRING = 2
    RETIRED = 3


class AppStatus(enum.IntEnum):
    NONE = 0
    REGISTERED = 1
    REMOVED = 2


class FailReason(enum.IntEnum):
    TIMEOUT = 0
    CANCELLED = 1


ZERO32 = bytes(32)
ZERO_ADDRESS = "0x" + "00" * 20


@dataclass(frozen=True, kw_only=True)
class AppBootInfo:
    """dstack's `IAppAuth.AppBootInfo`: the identity of a booting CVM (design §4.3)."""

    app_id: str
    compose_hash: bytes
    instance_id: str = ZERO_ADDRESS
    device_id: bytes = ZERO32
    mr_aggregated: bytes = ZERO32
    mr_system: bytes = ZERO32
    os_image_hash: bytes = ZERO32
    tcb_status: str = "UpToDate"
    advisory_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "app_id", parse_address("app_id", self.app_id))
        object.__setattr__(self, "instance_id", parse_address("instance_id", self.instance_id))
        for name in ("compose_hash", "device_id", "mr_aggregated", "mr_system", "os_image_hash"):
            parse_bytes32(name, getattr(self, name))

    def to_abi(self) -> tuple[Any, ...]:
        return (
            self.app_id,
            self.compose_hash,
            self.instance_id,
            self.device_id,
            self.mr_aggregated,
            self.mr_system,
            self.os_image_hash,
            self.tcb_status,
            list(self.advisory_ids),
        )


@dataclass(frozen=True)
class AuthDecision:
    allowed: bool
    reason: str


@dataclass(frozen=True, kw_only=True)
class NodeInfo:
    address: str
    status: NodeStatus
    operator: str
    endpoint: str
    tls_key_hash: bytes
    deal_key: bytes
    evidence_hash: bytes
    registration_hash: bytes
    registered_at: int


def node_registration_hash(
    *,
    node: str,
    operator: str,
    endpoint: str,
    tls_key_hash: bytes,
    deal_key: bytes,
    evidence_hash: bytes,
) -> bytes:
    """The `registrationHash` NodeRegistry records for these fields (what `approveNode` pins):
    keccak256(abi.encode(node, operator, endpoint, tlsKeyHash, dealKey, evidenceHash))."""
    return keccak(
        abi_encode(
            ["address", "address", "string", "bytes32", "bytes", "bytes32"],
            [
                parse_address("node", node),
                parse_address("operator", operator),
                endpoint,
                parse_bytes32("tls_key_hash", tls_key_hash),
                deal_key,
                parse_bytes32("evidence_hash", evidence_hash),
            ],
        )
    )


@dataclass(frozen=True, kw_only=True)
class EpochInfo:
    epoch: int
    kind: EpochKind
    status: EpochStatus
    generation: int
    previous_epoch: int
    threshold: int
    previous_threshold: int
    participants: int  # members plus the dealers that are not members
    keys_posted: int
    proposed_at: int
    keys_deadline: int
    deal_deadline: int
    complaint_deadline: int
    justify_deadline: int
    confirm_deadline: int
    finished_at: int
    members: tuple[str, ...]
    dealers: tuple[str, ...]
    digest: bytes
    public_polynomial: tuple[bytes, ...] = field(default=())
    pk2: bytes = b""

    def member_index(self, address: str) -> int:
        """1-based index of a member (design §3.1), 0 if not a member."""
        lowered = [m.lower() for m in self.members]
        return lowered.index(address.lower()) + 1 if address.lower() in lowered else 0


@dataclass(frozen=True, kw_only=True)
class DealInfo:
    commitments: tuple[bytes, ...]
    pk2_part: bytes
    proof: bytes
    shares_hash: bytes  # keccak256 of the sealed shares sent with the deal
    submitted_at: int


@dataclass(frozen=True, kw_only=True)
class ComplaintInfo:
    accuser: str
    accused: str
    reveal: bytes  # the accuser's DH secret of the pair and its DLEQ proof
    justified: bool
    answer: bytes  # the accused dealer's ML-KEM secret of the pair ("" until justified)


@dataclass(frozen=True, kw_only=True)
class GenerationInfo:
    generation: int
    status: GenerationStatus
    active_epoch: int
    activated_at: int
    retire_after: int
    pk1: bytes
    pk2: bytes


@dataclass(frozen=True, kw_only=True)
class RefreshSchedule:
    """`setRefreshSchedule`: anyone may propose a REFRESH `interval` blocks after the last
    epoch ended, with these phase lengths (interval 0: no schedule)."""

    interval: int
    phase_blocks: tuple[int, int, int, int, int]


def split_points(data: bytes, size: int) -> tuple[bytes, ...]:
    return tuple(data[i : i + size] for i in range(0, len(data), size))
