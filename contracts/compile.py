"""Compiles contracts/sol with the npm `solc` package and writes or checks contracts/artifacts.

    python -m contracts.compile           # rewrite the artifacts
    python -m contracts.compile --check   # exit 1 if the committed artifacts are stale

solc exists here only as a JS module, so `compile.js` bridges: Python builds the standard-JSON
input, node runs the compiler. The check recompiles and compares ABI and bytecode, so it also
catches an artifact edited by hand; the source hashes make a stale artifact's message precise.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from contracts._artifacts import ARTIFACT_CONTRACTS, ARTIFACT_DIR, PACKAGE_DIR, SOURCE_DIR
from contracts.errors import ArtifactError, CompileError

SOLC_VERSION = "0.8.37"
SETTINGS: dict[str, Any] = {
    "optimizer": {"enabled": True, "runs": 200},
    # The IR pipeline: KmsGovernance is 22.0 KB with it, 24.5 KB without (EIP-170 allows
    # 24,576 bytes of runtime code); it costs about 15 s more per compile.
    "viaIR": True,
    "evmVersion": "cancun",
    "outputSelection": {
        "*": {
            "*": [
                "abi",
                "evm.bytecode.object",
                "evm.deployedBytecode.object",
                "evm.deployedBytecode.immutableReferences",
            ]
        }
    },
}


def source_hashes(source_dir: Path = SOURCE_DIR) -> dict[str, str]:
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(source_dir.glob("*.sol"))
    }


def run_solc(sources: dict[str, str]) -> dict[str, Any]:
    """Compiles `sources` (unit name -> Solidity text); returns solc's standard-JSON output."""
    node = shutil.which("node")
    if node is None:
        raise CompileError("node is not on PATH; it runs the npm solc compiler")
    request = {
        "language": "Solidity",
        "sources": {name: {"content": text} for name, text in sources.items()},
        "settings": SETTINGS,
    }
    env = dict(os.environ, NODE_PATH=str(PACKAGE_DIR.parent / "node_modules"))
    result = subprocess.run(
        [node, str(PACKAGE_DIR / "compile.js")],
        input=json.dumps(request).encode(),
        capture_output=True,
        env=env,
        check=False,
    )
    if result.returncode != 0:
        raise CompileError(f"solc (npm) failed: {result.stderr.decode(errors='replace')[-2000:]}")
    output: dict[str, Any] = json.loads(result.stdout)
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise CompileError("\n".join(e["formattedMessage"] for e in errors))
    version = str(output["compilerVersion"])
    if not version.startswith(SOLC_VERSION + "+"):
        raise CompileError(f"solc {version} found, {SOLC_VERSION} required (run `make install`)")
    return output


def compile_sources(source_dir: Path = SOURCE_DIR) -> dict[str, dict[str, Any]]:
    """Compiles every source; returns the artifact documents by contract name."""
    output = run_solc({path.name: path.read_text() for path in sorted(source_dir.glob("*.sol"))})
    version = str(output["compilerVersion"])
    hashes = source_hashes(source_dir)
    documents: dict[str, dict[str, Any]] = {}
    for source, name in ARTIFACT_CONTRACTS:
        compiled = output["contracts"][source][name]
        documents[name] = {
            "contractName": name,
            "sourceFile": f"sol/{source}",
            "compiler": version,
            "settings": SETTINGS,
            "sourceHashes": hashes,
            "abi": compiled["abi"],
            "bytecode": "0x" + compiled["evm"]["bytecode"]["object"],
            "deployedBytecode": "0x" + compiled["evm"]["deployedBytecode"]["object"],
            # Where the runtime code holds immutables (set at deployment): masked when
            # deployed code is compared with the artifact.
            "immutableReferences": compiled["evm"]["deployedBytecode"]["immutableReferences"],
        }
    return documents


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=1, sort_keys=True) + "\n"


def write_artifacts(artifact_dir: Path = ARTIFACT_DIR) -> list[Path]:
    artifact_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, document in compile_sources().items():
        path = artifact_dir / f"{name}.json"
        path.write_text(render(document))
        written.append(path)
    return written


def check_artifacts(
    compiled: dict[str, dict[str, Any]] | None = None, artifact_dir: Path = ARTIFACT_DIR
) -> None:
    """Raises ArtifactError naming every artifact that differs from a fresh compile."""
    fresh = compile_sources() if compiled is None else compiled
    stale = []
    for name, document in fresh.items():
        path = artifact_dir / f"{name}.json"
        try:
            committed = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            stale.append(f"{path.name}: unreadable ({exc})")
            continue
        for key in (
            "abi",
            "bytecode",
            "deployedBytecode",
            "immutableReferences",
            "sourceHashes",
            "compiler",
        ):
            if committed.get(key) != document[key]:
                stale.append(f"{path.name}: {key} differs from the sources")
    if stale:
        raise ArtifactError(
            "artifacts do not match contracts/sol (run `python -m contracts.compile`):\n  "
            + "\n  ".join(stale)
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m contracts.compile", description=__doc__)
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if stale")
    args = parser.parse_args(argv)
    try:
        if args.check:
            check_artifacts()
            print("artifacts match the sources")
        else:
            for path in write_artifacts():
                print(f"wrote {path.relative_to(PACKAGE_DIR.parent)}")
    except (ArtifactError, CompileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
