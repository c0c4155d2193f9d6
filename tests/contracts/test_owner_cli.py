"""The owner's `tkms chain ...` commands on a real anvil: every epoch and generation action, the
refresh schedule and ownership, each checked before sending, then sent and its state printed.

In process (`tkms.main`): the same code as the console script without an interpreter start per
command; tests/contracts/test_cli.py runs real processes.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from eth_abi.abi import decode as abi_decode
from web3 import Web3

import tkms
from contracts import (
    Anvil,
    Deployment,
    EpochInfo,
    EpochKind,
    EpochStatus,
    GenerationStatus,
    GovernanceClient,
)
from tests.contracts.conftest import RETIREMENT_WINDOW, Poly, mine_until
from tests.contracts.test_epochs import DIGEST, AsSigner, deal_all, to_confirm

Capture = pytest.CaptureFixture[str]
PHASES = "8,8,8,8,8"


class Cli:
    def __init__(self, anvil: Anvil, deployment: Deployment, capsys: Capture) -> None:
        self.base = ["--rpc", anvil.rpc_url, "--governance", deployment.governance]
        self.capsys = capsys

    def __call__(self, *args: str, account: int | None = 0, expect: int = 0) -> str:
        signer = [] if account is None else ["--anvil-account", str(account)]
        command, rest = list(args[:2]), list(args[2:])
        self.capsys.readouterr()
        code = tkms.main([*command, *self.base, *signer, *rest])
        out, err = self.capsys.readouterr()
        assert code == expect, (out, err)
        return out if code == 0 else err

    def json(self, *args: str, account: int | None = 0) -> Any:
        return json.loads(self(*args, "--json", account=account))


@pytest.fixture
def cli(anvil: Anvil, deployment: Deployment, capsys: Capture) -> Cli:
    return Cli(anvil, deployment, capsys)


def complete(w3: Web3, as_signer: AsSigner, info: EpochInfo, poly: Poly) -> None:
    """The nodes' part, with stand-in data (the contract checks roles and phases, not math)."""
    dealers = [i for i in range(2, 7) if as_signer(i).sender in info.dealers]
    members = [i for i in range(2, 7) if as_signer(i).sender in info.members]
    deal_all(w3, as_signer, info, dealers)
    to_confirm(w3, info)
    for i in members[: info.threshold]:
        as_signer(i).send_confirm(info.epoch, DIGEST, poly.points, poly.pk2)


def test_the_epoch_lifecycle_from_the_cli(
    w3: Web3,
    cli: Cli,
    governance: GovernanceClient,
    as_signer: AsSigner,
    committee: list[str],
) -> None:
    state = cli.json("chain", "status", account=None)
    assert (state["owner"], state["generations"], state["running_epoch"]) == (
        as_signer(0).sender,
        [],
        None,
    )
    assert [n["status"] for n in state["nodes"]] == ["APPROVED"] * 5

    # A DKG with every approved node and the default threshold n/2+1.
    out = cli("chain", "propose-epoch", "--kind", "dkg", "--phases", PHASES)
    assert "proposed tx 0x" in out and "epoch 1: DKG of generation 1, RUNNING" in out
    assert f"members (5, threshold 3): {', '.join(committee)}" in out
    info = governance.get_epoch(1)
    assert f"keys {info.keys_deadline}, deal {info.deal_deadline}" in out
    complete(w3, as_signer, info, Poly.make(1, 3))
    assert governance.get_epoch(1).status is EpochStatus.ACTIVE

    # A reshare that drops one member and keeps the threshold; the printed state shows it.
    done = cli.json(
        "chain", "propose-epoch", "--kind", "reshare", "--remove", committee[4], "--phases", PHASES
    )
    assert done["epoch"] == 2 and done["running_epoch"]["members"] == committee[:4]
    assert (done["running_epoch"]["threshold"], done["running_epoch"]["dealers"]) == (3, committee)
    generation = governance.get_generation(1)
    same_key = Poly((generation.pk1, b"\x02" * 48, b"\x03" * 48), generation.pk2)
    complete(w3, as_signer, governance.get_epoch(2), same_key)
    after = cli.json("chain", "status", account=None)
    assert (after["committee"]["epoch"], after["committee"]["members"]) == (2, committee[:4])
    assert after["generations"][0]["pk2"] == "0x" + generation.pk2.hex()


