"""A node joins in one command, the owner admits it in one: real processes on a real anvil.

The node runs the container's entrypoint (deploy/node/entrypoint.sh, `tkms node join` with its
settings from the environment) as a real process; the owner's `tkms node admit` runs in this
process. tests/testnet/test_separate_hosts.py does the same with each node on its own network
namespace and address, through the epochs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tkms
from contracts import (
    Anvil,
    GovernanceClient,
    NodeStatus,
    Transactor,
    anvil_account,
    deploy,
    free_port,
)
from node.cli import fund_from_anvil
from node.endpoints import Endpoints
from node.errors import NodeError
from node.join import CONFIG_FILE, JoinSettings, governance_for_node, prepare
from node.registration import (
    REGISTRATION_FILE,
    parse_registration,
    verify_registration_evidence,
)
from node.tee import SIMULATED_OS_IMAGE

REPO = Path(__file__).resolve().parents[2]
ENTRYPOINT = REPO / "deploy" / "node" / "entrypoint.sh"
Capture = pytest.CaptureFixture[str]


@pytest.fixture(scope="module")
def anvil() -> Iterator[Anvil]:
    with Anvil(block_time=0.5) as chain:
        yield chain


@pytest.fixture
def governance(anvil: Anvil) -> GovernanceClient:
    owner = Transactor(anvil.web3(), anvil_account(0))
    client = GovernanceClient(anvil.web3(), deploy(owner, allow_simulator=True).governance, owner)
    client.send_add_os_image(SIMULATED_OS_IMAGE)
    return client


class JoinProcess:
    """The container's entrypoint as a real process; its output in a file."""

    def __init__(
        self,
        tmp: Path,
        anvil: Anvil,
        governance: str,
        *args: str,
        funder: int,
        log: str = "join.log",
        ports: tuple[int, int, int] | None = None,
    ) -> None:
        self.dir = tmp / "node"
        self.log = tmp / log
        self.kms, self.peer, self.status = ports or (free_port(), free_port(), free_port())
        bin_dir = str(Path(sys.executable).parent)
        env = {
            **os.environ,
            "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
            "TKMS_CHAIN_RPC_URL": anvil.rpc_url,
            "TKMS_CHAIN_GOVERNANCE": governance,
            "TKMS_NODE_HOST": "127.0.0.1",
            "TKMS_DATA_DIR": str(self.dir),
            "TKMS_TEE": "simulator",
            "TKMS_SEALING": "file",
            "TKMS_KMS_PORT": str(self.kms),
            "TKMS_PEER_PORT": str(self.peer),
            "TKMS_LISTEN_METRICS": f"127.0.0.1:{self.status}",
        }
        self.process = subprocess.Popen(
            [
                "sh",
                str(ENTRYPOINT),
                "--fund-from-anvil-account",
                str(funder),
                "--poll",
                "0.3",
                *args,
            ],
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log.read_text()

    def wait_for(self, text: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if self.process.poll() is not None:
                pytest.fail(f"join exited {self.process.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {text!r} after {timeout} s:\n{self.output()}")
            time.sleep(0.2)

    def health(self) -> dict[str, Any] | None:
        try:
            url = f"http://127.0.0.1:{self.status}/health"
            with urllib.request.urlopen(url, timeout=1) as reply:
                return dict(json.loads(reply.read()))
        except OSError as exc:  # 503 (DOWN: no share yet) is an answer too
            body = getattr(exc, "read", None)
            return dict(json.loads(body())) if callable(body) else None

    def stop(self) -> int:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
        return self.process.wait(timeout=30)


def admit(anvil: Anvil, governance: GovernanceClient, registration: Path, *extra: str) -> int:
    """The owner's `tkms node admit`, in this process."""
    return tkms.main(
        [
            *("node", "admit", "--rpc", anvil.rpc_url, "--governance", governance.address),
            *("--registration", str(registration), "--anvil-account", "0", *extra),
        ]
    )


def test_join_then_admit_then_serving_and_a_restart_goes_straight_to_running(
    tmp_path: Path, anvil: Anvil, governance: GovernanceClient, capsys: Capture
) -> None:
    node = JoinProcess(tmp_path, anvil, governance.address, funder=1)
    try:
        node.wait_for("waiting for the governance owner to allow")
        out = node.output()
        assert "tkms node admit --rpc <owner's RPC URL> --chain-id 31337" in out
        document = json.loads((node.dir / REGISTRATION_FILE).read_text())
        address = document["address"]
        # The file the owner reviews already names the endpoint it will register.
        assert document["endpoint"] == f"kms=127.0.0.1:{node.kms},peer=127.0.0.1:{node.peer}"
        assert governance.get_node(address).status is NodeStatus.NONE
        assert (node.dir / CONFIG_FILE).exists()

        code = admit(anvil, governance, node.dir / REGISTRATION_FILE)
        printed = capsys.readouterr().out
        assert code == 0, printed
        assert f"allowed {address} to register" in printed
        assert (
            f"approved {address} (registration hash 0x{document['registration_hash']})" in printed
        )
        info = governance.get_node(address)
        assert (info.status, info.registration_hash.hex()) == (
            NodeStatus.APPROVED,
            document["registration_hash"],
        )
        node.wait_for("starting the node")
        deadline = time.monotonic() + 60
        while (health := node.health()) is None and time.monotonic() < deadline:
            time.sleep(0.3)
        assert health == {**(health or {}), "health": "DOWN", "reason": "no active key share"}

        # Admitting again changes nothing and says why.
        assert (
            tkms.main(
                [
                    *("node", "admit", "--rpc", anvil.rpc_url, "--governance", governance.address),
                    *("--registration", str(node.dir / REGISTRATION_FILE), "--anvil-account", "0"),
                ]
            )
            == 2
        )
        assert f"{address} is already approved: nothing to admit" in capsys.readouterr().err
    finally:
        assert node.stop() == 0, node.output()

    ports = (node.kms, node.peer, node.status)
    again = JoinProcess(tmp_path, anvil, governance.address, funder=1, log="again.log", ports=ports)
    try:
        again.wait_for("starting the node")
        second_run = again.output()
        assert f"node identity found in {node.dir}: {address}" in second_run
        assert "send it to the governance owner" not in second_run  # nothing left to ask
        assert "registerNode sent" not in second_run
    finally:
        again.stop()


def test_admit_approves_only_the_reviewed_registration(
    tmp_path: Path, anvil: Anvil, governance: GovernanceClient, capsys: Capture
) -> None:
    """The node registers another endpoint than the file the owner reviewed: nothing is
    approved, and the error says what the chain holds."""
    reviewed = prepare(_settings(tmp_path / "node", anvil, governance, "10.0.0.1"), print)
    reviewed_file = tmp_path / "reviewed.json"
    reviewed_file.write_text(json.dumps(reviewed.registration))
    node = JoinProcess(tmp_path, anvil, governance.address, funder=2)
    try:
        code = admit(anvil, governance, reviewed_file, "--wait", "6")
        err = capsys.readouterr().err
        assert code == 2
        assert f"{reviewed.address} did not register the reviewed registration" in err
        assert "(PENDING)" in err and "nothing was approved" in err
        assert governance.get_node(reviewed.address).status is NodeStatus.PENDING
    finally:
        node.stop()


def test_admit_reviews_the_evidence_before_allowing_anything(
    tmp_path: Path, anvil: Anvil, governance: GovernanceClient, capsys: Capture
) -> None:
    prepared = prepare(_settings(tmp_path / "node", anvil, governance, "127.0.0.1"), print)
    document = dict(prepared.registration)
    evidence = dict(document["evidence"])
    quote = bytearray(bytes.fromhex(evidence["quote"]))
    quote[600] ^= 1  # inside the signed body: the signature no longer verifies
    evidence["quote"] = quote.hex()
    document["evidence"] = evidence
    document.pop("evidence_hash")
    document.pop("registration_hash")
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(document))
    code = admit(anvil, governance, forged, "--wait", "1")
    assert code == 2
    assert "evidence:" in capsys.readouterr().err
    assert not governance.is_node_registration_allowed(prepared.address)


def test_join_refuses_a_directory_of_another_network(
    tmp_path: Path, anvil: Anvil, governance: GovernanceClient
) -> None:
    settings = _settings(tmp_path / "node", anvil, governance, "127.0.0.1")
    prepare(settings, print)
    other = JoinSettings(**{**settings.__dict__, "governance": "0x" + "12" * 20})
    with pytest.raises(NodeError, match="one data directory serves one network"):
        prepare(other, print)
    with pytest.raises(NodeError, match="made with tee=simulator, sealing=file, not tee=tdx"):
        prepare(JoinSettings(**{**settings.__dict__, "tee": "tdx"}), print)


def test_join_names_a_governance_that_is_not_there(
    tmp_path: Path, anvil: Anvil, capsys: Capture
) -> None:
    code = tkms.main(
        [
            *("node", "join", "--chain", anvil.rpc_url, "--governance", "0x" + "34" * 20),
            *("--dir", str(tmp_path / "node"), "--host", "127.0.0.1", "--no-run"),
        ]
    )
    assert code == 2
    assert f"--governance: no contract at 0x{'34' * 20}" in capsys.readouterr().err


def _settings(
    data_dir: Path, anvil: Anvil, governance: GovernanceClient, host: str
) -> JoinSettings:
    return JoinSettings(
        data_dir=data_dir,
        rpc_url=anvil.rpc_url,
        governance=governance.address,
        chain_id=None,
        endpoints=Endpoints(kms=f"{host}:7001", peer=f"{host}:7002"),
    )


def test_the_measurement_of_an_upgrade_is_known_and_allowed_before_it(
    tmp_path: Path,
    anvil: Anvil,
    governance: GovernanceClient,
    capsys: Capture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`tkms node measurement` gives the measurement the registered evidence verifies to for
    this release, and another one for another release on the same platform; the owner allows
    that one first (`tkms chain allow-kms-measurement`), so upgraded nodes are accepted."""
    prepared = prepare(_settings(tmp_path / "node", anvil, governance, "127.0.0.1"), print)
    registration = str(tmp_path / "node" / REGISTRATION_FILE)
    verified = verify_registration_evidence(
        parse_registration(prepared.registration), simulator_allowed=True, now=int(time.time())
    )
    assert verified.identity is not None
    capsys.readouterr()
    assert tkms.main(["node", "measurement", "--registration", registration, "--json"]) == 0
    current = json.loads(capsys.readouterr().out)
    assert current["kms_measurement"] == verified.identity.mr_aggregated.hex()

    monkeypatch.setattr("node.tee.metadata.version", lambda name: "99.0.0")
    assert tkms.main(["node", "measurement", "--registration", registration, "--json"]) == 0
    upgrade = json.loads(capsys.readouterr().out)
    assert upgrade["release"] == {"name": "tkms-node", "version": "99.0.0"}
    assert upgrade["kms_measurement"] != current["kms_measurement"]
    new = bytes.fromhex(upgrade["kms_measurement"])
    owner = ["--rpc", anvil.rpc_url, "--governance", governance.address, "--anvil-account", "0"]
    measurement = ["--measurement", "0x" + new.hex()]
    assert tkms.main(["chain", "allow-kms-measurement", *owner, *measurement]) == 0
    assert governance.is_kms_measurement_allowed(new)
    assert tkms.main(["chain", "revoke-kms-measurement", *owner, *measurement]) == 0
    assert not governance.is_kms_measurement_allowed(new)


def test_an_owner_that_signs_elsewhere_gets_the_reviewed_calls(
    tmp_path: Path, anvil: Anvil, governance: GovernanceClient, capsys: Capture
) -> None:
    """`--calldata` on allow-registration and approve: the same review, nothing sent, the
    calls printed (simulated as the owner); made by the owner, they admit exactly that node."""
    settings = _settings(tmp_path / "node", anvil, governance, "127.0.0.1")
    prepared = prepare(settings, print)
    owner = ["--rpc", anvil.rpc_url, "--governance", governance.address, "--json", "--calldata"]

    def calls(*argv: str) -> list[dict[str, Any]]:
        capsys.readouterr()
        assert tkms.main([*argv, *owner]) == 0
        return list(json.loads(capsys.readouterr().out))

    def make(call: dict[str, Any]) -> None:  # what the multisig does with the printed call
        assert governance.transactor is not None
        w3 = governance.w3
        tx_hash = w3.eth.send_transaction(
            {"from": governance.transactor.address, "to": call["to"], "data": call["data"]}
        )
        assert w3.eth.wait_for_transaction_receipt(tx_hash)["status"] == 1

    (allow,) = calls("node", "allow-registration", "--node", prepared.address)
    assert (allow["function"], allow["args"]) == ("allowNodeRegistration", [prepared.address])
    assert not governance.is_node_registration_allowed(prepared.address)
    make(allow)
    fund_from_anvil(governance.w3, prepared.address, 3)
    own = governance_for_node(settings)
    document = prepared.registration
    own.send_register_node(
        operator=document["operator"],
        endpoint=document["endpoint"],
        tls_key_hash=bytes.fromhex(document["tls_key_hash"]),
        deal_key=bytes.fromhex(document["deal_public_key"]),
        evidence_hash=bytes.fromhex(document["evidence_hash"]),
    )
    registration = str(tmp_path / "node" / REGISTRATION_FILE)
    approve, measurement = calls("node", "approve", "--registration", registration)
    assert approve["function"] == "approveNode" and measurement["function"] == "addKmsMeasurement"
    assert approve["args"] == [prepared.address, "0x" + document["registration_hash"]]
    assert governance.get_node(prepared.address).status is NodeStatus.PENDING
    make(approve)
    make(measurement)
    assert governance.get_node(prepared.address).status is NodeStatus.APPROVED
    assert governance.is_kms_measurement_allowed(bytes.fromhex(measurement["args"][0][2:]))
