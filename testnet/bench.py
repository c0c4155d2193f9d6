"""`tkms testnet bench`: key-derivation load through the guest path, against a baseline.

The load is `KmsClient.derive` (what the guest agent does for every app key): fan out to the
committee, verify t partials, combine. The baseline is the same client and the same gRPC
stack and authorization against one centralized, non-threshold KMS process
(`testnet.baseline`), i.e. what dstack's KMS does. Each app keeps one ephemeral key, so nodes
verify its evidence once and serve from their cache, as they would for an agent. Nodes limit
each app's key rate (100/s per node on the testnet), so the load is spread over one app per 16
concurrent workers, as several apps would load a real network.

Each concurrency level (default 1 and 32) runs against the network, then against the
baseline, in one run. Besides latency and throughput it reports what each load cost: CPU per
derivation (the servers' CPU from /proc, net of what they spend idle, plus this process's own
CPU, which is the client's), in ms and in units of one arkworks G1 scalar multiplication
measured in the same run (docs/perf.md), and each node's resident memory at the start and the
end of the threshold loads, so a long run shows whether memory stays flat.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attest import event_log_to_json
from attest.providers import SimulatorProvider
from contracts._anvil import free_port
from guest.kms_client import AppKeyRequest, Committee, KmsClient, Member
from guest.measure import compose_hash, measure_app_boot
from mpc import G1, G2, Epoch, Generation, NetworkContext
from node.tee import SIMULATED_OS_IMAGE
from testnet.cluster import Cluster

BENCH_COMPOSE = b'{"services": {"bench": {"image": "tkms-bench@sha256:00"}}}'
#: Concurrent workers per app, so that no app reaches its rate limit (100 keys/s per node).
WORKERS_PER_APP = 8
_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class LoadResult:
    requests: int
    errors: int
    latencies: list[float]
    duration: float
    client_cpu: float  # seconds of this process's CPU during the run
    #: When each successful derivation finished, in seconds from the start of the run.
    finished: list[float] = field(default_factory=list)
    #: DerivePartial requests the clients sent during the run, and the keys they carried.
    rpcs: int = 0
    rpc_keys: int = 0
    #: At concurrency 1, per derivation (s): its fastest and slowest member's answer, from
    #: request to reply, and the client's time after the last answer (combine and check).
    fastest: list[float] = field(default_factory=list)
    slowest: list[float] = field(default_factory=list)
    after_last: list[float] = field(default_factory=list)

    def windows(self, count: int = 10) -> list[float]:
        """Derivations/s in each of `count` equal slices of the run: whether it held up."""
        width = self.duration / count
        done = [0] * count
        for t in self.finished:
            done[min(count - 1, int(t / width))] += 1
        return [round(n / width, 1) for n in done]

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies) or [float("nan")]
        return {
            "p50_ms": round(statistics.median(lat) * 1e3, 3),
            "p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3, 3),
            "throughput_per_s": round(len(self.latencies) / self.duration, 1),
            "throughput_by_tenth_per_s": self.windows(),
            "requests": self.requests,
            "errors": self.errors,
            "keys_per_rpc": round(self.rpc_keys / self.rpcs, 2) if self.rpcs else None,
            **self._path(),
        }

    def _path(self) -> dict[str, Any]:
        """Where a lone derivation's time goes (measured at concurrency 1 only)."""
        if not self.slowest:
            return {}
        return {
            "answer_fastest_p50_ms": round(statistics.median(self.fastest) * 1e3, 3),
            "answer_slowest_p50_ms": round(statistics.median(self.slowest) * 1e3, 3),
            "after_last_answer_p50_ms": round(statistics.median(self.after_last) * 1e3, 3),
        }


