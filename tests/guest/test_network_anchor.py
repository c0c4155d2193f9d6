"""The agent's trust anchor against real networks (Security III G-01): two anvils, each with
its own node process (t = 1) and the same deterministic governance address.

* The victim's agent, pinned to network A's fingerprint, is pointed at chain B (the attacker
  copied the deployment: same governance address, chain id and app id, its own nodes). Before
  the fix it started there and served keys B's operator also derives; now it refuses, naming
  the fingerprint B's key makes. The same agent starts on A.
* A rotation on A (`tkms testnet rotate`) publishes generation 2's link: the agent accepts
  generation 2 through the chain (on request during generation 1's retirement window); with
  a generation-2 link not signed by generation 1 it refuses; `tkms chain link-generation`
  puts the right one back.
The steps run in one test so that pytest-xdist does not bring up more networks.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from contracts import EpochKind
from guest.measure import compose_hash
from guest.verify import kms_root_from_chain
from mpc import Scalar
from mpc.anchor import generation_statement
from mpc.tsig import message_point
from testnet.cluster import Cluster
from tests.guest.test_agent_network import (
    COMPOSE,
    TKMS,
    AgentProcess,
    failed_start,
    get_key_reply,
    write_config,
)

pytestmark = pytest.mark.timeout(420)


def start_network(cluster: Cluster) -> str:
    """One node (t = 1), generation 1, and the app registered; returns its app id."""
    cluster.start_chain()
    node = cluster.create_node()
    cluster.start_node(node)
    cluster.wait_healthy([node], timeout=90, accept=("DOWN", "DEGRADED", "NORMAL"))
    epoch = cluster.propose(EpochKind.DKG, [node], 1)
    cluster.wait_epoch(epoch, timeout=120)
    cluster.wait_healthy([node], timeout=60, epoch=epoch)
    # The same owner and salt on both chains: the attacker gets the victim's app id.
    app_id = cluster.register_app([compose_hash(COMPOSE)], salt=b"\x07" * 32)
    cluster.save()  # `tkms testnet rotate --dir` attaches to it
    return app_id


@pytest.fixture(scope="module")
def networks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Cluster, str]]:
    with (
        Cluster(tmp_path_factory.mktemp("honest")) as honest,
        Cluster(tmp_path_factory.mktemp("attacker")) as attacker,
    ):
        app_id = start_network(honest)
        assert start_network(attacker) == app_id  # deterministic deployment: the same app id
        yield honest, attacker, app_id


def a_copied_chain_is_refused(honest: Cluster, attacker: Cluster, app_id: str, tmp: Path) -> None:
    assert honest.deployment is not None and attacker.deployment is not None
    assert honest.deployment.governance == attacker.deployment.governance
    assert honest.w3().eth.chain_id == attacker.w3().eth.chain_id
    pinned = honest.network_fingerprint().hex()
    victim = write_config(attacker, tmp / "victim", app_id, fingerprint=pinned)
    stderr = failed_start(victim)
    shown = attacker.network_fingerprint().hex()
    assert f"refusing the KMS network at {attacker.rpc_url}" in stderr
    assert f"make network {shown}, not the expected {pinned}" in stderr
    # B is a working network: an agent pinned to B's fingerprint starts there...
    with AgentProcess(write_config(attacker, tmp / "on-b", app_id)) as on_b:
        attacker_key = on_b.client().get_key("wallet", "ethereum").decode_key()
    # ...and the victim's configuration, with A's RPC, starts on A with other keys.
    with AgentProcess(write_config(honest, tmp / "on-a", app_id)) as on_a:
        assert on_a.client().get_key("wallet", "ethereum").decode_key() != attacker_key


def rotations_are_accepted_only_through_links(honest: Cluster, app_id: str, tmp: Path) -> None:
    with AgentProcess(write_config(honest, tmp / "gen1", app_id)) as agent:
        first = agent.client().get_key("wallet").decode_key()
    done = subprocess.run(
        [*TKMS, "testnet", "rotate", "--dir", str(honest.root)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    governance = honest.governance()
    assert governance.get_latest_generation() == 2 and len(governance.get_generation_link(2)) == 48
    # ...and its KMS root (a new one: a new group secret), certified under PK2 of generation 2.
    root = kms_root_from_chain(governance, 2, fingerprint=honest.network_fingerprint())
    assert governance.get_kms_root(2)[0] == root and "KMS root " + root.hex() in done.stderr
    config = write_config(honest, tmp / "gen2", app_id)
    with AgentProcess(config) as agent:
        # Generation 2's keys: the agent followed the rotation; during generation 1's
        # retirement window they are served on request and generation 1's by default.
        second = get_key_reply(agent, "wallet", "", generation=2)["key"]
        assert get_key_reply(agent, "wallet", "")["key"] == first.hex()
    assert second != first.hex()
    # A generation-2 link that generation 1 did not make: a valid BLS signature, wrong key.
    assert honest.deployment is not None
    chain_id = honest.w3().eth.chain_id
    key = honest.committee(2).group_key
    statement = generation_statement(
        chain_id, bytes.fromhex(honest.deployment.governance[2:]), 2, key
    )
    forged = (message_point(statement) * Scalar.from_bytes(b"\x00" * 31 + b"\x07", "k")).to_bytes()
    governance.send_set_generation_link(2, forged)
    assert "the key of generation 2 is not signed by generation 1" in failed_start(config)
    link = ["--rpc", honest.rpc_url, "--governance", honest.deployment.governance]
    relinked = subprocess.run(
        [*TKMS, "chain", "link-generation", *link, "--anvil-account", "0", "--generation", "2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert relinked.returncode == 0, relinked.stderr
    with AgentProcess(config) as agent:
        assert get_key_reply(agent, "wallet", "", generation=2)["key"] == second


def test_the_agent_trusts_only_its_network_and_its_rotations(
    networks: tuple[Cluster, Cluster, str], tmp_path: Path
) -> None:
    honest, attacker, app_id = networks
    a_copied_chain_is_refused(honest, attacker, app_id, tmp_path)
    attacker.down()  # the CPU is small: B is no longer needed
    rotations_are_accepted_only_through_links(honest, app_id, tmp_path)
