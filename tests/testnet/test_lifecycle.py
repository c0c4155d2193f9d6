"""What `up` does with a directory that exists, and processes started again by hand.

The full resume (a node and anvil killed, `up` brings back exactly those with the same keys)
runs in tests/testnet/test_testnet_e2e.py on a real network.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from testnet.cluster import Cluster
from testnet.lifecycle import contents, hand_started, names, stop_hand_started
from testnet.processes import running

TKMS = Path(sys.executable).parent / "tkms"


def test_up_never_deletes_a_directory_it_cannot_resume(tmp_path: Path) -> None:
    root = tmp_path / "net"
    (root / "node1").mkdir(parents=True)
    (root / "node1" / "sealed.bin").write_bytes(b"a share")
    out = subprocess.run(
        [str(TKMS), "testnet", "up", "--dir", str(root)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 1
    assert "--fresh" in out.stderr and "1 node directories" in out.stderr, out.stderr
    assert (root / "node1" / "sealed.bin").read_bytes() == b"a share"


def test_contents_names_what_deleting_loses(tmp_path: Path) -> None:
    for i in (1, 2, 3):
        (tmp_path / f"node{i}").mkdir()
    (tmp_path / "anvil-state.json").write_text("{}")
    described = contents(tmp_path, None)
    assert "3 node directories with their sealed identities and key shares" in described
    assert "the chain" in described and "every log" in described


def test_a_process_started_again_by_hand_is_found_and_stopped(tmp_path: Path) -> None:
    # The state remembers how node 1 was started; the user started it again by hand (here a
    # stand-in that sleeps, with the same arguments at the end of its command line).
    config = tmp_path / "node1" / "node.toml"
    cluster = Cluster(tmp_path)
    cluster.remember(
        "node1",
        [sys.executable, "-m", "tkms", "node", "run", "--config", str(config)],
        tmp_path / "node.log",
    )
    stand_in = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; time.sleep(60)",
            "node",
            "run",
            "--config",
            str(config),
        ],
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 5
        while not hand_started(cluster) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert names(cluster) == ["node1"]
        assert hand_started(cluster) == {"node1": [stand_in.pid]}
        assert stop_hand_started(cluster) == [stand_in.pid]
        assert not running(stand_in.pid)
    finally:
        stand_in.kill()
        stand_in.wait()


def test_status_answers_at_once_when_the_chain_and_a_node_hang(tmp_path: Path) -> None:
    # A chain that accepts connections and never answers (as a stalled anvil does), and a node
    # whose status port does the same: status still answers within about one timeout.
    import socket

    from contracts._deploy import Deployment
    from node.endpoints import Endpoints
    from testnet.cli import STATUS_TIMEOUT, status_document
    from testnet.cluster import NodeProcess

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        cluster = Cluster(
            tmp_path,
            attached_rpc=f"http://127.0.0.1:{port}",
            deployment=Deployment(
                governance="0x" + "11" * 20, app_factory="0x" + "22" * 20, block=1, owner="0x"
            ),
            nodes=[
                NodeProcess(
                    index=i,
                    dir=tmp_path,
                    address="0x" + "33" * 20,
                    endpoints=Endpoints(kms="127.0.0.1:1", peer="127.0.0.1:2"),
                    status_port=port,
                    config_path=tmp_path / "node.toml",
                    log_path=tmp_path / "node.log",
                )
                for i in (1, 2, 3)
            ],
        )
        started = time.monotonic()
        doc = status_document(cluster)
        took = time.monotonic() - started
    assert doc["chain"] == "unreachable" and "no answer" in doc["committee_error"]
    assert [n["health"] for n in doc["nodes"]] == ["STOPPED"] * 3
    # One timeout of STATUS_TIMEOUT with the node probes alongside; before, web3 retried a
    # timed-out read five times at 30 s each. The bound is loose for busy machines.
    assert took < 10 * STATUS_TIMEOUT, took
