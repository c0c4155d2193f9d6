"""The owner's review before `approveNode`, on a real anvil with simulator nodes.

`tkms node approve --registration FILE` must verify the evidence (with the chain's simulator
flag), its `tkms-node:v1:` binding to the node's keys and address, that the chain holds exactly
the reviewed registration, and pin the reviewed registration hash. Each refusal leaves the node
Pending and allows no measurement.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tkms
from attest import compute_app_identity, load_collateral, parse_event_log, parse_quote
from contracts import Anvil, GovernanceClient, NodeStatus, Transactor, anvil_account, deploy
from node.cli import init_node_dir
from node.registration import (
    REGISTRATION_FILE,
    RegistrationRejected,
    approve_reviewed,
    evidence_hash,
    parse_registration,
    review_registration,
    verify_registration_evidence,
)

SET_C_NOW = 1772323200  # tests/data/attestation/README.md, set C
#: Offset of MRTD in a v4 quote: 48-byte header, then TEE_TCB_SVN, MRSEAM, MRSIGNERSEAM,
#: SEAMATTRIBUTES, TDATTRIBUTES, XFAM (16 + 48 + 48 + 8 + 8 + 8 bytes).
MRTD_OFFSET = 48 + 136


@pytest.fixture(scope="module")
def anvil() -> Iterator[Anvil]:
    with Anvil() as chain:
        yield chain


def deployed(anvil: Anvil, *, allow_simulator: bool = True) -> GovernanceClient:
    owner = Transactor(anvil.web3(), anvil_account(0))
    return GovernanceClient(
        anvil.web3(), deploy(owner, allow_simulator=allow_simulator).governance, owner
    )


@pytest.fixture
def governance(anvil: Anvil) -> GovernanceClient:
    return deployed(anvil)


class Cli:
    """`tkms ...` in this process (the real parser and handlers), output captured."""

    def __init__(self, capsys: pytest.CaptureFixture[str], anvil: Anvil) -> None:
        self.capsys, self.anvil = capsys, anvil

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        code = tkms.main(list(argv))
        out = self.capsys.readouterr()
        return code, out.out, out.err

    def register(self, governance: GovernanceClient, node_dir: Path, endpoint: str) -> None:
        code, _, err = self(
            *("node", "register", "--dir", str(node_dir), "--rpc", self.anvil.rpc_url),
            *("--governance", governance.address, "--endpoint", endpoint),
        )
        assert code == 0, err

    def approve(self, governance: GovernanceClient, registration: Path) -> tuple[int, str, str]:
        node = json.loads(registration.read_text())["address"]
        return self(
            *("node", "approve", "--rpc", self.anvil.rpc_url, "--governance", governance.address),
            *("--registration", str(registration), "--node", node),
            *("--anvil-account", "0", "--json"),
        )


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], anvil: Anvil) -> Cli:
    return Cli(capsys, anvil)


def new_node(governance: GovernanceClient, root: Path, name: str) -> tuple[Path, dict[str, Any]]:
    """A simulator node directory whose address is funded and allowed to register."""
    node_dir = root / name
    document = init_node_dir(node_dir, tee="simulator", sealing="file")
    balance = [document["address"], hex(10**20)]
    governance.w3.provider.make_request("anvil_setBalance", balance)  # type: ignore[arg-type]
    governance.send_allow_node_registration(document["address"])
    return node_dir, document


def rewrite(node_dir: Path, document: dict[str, Any]) -> None:
    (node_dir / REGISTRATION_FILE).write_text(json.dumps(document))


def read(node_dir: Path) -> dict[str, Any]:
    return dict(json.loads((node_dir / REGISTRATION_FILE).read_text()))


def assert_nothing_approved(governance: GovernanceClient, document: dict[str, Any]) -> None:
    assert governance.get_node(document["address"]).status is NodeStatus.PENDING
    # No measurement was allowed either (a fresh deployment allows none).
    evidence = parse_registration(document)
    entries = parse_event_log(evidence.event_log)
    td_report = parse_quote(evidence.quote).td_report
    mr = compute_app_identity(entries, td_report, ppid=None).mr_aggregated
    assert not governance.is_kms_measurement_allowed(mr)


def test_a_reviewed_registration_is_approved_with_its_hash_pinned(
    governance: GovernanceClient, cli: Cli, tmp_path: Path
) -> None:
    node_dir, _ = new_node(governance, tmp_path, "n1")
    cli.register(governance, node_dir, "kms=127.0.0.1:1,peer=127.0.0.1:2")
    code, out, err = cli.approve(governance, node_dir / REGISTRATION_FILE)
    assert code == 0, err
    approved = json.loads(out)
    info = governance.get_node(approved["node"])
    assert info.status is NodeStatus.APPROVED
    assert approved["registration_hash"] == info.registration_hash.hex()
    assert approved["kms_measurement_added"] is True
    assert governance.is_kms_measurement_allowed(bytes.fromhex(approved["kms_measurement"]))


def test_evidence_bound_to_other_keys_is_refused(
    governance: GovernanceClient, cli: Cli, tmp_path: Path
) -> None:
    """A node presents another node's genuine evidence (its quote binds the other's keys)."""
    _, victim = new_node(governance, tmp_path, "victim")
    node_dir, forger = new_node(governance, tmp_path, "forger")
    forged = {**forger, "evidence": victim["evidence"], "evidence_hash": victim["evidence_hash"]}
    rewrite(node_dir, forged)
    cli.register(governance, node_dir, "kms=127.0.0.1:1,peer=127.0.0.1:2")
    assert governance.get_node(forger["address"]).evidence_hash.hex() == victim["evidence_hash"]
    code, _, err = cli.approve(governance, node_dir / REGISTRATION_FILE)
    assert code == 2
    assert "binding: " in err and "does not bind this key under 'tkms-node:v1:'" in err
    assert_nothing_approved(governance, read(node_dir))


def test_a_registration_changed_after_the_review_is_refused(
    governance: GovernanceClient, cli: Cli, tmp_path: Path
) -> None:
    node_dir, document = new_node(governance, tmp_path, "n1")
    cli.register(governance, node_dir, "kms=127.0.0.1:1,peer=127.0.0.1:2")
    reviewed = tmp_path / "reviewed.json"
    shutil.copy(node_dir / REGISTRATION_FILE, reviewed)
    cli.register(governance, node_dir, "kms=10.6.6.6:1,peer=10.6.6.6:2")  # after the review
    code, _, err = cli.approve(governance, reviewed)
    assert code == 2
    assert "chain: " in err
    assert "endpoint is 'kms=10.6.6.6:1,peer=10.6.6.6:2' on chain" in err
    assert_nothing_approved(governance, document)
    code, _, err = cli.approve(governance, node_dir / REGISTRATION_FILE)  # the new one, reviewed
    assert code == 0, err
    assert governance.get_node(document["address"]).endpoint == "kms=10.6.6.6:1,peer=10.6.6.6:2"


def test_a_re_registration_between_review_and_approval_is_refused_by_the_pin(
    governance: GovernanceClient, cli: Cli, tmp_path: Path
) -> None:
    node_dir, document = new_node(governance, tmp_path, "n1")
    cli.register(governance, node_dir, "kms=127.0.0.1:1,peer=127.0.0.1:2")
    reviewed = review_registration(governance, read(node_dir), now=int(time.time()))
    cli.register(governance, node_dir, "kms=10.6.6.6:1,peer=10.6.6.6:2")  # races the approval
    with pytest.raises(RegistrationRejected, match=r"^pin: .* registered again after the review"):
        approve_reviewed(governance, reviewed)
    assert_nothing_approved(governance, document)


def test_a_quote_that_does_not_verify_is_refused(
    governance: GovernanceClient, cli: Cli, tmp_path: Path
) -> None:
    node_dir, document = new_node(governance, tmp_path, "n1")
    quote = bytearray.fromhex(document["evidence"]["quote"])
    quote[MRTD_OFFSET] ^= 1  # a measurement the quoting enclave never signed
    event_log = document["evidence"]["event_log"]
    tampered = {
        **document,
        "evidence": {"quote": quote.hex(), "event_log": event_log},
        "evidence_hash": evidence_hash(bytes(quote), event_log).hex(),
    }
    rewrite(node_dir, tampered)
    cli.register(governance, node_dir, "kms=127.0.0.1:1,peer=127.0.0.1:2")
    code, _, err = cli.approve(governance, node_dir / REGISTRATION_FILE)
    assert code == 2
    assert "evidence: evidence rejected at step 1 (quote verification)" in err
    assert_nothing_approved(governance, read(node_dir))


def test_simulator_evidence_is_refused_while_the_chain_disallows_simulators(
    anvil: Anvil, cli: Cli, tmp_path: Path
) -> None:
    governance = deployed(anvil, allow_simulator=False)
    node_dir, document = new_node(governance, tmp_path, "n1")
    cli.register(governance, node_dir, "kms=127.0.0.1:1,peer=127.0.0.1:2")
    code, _, err = cli.approve(governance, node_dir / REGISTRATION_FILE)
    assert code == 2
    assert "evidence: simulator quote, but governance has simulatorAllowed = false" in err
    assert_nothing_approved(governance, document)


def test_approval_needs_a_registered_file_and_names_the_problem(
    governance: GovernanceClient, cli: Cli, tmp_path: Path
) -> None:
    node_dir, document = new_node(governance, tmp_path, "n1")
    with pytest.raises(SystemExit):  # --registration is required: no approval unreviewed
        cli("node", "approve", "--rpc", "x", "--governance", "y", "--anvil-account", "0")
    code, _, err = cli.approve(governance, node_dir / REGISTRATION_FILE)
    assert code == 2 and "file: no endpoint or operator" in err
    cli.register(governance, node_dir, "kms=127.0.0.1:1,peer=127.0.0.1:2")
    code, _, err = cli(
        *("node", "approve", "--rpc", cli.anvil.rpc_url, "--governance", governance.address),
        *("--registration", str(node_dir / REGISTRATION_FILE), "--anvil-account", "0"),
        *("--node", "0x" + "ab" * 20),
    )
    assert code == 2 and f"file: the file is the registration of {document['address']}" in err
    bad = {**read(node_dir), "tls_key_hash": "00" * 32}
    rewrite(node_dir, bad)
    code, _, err = cli.approve(governance, node_dir / REGISTRATION_FILE)
    assert code == 2 and "file: tls_key_hash " in err and "does not match" in err
    del bad["tls_public_key"]
    rewrite(node_dir, bad)
    code, _, err = cli.approve(governance, node_dir / REGISTRATION_FILE)
    assert code == 2 and "file: tls_public_key is missing" in err
    assert_nothing_approved(governance, document)


def test_a_genuine_tdx_quote_goes_through_dcap_and_must_bind_the_node_keys(
    governance: GovernanceClient, tmp_path: Path, attestation_data: Path
) -> None:
    """dstack's real quote (set C) verifies by DCAP, but binds another key: refused."""
    _, document = new_node(governance, tmp_path, "n1")
    dstack = json.loads((attestation_data / "dstack" / "quote-report.json").read_text())
    document["evidence"] = {"quote": dstack["quote"], "event_log": dstack["event_log"]}
    del document["evidence_hash"]
    registration = parse_registration(document)
    collateral = load_collateral(
        attestation_data / "dcap-qvl" / "tdx_quote_outdated_collateral.json"
    )
    with pytest.raises(RegistrationRejected, match=r"^binding: .*step 4") as refused:
        verify_registration_evidence(
            registration, simulator_allowed=True, now=SET_C_NOW, collateral=collateral
        )
    assert refused.value.step == "binding"
    with pytest.raises(RegistrationRejected, match=r"^evidence: hardware TDX quote: .*collateral"):
        verify_registration_evidence(registration, simulator_allowed=True, now=SET_C_NOW)
    with pytest.raises(RegistrationRejected, match=r"^evidence: .*step 1 \(quote verification\)"):
        verify_registration_evidence(
            registration, simulator_allowed=True, now=SET_C_NOW + 90 * 86400, collateral=collateral
        )
