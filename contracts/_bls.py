"""Typed client of BlsVerifier: the network's BLS signatures checked on chain (EIP-2537).

    address = deploy_bls_verifier(transactor, governance)
    verifier = BlsVerifierClient(w3, address)
    verifier.verify_app_key(pk2, app_id, key, signature)   # True / False

Points are EIP-2537's uncompressed encoding (G2: 256 bytes, G1: 128 bytes); `mpc.group`'s
`G2.to_eip2537()` / `G1.to_eip2537()` convert the network's compressed encodings. Lengths are
checked here (`InvalidInput`, nothing sent); everything else about a point is the contract's
check, which reverts with a named error (`CallReverted`: `NotOnCurve`, `NotInSubgroup`,
`IdentityPoint`, `NotCanonical`, `PrecompileUnavailable` on a chain before Prague).
"""

from __future__ import annotations

from typing import Any, Final

from eth_typing import HexStr
from web3 import Web3

from contracts._artifacts import load_artifact
from contracts._base import ContractClient
from contracts._hexargs import parse_address
from contracts._reads import plan_reads
from contracts._tx import Transactor
from contracts._types import BlockRef
from contracts.errors import ChainError, InvalidInput

G1_POINT_SIZE: Final = 128
G2_POINT_SIZE: Final = 256
#: The hardfork whose precompiles (EIP-2537) the verifier needs; anvil `--hardfork prague`.
VERIFIER_HARDFORK: Final = "prague"


def _point(argument: str, value: bytes, size: int) -> bytes:
    if not isinstance(value, bytes | bytearray):
        raise InvalidInput(argument, f"expected bytes, got {type(value).__name__}")
    if len(value) != size:
        raise InvalidInput(
            argument, f"expected {size} bytes (EIP-2537 uncompressed), got {len(value)}"
        )
    return bytes(value)


class BlsVerifierClient(ContractClient):
    """The BlsVerifier at `address` (read-only: verification is a view)."""

    artifact = "BlsVerifier"
    argument = "verifier"

    def get_governance(self, *, block: BlockRef = "latest") -> str:
        return str(self._read("governance", block=block))

    def verify(
        self, public_key: bytes, message: bytes, signature: bytes, *, block: BlockRef = "latest"
    ) -> bool:
        """Whether `signature` (G1, 128 bytes) signs `message` under `public_key` (G2, 256)."""
        args = self._args(public_key, signature)
        return bool(self._read("verify", args[0], bytes(message), args[1], block=block))

    def verify_app_key(
        self,
        public_key: bytes,
        app_id: str,
        key: bytes,
        signature: bytes,
        *,
        block: BlockRef = "latest",
    ) -> bool:
        """Whether `signature` certifies that app `app_id` of the verifier's network holds `key`."""
        pk, sig = self._args(public_key, signature)
        app = parse_address("app_id", app_id)
        if not key:
            raise InvalidInput("key", "the certified key must not be empty")
        return bool(self._read("verifyAppKey", pk, app, bytes(key), sig, block=block))

    def get_app_key_statement(
        self, app_id: str, key: bytes, *, block: BlockRef = "latest"
    ) -> bytes:
        """The statement `verify_app_key` checks, built on chain (`app_pubkey_statement`)."""
        app = parse_address("app_id", app_id)
        return bytes(self._read("appKeyStatement", app, bytes(key), block=block))

    def hash_to_g1(self, message: bytes, dst: bytes, *, block: BlockRef = "latest") -> bytes:
        """RFC 9380 hash to G1 computed on chain, uncompressed (128 bytes)."""
        return bytes(self._read("hashToG1", bytes(message), bytes(dst), block=block))

    def expand_message_xmd(self, message: bytes, dst: bytes) -> bytes:
        """RFC 9380 expand_message_xmd (SHA-256, 128 bytes) computed on chain."""
        blocks = self._read("expandMessageXmd", bytes(message), bytes(dst), block="latest")
        return b"".join(bytes(b) for b in blocks)

    def estimate_verify_gas(self, public_key: bytes, message: bytes, signature: bytes) -> int:
        """Gas of a transaction that calls `verify` once (intrinsic and calldata included)."""
        pk, sig = self._args(public_key, signature)
        return self._estimate_call("verify", pk, bytes(message), sig)

    def estimate_verify_app_key_gas(
        self, public_key: bytes, app_id: str, key: bytes, signature: bytes
    ) -> int:
        pk, sig = self._args(public_key, signature)
        app = parse_address("app_id", app_id)
        return self._estimate_call("verifyAppKey", pk, app, bytes(key), sig)

    def _args(self, public_key: bytes, signature: bytes) -> tuple[bytes, bytes]:
        return (
            _point("public_key", public_key, G2_POINT_SIZE),
            _point("signature", signature, G1_POINT_SIZE),
        )

    def _estimate_call(self, name: str, *args: Any) -> int:
        plan = plan_reads(load_artifact(self.artifact).abi)[name]
        data = plan.selector + self.w3.codec.encode(list(plan.inputs), list(args))
        try:
            return int(
                self.w3.eth.estimate_gas({"to": self.address, "data": HexStr("0x" + data.hex())})
            )
        except Exception as exc:
            raise ChainError(f"{name}: gas estimate failed: {exc}") from None


def deploy_bls_verifier(transactor: Transactor, governance: str) -> str:
    """Deploys a BlsVerifier for the network of `governance`; returns its address.

    It deploys on any chain, but checks signatures only on one with the Prague precompiles
    (EIP-2537); elsewhere every check reverts `PrecompileUnavailable`."""
    governance = parse_address("governance", governance)
    artifact = load_artifact("BlsVerifier")
    factory = transactor.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    receipt = transactor.send(factory.constructor(governance))
    if receipt.contract_address is None:
        raise ChainError(f"deploying BlsVerifier: receipt {receipt.tx_hash} has no address")
    return Web3.to_checksum_address(receipt.contract_address)
