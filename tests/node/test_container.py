"""The node's container: Dockerfile, entrypoint and compose file agree with each other and with
the code, and the image's install step works.

There is no Docker daemon on the development machine or in CI (the `docker` client is there,
nothing serves it, and no registry for base images is reachable), so the image build itself
runs only where `docker info` answers; everything else is checked here without Docker: the
Dockerfile's COPY sources exist and hold every package the node imports, its install step
(`pip install .` of exactly what it copies) gives a working `tkms node join`, the entrypoint
refuses missing settings, and the compose file sets what the entrypoint reads, exposes what
the image exposes, and mounts the paths the TEE and sealing providers use. The entrypoint
running a real node is tests/node/test_join.py.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from attest.providers._tdx import TSM_REPORT_ROOT

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy" / "node"
OUR_PACKAGES = {"mpc", "attest", "contracts", "protos", "node", "guest", "gateway", "testnet"}


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile as (INSTRUCTION, arguments), continuation lines joined."""
    lines, current = [], ""
    for raw in (DEPLOY / "Dockerfile").read_text().splitlines():
        if raw.lstrip().startswith("#") and not current:
            continue
        current += raw.rstrip("\\").strip() + " " if raw.endswith("\\") else raw.strip()
        if not raw.endswith("\\"):
            if current.strip():
                name, _, rest = current.strip().partition(" ")
                lines.append((name.upper(), rest.strip()))
            current = ""
    return lines


def copies() -> list[tuple[list[str], str]]:
    found = []
    for name, rest in instructions():
        if name == "COPY":
            *sources, destination = rest.split()
            found.append((sources, destination))
    return found


def compose() -> dict[str, Any]:
    text = (DEPLOY / "compose.yaml").read_text()
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    document: dict[str, Any] = json.loads(body)  # YAML in its JSON form
    return document


def entrypoint_variables() -> tuple[set[str], set[str]]:
    """(variables the entrypoint requires, every variable it reads)."""
    script = (DEPLOY / "entrypoint.sh").read_text()
    required = set(re.findall(r"\$\{(TKMS_[A-Z_]+):\?", script))
    read = set(re.findall(r"\$\{(TKMS_[A-Z_]+)", script))
    return required, read


def node_imports(package: str = "node") -> set[str]:
    """Our top-level packages `package` needs, transitively (imports anywhere in its code)."""
    needed, todo = {package}, [package]
    while todo:
        for path in (REPO / todo.pop()).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module]
                for name in names:
                    top = name.split(".")[0]
                    if top in OUR_PACKAGES and top not in needed:
                        needed.add(top)
                        todo.append(top)
    return needed