def test_refusals_name_the_problem_and_send_nothing(
    w3: Web3, cli: Cli, governance: GovernanceClient, as_signer: AsSigner, committee: list[str]
) -> None:
    outsider = as_signer(9).sender
    cases: list[tuple[list[str], int, int, str]] = [
        (["--kind", "reshare"], 0, 1, "no key generation yet: the first epoch is a DKG"),
        (["--kind", "dkg", "--phases", "3,3,2,3,3"], 0, 2, "--phases: complain phase of 2 blocks"),
        (["--kind", "dkg", "--phases", "3,3,3"], 0, 2, "--phases: expected 5 whole numbers"),
        (["--kind", "dkg", "--threshold", "6"], 0, 2, "--threshold: must be 1..5"),
        (["--kind", "dkg", "--add", outsider], 0, 1, f"{outsider} is not registered"),
        (["--kind", "dkg", "--remove", outsider], 0, 2, f"--remove: {outsider} is not a member"),
        (["--kind", "dkg", "--members", f"{committee[0]},{committee[0]}"], 0, 2, "appears twice"),
        (["--kind", "dkg", "--members", "0x1234"], 0, 2, "--members[0]: expected 20 bytes"),
        (["--kind", "dkg"], 9, 1, f"{outsider} is not the governance owner"),
    ]
    for extra, account, code, message in cases:
        error = cli("chain", "propose-epoch", *extra, account=account, expect=code)
        assert message in error, (extra, error)
    assert governance.get_epoch_count() == 0  # nothing was sent

    cli("chain", "propose-epoch", "--kind", "dkg", "--phases", PHASES)
    error = cli("chain", "propose-epoch", "--kind", "dkg", expect=1)
    assert "epoch 1 (DKG) is running, in its KEYS phase" in error and "cancel it" in error
    assert "not the governance owner" in cli("chain", "cancel-epoch", account=9, expect=1)
    assert "epoch 1 may still activate" in cli("chain", "timeout-epoch", account=9, expect=1)
    assert "epoch 7 is not running (epoch 1 is)" in cli(
        "chain", "cancel-epoch", "--epoch", "7", expect=1
    )
    out = cli.json("chain", "cancel-epoch")
    assert out == {**out, "epoch": 1, "status": "FAILED"}
    assert "no epoch is running: nothing to cancel" in cli("chain", "cancel-epoch", expect=1)
    assert "no generation 1" in cli("chain", "retire-generation", "--generation", "1", expect=2)
    assert "--to: the zero address" in cli(
        "chain", "transfer-ownership", "--to", "0x" + "00" * 20, expect=2
    )
    assert "no ownership transfer is pending" in cli(
        "chain", "accept-ownership", account=9, expect=1
    )
    assert governance.get_epoch_count() == 1


