"""Test-only Solidity contracts (tests/contracts/sol): compiled with the project's compiler and
settings next to the real sources (they import them), deployed on the test chain. They are
never part of contracts/artifacts, which only the shipped contracts fill."""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from web3 import Web3

from contracts import SOURCE_DIR, Transactor
from contracts.compile import run_solc

TEST_SOURCE_DIR = Path(__file__).resolve().parent / "sol"
NODE_MODULES = Path(__file__).resolve().parents[2] / "node_modules"
_IMPORT = re.compile(r"""^\s*import\s+(?:[^";]*\s+from\s+)?"([^"]+)"\s*;""", re.MULTILINE)


@dataclass(frozen=True)
class Compiled:
    abi: list[dict[str, Any]]
    bytecode: str


def compile_test_contracts() -> dict[str, Compiled]:
    sources = {path.name: path.read_text() for path in sorted(SOURCE_DIR.glob("*.sol"))}
    tests = {path.name: path.read_text() for path in sorted(TEST_SOURCE_DIR.glob("*.sol"))}
    clash = set(sources) & set(tests)
    assert not clash, f"test sources shadow real ones: {clash}"
    output = run_solc(sources | tests)
    return {
        name: Compiled(contract["abi"], "0x" + contract["evm"]["bytecode"]["object"])
        for unit in tests
        for name, contract in output["contracts"][unit].items()
    }


def deploy_test_contract(transactor: Transactor, compiled: Compiled, *args: object) -> Any:
    """Deploys `compiled`; returns a web3 contract object at its address."""
    w3: Web3 = transactor.w3
    factory = w3.eth.contract(abi=compiled.abi, bytecode=compiled.bytecode)
    receipt = transactor.send(factory.constructor(*args))
    assert receipt.contract_address is not None
    address = Web3.to_checksum_address(receipt.contract_address)
    return w3.eth.contract(address=address, abi=compiled.abi)


def compile_npm_contract(unit: str, name: str) -> Compiled:
    """Contract `name` of `unit` (a path under node_modules, e.g.
    "@openzeppelin/contracts/governance/TimelockController.sol"), compiled with the project's
    compiler and settings together with exactly the files it imports."""
    sources: dict[str, str] = {}
    todo = [unit]
    while todo:
        current = todo.pop()
        if current in sources:
            continue
        sources[current] = (NODE_MODULES / current).read_text()
        for imported in _IMPORT.findall(sources[current]):
            if imported.startswith("."):
                imported = posixpath.normpath(posixpath.join(posixpath.dirname(current), imported))
            todo.append(imported)
    contract = run_solc(sources)["contracts"][unit][name]
    return Compiled(contract["abi"], "0x" + contract["evm"]["bytecode"]["object"])