async def run_load(
    clients: list[tuple[KmsClient, bytes]], *, duration: float, concurrency: int
) -> LoadResult:
    """`concurrency` workers derive keys for `duration` s, worker w through clients[w % n]."""
    for client, app_id in clients:
        await client.derive([AppKeyRequest(app_id, b"warm-up")])
    latencies: list[float] = []
    finished: list[float] = []
    lone = concurrency == 1
    path: tuple[list[float], list[float], list[float]] = ([], [], [])
    for client, _ in clients:
        client.batches.timings = [] if lone else None
    errors = 0
    requests = 0
    began = time.monotonic()
    stop = began + duration

    async def worker(w: int) -> None:
        nonlocal errors, requests
        client, app_id = clients[w % len(clients)]
        i = 0
        while time.monotonic() < stop:
            i += 1
            requests += 1
            marks = client.batches.timings
            if marks is not None:
                marks.clear()  # an answer of the last derivation's hedge may come late
            start = time.perf_counter()
            try:
                await client.derive([AppKeyRequest(app_id, f"bench/{w}/{i % 8}".encode())])
                end = time.perf_counter()
                latencies.append(end - start)
                finished.append(time.monotonic() - began)
            except Exception:
                errors += 1
                continue
            if marks:
                path[0].append(min(b - a for a, b in marks))
                path[1].append(max(b - a for a, b in marks))
                path[2].append(end - max(b for _, b in marks))

    sent = [(c.batches.requests, c.batches.keys) for c, _ in clients]
    cpu = time.process_time()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    for client, _ in clients:
        client.batches.timings = None
    return LoadResult(
        requests,
        errors,
        latencies,
        time.monotonic() - began,
        time.process_time() - cpu,
        finished,
        rpcs=sum(c.batches.requests - r for (c, _), (r, _) in zip(clients, sent, strict=True)),
        rpc_keys=sum(c.batches.keys - k for (c, _), (_, k) in zip(clients, sent, strict=True)),
        fastest=path[0],
        slowest=path[1],
        after_last=path[2],
    )


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/<pid>/stat (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _rss_mb(pid: int) -> float | None:
    """VmRSS of a process in MB, from /proc/<pid>/status (None if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def _node_pids(cluster: Cluster) -> dict[int, int]:
    return {n.index: n.pid for n in cluster.nodes if n.pid is not None}


def _bench_app(cluster: Cluster) -> tuple[bytes, SimulatorProvider]:
    app_id = bytes.fromhex(cluster.register_app([compose_hash(BENCH_COMPOSE)])[2:])
    assert cluster.deployment is not None
    provider = SimulatorProvider()
    measure_app_boot(
        provider,
        app_id=app_id,
        compose=BENCH_COMPOSE,
        instance_id=os.urandom(20),
        kms_id=cluster.network_fingerprint().hex(),
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
    if len(line) != 4 or line[0] != "baseline-ready":
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
        tls_key_hash=bytes.fromhex(line[3]),
    )
    committee = Committee(
        network=network,
        threshold=1,
        members=(member,),
        group_key=G2.from_bytes(bytes.fromhex(line[2])),
    )
    time.sleep(1.5)  # let its chain watcher take a first view
    return proc, committee


def _idle_rate(pids: list[int], seconds: float = 2.0) -> float:
    """CPU seconds per second that `pids` spend without load (chain watching), to subtract."""
    start, began = sum(map(_cpu_seconds, pids)), time.monotonic()
    time.sleep(seconds)
    return (sum(map(_cpu_seconds, pids)) - start) / (time.monotonic() - began)


def _measured(load: LoadResult, server_cpu: float, idle_rate: float, unit: float) -> dict[str, Any]:
    """A load's summary with its CPU per derivation in ms and in units."""
    done = max(1, len(load.latencies))
    servers = max(0.0, server_cpu - idle_rate * load.duration) / done
    client = load.client_cpu / done
    return {
        **load.summary(),
        "cpu_ms_per_derivation": {
            "nodes": round(servers * 1e3, 2),
            "client": round(client * 1e3, 2),
            "nodes_idle_ms_per_s": round(idle_rate * 1e3, 1),
        },
        "cpu_units_per_derivation": round((servers + client) / unit, 1),
    }


def bench(
    cluster: Cluster, *, duration: float, concurrency: Sequence[int] = (1, 32)
) -> dict[str, Any]:
    """Each concurrency against the network, then against the centralized baseline.

    The unit (one arkworks G1 scalar multiplication's CPU time, `mpc.bench.measure_unit`) is
    measured in this process before and after the loads; the mean is reported.
    """
    from mpc.bench import measure_unit

    levels = list(concurrency)
    apps = [_bench_app(cluster) for _ in range(-(-max(levels) // WORKERS_PER_APP))]

    def measure(committee: Committee, workers: int) -> LoadResult:
        async def run() -> LoadResult:
            clients = []
            for app_id, provider in apps:

                def evidence(
                    report_data: bytes, p: SimulatorProvider = provider
                ) -> tuple[bytes, str]:
                    return p.get_quote(report_data), event_log_to_json(p.event_log())

                # Hedged: t members first, the rest after 250 ms or on a failure, so the shared
                # 2-core machine computes t partials per derivation rather than n.
                client = KmsClient(committee, evidence, timeout=10, hedge_delay=0.25)
                clients.append((client, app_id))
            try:
                return await run_load(clients, duration=duration, concurrency=workers)
            finally:
                for client, _ in clients:
                    await client.close()

        return asyncio.run(run())

    unit_before = measure_unit()
    committee = cluster.committee()
    pids = _node_pids(cluster)
    rss_start = {i: _rss_mb(pid) for i, pid in pids.items()}
    idle = _idle_rate(list(pids.values()))
    threshold_runs = []
    for workers in levels:
        cpu_start = sum(map(_cpu_seconds, pids.values()))
        load = measure(committee, workers)
        cpu = sum(map(_cpu_seconds, pids.values())) - cpu_start
        threshold_runs.append((load, cpu))
    rss_end = {i: _rss_mb(pid) for i, pid in pids.items()}
    proc, central = _start_baseline(cluster)
    try:
        base_idle = _idle_rate([proc.pid])
        central_runs = []
        for workers in levels:
            cpu_start = _cpu_seconds(proc.pid)
            load = measure(central, workers)
            central_runs.append((load, _cpu_seconds(proc.pid) - cpu_start))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    unit = (unit_before + measure_unit()) / 2
    runs = []
    for workers, (t_load, t_cpu), (c_load, c_cpu) in zip(
        levels, threshold_runs, central_runs, strict=True
    ):
        threshold = _measured(t_load, t_cpu, idle, unit)
        baseline = _measured(c_load, c_cpu, base_idle, unit)
        runs.append(
            {
                "concurrency": workers,
                "threshold": threshold,
                "baseline": baseline,
                "ratio_p50": round(float(threshold["p50_ms"]) / float(baseline["p50_ms"]), 2),
            }
        )
    return {
        "unit_ms": round(unit * 1e3, 4),
        "duration_s": duration,
        "apps": len(apps),
        "nodes": len(committee.members),
        "threshold": committee.threshold,
        "runs": runs,
        "rss_mb": [
            {"index": i, "start": rss_start[i], "end": rss_end.get(i)} for i in sorted(pids)
        ],
    }


def _cpu_cell(run: dict[str, Any]) -> str:
    cpu = run["cpu_ms_per_derivation"]
    return f"{cpu['nodes']}+{cpu['client']} ms"


def bench_table(result: dict[str, Any]) -> list[str]:
    """The bench result as the lines of a table (what `tkms testnet bench` prints)."""
    lines = [
        f"{'unit: one arkworks G1 mult (CPU)':<34}{result['unit_ms']} ms",
        f"{'':<34}{'threshold':>18}{'centralized':>18}",
        f"{'nodes / threshold':<34}{result['nodes']:>14} / {result['threshold']}{'1 / 1':>18}",
    ]
    for run in result["runs"]:
        t, b = run["threshold"], run["baseline"]
        lines.append(f"-- concurrency {run['concurrency']}")
        for key, label in (
            ("p50_ms", "p50 latency (ms)"),
            ("p99_ms", "p99 latency (ms)"),
            ("throughput_per_s", "throughput (derivations/s)"),
            ("requests", "requests"),
            ("errors", "errors"),
            ("keys_per_rpc", "keys per DerivePartial (batched)"),
            ("answer_fastest_p50_ms", "fastest member's answer p50 (ms)"),
            ("answer_slowest_p50_ms", "slowest member's answer p50 (ms)"),
            ("after_last_answer_p50_ms", "client after last answer p50 (ms)"),
        ):
            if key in t:
                lines.append(f"{label:<34}{t[key]:>18}{b.get(key, ''):>18}")
        lines.append(f"{'CPU/derivation servers+client':<34}{_cpu_cell(t):>18}{_cpu_cell(b):>18}")
        lines.append(
            f"{'CPU/derivation (units)':<34}"
            f"{t['cpu_units_per_derivation']:>18}{b['cpu_units_per_derivation']:>18}"
        )
        tenths = t.get("throughput_by_tenth_per_s")
        if tenths:
            lines.append(
                f"{'derivations/s by tenth of run':<34}" + " ".join(f"{x:g}" for x in tenths)
            )
        lines.append(f"{'ratio p50 (threshold/central)':<34}{run['ratio_p50']:>18}")
    if result.get("up_seconds") is not None:
        lines.append(f"{'`up` ready after (s)':<34}{result['up_seconds']:>18}")
    lines.append(f"{'apps':<34}{result['apps']:>18}")
    for row in result["rss_mb"]:
        label = f"node-{row['index']} RSS MB start -> end"
        lines.append(f"{label:<34}{row['start']:>10} -> {row['end']}")
    return lines
