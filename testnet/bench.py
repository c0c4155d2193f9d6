"""`tkms testnet bench`: key-derivation load through the guest path, against a baseline.

The load is `KmsClient.derive` (what the guest agent does for every app key): fan out to the
committee, verify t partials, combine. The baseline is the same client and the same gRPC
stack and authorization against one centralized, non-threshold KMS process
(`testnet.baseline`), i.e. what dstack's KMS does. Both use one app with one ephemeral key, so
nodes verify the evidence once and serve from their cache, as they would for an agent.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from attest import event_log_to_json
from attest.providers import SimulatorProvider
from contracts._anvil import free_port
from guest.committee import committee_from_chain
from guest.kms_client import AppKeyRequest, Committee, KmsClient, Member
from guest.measure import compose_hash, measure_app_boot
from mpc import G1, G2, Epoch, Generation, NetworkContext
from node.tee import SIMULATED_OS_IMAGE
from testnet.cluster import Cluster

BENCH_COMPOSE = b'{"services": {"bench": {"image": "tkms-bench@sha256:00"}}}'


@dataclass(frozen=True)
class LoadResult:
    requests: int
    errors: int
    latencies: list[float]
    duration: float

    def summary(self) -> dict[str, float | int]:
        lat = sorted(self.latencies) or [float("nan")]
        return {
            "p50_ms": round(statistics.median(lat) * 1e3, 3),
            "p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3, 3),
            "throughput_per_s": round(len(self.latencies) / self.duration, 1),
            "requests": self.requests,
            "errors": self.errors,
        }


async def run_load(
    client: KmsClient, app_id: bytes, *, duration: float, concurrency: int
) -> LoadResult:
    await client.derive([AppKeyRequest(app_id, b"warm-up")])
    latencies: list[float] = []
    errors = 0
    requests = 0
    stop = time.monotonic() + duration

    async def worker(w: int) -> None:
        nonlocal errors, requests
        i = 0
        while time.monotonic() < stop:
            i += 1
            requests += 1
            start = time.perf_counter()
            try:
                await client.derive([AppKeyRequest(app_id, f"bench/{w}/{i % 8}".encode())])
                latencies.append(time.perf_counter() - start)
            except Exception:
                errors += 1

    began = time.monotonic()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return LoadResult(requests, errors, latencies, time.monotonic() - began)


def _bench_app(cluster: Cluster) -> tuple[bytes, SimulatorProvider]:
    app_id = bytes.fromhex(cluster.register_app([compose_hash(BENCH_COMPOSE)])[2:])
    assert cluster.deployment is not None
    provider = SimulatorProvider()
    measure_app_boot(
        provider,
        app_id=app_id,
        compose=BENCH_COMPOSE,
        instance_id=os.urandom(20),
        kms_id=cluster.deployment.governance,
        os_image=SIMULATED_OS_IMAGE,
    )
    return app_id, provider


def _start_baseline(cluster: Cluster) -> tuple[subprocess.Popen[str], Committee]:
    assert cluster.deployment is not None
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "testnet.baseline",
            "--rpc",
            cluster.rpc_url,
            "--governance",
            cluster.deployment.governance,
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=(cluster.root / "baseline.log").open("ab"),
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    if len(line) != 3 or line[0] != "baseline-ready":
        proc.kill()
        raise RuntimeError(f"baseline did not start; see {cluster.root / 'baseline.log'}")
    network = NetworkContext(
        chain_id=cluster.w3().eth.chain_id,
        contract=bytes.fromhex(cluster.deployment.governance[2:]),
        generation=Generation(1),
        epoch=Epoch(1),
    )
    member = Member(
        index=1,
        endpoint=f"127.0.0.1:{port}",
        verification_key=G1.from_bytes(bytes.fromhex(line[1])),
    )
    committee = Committee(
        network=network,
        threshold=1,
        members=(member,),
        group_key=G2.from_bytes(bytes.fromhex(line[2])),
    )
    time.sleep(1.5)  # let its chain watcher take a first view
    return proc, committee


def bench(cluster: Cluster, *, duration: float, concurrency: int) -> dict[str, Any]:
    app_id, provider = _bench_app(cluster)

    def evidence(report_data: bytes) -> tuple[bytes, str]:
        return provider.get_quote(report_data), event_log_to_json(provider.event_log())

    async def measure(committee: Committee) -> LoadResult:
        # Hedged: t members first, the rest after 250 ms or on a failure, so the shared
        # 2-core machine computes t partials per derivation rather than n.
        client = KmsClient(committee, evidence, timeout=10, hedge_delay=0.25)
        try:
            return await run_load(client, app_id, duration=duration, concurrency=concurrency)
        finally:
            await client.close()

    committee = committee_from_chain(cluster.governance())
    threshold = asyncio.run(measure(committee)).summary()
    proc, central = _start_baseline(cluster)
    try:
        baseline = asyncio.run(measure(central)).summary()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return {
        **threshold,
        "concurrency": concurrency,
        "duration_s": duration,
        "nodes": len(committee.members),
        "threshold": committee.threshold,
        "baseline": baseline,
        "ratio_p50": round(float(threshold["p50_ms"]) / float(baseline["p50_ms"]), 2),
    }
