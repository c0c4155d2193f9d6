"""Whether the code at an address is one of our committed contracts, and where apps land.

Runtime code is compared byte for byte with the artifact's `deployedBytecode`, the immutables
(values the constructor writes into the code, e.g. the factory's governance) masked: they are
zero in the artifact. The metadata hash at the end of the code commits to the sources, so the
same ABI compiled from other sources does not match.

App ids are computed here as `AppAuthFactory` makes them (a CREATE2 proxy at salt
keccak256(abi.encode(owner, salt)) whose first CREATE is the app), so a tool need not trust the
factory's own `predictAppId`.
"""

from __future__ import annotations

from eth_abi.abi import encode as abi_encode
from eth_typing import ChecksumAddress
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from web3 import Web3

from contracts._artifacts import load_artifact
from contracts._hexargs import parse_address, parse_bytes32
from contracts._types import BlockRef

# The factory's one-use proxy: its runtime runs CREATE with the calldata as init code.
PROXY_INIT_CODE = bytes.fromhex("67363d3d37363d34f03d5260086018f3")


def runtime_matches(code: bytes, artifact: str) -> bool:
    """True if `code` is the runtime code of `artifact`, whatever its immutables hold."""
    built = load_artifact(artifact)
    expected = bytes.fromhex(built.deployed_bytecode.removeprefix("0x"))
    if len(code) != len(expected) or not expected:
        return False
    masked = bytearray(code)
    for references in built.immutable_references.values():
        for reference in references:
            start, length = reference["start"], reference["length"]
            masked[start : start + length] = bytes(length)
    return bytes(masked) == expected


def is_deployed(w3: Web3, address: str, artifact: str, *, block: BlockRef = "latest") -> bool:
    """True if the code at `address` (at `block`) is `artifact`'s runtime code."""
    code = bytes(w3.eth.get_code(parse_address("address", address), block))  # type: ignore[arg-type]
    return runtime_matches(code, artifact)


def code_hash(w3: Web3, address: str, *, block: BlockRef = "latest") -> str:
    """keccak256 of the runtime code at `address` (0x-hex), for messages and the audit."""
    code = bytes(w3.eth.get_code(parse_address("address", address), block))  # type: ignore[arg-type]
    return "0x" + keccak(code).hex()


def created_by(deployer: str, nonce: int = 1) -> ChecksumAddress:
    """The address of the contract `deployer` creates with `nonce` (small nonces only)."""
    if not 1 <= nonce <= 0x7F:
        raise ValueError(f"nonce {nonce}: only 1..127 are encoded here")
    raw = bytes.fromhex(parse_address("deployer", deployer)[2:])
    return to_checksum_address(keccak(b"\xd6\x94" + raw + bytes([nonce]))[12:])


def predict_app_id(factory: str, owner: str, salt: bytes) -> ChecksumAddress:
    """The app id `factory.deployAndRegister(salt, ...)` gives when sent by `owner`."""
    salt = parse_bytes32("salt", salt)
    owner_salt = keccak(abi_encode(["address", "bytes32"], [parse_address("owner", owner), salt]))
    factory_raw = bytes.fromhex(parse_address("factory", factory)[2:])
    proxy = keccak(b"\xff" + factory_raw + owner_salt + keccak(PROXY_INIT_CODE))[12:]
    return created_by(to_checksum_address(proxy))