def test_timeout_retirement_window_and_ownership(
    w3: Web3, cli: Cli, governance: GovernanceClient, as_signer: AsSigner
) -> None:
    cli("chain", "propose-epoch", "--kind", "dkg", "--phases", PHASES)
    mine_until(w3, governance.get_epoch(1).confirm_deadline + 1)
    out = cli.json("chain", "timeout-epoch", account=9)  # anyone
    assert (out["epoch"], out["status"]) == (1, "FAILED")

    cli("chain", "propose-epoch", "--kind", "dkg", "--phases", PHASES)
    complete(w3, as_signer, governance.get_epoch(2), Poly.make(1, 3))
    assert "generation 1 is the active one" in cli(
        "chain", "retire-generation", "--generation", "1", expect=1
    )
    window = cli.json("chain", "set-retirement-window", "--blocks", "12")
    assert (window["previous"], window["retirement_window"]) == (RETIREMENT_WINDOW, 12)
    assert "not the governance owner" in cli(
        "chain", "set-retirement-window", "--blocks", "1", account=9, expect=1
    )
    cli("chain", "propose-epoch", "--kind", "rotate", "--phases", PHASES)
    complete(w3, as_signer, governance.get_epoch(3), Poly.make(3, 3))
    retiring = governance.get_generation(1)
    assert (retiring.status, retiring.retire_after - governance.get_epoch(3).finished_at) == (
        GenerationStatus.RETIRING,
        12,
    )
    error = cli("chain", "retire-generation", "--generation", "1", account=9, expect=1)
    assert f"window ends at block {retiring.retire_after}" in error
    mine_until(w3, retiring.retire_after + 1)
    out = cli("chain", "retire-generation", "--generation", "1", account=9)
    assert "generation 1 is RETIRED" in out and "nodes erase their shares" in out
    assert "already retired" in cli("chain", "retire-generation", "--generation", "1", expect=1)

    # Two-step ownership: offer, cancel, offer again, accept.
    new_owner = as_signer(7).sender
    out = cli.json("chain", "transfer-ownership", "--to", new_owner)
    assert (out["owner"], out["pending_owner"]) == (as_signer(0).sender, new_owner)
    assert cli.json("chain", "transfer-ownership", "--cancel")["pending_owner"] is None
    assert "no ownership transfer is pending" in cli(
        "chain", "accept-ownership", account=7, expect=1
    )
    cli("chain", "transfer-ownership", "--to", new_owner)
    error = cli("chain", "accept-ownership", account=8, expect=1)
    assert f"the pending owner is {new_owner}" in error
    assert cli.json("chain", "accept-ownership", account=7)["owner"] == new_owner
    assert "not the governance owner" in cli(
        "chain", "set-retirement-window", "--blocks", "3", expect=1
    )


def test_calldata_is_checked_as_the_owner_and_sends_nothing(
    cli: Cli, governance: GovernanceClient, committee: list[str]
) -> None:
    call = cli.json("chain", "propose-epoch", "--kind", "dkg", "--phases", PHASES, "--calldata")
    assert (call["to"], call["from"], call["function"]) == (
        governance.address,
        governance.get_owner(),
        "proposeEpoch",
    )
    data = bytes.fromhex(call["data"][2:])
    selector = governance.contract.get_function_by_name("proposeEpoch")
    assert data[:4] == bytes.fromhex(Web3.keccak(text=selector.signature)[:4].hex())
    kind, members, threshold, phases = abi_decode(
        ["uint8", "address[]", "uint16", "uint64[5]"], data[4:]
    )
    assert (kind, [Web3.to_checksum_address(m) for m in members], threshold, phases) == (
        0,
        committee,
        3,
        (8, 8, 8, 8, 8),
    )
    assert governance.get_epoch_count() == 0
    # No signer is needed to print a call, and what would revert is refused.
    image = cli("chain", "allow-os-image", "--os-image-hash", "0x" + "11" * 32, "--calldata")
    assert "addOsImage" in image and "simulated as" in image
    assert not governance.is_os_image_allowed(b"\x11" * 32)
    error = cli("chain", "retire-generation", "--generation", "1", "--calldata", expect=2)
    assert "no generation 1" in error


