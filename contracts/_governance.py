"""Typed client of KmsGovernance: every function, reads as `get_*`/`is_*`, writes as `send_*`.

Reads take `block=` so a caller can pin a decision to a block and cache by (identity, block)
(design §6.3). Writes validate arguments before sending and raise TransactionFailed with the tx
hash and the decoded custom error. Epoch and generation calls live in `_epoch_calls.py`.
"""

from __future__ import annotations

from collections.abc import Sequence

from contracts._devchain import require_dev_chain
from contracts._epoch_calls import EpochCalls
from contracts._events import ChainEvent, fetch_events
from contracts._hexargs import parse_address, parse_bytes32
from contracts._tx import Receipt
from contracts._types import AppBootInfo, AppStatus, AuthDecision, BlockRef, NodeInfo, NodeStatus
from contracts.errors import InvalidInput


class GovernanceClient(EpochCalls):
    """KmsGovernance at `address`; `transactor` signs writes (None: read-only)."""

    artifact = "KmsGovernance"
    argument = "governance"

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
        """Turning simulators on is refused (nothing sent) off development chains."""
        if allowed:
            require_dev_chain(int(self.w3.eth.chain_id), "allowed")
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

    def is_node_registration_allowed(self, node: str, *, block: BlockRef = "latest") -> bool:
        address = parse_address("node", node)
        return bool(self._read("nodeRegistrationAllowed", address, block=block))

    def send_allow_node_registration(self, node: str) -> Receipt:
        return self._send("allowNodeRegistration", parse_address("node", node))

    def send_disallow_node_registration(self, node: str) -> Receipt:
        return self._send("disallowNodeRegistration", parse_address("node", node))

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

    # Generation links (design §7): checked by whoever reads them, not by the contract
    def get_generation_link(self, generation: int, *, block: BlockRef = "latest") -> bytes:
        """Generation g-1's signature over g's `tkms-generation:v1` statement; b"" if unset."""
        return bytes(self._read("generationLink", generation, block=block))

    def send_set_generation_link(self, generation: int, signature: bytes) -> Receipt:
        if len(signature) != 48:
            raise InvalidInput("signature", f"must be 48 bytes, got {len(signature)}")
        return self._send("setGenerationLink", generation, signature)

    # KMS roots (design §3.5): the anchor of dstack-style key chains, checked by its readers
    def get_kms_root(self, generation: int, *, block: BlockRef = "latest") -> tuple[bytes, bytes]:
        """(compressed secp256k1 root, the network's certificate of it); (b"", b"") if unset."""
        root, certificate = self._read("kmsRoot", generation, block=block)
        return bytes(root), bytes(certificate)

    def send_set_kms_root(self, generation: int, root: bytes, certificate: bytes) -> Receipt:
        if len(root) != 33 or root[0] not in (2, 3):
            raise InvalidInput("root", "must be a 33-byte compressed secp256k1 key")
        if len(certificate) != 48:
            raise InvalidInput("certificate", f"must be 48 bytes, got {len(certificate)}")
        return self._send("setKmsRoot", generation, root, certificate)

    def send_register_app(self, app_id: str) -> Receipt:
        return self._send("registerApp", parse_address("app_id", app_id))

    def send_remove_app(self, app_id: str) -> Receipt:
        return self._send("removeApp", parse_address("app_id", app_id))
