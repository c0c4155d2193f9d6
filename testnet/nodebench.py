"""`python -m testnet.nodebench`: DKG time on anvil, DerivePartial latency/throughput of one node.

For each network size it starts anvil and that many real `tkms node run` processes, proposes
a DKG and times proposal -> activation (dominated by the on-chain phase lengths, printed with
it). Then it loads one node with DerivePartial calls from `--concurrency` workers for
`--duration` seconds (one app, one ephemeral key, so evidence is verified once and cached, as
a guest agent does) and prints p50/p99 latency and throughput. Output: `name: value unit`.

It lives in testnet/ because it orchestrates processes (node/ never imports testnet/).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import grpc

from attest import BindingLabel, compute_report_data, event_log_to_json
from attest.providers import SimulatorProvider
from contracts import EpochKind
from guest.kms_channel import open_channel
from guest.measure import compose_hash, measure_app_boot
from mpc import EphemeralKey
from node.tee import SIMULATED_OS_IMAGE
from protos.tkms.v1 import common_pb2, kms_pb2, kms_pb2_grpc
from testnet.cluster import Cluster, NodeProcess

COMPOSE = b'{"services": {"bench": {"image": "bench@sha256:00"}}}'


def _emit(name: str, value: float, unit: str) -> None:
    print(f"{name}: {value:.3f} {unit}", flush=True)


def _request(cluster: Cluster, app_id: str) -> kms_pb2.DerivePartialRequest:
    assert cluster.deployment is not None
    provider = SimulatorProvider()
    raw_id = bytes.fromhex(app_id[2:])
    measure_app_boot(
        provider,
        app_id=raw_id,
        compose=COMPOSE,
        instance_id=os.urandom(20),
        kms_id=cluster.network_fingerprint().hex(),
        os_image=SIMULATED_OS_IMAGE,
    )
    eph = EphemeralKey.generate(os.urandom)
    quote = provider.get_quote(compute_report_data(BindingLabel.KDF_V1, eph.public.to_bytes()))
    return kms_pb2.DerivePartialRequest(
        evidence=common_pb2.Evidence(
            quote=quote, event_log=event_log_to_json(provider.event_log())
        ),
        requester_key=eph.public.to_bytes(),
        keys=[
            kms_pb2.KeyRequest(kind=kms_pb2.KeyRequest.KIND_KDF, app_id=raw_id, purpose=b"bench")
        ],
    )


async def load(
    node: NodeProcess,
    request: kms_pb2.DerivePartialRequest,
    *,
    duration: float,
    concurrency: int,
) -> tuple[list[float], int]:
    latencies: list[float] = []
    errors = 0
    async with await open_channel(node.endpoints.kms, node.tls_key_hash) as channel:
        stub = kms_pb2_grpc.KmsStub(channel)  # type: ignore[no-untyped-call]
        await stub.DerivePartial(request, timeout=10)  # warm: evidence verified and cached
        stop = time.monotonic() + duration

        async def worker() -> None:
            nonlocal errors
            while time.monotonic() < stop:
                start = time.perf_counter()
                try:
                    await stub.DerivePartial(request, timeout=10)
                    latencies.append(time.perf_counter() - start)
                except grpc.aio.AioRpcError:
                    errors += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, errors


def run(nodes: list[int], *, duration: float, concurrency: int, root: Path) -> None:
    for n in nodes:
        t = {5: 3, 16: 11}.get(n, n // 2 + 1)
        phases = (3, 5, 5, 5, 8) if n <= 8 else (8, 12, 8, 8, 12)
        # The per-app rate limit would measure itself, not the node: lift it for the load.
        with Cluster(root / f"n{n}", phases=phases, max_head_age=60, app_rate_limit=1e6) as cluster:
            cluster.start_chain()
            members = [cluster.create_node() for _ in range(n)]
            for m in members:
                cluster.start_node(m)
            cluster.wait_healthy(members, timeout=300, accept=("DOWN", "DEGRADED", "NORMAL"))
            start = time.monotonic()
            epoch = cluster.propose(EpochKind.DKG, members, t)
            cluster.wait_epoch(epoch, timeout=600)
            elapsed = time.monotonic() - start
            _emit(f"dkg_anvil_n{n}_t{t}_s", elapsed, "s")
            block = f"{cluster.block_time:g} s"
            names = "keys, deal, complain, justify, confirm"
            print(f"# phase lengths in blocks of {block} ({names}): {phases}")
            if n == nodes[0]:
                cluster.wait_healthy(members, timeout=120, epoch=epoch)
                app_id = cluster.register_app([compose_hash(COMPOSE)])
                request = _request(cluster, app_id)
                latencies, errors = asyncio.run(
                    load(
                        members[0],
                        request,
                        duration=duration,
                        concurrency=concurrency,
                    )
                )
                latencies.sort()
                p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
                _emit(
                    f"derive_partial_c{concurrency}_p50_ms",
                    statistics.median(latencies) * 1e3,
                    "ms",
                )
                _emit(f"derive_partial_c{concurrency}_p99_ms", p99 * 1e3, "ms")
                _emit(
                    f"derive_partial_c{concurrency}_throughput", len(latencies) / duration, "req/s"
                )
                _emit(f"derive_partial_c{concurrency}_errors", errors, "count")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testnet.nodebench", description=__doc__)
    parser.add_argument("--nodes", default="5,16", help="network sizes, comma-separated")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args(argv)
    sizes = [int(x) for x in args.nodes.split(",") if x]
    with tempfile.TemporaryDirectory(prefix="tkms-node-bench-") as tmp:
        run(sizes, duration=args.duration, concurrency=args.concurrency, root=Path(tmp))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
