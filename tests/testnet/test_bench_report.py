"""What `tkms testnet bench` reads from /proc and how it prints a result (no network needed)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from testnet.bench import LoadResult, _cpu_seconds, _rss_mb, bench_table

RESULT = {
    "p50_ms": 8.1,
    "p99_ms": 21.0,
    "throughput_per_s": 210.5,
    "throughput_by_tenth_per_s": [
        200.0,
        215.5,
        212.0,
        210.0,
        214.0,
        209.0,
        211.0,
        213.0,
        208.0,
        212.5,
    ],
    "requests": 2110,
    "errors": 0,
    "concurrency": 32,
    "duration_s": 10.0,
    "apps": 2,
    "nodes": 5,
    "threshold": 3,
    "cpu_ms_per_derivation": {"nodes": 5.9, "client": 3.1, "nodes_idle_ms_per_s": 80.0},
    "rss_mb": [
        {"index": 1, "start": 110.2, "end": 111.0},
        {"index": 2, "start": 109.9, "end": 110.4},
    ],
    "baseline": {
        "p50_ms": 3.0,
        "p99_ms": 9.0,
        "throughput_per_s": 500.0,
        "requests": 5000,
        "errors": 0,
    },
    "ratio_p50": 2.7,
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
    assert bench_table(RESULT) == [
        "                                 threshold   centralized",
        "nodes / threshold                     5 / 3         1 / 1",
        "p50 latency (ms)                       8.1           3.0",
        "p99 latency (ms)                      21.0           9.0",
        "throughput (derivations/s)           210.5         500.0",
        "requests                              2110          5000",
        "errors                                   0             0",
        "derivations/s by tenth of run 200 215.5 212 210 214 209 211 213 208 212.5",
        "ratio p50 (threshold/central)          2.7",
        "`up` ready after (s)                  21.5",
        "CPU ms/derivation nodes+client   5.9 + 3.1",
        "apps x workers                     2 x 32",
        "node-1 RSS MB start -> end     110.2 -> 111.0",
        "node-2 RSS MB start -> end     109.9 -> 110.4",
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
