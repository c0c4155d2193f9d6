"""Loading the committed compiled artifacts (ABI and bytecode) of the governance contracts."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from contracts.errors import ArtifactError

PACKAGE_DIR = Path(__file__).resolve().parent
SOURCE_DIR = PACKAGE_DIR / "sol"
ARTIFACT_DIR = PACKAGE_DIR / "artifacts"

# Contracts whose artifacts are committed: source file, contract name.
ARTIFACT_CONTRACTS: tuple[tuple[str, str], ...] = (
    ("KmsGovernance.sol", "KmsGovernance"),
    ("AppAuth.sol", "AppAuth"),
    ("AppAuthFactory.sol", "AppAuthFactory"),
    ("IAppAuth.sol", "IAppAuth"),
    ("BlsVerifier.sol", "BlsVerifier"),
)


@dataclass(frozen=True)
class Artifact:
    name: str
    abi: list[dict[str, Any]]
    bytecode: str
    compiler: str
    source_hashes: dict[str, str]
    deployed_bytecode: str = "0x"
    # {ast id: [{"start": byte offset, "length": n}, ...]}: runtime bytes set at deployment
    immutable_references: dict[str, list[dict[str, int]]] = field(default_factory=dict)


@cache
def load_artifact(name: str, directory: Path = ARTIFACT_DIR) -> Artifact:
    path = directory / f"{name}.json"
    try:
        data = json.loads(path.read_text())
        return Artifact(
            name=data["contractName"],
            abi=data["abi"],
            bytecode=data["bytecode"],
            compiler=data["compiler"],
            source_hashes=data["sourceHashes"],
            deployed_bytecode=data["deployedBytecode"],
            immutable_references=data["immutableReferences"],
        )
    except FileNotFoundError:
        raise ArtifactError(f"{path}: missing; run `python -m contracts.compile`") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"{path}: unreadable artifact ({exc})") from None


def all_abis() -> list[list[dict[str, Any]]]:
    """Every committed ABI, for decoding events and errors of any of our contracts."""
    return [load_artifact(name).abi for _, name in ARTIFACT_CONTRACTS]
