"""Member probes (`node.liveness`) against real gRPC health servers on 127.0.0.1 over TLS
pinned to the member's registered key, and the counting rule with a clock the test sets."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from structlog.testing import capture_logs

from attest.providers import SimulatorProvider
from node.identity import NodeIdentity
from node.liveness import SELF_SERVICE, Liveness
from node.ratls import make_node_certificate

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass(frozen=True)
class Record:
    address: bytes
    kms_endpoint: str
    tls_key_hash: bytes


@dataclass
class Member:
    record: Record
    server: grpc.aio.Server
    servicer: health.aio.HealthServicer


@contextlib.asynccontextmanager
async def member(status: int = SERVING) -> AsyncIterator[Member]:
    """A node's public port as far as probes see it: TLS with its certificate, gRPC health."""
    identity = NodeIdentity.generate()
    cert, key = make_node_certificate(identity, SimulatorProvider())
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key, cert)]))
    await server.start()
    await servicer.set(SELF_SERVICE, status)
    record = Record(identity.eth_address, f"127.0.0.1:{port}", identity.tls_key_hash)
    try:
        yield Member(record, server, servicer)
    finally:
        await server.stop(None)


def test_probes_count_serving_members_and_drop_refusing_ones_at_once() -> None:
    me = NodeIdentity.generate().eth_address

    async def go() -> None:
        async with member() as a, member() as b, member(NOT_SERVING) as c:
            records = [a.record, b.record, c.record]
            live = Liveness(lambda: records, me=me, timeout=1.0)
            ep = {id(m): m.record.kms_endpoint for m in (a, b, c)}

            async def round_logs() -> set[tuple[str, str]]:
                with capture_logs() as logs:
                    await live.probe_all()
                return {(e["event"], e["endpoint"]) for e in logs}

            assert await round_logs() == {
                ("member_reachable", ep[id(a)]),
                ("member_reachable", ep[id(b)]),
                ("member_unreachable", ep[id(c)]),
            }
            assert live.answering() == 2  # c answers, but cannot serve on its own
            await b.servicer.set(SELF_SERVICE, NOT_SERVING)
            assert await round_logs() == {("member_unreachable", ep[id(b)])}
            assert live.answering() == 1
            await a.server.stop(None)  # a killed member: refused at the next probe
            assert await round_logs() == {("member_unreachable", ep[id(a)])}
            assert live.answering() == 0
            await b.servicer.set(SELF_SERVICE, SERVING)
            assert await round_logs() == {("member_reachable", ep[id(b)])}
            assert live.answering() == 1
            assert await round_logs() == set()  # no change: nothing logged

    asyncio.run(go())


def test_an_endpoint_without_the_registered_key_does_not_count() -> None:
    """Someone else at the member's address (or a stale registration) is not the member."""

    async def go() -> None:
        async with member() as impostor:
            record = Record(b"\x07" * 20, impostor.record.kms_endpoint, b"\x01" * 32)
            live = Liveness(lambda: [record], me=b"\x00" * 20)
            with capture_logs() as logs:
                await live.probe_all()
            assert live.answering() == 0
            assert "registered key" in logs[0]["reason"]

    asyncio.run(go())


def test_a_silent_member_counts_until_the_window_runs_out() -> None:
    """A listener that accepts and never answers (a stopped process): each probe gives up
    after `timeout`; the member, last seen at t=0, stops counting once `window` has passed."""
    now = [0.0]
    silent = socket.create_server(("127.0.0.1", 0))
    try:
        port = silent.getsockname()[1]
        record = Record(b"\x05" * 20, f"127.0.0.1:{port}", b"\x02" * 32)
        live = Liveness(
            lambda: [record], me=b"\x00" * 20, timeout=0.2, window=3.0, clock=lambda: now[0]
        )
        live.record(record, True)
        now[0] = 2.0
        assert live.answering() == 1
        live.record(record, False, reason="no answer within 0.2 s")  # a timeout: not a refusal
        assert live.answering() == 1
        now[0] = 3.5
        assert live.answering() == 0

        async def probe() -> float:
            loop = asyncio.get_running_loop()
            began = loop.time()
            await live.probe_all()
            return loop.time() - began

        took = asyncio.run(probe())
        assert took < 1.0, took  # bounded by the probe's timeout, not by TCP's
        assert live.answering() == 0
    finally:
        silent.close()


def test_self_and_members_that_left_the_committee_are_not_probed() -> None:
    async def go() -> None:
        async with member() as a, member() as b:
            records = [a.record, b.record]
            live = Liveness(lambda: records, me=a.record.address)
            await live.probe_all()
            assert live.answering() == 1
            records.pop()
            await live.probe_all()
            assert live.answering() == 0

    asyncio.run(go())
