"""Typed client of KmsGovernance: every function, reads as `get_*`/`is_*`, writes as `send_*`.

Reads take `block=` so a caller can pin a decision to a block and cache by (identity, block)
(DESIGN §6.3). Writes validate lengths before sending and raise TransactionFailed with the tx
hash and the decoded custom error.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from web3 import Web3
from web3.contract import Contract

from contracts._artifacts import load_artifact
from contracts._events import ChainEvent, fetch_events
from contracts._hexargs import parse_address, parse_bytes32
from contracts._tx import Receipt, Transactor, call, logs_of, require_sender
from contracts._types import (
    AppBootInfo,
    AppStatus,
    AuthDecision,
    BlockRef,
    ComplaintInfo,
    DealInfo,
    EpochInfo,
    EpochKind,
    EpochStatus,
    GenerationInfo,
    GenerationStatus,
    NodeInfo,
    NodeStatus,
    Phase,
    split_points,
)
from contracts.errors import InvalidInput

G1_LENGTH = 48
G2_LENGTH = 96
SCALAR_LENGTH = 32


def _require_length(argument: str, value: bytes, length: int) -> bytes:
    if len(value) != length:
        raise InvalidInput(argument, f"expected {length} bytes, got {len(value)}")
    return value


def _points(argument: str, points: Sequence[bytes], size: int) -> bytes:
    for i, point in enumerate(points):
        _require_length(f"{argument}[{i}]", point, size)
    return b"".join(points)


class GovernanceClient:
    """KmsGovernance at `address`; `transactor` signs writes (None: read-only)."""

    def __init__(self, w3: Web3, address: str, transactor: Transactor | None = None) -> None:
        self.w3 = w3
        self.address = parse_address("governance", address)
        self.contract: Contract = w3.eth.contract(
            address=self.address,
            abi=load_artifact("KmsGovernance").abi,
        )
        self.transactor = transactor

    def with_transactor(self, transactor: Transactor) -> GovernanceClient:
        return GovernanceClient(self.w3, self.address, transactor)

    def _read(self, name: str, *args: Any, block: BlockRef) -> Any:
        return call(self.contract.functions[name](*args), block)

    def _send(self, name: str, *args: Any) -> Receipt:
        return require_sender(self.transactor, name).send(self.contract.functions[name](*args))

    def event_args(self, receipt: Receipt, event: str) -> list[dict[str, Any]]:
        """The decoded arguments of `event` logs this contract emitted in `receipt`."""
        decoder = self.contract.events[event]()
        return [
            dict(decoder.process_log(log)["args"])
            for log in logs_of(receipt, self.address, decoder.topic)
        ]

    def get_events(
        self, from_block: int, to_block: int | None = None, *, names: Sequence[str] = ()
    ) -> list[ChainEvent]:
        """This contract's events in [from_block, to_block], oldest first, optionally by name.

        The chain watcher of a node feeds these (EpochProposed, DealSubmitted, ...) to its
        state machines; `to_block` should be the block its other reads are pinned to.
        """
        return fetch_events(self.w3, [self.address], from_block, to_block, names=names)

    # Ownership
    def get_owner(self, *, block: BlockRef = "latest") -> str:
        return str(self._read("owner", block=block))

    def get_pending_owner(self, *, block: BlockRef = "latest") -> str:
        return str(self._read("pendingOwner", block=block))

    def send_transfer_ownership(self, new_owner: str) -> Receipt:
        return self._send("transferOwnership", parse_address("new_owner", new_owner))

    def send_accept_ownership(self) -> Receipt:
        return self._send("acceptOwnership")

    # Platform policy
    def is_kms_measurement_allowed(self, mr: bytes, *, block: BlockRef = "latest") -> bool:
        return bool(self._read("kmsMeasurementAllowed", parse_bytes32("mr", mr), block=block))

    def is_os_image_allowed(self, os_image_hash: bytes, *, block: BlockRef = "latest") -> bool:
        value = parse_bytes32("os_image_hash", os_image_hash)
        return bool(self._read("osImageAllowed", value, block=block))

    def get_simulator_allowed(self, *, block: BlockRef = "latest") -> bool:
        return bool(self._read("simulatorAllowed", block=block))

    def is_tcb_status_allowed(self, status: str, *, block: BlockRef = "latest") -> bool:
        return bool(self._read("isTcbStatusAllowed", status, block=block))

    def is_advisory_blocked(self, advisory_id: str, *, block: BlockRef = "latest") -> bool:
        return bool(self._read("isAdvisoryBlocked", advisory_id, block=block))

    def is_kms_allowed(self, info: AppBootInfo, *, block: BlockRef = "latest") -> AuthDecision:
        allowed, reason = self._read("isKmsAllowed", info.to_abi(), block=block)
        return AuthDecision(bool(allowed), str(reason))

    def send_add_kms_measurement(self, mr: bytes) -> Receipt:
        return self._send("addKmsMeasurement", parse_bytes32("mr", mr))

    def send_remove_kms_measurement(self, mr: bytes) -> Receipt:
        return self._send("removeKmsMeasurement", parse_bytes32("mr", mr))

    def send_add_os_image(self, os_image_hash: bytes) -> Receipt:
        return self._send("addOsImage", parse_bytes32("os_image_hash", os_image_hash))

    def send_remove_os_image(self, os_image_hash: bytes) -> Receipt:
        return self._send("removeOsImage", parse_bytes32("os_image_hash", os_image_hash))

    def send_set_simulator_allowed(self, allowed: bool) -> Receipt:
        return self._send("setSimulatorAllowed", allowed)

    def send_allow_tcb_status(self, status: str) -> Receipt:
        return self._send("allowTcbStatus", status)

    def send_disallow_tcb_status(self, status: str) -> Receipt:
        return self._send("disallowTcbStatus", status)

    def send_block_advisory(self, advisory_id: str) -> Receipt:
        return self._send("blockAdvisory", advisory_id)

    def send_unblock_advisory(self, advisory_id: str) -> Receipt:
        return self._send("unblockAdvisory", advisory_id)

    # Node registry
    def get_node(self, node: str, *, block: BlockRef = "latest") -> NodeInfo:
        address = parse_address("node", node)
        raw = self._read("getNode", address, block=block)
        return NodeInfo(
            address=address,
            status=NodeStatus(raw[0]),
            operator=str(raw[1]),
            endpoint=str(raw[2]),
            tls_key_hash=bytes(raw[3]),
            deal_key=bytes(raw[4]),
            evidence_hash=bytes(raw[5]),
            registration_hash=bytes(raw[6]),
            registered_at=int(raw[7]),
        )

    def get_nodes(self, *, block: BlockRef = "latest") -> list[str]:
        return [str(a) for a in self._read("getNodes", block=block)]

    def is_node_approved(self, node: str, *, block: BlockRef = "latest") -> bool:
        return bool(self._read("isNodeApproved", parse_address("node", node), block=block))

    def send_register_node(
        self,
        *,
        operator: str,
        endpoint: str,
        tls_key_hash: bytes,
        deal_key: bytes,
        evidence_hash: bytes,
    ) -> Receipt:
        if not endpoint or len(endpoint.encode()) > 256:
            raise InvalidInput("endpoint", "must be 1..256 bytes")
        if not deal_key or len(deal_key) > 4096:
            raise InvalidInput("deal_key", f"must be 1..4096 bytes, got {len(deal_key)}")
        return self._send(
            "registerNode",
            parse_address("operator", operator),
            endpoint,
            parse_bytes32("tls_key_hash", tls_key_hash),
            deal_key,
            parse_bytes32("evidence_hash", evidence_hash),
        )

    def send_approve_node(self, node: str, registration_hash: bytes) -> Receipt:
        return self._send(
            "approveNode",
            parse_address("node", node),
            parse_bytes32("registration_hash", registration_hash),
        )

    def send_remove_node(self, node: str) -> Receipt:
        return self._send("removeNode", parse_address("node", node))

    # Epochs and generations
    def get_epoch_count(self, *, block: BlockRef = "latest") -> int:
        return int(self._read("epochCount", block=block))

    def get_running_epoch(self, *, block: BlockRef = "latest") -> int:
        return int(self._read("runningEpoch", block=block))

    def get_latest_generation(self, *, block: BlockRef = "latest") -> int:
        return int(self._read("latestGeneration", block=block))

    def get_retirement_window(self, *, block: BlockRef = "latest") -> int:
        return int(self._read("retirementWindow", block=block))

    def get_epoch(self, epoch: int, *, block: BlockRef = "latest") -> EpochInfo:
        raw = self._read("getEpoch", epoch, block=block)
        return EpochInfo(
            epoch=epoch,
            kind=EpochKind(raw[0]),
            status=EpochStatus(raw[1]),
            generation=int(raw[2]),
            previous_epoch=int(raw[3]),
            threshold=int(raw[4]),
            previous_threshold=int(raw[5]),
            proposed_at=int(raw[6]),
            deal_deadline=int(raw[7]),
            complaint_deadline=int(raw[8]),
            justify_deadline=int(raw[9]),
            confirm_deadline=int(raw[10]),
            finished_at=int(raw[11]),
            members=tuple(str(m) for m in raw[12]),
            dealers=tuple(str(d) for d in raw[13]),
            digest=bytes(raw[14]),
            public_polynomial=split_points(bytes(raw[15]), G1_LENGTH),
            pk2=bytes(raw[16]),
        )

    def get_phase(self, epoch: int, *, block: BlockRef = "latest") -> Phase:
        return Phase(self._read("epochPhase", epoch, block=block))

    def get_deal(self, epoch: int, dealer: str, *, block: BlockRef = "latest") -> DealInfo:
        raw = self._read("getDeal", epoch, parse_address("dealer", dealer), block=block)
        return DealInfo(
            commitments=split_points(bytes(raw[0]), G1_LENGTH),
            pk2_part=bytes(raw[1]),
            proof=bytes(raw[2]),
            submitted_at=int(raw[3]),
        )

    def get_complaints(self, epoch: int, *, block: BlockRef = "latest") -> list[ComplaintInfo]:
        return [
            ComplaintInfo(
                accuser=str(c[0]), accused=str(c[1]), justified=bool(c[2]), share=bytes(c[3])
            )
            for c in self._read("getComplaints", epoch, block=block)
        ]

    def get_generation(self, generation: int, *, block: BlockRef = "latest") -> GenerationInfo:
        raw = self._read("getGeneration", generation, block=block)
        return GenerationInfo(
            generation=generation,
            status=GenerationStatus(raw[0]),
            active_epoch=int(raw[1]),
            activated_at=int(raw[2]),
            retire_after=int(raw[3]),
            pk1=bytes(raw[4]),
            pk2=bytes(raw[5]),
        )

    def get_vote_count(
        self,
        epoch: int,
        digest: bytes,
        public_polynomial: Sequence[bytes],
        pk2: bytes,
        *,
        block: BlockRef = "latest",
    ) -> int:
        poly = _points("public_polynomial", public_polynomial, G1_LENGTH)
        args = (
            epoch,
            parse_bytes32("digest", digest),
            poly,
            _require_length("pk2", pk2, G2_LENGTH),
        )
        return int(self._read("voteCount", *args, block=block))

    def has_confirmed(self, epoch: int, member: str, *, block: BlockRef = "latest") -> bool:
        key = self._read("confirmationOf", epoch, parse_address("member", member), block=block)
        return bytes(key) != bytes(32)

    def send_set_retirement_window(self, blocks: int) -> Receipt:
        return self._send("setRetirementWindow", blocks)

    def send_propose_epoch(
        self,
        kind: EpochKind,
        members: Sequence[str],
        threshold: int,
        phase_blocks: tuple[int, int, int, int],
    ) -> tuple[Receipt, int]:
        """Proposes an epoch; returns the receipt and the new epoch's id."""
        addresses = [parse_address(f"members[{i}]", m) for i, m in enumerate(members)]
        if not 1 <= threshold <= len(addresses):
            raise InvalidInput("threshold", f"must be 1..{len(addresses)}, got {threshold}")
        receipt = self._send("proposeEpoch", int(kind), addresses, threshold, list(phase_blocks))
        (event,) = self.event_args(receipt, "EpochProposed")
        return receipt, int(event["epoch"])

    def send_submit_deal(
        self, epoch: int, commitments: Sequence[bytes], pk2_part: bytes, proof: bytes
    ) -> Receipt:
        return self._send(
            "submitDeal",
            epoch,
            _points("commitments", commitments, G1_LENGTH),
            _require_length("pk2_part", pk2_part, G2_LENGTH),
            proof,
        )

    def send_complain(self, epoch: int, accused: str) -> Receipt:
        return self._send("complain", epoch, parse_address("accused", accused))

    def send_justify(self, epoch: int, accuser: str, share: bytes) -> Receipt:
        share = _require_length("share", share, SCALAR_LENGTH)
        return self._send("justify", epoch, parse_address("accuser", accuser), share)

    def send_confirm(
        self, epoch: int, digest: bytes, public_polynomial: Sequence[bytes], pk2: bytes
    ) -> Receipt:
        return self._send(
            "confirm",
            epoch,
            parse_bytes32("digest", digest),
            _points("public_polynomial", public_polynomial, G1_LENGTH),
            _require_length("pk2", pk2, G2_LENGTH),
        )

    def send_timeout_epoch(self, epoch: int) -> Receipt:
        return self._send("timeoutEpoch", epoch)

    def send_cancel_epoch(self, epoch: int) -> Receipt:
        return self._send("cancelEpoch", epoch)

    def send_retire_generation(self, generation: int) -> Receipt:
        return self._send("retireGeneration", generation)

    # Apps
    def get_app_status(self, app_id: str, *, block: BlockRef = "latest") -> AppStatus:
        return AppStatus(self._read("appStatus", parse_address("app_id", app_id), block=block))

    def is_app_allowed(self, info: AppBootInfo, *, block: BlockRef = "latest") -> AuthDecision:
        allowed, reason = self._read("isAppAllowed", info.to_abi(), block=block)
        return AuthDecision(bool(allowed), str(reason))

    def get_app_factory(self, *, block: BlockRef = "latest") -> str:
        return str(self._read("appFactory", block=block))

    def send_set_app_factory(self, app_factory: str) -> Receipt:
        return self._send("setAppFactory", parse_address("app_factory", app_factory))

    def send_register_app(self, app_id: str) -> Receipt:
        return self._send("registerApp", parse_address("app_id", app_id))

    def send_remove_app(self, app_id: str) -> Receipt:
        return self._send("removeApp", parse_address("app_id", app_id))
