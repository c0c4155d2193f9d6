"""What `tkms testnet bench` reads from /proc and how it prints a result (no network needed)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

from testnet.bench import LoadResult, _cpu_seconds, _measured, _rss_mb, bench_table

TENTHS = [200.0, 215.5, 212.0, 210.0, 214.0, 209.0, 211.0, 213.0, 208.0, 212.5]


def _load(
    p50: float, rate: float, nodes: float, client: float, units: float, batched: float = 1.0
) -> dict[str, Any]:
    return {
        "p50_ms": p50,
        "p99_ms": p50 * 3,
        "throughput_per_s": rate,
        "throughput_by_tenth_per_s": TENTHS,
        "requests": int(rate * 10),
        "errors": 0,
        "keys_per_rpc": batched,
        "cpu_ms_per_derivation": {"nodes": nodes, "client": client, "nodes_idle_ms_per_s": 80.0},
        "cpu_units_per_derivation": units,
    }


RESULT = {
    "unit_ms": 0.13,
    "duration_s": 10.0,
    "apps": 2,
    "nodes": 5,
    "threshold": 3,
    "runs": [
        {
            "concurrency": 1,
            "threshold": _load(8.0, 100.0, 2.5, 1.5, 30.8),
            "baseline": _load(6.0, 150.0, 1.0, 1.0, 15.4),
            "ratio_p50": 1.33,
        },
        {
            "concurrency": 32,
            "threshold": _load(150.0, 210.5, 2.4, 1.3, 28.5, 6.69),
            "baseline": _load(70.0, 450.0, 0.9, 0.8, 13.1, 8.0),
            "ratio_p50": 2.14,
        },
    ],
    "rss_mb": [
        {"index": 1, "start": 110.2, "end": 111.0},
        {"index": 2, "start": 109.9, "end": 110.4},
    ],
    "up_seconds": 21.5,
}


def test_rss_and_cpu_come_from_proc_and_a_gone_process_reads_as_none() -> None:
    rss = _rss_mb(os.getpid())
    assert rss is not None and 5 < rss < 10_000
    before = _cpu_seconds(os.getpid())
    deadline = time.process_time() + 0.2
    while time.process_time() < deadline:
        pass
    assert _cpu_seconds(os.getpid()) - before >= 0.1
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert _rss_mb(gone.pid) is None
    assert _cpu_seconds(gone.pid) == 0.0


def test_the_table_shows_every_figure_and_each_nodes_memory() -> None:
    lines = bench_table(RESULT)
    assert lines[0].split() == ["unit:", "one", "arkworks", "G1", "mult", "(CPU)", "0.13", "ms"]
    assert [line for line in lines if line.startswith("-- concurrency")] == [
        "-- concurrency 1",
        "-- concurrency 32",
    ]
    c32 = lines[lines.index("-- concurrency 32") :]
    rows = {line[:34].strip(): line[34:].split() for line in c32[1:]}
    assert rows["p50 latency (ms)"] == ["150.0", "70.0"]
    assert rows["CPU/derivation servers+client"] == ["2.4+1.3", "ms", "0.9+0.8", "ms"]
    assert rows["CPU/derivation (units)"] == ["28.5", "13.1"]
    assert rows["keys per DerivePartial (batched)"] == ["6.69", "8.0"]
    assert rows["ratio p50 (threshold/central)"] == ["2.14"]
    assert rows["derivations/s by tenth of run"][:3] == ["200", "215.5", "212"]
    assert lines[-2:] == [
        "node-1 RSS MB start -> end             110.2 -> 111.0",
        "node-2 RSS MB start -> end             109.9 -> 110.4",
    ]


def test_a_network_that_does_not_know_its_up_time_prints_no_up_line() -> None:
    lines = bench_table({**RESULT, "up_seconds": None})
    assert not any(line.startswith("`up`") for line in lines)
    assert len(lines) == len(bench_table(RESULT)) - 1


def test_throughput_by_tenth_counts_each_derivation_in_its_slice() -> None:
    finished = [0.1, 0.5, 0.95, 1.2, 9.99, 10.0]  # 10.0: finished as the run ended
    result = LoadResult(7, 1, [0.01] * 6, 10.0, 1.0, finished)
    assert result.windows() == [3.0, 1.0, 0, 0, 0, 0, 0, 0, 0, 2.0]
    assert result.windows(2) == [0.8, 0.4]
    assert result.summary()["throughput_by_tenth_per_s"] == result.windows()


def test_keys_per_request_is_what_the_clients_sent_and_none_without_requests() -> None:
    sent = LoadResult(10, 0, [0.01] * 10, 1.0, 0.1, rpcs=8, rpc_keys=30)
    assert sent.summary()["keys_per_rpc"] == 3.75
    assert LoadResult(0, 0, [], 1.0, 0.0).summary()["keys_per_rpc"] is None


def test_cpu_per_derivation_nets_out_idle_time_and_is_given_in_units() -> None:
    load = LoadResult(101, 1, [0.01] * 100, 10.0, 0.2, [1.0] * 100)
    # 1.5 s of server CPU, of which 10 s x 50 ms/s idle: 1.0 s for 100 derivations.
    measured = _measured(load, 1.5, 0.05, unit=0.0001)
    assert measured["cpu_ms_per_derivation"] == {
        "nodes": 10.0,
        "client": 2.0,
        "nodes_idle_ms_per_s": 50.0,
    }
    assert measured["cpu_units_per_derivation"] == 120.0
    assert measured["errors"] == 1
