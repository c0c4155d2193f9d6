"""A centralized, non-threshold KMS over the same gRPC stack: the benchmark's baseline.

One process holds one secret key (what dstack's KMS does with its root key) and serves the
same `Kms` service through the same authorization pipeline (evidence verification, chain
approval at a fresh head, rate limit) as a tkms node; it just answers as the only member of
a 1-of-1 committee. `python -m testnet.baseline --rpc URL --governance ADDR --port N`.
"""

from __future__ import annotations

import argparse
import asyncio
import os

import grpc
from web3 import HTTPProvider, Web3

from attest.providers import SimulatorProvider
from contracts import GovernanceClient
from mpc import G2, MemberIndex, Polynomial
from node.authz import Authorizer
from node.chainview import ChainWatcher, Committee, NodeRecord
from node.identity import NodeIdentity
from node.kms_service import KmsServicer
from node.metrics import NodeMetrics
from node.ratelimit import RateLimiter
from node.ratls import make_node_certificate
from protos.tkms.v1 import kms_pb2_grpc

BASELINE_EPOCH = 1


async def serve(rpc: str, governance: str, port: int) -> None:
    w3 = Web3(HTTPProvider(rpc, request_kwargs={"timeout": 10}))
    client = GovernanceClient(w3, governance)
    watcher = ChainWatcher(client, poll_interval=0.5)
    secret = Polynomial.random(0, os.urandom)
    share = secret.share(MemberIndex(1))
    member = NodeRecord(
        address=bytes(20),
        kms_endpoint=f"127.0.0.1:{port}",
        peer_endpoint="",
        tls_key_hash=bytes(32),
        deal_public_key=b"",
    )
    committee = Committee(
        generation=1,
        epoch=BASELINE_EPOCH,
        threshold=1,
        members=(member,),
        public=secret.commitments(),
        pk2=G2.base_mul(secret.secret),
    )
    metrics = NodeMetrics()
    authorizer = Authorizer(
        view=lambda: watcher.view,
        approve=lambda info, block: client.is_app_allowed(info, block=block),
        max_head_age=60,
        limiter=RateLimiter(1e6, 2_000_000),
        metrics=metrics,
        accept_simulator=True,  # the baseline runs on the simulated testnet
    )
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    kms_pb2_grpc.add_KmsServicer_to_server(  # type: ignore[no-untyped-call]
        KmsServicer(
            authorizer=authorizer,
            shares=lambda generation: (committee, share),
            metrics=metrics,
            max_keys=16,
        ),
        server,
    )
    # TLS with an RA-TLS certificate, as a node's Kms port (and dstack's KMS) serves.
    identity = NodeIdentity.generate()
    cert_pem, key_pem = make_node_certificate(identity, SimulatorProvider())
    server.add_secure_port(f"127.0.0.1:{port}", grpc.ssl_server_credentials([(key_pem, cert_pem)]))
    await server.start()
    # The client reads its 1-member committee from this line: V_1 (G1), PK2 (G2) and the
    # TLS key hash its channel is pinned to.
    vk = committee.public.public_key.to_bytes().hex()
    pk2 = committee.pk2.to_bytes().hex()
    print(f"baseline-ready {vk} {pk2} {identity.tls_key_hash.hex()}", flush=True)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(watcher.run())
        tg.create_task(server.wait_for_termination())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testnet.baseline", description=__doc__)
    parser.add_argument("--rpc", required=True)
    parser.add_argument("--governance", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.rpc, args.governance, args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
