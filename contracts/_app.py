"""Typed clients of one app's AppAuth controller and of the AppAuthFactory."""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from contracts._base import ContractClient
from contracts._events import fetch_events
from contracts._hexargs import parse_address, parse_bytes32
from contracts._tx import Receipt, logs_of
from contracts._types import AppBootInfo, AuthDecision, BlockRef
from contracts.errors import InvalidInput

IAPP_AUTH_INTERFACE_ID = bytes.fromhex("1e079198")


class AppAuthClient(ContractClient):
    """The AppAuth whose address is `app_id`."""

    artifact = "AppAuth"
    argument = "app_id"

    def get_owner(self, *, block: BlockRef = "latest") -> str:
        return str(self._read("owner", block=block))

    def is_compose_hash_allowed(self, compose_hash: bytes, *, block: BlockRef = "latest") -> bool:
        value = parse_bytes32("compose_hash", compose_hash)
        return bool(self._read("allowedComposeHashes", value, block=block))

    def is_device_allowed(self, device_id: bytes, *, block: BlockRef = "latest") -> bool:
        return bool(
            self._read("allowedDevices", parse_bytes32("device_id", device_id), block=block)
        )

    def get_allow_any_device(self, *, block: BlockRef = "latest") -> bool:
        return bool(self._read("allowAnyDevice", block=block))

    def get_require_tcb_up_to_date(self, *, block: BlockRef = "latest") -> bool:
        return bool(self._read("requireTcbUpToDate", block=block))

    def get_allowed_compose_hashes(self, *, block: int | None = None) -> list[bytes]:
        """The compose hashes allowed at `block` (default: the head), from the app's events."""
        end = self.w3.eth.block_number if block is None else block
        events = fetch_events(
            self.w3, [self.address], 0, end, names=("ComposeHashAdded", "ComposeHashRemoved")
        )
        allowed: dict[bytes, None] = {}
        for event in events:
            value = bytes(event.args["composeHash"])
            if event.event == "ComposeHashAdded":
                allowed[value] = None
            else:
                allowed.pop(value, None)
        return [h for h in allowed if self.is_compose_hash_allowed(h, block=end)]

    def get_env_signer(self, *, block: BlockRef = "latest") -> str:
        """Who signs the app's encrypted env; the zero address: no env is accepted."""
        return str(self._read("envSigner", block=block))

    def get_env_version(self, *, block: BlockRef = "latest") -> int:
        """The version an env must carry to be accepted now."""
        return int(self._read("envVersion", block=block))

    def get_live_revocation_blocks(self, *, block: BlockRef = "latest") -> int:
        """0: off; N: running agents stop serving keys within N blocks of a revocation."""
        return int(self._read("liveRevocationBlocks", block=block))

    def get_dstack_kms_release(self, *, block: BlockRef = "latest") -> bool:
        """Whether one KMS node may assemble the app's keys for a dstack guest."""
        return bool(self._read("dstackKmsRelease", block=block))

    def supports_interface(self, interface_id: bytes, *, block: BlockRef = "latest") -> bool:
        return bool(self._read("supportsInterface", interface_id, block=block))

    def is_app_allowed(self, info: AppBootInfo, *, block: BlockRef = "latest") -> AuthDecision:
        allowed, reason = self._read("isAppAllowed", info.to_abi(), block=block)
        return AuthDecision(bool(allowed), str(reason))

    def send_add_compose_hash(self, compose_hash: bytes) -> Receipt:
        return self._send("addComposeHash", parse_bytes32("compose_hash", compose_hash))

    def send_remove_compose_hash(self, compose_hash: bytes) -> Receipt:
        return self._send("removeComposeHash", parse_bytes32("compose_hash", compose_hash))

    def send_add_device(self, device_id: bytes) -> Receipt:
        return self._send("addDevice", parse_bytes32("device_id", device_id))

    def send_remove_device(self, device_id: bytes) -> Receipt:
        return self._send("removeDevice", parse_bytes32("device_id", device_id))

    def send_set_allow_any_device(self, allow_any: bool) -> Receipt:
        return self._send("setAllowAnyDevice", allow_any)

    def send_set_require_tcb_up_to_date(self, require: bool) -> Receipt:
        return self._send("setRequireTcbUpToDate", require)

    def send_set_env_signer(self, signer: str) -> Receipt:
        return self._send("setEnvSigner", parse_address("signer", signer))

    def send_set_env_version(self, version: int) -> Receipt:
        return self._send("setEnvVersion", checked_env_version(version))

    def send_set_live_revocation_blocks(self, blocks: int) -> Receipt:
        if not 0 <= blocks < 2**64:
            raise InvalidInput("blocks", f"must be 0 (off) to 2**64-1, got {blocks}")
        return self._send("setLiveRevocationBlocks", blocks)

    def send_set_dstack_kms_release(self, allowed: bool) -> Receipt:
        return self._send("setDstackKmsRelease", allowed)

    def send_transfer_ownership(self, new_owner: str) -> Receipt:
        return self._send("transferOwnership", parse_address("new_owner", new_owner))

    def send_accept_ownership(self) -> Receipt:
        return self._send("acceptOwnership")


class AppFactoryClient(ContractClient):
    """The AppAuthFactory: deploys one AppAuth per app and registers it with the governance."""

    artifact = "AppAuthFactory"
    argument = "app_factory"

    def get_governance(self, *, block: BlockRef = "latest") -> str:
        return str(self._read("governance", block=block))

    def predict_app_id(self, owner: str, salt: bytes, *, block: BlockRef = "latest") -> str:
        """The app id `send_deploy_app(salt=salt)` gives when `owner` sends it."""
        args = (parse_address("owner", owner), parse_bytes32("salt", salt))
        return str(self._read("predictAppId", *args, block=block))

    def send_deploy_app(
        self,
        *,
        salt: bytes | None = None,
        compose_hashes: Sequence[bytes] = (),
        device_ids: Sequence[bytes] = (),
        allow_any_device: bool = False,
        require_tcb_up_to_date: bool = True,
    ) -> tuple[Receipt, str]:
        """Deploys and registers an app owned by the sender; returns the receipt and app_id.

        The app id depends only on (factory, sender, `salt`): see `predict_app_id`. Without a
        salt a random one is used; the same sender cannot use one salt twice (`AppIdTaken`).
        """
        chosen = secrets.token_bytes(32) if salt is None else parse_bytes32("salt", salt)
        hashes = [parse_bytes32(f"compose_hashes[{i}]", h) for i, h in enumerate(compose_hashes)]
        devices = [parse_bytes32(f"device_ids[{i}]", d) for i, d in enumerate(device_ids)]
        receipt = self._send(
            "deployAndRegister", chosen, hashes, devices, allow_any_device, require_tcb_up_to_date
        )
        decoder = self.contract.events.AppDeployed()
        (log,) = logs_of(receipt, self.address, decoder.topic)
        app_id = str(decoder.process_log(log)["args"]["appId"])
        return receipt, app_id


def checked_env_version(version: int) -> int:
    """`version` if it fits AppAuth's uint64 env version (which starts above 0)."""
    if not 0 < version < 2**64:
        raise InvalidInput("version", f"must be 1..2**64-1, got {version}")
    return version