def test_the_keeper_makes_every_due_call_and_only_those(
    w3: Web3,
    cli: Cli,
    governance: GovernanceClient,
    as_signer: AsSigner,
    committee: list[str],
) -> None:
    def keeper() -> list[dict[str, Any]]:
        out = cli("keeper", "--once", "--json", account=9)
        return [json.loads(line) for line in out.splitlines()][1:]  # after keeper_started

    cli("chain", "propose-epoch", "--kind", "dkg", "--phases", PHASES)
    assert keeper() == []  # nothing due
    complete(w3, as_signer, governance.get_epoch(1), Poly.make(1, 3))
    schedule = cli.json(
        "chain", "set-refresh-schedule", "--interval", "10", "--phases", "3,4,3,3,4"
    )
    assert (schedule["interval"], schedule["phases"]) == (10, [3, 4, 3, 3, 4])
    due = schedule["due_at"]
    assert due == governance.get_epoch(1).finished_at + 10
    mine_until(w3, due - 1)
    assert keeper() == []
    mine_until(w3, due)
    (proposed,) = keeper()
    assert (proposed["event"], proposed["epoch"], proposed["generation"]) == (
        "refresh_proposed",
        2,
        1,
    )
    refresh = governance.get_epoch(2)
    assert (refresh.kind, refresh.members, refresh.threshold) == (
        EpochKind.REFRESH,
        tuple(committee),
        3,
    )
    assert refresh.keys_deadline - refresh.proposed_at == 3
    # Nobody completes it: past its Confirm deadline the keeper times it out.
    mine_until(w3, refresh.confirm_deadline + 1)
    (timed_out,) = keeper()
    assert (timed_out["event"], timed_out["epoch"]) == ("epoch_timed_out", 2)
    assert governance.get_epoch(2).status is EpochStatus.FAILED
    # Anyone may propose it by hand too once due, with the schedule's phases by default.
    error = cli("chain", "propose-epoch", "--kind", "refresh", account=9, expect=1)
    assert "the scheduled refresh is not due" in error
    error = cli("chain", "propose-epoch", "--kind", "reshare", account=9, expect=1)
    assert "only the owner proposes epochs (anyone may propose the scheduled refresh" in error
    mine_until(w3, governance.get_refresh_due_at() or 0)
    out = cli("chain", "propose-epoch", "--kind", "refresh", account=9)
    assert "the scheduled refresh: anyone may propose it" in out
    assert keeper() == [] and governance.get_epoch_count() == 3
    cli("chain", "cancel-epoch")
    assert cli.json("chain", "set-refresh-schedule", "--off")["interval"] == 0

    # A rotated-out generation past its window: the keeper retires it.
    cli("chain", "propose-epoch", "--kind", "rotate", "--phases", PHASES)
    complete(w3, as_signer, governance.get_epoch(4), Poly.make(4, 3))
    mine_until(w3, governance.get_generation(1).retire_after)
    assert keeper() == []
    mine_until(w3, governance.get_generation(1).retire_after + 1)
    (retired,) = keeper()
    assert (retired["event"], retired["generation"]) == ("generation_retired", 1)
    assert governance.get_generation(1).status is GenerationStatus.RETIRED
    assert keeper() == []


def test_removing_a_node_checks_the_committee_first(
    w3: Web3,
    anvil: Anvil,
    cli: Cli,
    governance: GovernanceClient,
    as_signer: AsSigner,
    committee: list[str],
    capsys: Capture,
) -> None:
    members = ",".join(committee[:3])
    cli("chain", "propose-epoch", "--kind", "dkg", "--members", members, "--phases", PHASES)
    complete(w3, as_signer, governance.get_epoch(1), Poly.make(1, 2))
    base = ["node", "remove", "--rpc", anvil.rpc_url, "--governance", governance.address]

    def remove(*extra: str, account: int = 0) -> tuple[int, str]:
        capsys.readouterr()
        code = tkms.main([*base, "--anvil-account", str(account), *extra])
        captured = capsys.readouterr()
        return code, captured.out + captured.err

    code, out = remove("--node", committee[0])
    assert code == 2 and "is a member of the committee (epoch 1): reshare without it" in out
    code, out = remove("--node", committee[4], account=9)
    assert code == 2 and "is not the governance owner" in out
    code, out = remove("--node", committee[4], "--calldata", "--json")
    assert code == 0
    calls = json.loads(out)
    assert [c["function"] for c in calls] == ["removeNode", "disallowNodeRegistration"]
    assert governance.is_node_approved(committee[4])  # nothing sent
    code, out = remove("--node", committee[4], "--json")
    assert code == 0 and json.loads(out) == {
        "node": committee[4],
        "status": "REMOVED",
        "registration_allowed": False,
    }
    code, out = remove("--node", committee[4])
    assert code == 2 and "may not register again already" in out
    code, out = remove("--node", committee[2], "--even-if-member")  # a compromised member
    assert code == 0 and not governance.is_node_approved(committee[2])
