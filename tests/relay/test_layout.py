"""The relay's gossip half runs in .venv-relay, which has no core dependencies: its modules
may import only the standard library, trio, libp2p, multiaddr, `mpc` and `relay`."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

RELAY = Path(__file__).parents[2] / "relay"
CORE_SIDE = {"cli.py", "feed.py"}  # run by `tkms relay` in the core environment
ALLOWED = {"trio", "libp2p", "multiaddr", "mpc", "relay"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_gossip_modules_import_only_what_the_relay_environment_has() -> None:
    checked = [p for p in sorted(RELAY.glob("*.py")) if p.name not in CORE_SIDE]
    assert {p.name for p in checked} >= {"__main__.py", "gossip.py", "store.py", "http.py"}
    for path in checked:
        foreign = _imports(path) - ALLOWED - set(sys.stdlib_module_names) - {"__future__"}
        assert not foreign, f"{path.name} imports {sorted(foreign)}"


def test_mpc_imports_nothing_of_ours_but_itself() -> None:
    """The relay environment gets `mpc` from the checkout: it must not pull in the core."""
    for path in sorted((RELAY.parent / "mpc").glob("*.py")):
        ours = _imports(path) & {"node", "guest", "contracts", "attest", "protos", "gateway"}
        assert not ours, f"mpc/{path.name} imports {sorted(ours)}"


def test_the_relay_requirements_pin_libp2p_and_not_the_core() -> None:
    lines = (RELAY / "requirements.txt").read_text().splitlines()
    wanted = [line for line in lines if line and not line.startswith("#")]
    assert "libp2p==0.8.1" in wanted
    assert not any(line.startswith(("protobuf", "grpcio", "web3")) for line in wanted)


def _pins(lines: list[str]) -> dict[str, str]:
    """Distribution name -> its whole requirement, for `name==x` / `name>=a,<b` lines."""
    pins: dict[str, str] = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            name = re.split(r"[=<>!~ \[;]", line, maxsplit=1)[0]
            pins[name.lower().replace("_", "-")] = line
    return pins


def test_what_the_relay_shares_with_the_core_is_pinned_alike() -> None:
    """`mpc` runs in both environments: a package both install (arkworks, blst, cryptography)
    must be the same release range in each, or the relay checks signatures with other code."""
    project = tomllib.loads((RELAY.parent / "pyproject.toml").read_text())["project"]
    core = _pins(project["dependencies"])
    relay = _pins((RELAY / "requirements.txt").read_text().splitlines())
    shared = core.keys() & relay.keys()
    assert {"py-arkworks-bls12381", "pyblst", "cryptography"} <= shared
    for name in sorted(shared):
        assert relay[name] == core[name], f"relay: {relay[name]!r}, pyproject: {core[name]!r}"
