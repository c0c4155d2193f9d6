"""`python -m gateway.loadbench`: legitimate latency while one client hoards connections.

On 127.0.0.1, in one process (the rig of `gateway.bench`: a TLS backend and the proxy on an
event loop thread), with a per-client cap of `--per-client`:

1. baseline: `--requests` fresh terminated connections from 127.0.0.1 (TCP connect, TLS
   handshake with the gateway, TLS again to the backend, one byte echoed), p50 and p99;
2. the hoarder, from 127.0.0.2, opens `--hold` passthrough TLS connections and leaves them
   idle; those past the cap are refused at accept;
3. the same requests from 127.0.0.1 again, while the hoarder holds what it got;
4. everything is closed.

Bounded: every socket operation has a 10 s timeout, the counts are fixed, and the run stops by
itself. It prints what the hoarder held and was refused, the proxy's counters, and both
latency sets (`--json` for a document). Timings depend on the machine; the behaviour (the
hoarder holds exactly the cap, every legitimate request succeeds) does not.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import socket
import ssl
import sys
from dataclasses import asdict, dataclass

import structlog

from gateway.bench import APP, BASE, Rig, first_byte, percentile
from gateway.limits import ProxyLimits

LEGIT = "127.0.0.1"
HOARDER = "127.0.0.2"


@dataclass(frozen=True)
class LoadResult:
    """What one run measured (milliseconds; counts of connections)."""

    per_client_cap: int
    hoarder_attempted: int
    hoarder_held: int
    hoarder_refused: int
    proxy_refused_client_limit: int
    legit_requests: int
    legit_failures: int
    baseline_p50_ms: float
    baseline_p99_ms: float
    hoarded_p50_ms: float
    hoarded_p99_ms: float


def _latencies(rig: Rig, port: int, name: str, count: int) -> tuple[list[float], int]:
    samples: list[float] = []
    failures = 0
    for _ in range(count):
        try:
            samples.append(first_byte(rig, port, name))
        except (OSError, RuntimeError):
            failures += 1
    return samples, failures


def _hoard(rig: Rig, port: int, name: str, count: int) -> tuple[list[ssl.SSLSocket], int]:
    """Open `count` passthrough connections from HOARDER; the ones held, and how many failed."""
    held: list[ssl.SSLSocket] = []
    refused = 0
    for _ in range(count):
        try:
            held.append(rig.connect(port, name, source=HOARDER))
        except (OSError, ssl.SSLError):
            refused += 1
    return held, refused


def _ms(samples: list[float], q: int) -> float:
    return round(percentile(samples, q) * 1e3, 3) if samples else 0.0


def run(requests: int, hold: int, per_client: int) -> LoadResult:
    limits = ProxyLimits(max_connections_per_client=per_client)
    with Rig(limits) as rig:
        proxy, tls = rig.ports["proxy"], rig.ports["tls"]
        terminated = f"{APP.hex()}-{tls}.{BASE}"
        passthrough = f"{APP.hex()}-{tls}s.{BASE}"
        first_byte(rig, proxy, terminated)  # warm up
        baseline, failed_before = _latencies(rig, proxy, terminated, requests)
        held, refused = _hoard(rig, proxy, passthrough, hold)
        try:
            hoarded, failed_during = _latencies(rig, proxy, terminated, requests)
            refused_by_cap = rig.proxy.stats["refused_client_limit"]
        finally:
            for sock in held:
                with contextlib.suppress(OSError):
                    sock.close()
    return LoadResult(
        per_client_cap=per_client,
        hoarder_attempted=hold,
        hoarder_held=len(held),
        hoarder_refused=refused,
        proxy_refused_client_limit=refused_by_cap,
        legit_requests=2 * requests,
        legit_failures=failed_before + failed_during,
        baseline_p50_ms=_ms(baseline, 50),
        baseline_p99_ms=_ms(baseline, 99),
        hoarded_p50_ms=_ms(hoarded, 50),
        hoarded_p99_ms=_ms(hoarded, 99),
    )


def _report(result: LoadResult) -> str:
    return "\n".join(
        [
            f"hoarder {HOARDER}: {result.hoarder_attempted} connections tried, "
            f"{result.hoarder_held} held idle, {result.hoarder_refused} refused "
            f"(per-client cap {result.per_client_cap}; proxy counted "
            f"{result.proxy_refused_client_limit} client_limit refusals)",
            f"legitimate {LEGIT}: {result.legit_requests} terminated requests, "
            f"{result.legit_failures} failed",
            "                 p50 ms   p99 ms",
            f"baseline        {result.baseline_p50_ms:7.2f}  {result.baseline_p99_ms:7.2f}",
            f"while hoarded   {result.hoarded_p50_ms:7.2f}  {result.hoarded_p99_ms:7.2f}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gateway.loadbench", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--requests", type=int, default=200, help="legitimate requests per phase")
    parser.add_argument("--hold", type=int, default=1000, help="connections the hoarder tries")
    parser.add_argument("--per-client", type=int, default=128, help="the per-client cap")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a report")
    args = parser.parse_args(argv)
    if min(args.requests, args.hold, args.per_client) < 1:
        parser.error("--requests, --hold and --per-client must be at least 1")
    # Refusal lines are rate limited anyway; keep the output to the report.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    socket.setdefaulttimeout(10)
    result = run(args.requests, args.hold, args.per_client)
    print(json.dumps(asdict(result), indent=2) if args.json else _report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
