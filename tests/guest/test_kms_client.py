"""The KMS client's fan-out over real gRPC servers on 127.0.0.1 (nodes faked in process).

Each fake node holds a dealt share and answers DerivePartial with real partials over TLS
with its own certificate, whose key hash the committee lists as registered (the client pins
it); some are made to fail transiently, lie, or stay down, to check what the client
retries, rejects and names.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import time
from dataclasses import dataclass

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from attest import spki_hash
from guest.kms_client import (
    AppKeyRequest,
    Committee,
    DerivationError,
    DerivationResult,
    HedgeDelay,
    KmsClient,
    Member,
)
from mpc import G1, Epoch, Generation, KeyRequest, MemberIndex, NetworkContext, derive_partial
from mpc.tsig import app_pubkey_statement, sign_partial, verify_signature
from protos.tkms.v1 import kms_pb2, kms_pb2_grpc
from tests.mpc.dealer import DealtKeys, deal
from tests.node.test_ratls import self_signed

NET = NetworkContext(chain_id=1, contract=b"\x01" * 20, generation=Generation(1), epoch=Epoch(1))
APP = b"\xaa" * 20


class FakeNode(kms_pb2_grpc.KmsServicer):
    def __init__(
        self,
        keys: DealtKeys,
        index: int,
        *,
        fail_first: int = 0,
        lie: bool = False,
        lie_on: bytes | None = None,
        sign_lie: str | None = None,
        delay: float = 0.0,
        silent: bool = False,
        refuse_on: bytes | None = None,
    ) -> None:
        self.share = keys.shares[index - 1]
        self.refuse_on = refuse_on  # PERMISSION_DENIED for a request with a key of this purpose
        self.requests: list[list[bytes]] = []  # the purposes each DerivePartial carried
        self.fail_first = fail_first
        self.lie = lie
        self.lie_on = lie_on  # lie only for keys of this purpose
        self.sign_lie = sign_lie  # "statement": signs another key's; "proof": a bad share
        self.delay = delay  # seconds before answering SignPartial
        self.silent = silent  # never answers DerivePartial (a stopped process)
        self.calls = 0
        self.tls = TlsIdentity.generate()

    async def SignPartial(
        self,
        request: kms_pb2.SignPartialRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> kms_pb2.SignPartialResponse:
        self.calls += 1
        await asyncio.sleep(self.delay)
        key = b"\x02" + b"\x66" * 32 if self.sign_lie == "statement" else request.public_key
        statement = app_pubkey_statement(NET.chain_id, NET.contract, APP, key)
        p = sign_partial(self.share, statement, rng=os.urandom)
        sigma = p.sigma + G1.generator() if self.sign_lie == "proof" else p.sigma
        return kms_pb2.SignPartialResponse(
            statement=statement,
            member=p.member,
            sigma=sigma.to_bytes(),
            proof=p.proof.to_bytes(),
        )

    async def DerivePartial(
        self,
        request: kms_pb2.DerivePartialRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> kms_pb2.DerivePartialResponse:
        self.calls += 1
        if self.silent:
            await asyncio.Event().wait()
        if self.calls <= self.fail_first:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "warming up")
        self.requests.append([k.purpose for k in request.keys])
        if self.refuse_on is not None and self.refuse_on in self.requests[-1]:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "not this app's key")
        requester = G1.from_bytes(request.requester_key)
        out = []
        for k in request.keys:
            key = (
                KeyRequest.ibe_key(k.app_id)
                if k.kind == kms_pb2.KeyRequest.KIND_IBE
                else KeyRequest.app_key(k.app_id, k.purpose)
            )
            p = derive_partial(self.share, key, requester=requester, network=NET, rng=os.urandom)
            lie = self.lie or (self.lie_on is not None and k.purpose == self.lie_on)
            z = p.z + G1.generator() if lie else p.z
            out.append(
                kms_pb2.Partial(
                    generation=p.generation,
                    epoch=p.epoch,
                    member=p.member,
                    y=p.y.to_bytes(),
                    z=z.to_bytes(),
                    proof=p.proof.to_bytes(),
                )
            )
        return kms_pb2.DerivePartialResponse(partials=out)


@dataclass(frozen=True)
class TlsIdentity:
    """A fake node's TLS key and certificate (named like a node's); `key_hash` is the pin."""

    cert_pem: bytes
    key_pem: bytes
    key_hash: bytes

    @classmethod
    def generate(cls) -> TlsIdentity:
        key = ec.generate_private_key(ec.SECP256R1())
        cert_pem = self_signed(key)
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return cls(cert_pem, key_pem, spki_hash(x509.load_pem_x509_certificate(cert_pem)))

    def reissued(self) -> TlsIdentity:
        """A new certificate for the same key, as a restarted node makes."""
        key = serialization.load_pem_private_key(self.key_pem, password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return dataclasses.replace(self, cert_pem=self_signed(key))

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials([(self.key_pem, self.cert_pem)])


async def serve(
    servicer: kms_pb2_grpc.KmsServicer, tls: TlsIdentity | None, port: int = 0
) -> tuple[grpc.aio.Server, int]:
    """A Kms server on 127.0.0.1 (`tls` None: plaintext), started; (server, port)."""
    server = grpc.aio.server()
    kms_pb2_grpc.add_KmsServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    address = f"127.0.0.1:{port}"
    if tls is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, tls.credentials())
    await server.start()
    return server, port


async def start(nodes: list[FakeNode]) -> tuple[list[grpc.aio.Server], list[int]]:
    servers, ports = [], []
    for node in nodes:
        server, port = await serve(node, node.tls)
        servers.append(server)
        ports.append(port)
    return servers, ports


def committee(
    keys: DealtKeys, nodes: list[FakeNode], ports: list[int], down: int | None = None
) -> Committee:
    members = tuple(
        Member(
            index=i,
            endpoint=f"127.0.0.1:{ports[i - 1] if i != down else 1}",
            verification_key=keys.public.verification_key(MemberIndex(i)),
            tls_key_hash=nodes[i - 1].tls.key_hash,
        )
        for i in range(1, len(ports) + 1)
    )
    return Committee(
        network=NET, threshold=keys.threshold, members=members, group_key=keys.group_key_g2
    )


def no_evidence(report_data: bytes) -> tuple[bytes, str]:
    return b"quote", "[]"  # the fake nodes do not check evidence


@pytest.fixture
def keys() -> DealtKeys:
    return deal(4, 3, seed=5)


async def run_client(c: Committee, keys_: list[AppKeyRequest]) -> list[G1]:
    client = KmsClient(c, no_evidence, timeout=5)
    try:
        return (await client.derive(keys_)).sigmas
    finally:
        await client.close()


def test_transient_failures_are_retried_and_the_key_is_right(keys: DealtKeys) -> None:
    async def go() -> None:
        nodes = [FakeNode(keys, i, fail_first=2 if i == 1 else 0) for i in range(1, 5)]
        servers, ports = await start(nodes)
        try:
            only_three = Committee(
                network=NET,
                threshold=3,
                members=committee(keys, nodes, ports).members[:3],
                group_key=keys.group_key_g2,
            )
            sigma, ibe = await run_client(
                only_three, [AppKeyRequest(APP, b"disk"), AppKeyRequest(APP, ibe=True)]
            )
            assert sigma == KeyRequest.app_key(APP, b"disk").point() * keys.secret_poly.secret
            assert ibe == KeyRequest.ibe_key(APP).point() * keys.secret_poly.secret
            assert nodes[0].calls == 3  # two UNAVAILABLE answers, then success
        finally:
            for s in servers:
                await s.stop(None)

    asyncio.run(go())


def test_liars_and_dead_nodes_are_named(keys: DealtKeys) -> None:
    async def go() -> None:
        nodes = [FakeNode(keys, i, lie=(i == 2)) for i in range(1, 5)]
        servers, ports = await start(nodes)
        try:
            c = committee(keys, nodes, ports, down=4)
            with pytest.raises(
                DerivationError,
                match=r"only 2 of 3 needed partials: node-2 \(127.0.0.1:\d+\) proof invalid"
                r".*node-4 \(127.0.0.1:1\) unavailable",
            ) as err:
                await run_client(c, [AppKeyRequest(APP, b"disk")])
            assert set(err.value.failures) == {2, 4}
            assert nodes[1].calls == 1  # a liar is not asked again
        finally:
            for s in servers:
                await s.stop(None)

    asyncio.run(go())


def test_any_t_honest_members_suffice_with_n_minus_t_down(keys: DealtKeys) -> None:
    async def go() -> None:
        nodes = [FakeNode(keys, i) for i in range(1, 5)]
        servers, ports = await start(nodes)
        try:
            c = committee(keys, nodes, ports, down=2)
            (sigma,) = await run_client(c, [AppKeyRequest(APP, b"x")])
            assert sigma == KeyRequest.app_key(APP, b"x").point() * keys.secret_poly.secret
        finally:
            for s in servers:
                await s.stop(None)

    asyncio.run(go())


def test_hedged_client_asks_t_members_and_brings_in_others_on_failure(keys: DealtKeys) -> None:
    async def go() -> None:
        nodes = [FakeNode(keys, i, lie=(i == 2)) for i in range(1, 5)]
        servers, ports = await start(nodes)
        try:
            client = KmsClient(
                committee(keys, nodes, ports), no_evidence, timeout=5, hedge_delay=5.0
            )
            try:
                (sigma,) = (await client.derive([AppKeyRequest(APP, b"h")])).sigmas
            finally:
                await client.close()
            assert sigma == KeyRequest.app_key(APP, b"h").point() * keys.secret_poly.secret
            # Members 1-3 asked first; the liar (2) brought in member 4 at once, not after 5 s.
            assert [n.calls for n in nodes] == [1, 1, 1, 1]
        finally:
            for s in servers:
                await s.stop(None)

    started = time.monotonic()
    asyncio.run(go())
    assert time.monotonic() - started < 4.0


def test_hedged_client_leaves_idle_members_alone(keys: DealtKeys) -> None:
    async def go() -> None:
        nodes = [FakeNode(keys, i) for i in range(1, 5)]
        servers, ports = await start(nodes)
        try:
            client = KmsClient(
                committee(keys, nodes, ports), no_evidence, timeout=5, hedge_delay=5.0
            )
            try:
                await client.derive([AppKeyRequest(APP, b"h")])
            finally:
                await client.close()
            assert sum(n.calls for n in nodes) == 3
        finally:
            for s in servers:
                await s.stop(None)

    asyncio.run(go())


def test_concurrent_derivations_share_a_pairing_check_and_a_liar_spoils_only_its_own(
    keys: DealtKeys,
) -> None:
    async def go() -> None:
        nodes = [FakeNode(keys, i, lie_on=b"bad" if i == 2 else None) for i in range(1, 5)]
        servers, ports = await start(nodes)
        try:
            client = KmsClient(
                committee(keys, nodes, ports), no_evidence, timeout=5, hedge_delay=5.0
            )
            # Derivations that overlap ask the same members first: 1-3.
            purposes = [b"bad", b"a", b"b", b"c", b"d", b"e"]
            try:
                results = await asyncio.gather(
                    *(client.derive([AppKeyRequest(APP, p)]) for p in purposes)
                )
            finally:
                await client.close()
            secret = keys.secret_poly.secret
            for purpose, result in zip(purposes, results, strict=True):
                assert result.sigmas == [KeyRequest.app_key(APP, purpose).point() * secret]
            # Member 2 lied about "bad": named, its answer unused, member 4 asked instead.
            assert results[0].answered == [1, 3, 4]
            assert list(results[0].failures) == [2]
            assert results[0].failures[2].startswith("proof invalid: partial from member 2")
            assert all(r.failures == {} for r in results[1:])
            # Members 1-3 got the six derivations' keys in one request each; member 4 only
            # the key member 2 lied about.
            assert [n.requests for n in nodes[:3]] == [[purposes]] * 3
            assert nodes[3].requests == [[b"bad"]]
        finally:
            for s in servers:
                await s.stop(None)

    asyncio.run(go())


def test_concurrent_derivations_share_requests_and_a_refused_one_fails_alone(
    keys: DealtKeys,
) -> None:
    """Twelve derivations at once: each member gets their keys in one request, not twelve;
    the one key all members refuse fails its own derivation, with every member named, and
    no other."""

    async def go() -> None:
        nodes = [FakeNode(keys, i, refuse_on=b"refused") for i in range(1, 5)]
        servers, ports = await start(nodes)
        try:
            client = KmsClient(
                committee(keys, nodes, ports), no_evidence, timeout=5, hedge_delay=5.0
            )
            purposes = [f"k{i}".encode() for i in range(11)] + [b"refused"]
            try:
                results = await asyncio.gather(
                    *(client.derive([AppKeyRequest(APP, p)]) for p in purposes),
                    return_exceptions=True,
                )
            finally:
                await client.close()
            secret = keys.secret_poly.secret
            for purpose, result in zip(purposes[:-1], results, strict=False):
                assert isinstance(result, DerivationResult)
                assert result.sigmas == [KeyRequest.app_key(APP, purpose).point() * secret]
                assert result.failures == {}
            refused = results[-1]
            assert isinstance(refused, DerivationError)
            assert set(refused.failures) == {1, 2, 3, 4}
            assert all("permission_denied" in why for why in refused.failures.values())
            # Members 1-3 got all twelve keys in one request; it was refused, so each
            # derivation was asked again alone.
            for node in nodes[:3]:
                assert node.requests[0] == purposes
                assert sorted(node.requests[1:]) == sorted([p] for p in purposes)
            assert nodes[3].requests == [[b"refused"]]  # the hedge, for the refused one only
        finally:
            for s in servers:
                await s.stop(None)

    asyncio.run(go())


def test_a_member_that_is_down_is_retried_every_two_seconds_at_most() -> None:
    """gRPC's default reconnect backoff grows 1.6x per failure up to 120 s, so a long-lived
    client (the guest agent) would leave a restarted node unused for minutes. The client's
    channels retry at least every 2 s (+20 % jitter): counted here as connection attempts on
    a listener that closes every connection at once (a node that is not serving yet)."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from guest.kms_channel import secure_channel

    attempts: list[float] = []

    async def scenario() -> None:
        async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            attempts.append(time.monotonic())
            writer.close()

        listener = await asyncio.start_server(refuse, "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        channel = secure_channel(f"127.0.0.1:{port}", TlsIdentity.generate().cert_pem)
        stub = health_pb2_grpc.HealthStub(channel)
        until = time.monotonic() + 11  # the default backoff: attempts at 0, 1, 2.6, 5.2, 9.3 s
        try:
            while time.monotonic() < until:
                with pytest.raises(grpc.aio.AioRpcError):
                    await stub.Check(health_pb2.HealthCheckRequest(), timeout=0.3)
                await asyncio.sleep(0.1)
        finally:
            await channel.close()
            listener.close()

    asyncio.run(scenario())
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert len(attempts) >= 6, attempts
    assert max(gaps) < 2.0 * 1.2 + 0.5, gaps


@pytest.mark.parametrize("lie", ["statement", "proof"])
def test_a_member_signing_another_statement_is_named_and_replaced(
    keys: DealtKeys, lie: str
) -> None:
    """3-of-4, member 1 (the first to answer) signs another key's statement, or sends a
    share that fails its proof: the signature still comes from members 2-4 and member 1 is
    named, as a wrong derivation partial is (it used to fail every start)."""

    async def go() -> None:
        nodes = [
            FakeNode(keys, i, sign_lie=lie if i == 1 else None, delay=0 if i == 1 else 0.3)
            for i in range(1, 5)
        ]
        servers, ports = await start(nodes)
        key = b"\x02" + b"\x11" * 32
        expected = app_pubkey_statement(NET.chain_id, NET.contract, APP, key)
        client = KmsClient(committee(keys, nodes, ports), no_evidence, timeout=5)
        try:
            signed = await client.sign_public_key(key, expected)
        finally:
            await client.close()
            for s in servers:
                await s.stop(None)
        assert signed.statement == expected
        assert verify_signature(keys.group_key_g2, expected, signed.signature)
        assert signed.signers == (2, 3, 4)
        assert list(signed.failures) == [1]
        why = "signed another statement" if lie == "statement" else "proof does not verify"
        assert why in signed.failures[1]

    asyncio.run(go())


def test_signing_fails_with_every_liar_named_when_fewer_than_t_are_honest(
    keys: DealtKeys,
) -> None:
    async def go() -> None:
        lies = {1: "statement", 3: "proof"}
        nodes = [FakeNode(keys, i, sign_lie=lies.get(i)) for i in range(1, 5)]
        servers, ports = await start(nodes)
        key = b"\x02" + b"\x12" * 32
        expected = app_pubkey_statement(NET.chain_id, NET.contract, APP, key)
        client = KmsClient(committee(keys, nodes, ports), no_evidence, timeout=5)
        try:
            with pytest.raises(DerivationError, match="only 2 of 3 needed partials") as err:
                await client.sign_public_key(key, expected)
        finally:
            await client.close()
            for s in servers:
                await s.stop(None)
        assert set(err.value.failures) == {1, 3}
        assert "node-1 (127.0.0.1:" in str(err.value)

    asyncio.run(go())


def test_the_hedge_delay_is_twice_the_typical_answer_within_its_bounds() -> None:
    delay = HedgeDelay(initial=0.1, floor=0.05, ceiling=0.3)
    assert delay.current() == 0.1  # no answer seen yet
    for seconds in (0.01, 0.012, 0.5, 0.011, 0.009):
        delay.observe(seconds)
    assert delay.current() == 0.05  # 2 x 11 ms is under the floor; one outlier moves nothing
    for _ in range(10):
        delay.observe(0.08)
    assert delay.current() == pytest.approx(0.16)
    for _ in range(20):
        delay.observe(1.0)
    assert delay.current() == 0.3
    with pytest.raises(ValueError, match="floor <= initial <= ceiling"):
        HedgeDelay(initial=0.5, floor=0.05, ceiling=0.3)


def test_by_default_a_silent_member_costs_one_hedge_delay_not_the_timeout(
    keys: DealtKeys,
) -> None:
    """Member 1 takes the request and never answers, its connection open (a stopped process).
    The default client asks t members, brings in one more after the hedge delay, and asks the
    silent member last afterwards: the 5 s timeout is never waited for, and a healthy network
    does t members' work per request."""

    async def go() -> list[float]:
        nodes = [FakeNode(keys, i, silent=(i == 1)) for i in range(1, 5)]
        servers, ports = await start(nodes)
        took = []
        try:
            client = KmsClient(committee(keys, nodes, ports), no_evidence, timeout=5)
            try:
                for n in range(8):
                    began = time.monotonic()
                    result = await client.derive([AppKeyRequest(APP, b"k%d" % n)])
                    took.append(time.monotonic() - began)
                    assert 1 not in result.answered
            finally:
                await client.close()
            # asked in the first request, then last (at most once more, should a busy
            # machine make an answer slower than the delay)
            assert nodes[0].calls <= 2
            assert sum(n.calls for n in nodes[1:]) == 8 * 3
        finally:
            for s in servers:
                await s.stop(None)
        return took

    took = asyncio.run(go())
    print("derivations with a silent member (s):", [round(t, 3) for t in took])
    assert took[0] < 1.0 and max(took[1:]) < 0.5, took
