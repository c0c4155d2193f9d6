"""`python -m testnet.guestbench`: app key derivation end to end, and the guest agent's /GetKey.

Starts anvil and n (default 5) real `tkms node run` processes, runs a DKG with threshold t
(default 3) and registers an app. Then:
  * derivation: `--derivations` times, a fresh app client (new ephemeral key and quote, so
    every node verifies evidence) derives one app key from the committee: p50/p99 latency;
  * agent start: `tkms guest agent` from process start to serving (measure, derive, certify);
  * /GetKey: `--concurrency` `DstackClient`s call /GetKey for `--duration` s: throughput.
Output: `name: value unit`. It lives in testnet/ because it orchestrates processes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from dstack_sdk import DstackClient

from attest import event_log_to_json
from attest.providers import SimulatorProvider
from contracts import EpochKind
from guest.kms_client import AppKeyRequest, Committee, KmsClient
from guest.measure import compose_hash, measure_app_boot
from node.tee import SIMULATED_OS_IMAGE
from testnet.cluster import Cluster

AGENT = [sys.executable, "-m", "tkms", "guest", "agent"]
COMPOSE = b'{"services": {"bench": {"image": "bench@sha256:00"}}}'


def _emit(name: str, value: float, unit: str) -> None:
    print(f"{name}: {value:.3f} {unit}", flush=True)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


async def derive_once(committee: Committee, app_id: bytes, kms_id: str) -> float:
    provider = SimulatorProvider()
    measure_app_boot(
        provider,
        app_id=app_id,
        compose=COMPOSE,
        instance_id=os.urandom(20),
        kms_id=kms_id,
        os_image=SIMULATED_OS_IMAGE,
    )

    def evidence(report_data: bytes) -> tuple[bytes, str]:
        return provider.get_quote(report_data), event_log_to_json(provider.event_log())

    client = KmsClient(committee, evidence, timeout=30)
    start = time.perf_counter()
    try:
        await client.derive([AppKeyRequest(app_id, b"bench")])
    finally:
        await client.close()
    return time.perf_counter() - start


def getkey_load(socket: Path, duration: float, concurrency: int) -> tuple[int, int]:
    done = [0, 0]
    lock = threading.Lock()
    stop = time.monotonic() + duration

    def worker(index: int) -> None:
        client = DstackClient(str(socket), timeout=30)
        n = errors = 0
        while time.monotonic() < stop:
            try:
                client.get_key(f"bench/{index}/{n}", "bench")
                n += 1
            except Exception:
                errors += 1
        with lock:
            done[0] += n
            done[1] += errors

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return done[0], done[1]


def run(n: int, t: int, *, derivations: int, duration: float, concurrency: int, root: Path) -> None:
    with Cluster(root, phases=(3, 5, 5, 5, 8), max_head_age=60, app_rate_limit=1e6) as cluster:
        cluster.start_chain()
        members = [cluster.create_node() for _ in range(n)]
        for m in members:
            cluster.start_node(m)
        cluster.wait_healthy(members, timeout=300, accept=("DOWN", "DEGRADED", "NORMAL"))
        epoch = cluster.propose(EpochKind.DKG, members, t)
        cluster.wait_epoch(epoch, timeout=600)
        cluster.wait_healthy(members, timeout=120, epoch=epoch)
        app_id = cluster.register_app([compose_hash(COMPOSE)])
        assert cluster.deployment is not None
        committee = cluster.committee()
        raw_id = bytes.fromhex(app_id[2:])

        kms_id = cluster.network_fingerprint().hex()

        async def derivations_run() -> list[float]:
            return [await derive_once(committee, raw_id, kms_id) for _ in range(derivations)]

        latencies = asyncio.run(derivations_run())
        _emit(f"app_derive_n{n}_t{t}_p50_ms", statistics.median(latencies) * 1e3, "ms")
        _emit(f"app_derive_n{n}_t{t}_p99_ms", _percentile(latencies, 0.99) * 1e3, "ms")

        (root / "compose.json").write_bytes(COMPOSE)
        config = root / "agent.toml"
        config.write_text(
            f'rpc = "{cluster.rpc_url}"\ngovernance = "{cluster.deployment.governance}"\n'
            f'app_id = "{app_id}"\ncompose = "compose.json"\n'
        )
        socket = root / "dstack.sock"
        start = time.perf_counter()
        agent = subprocess.Popen([*AGENT, "--config", str(config), "--socket", str(socket)])
        try:
            while not socket.exists():
                if agent.poll() is not None:
                    raise SystemExit(f"agent exited {agent.returncode}")
                time.sleep(0.05)
            _emit("agent_start_s", time.perf_counter() - start, "s")
            count, errors = getkey_load(socket, duration, concurrency)
            _emit(f"getkey_c{concurrency}_throughput", count / duration, "req/s")
            _emit(f"getkey_c{concurrency}_errors", errors, "count")
        finally:
            agent.terminate()
            agent.wait(10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testnet.guestbench", description=__doc__)
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--threshold", type=int, default=3)
    parser.add_argument("--derivations", type=int, default=100)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tkms-guest-bench-") as tmp:
        run(
            args.nodes,
            args.threshold,
            derivations=args.derivations,
            duration=args.duration,
            concurrency=args.concurrency,
            root=Path(tmp),
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
