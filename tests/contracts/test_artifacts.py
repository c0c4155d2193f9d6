"""The committed artifacts match the sources (compiled once per session with npm solc)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from contracts import ARTIFACT_DIR, ArtifactError, load_artifact
from contracts.compile import check_artifacts, compile_sources


@pytest.fixture(scope="session")
def compiled() -> dict[str, dict[str, Any]]:
    return compile_sources()


def test_committed_artifacts_match_a_fresh_compile(compiled: dict[str, dict[str, Any]]) -> None:
    check_artifacts(compiled)
    assert compiled["KmsGovernance"]["compiler"].startswith("0.8.37+")


@pytest.mark.parametrize("name", ["KmsGovernance", "AppAuthFactory", "AppAuth"])
def test_contracts_fit_the_code_size_limit(compiled: dict[str, dict[str, Any]], name: str) -> None:
    """EIP-170: deployed code over 24576 bytes cannot be deployed on mainnet-like chains."""
    deployed = bytes.fromhex(compiled[name]["deployedBytecode"][2:])
    assert 0 < len(deployed) < 24576


@pytest.mark.parametrize("key", ["bytecode", "abi", "sourceHashes"])
def test_a_stale_artifact_is_named(
    compiled: dict[str, dict[str, Any]], tmp_path: Path, key: str
) -> None:
    for path in ARTIFACT_DIR.glob("*.json"):
        shutil.copy(path, tmp_path / path.name)
    target = tmp_path / "AppAuth.json"
    document = json.loads(target.read_text())
    if key == "abi":
        document["abi"] = document["abi"][1:]
    elif key == "bytecode":
        document["bytecode"] = document["bytecode"][:-2] + "00"
    else:
        document["sourceHashes"]["AppAuth.sol"] = "0" * 64
    target.write_text(json.dumps(document))
    with pytest.raises(ArtifactError, match=f"AppAuth.json: {key} differs from the sources"):
        check_artifacts(compiled, tmp_path)


def test_a_missing_artifact_is_an_artifact_error(tmp_path: Path) -> None:
    with pytest.raises(
        ArtifactError, match="AppAuth.json: missing; run `python -m contracts.compile`"
    ):
        load_artifact.__wrapped__("AppAuth", tmp_path)