def test_the_dockerfile_copies_what_the_node_imports_and_nothing_ignored() -> None:
    names = [name for name, _ in instructions()]
    assert names[0] == "FROM" and "python:3.11" in instructions()[0][1]
    ignored = {
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    copied: set[str] = set()
    for sources, _ in copies():
        for source in sources:
            assert (REPO / source).exists(), f"COPY {source}: not in the build context"
            assert source.split("/")[0] not in ignored, f"COPY {source}: .dockerignore drops it"
            copied.add(source.split("/")[0])
    assert node_imports() <= copied, f"the node imports {node_imports() - copied}, not copied"
    assert {"pyproject.toml", "README.md", "tkms.py"} <= copied  # what `pip install .` reads
    (run,) = [rest for name, rest in instructions() if name == "RUN"]
    assert run.startswith("pip install . ")


def test_the_entrypoint_the_image_runs_is_the_one_it_copies() -> None:
    (entry,) = [r for n, r in instructions() if n == "ENTRYPOINT"]
    target = json.loads(entry)[0]
    assert (["deploy/node/entrypoint.sh"], target) in copies()
    assert os.access(DEPLOY / "entrypoint.sh", os.X_OK)
    exposed = {int(p) for n, r in instructions() if n == "EXPOSE" for p in r.split()}
    script = (DEPLOY / "entrypoint.sh").read_text()
    defaults = {
        int(re.search(rf"\${{{var}:-(?:[0-9.]+:)?(\d+)}}", script).group(1))  # type: ignore[union-attr]
        for var in ("TKMS_KMS_PORT", "TKMS_PEER_PORT", "TKMS_LISTEN_METRICS")
    }
    assert exposed == defaults == {7001, 7002, 9101}
    (health,) = [r for n, r in instructions() if n == "HEALTHCHECK"]
    assert "127.0.0.1:9101/health" in health


def test_the_entrypoint_refuses_a_missing_setting_and_passes_the_rest_on(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ["PATH"],
        "TKMS_CHAIN_RPC_URL": "http://127.0.0.1:8545",
        "TKMS_CHAIN_GOVERNANCE": "0x" + "12" * 20,
        "TKMS_CHAIN_ID": "5",
        # Instead of tkms: a script that prints the command line it is given.
        "TKMS_BIN": str(tmp_path / "show"),
    }
    (tmp_path / "show").write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    (tmp_path / "show").chmod(0o755)
    missing = subprocess.run(
        ["sh", str(DEPLOY / "entrypoint.sh")], env=env, capture_output=True, text=True, check=False
    )
    assert missing.returncode != 0
    assert "TKMS_NODE_HOST" in missing.stderr and "set TKMS_NODE_HOST" in missing.stderr
    done = subprocess.run(
        ["sh", str(DEPLOY / "entrypoint.sh"), "--wait", "9"],
        env={**env, "TKMS_NODE_HOST": "node1.example"},
        capture_output=True,
        text=True,
        check=True,
    )
    argv = done.stdout.splitlines()
    assert argv[:2] == ["node", "join"]
    pairs = dict(zip(argv[2::2], argv[3::2], strict=False))
    assert pairs == {
        "--chain": "http://127.0.0.1:8545",
        "--governance": "0x" + "12" * 20,
        "--host": "node1.example",
        "--dir": "/var/lib/tkms",
        "--tee": "tdx",
        "--sealing": "dstack",
        "--kms-port": "7001",
        "--peer-port": "7002",
        "--metrics": "0.0.0.0:9101",
        "--wait": "9",
        "--chain-id": "5",
    }


def test_the_compose_file_sets_what_the_entrypoint_reads_and_mounts_what_the_node_uses() -> None:
    document = compose()
    service = document["services"]["node"]
    build = service["build"]
    context = (DEPLOY / build["context"]).resolve()
    assert context == REPO and (context / build["dockerfile"]) == DEPLOY / "Dockerfile"
    required, read = entrypoint_variables()
    environment = set(service["environment"])
    assert required <= environment, f"compose does not set {required - environment}"
    assert environment <= read, f"the entrypoint ignores {environment - read}"
    for variable in required:
        assert f"${{{variable}:?" in service["environment"][variable]  # compose refuses too
    exposed = {int(p) for n, r in instructions() if n == "EXPOSE" for p in r.split()}
    assert {int(p.split(":")[-1]) for p in service["ports"]} == exposed
    assert "127.0.0.1:9101:9101" in service["ports"]  # metrics stay on the host
    mounts = {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}
    assert mounts["/var/lib/tkms"] in document["volumes"]  # a named volume: the node's state
    assert "/var/run/dstack.sock" in mounts  # sealing = dstack (node/sealing.py)
    assert any(str(TSM_REPORT_ROOT).startswith(path) for path in mounts)  # tee = tdx quotes


def test_the_image_install_step_gives_a_working_node_command(tmp_path: Path) -> None:
    """`pip install .` of exactly what the Dockerfile copies (no network: --no-deps, the
    dependencies come from this environment), then `tkms node join --help` from the result."""
    context = tmp_path / "context"
    for sources, _ in copies():
        for source in sources:
            if source.startswith("deploy/"):
                continue
            path = REPO / source
            if path.is_dir():
                shutil.copytree(
                    path, context / source, ignore=shutil.ignore_patterns("__pycache__")
                )
            else:
                context.mkdir(exist_ok=True)
                shutil.copy(path, context / source)
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            str(context),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    program = (
        "import sys; sys.path.insert(0, sys.argv[1]); import node.join, node.daemon, tkms; "
        "assert node.join.__file__.startswith(sys.argv[1]), node.join.__file__; "
        "sys.exit(tkms.main(['node', 'join', '--help']))"
    )
    result = subprocess.run(
        [sys.executable, "-c", program, str(target)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "--governance" in result.stdout and "--host" in result.stdout
    # The artifacts the node reads at run time are in the installed package.
    assert (target / "contracts" / "artifacts" / "KmsGovernance.json").exists()


def _docker_answers() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    return subprocess.run([docker, "info"], capture_output=True, check=False).returncode == 0


@pytest.mark.skipif(not _docker_answers(), reason="no Docker daemon answers here (`docker info`)")
def test_the_image_builds() -> None:  # pragma: no cover - needs a Docker daemon and a registry
    subprocess.run(
        ["docker", "build", "-f", str(DEPLOY / "Dockerfile"), "-t", "tkms-node:test", str(REPO)],
        check=True,
        timeout=1200,
    )
