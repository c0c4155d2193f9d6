"""The committed artifacts match the sources.

Compiling takes seconds, so one test does everything that needs a compile: under pytest-xdist
tests of one file may land on both workers, and a session fixture would then compile twice.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from contracts import ARTIFACT_DIR, ArtifactError, load_artifact
from contracts.compile import check_artifacts, compile_sources


def test_artifacts_match_the_sources_and_staleness_is_named(tmp_path: Path) -> None:
    compiled = compile_sources()
    check_artifacts(compiled)
    assert compiled["KmsGovernance"]["compiler"].startswith("0.8.37+")
    # EIP-170: deployed code over 24576 bytes cannot be deployed on mainnet-like chains.
    for name in ("KmsGovernance", "AppAuthFactory", "AppAuth"):
        assert 0 < len(bytes.fromhex(compiled[name]["deployedBytecode"][2:])) < 24576, name

    for key in ("bytecode", "abi", "sourceHashes"):
        directory = tmp_path / key
        directory.mkdir()
        for path in ARTIFACT_DIR.glob("*.json"):
            shutil.copy(path, directory / path.name)
        target = directory / "AppAuth.json"
        document = json.loads(target.read_text())
        if key == "abi":
            document["abi"] = document["abi"][1:]
        elif key == "bytecode":
            document["bytecode"] = document["bytecode"][:-2] + "00"
        else:
            document["sourceHashes"]["AppAuth.sol"] = "0" * 64
        target.write_text(json.dumps(document))
        with pytest.raises(ArtifactError, match=f"AppAuth.json: {key} differs from the sources"):
            check_artifacts(compiled, directory)


def test_a_missing_artifact_is_an_artifact_error(tmp_path: Path) -> None:
    with pytest.raises(
        ArtifactError, match="AppAuth.json: missing; run `python -m contracts.compile`"
    ):
        load_artifact.__wrapped__("AppAuth", tmp_path)
