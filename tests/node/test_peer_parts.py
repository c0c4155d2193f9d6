"""Unit tests of the peer service's parts: trust bundle fetcher, chain roster, interceptor."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from structlog.testing import capture_logs
from web3.exceptions import Web3Exception

from node.peer_service import (
    EpochRoster,
    PeerAuthInterceptor,
    PeerGate,
    chain_roster,
)
from node.ratls import TrustBundle, Trusted
from tests.node.test_ratls import attested_node

A = "0x" + "aa" * 20
B = "0x" + "bb" * 20


def test_bundle_hands_grpc_a_new_configuration_only_after_a_change() -> None:
    me, peer = attested_node(), attested_node()
    bundle = TrustBundle((me.cert_pem, me.key_pem))
    assert bundle.configuration() is not None
    assert bundle.fetch() is None  # grpc keeps what it has
    entry = Trusted(peer.address, "127.0.0.1:9", peer.registered_key_hash, peer.cert_pem)
    assert bundle.replace({peer.address: entry}) is True
    assert bundle.fetch() is not None
    assert bundle.fetch() is None
    assert bundle.replace({peer.address: entry}) is False  # same set: no new configuration
    assert bundle.fetch() is None
    assert bundle.trusted() == {peer.address: entry}


@dataclass
class Info:
    members: tuple[str, ...]
    dealers: tuple[str, ...]


class FakeGovernance:
    """`get_epoch` of an in-process chain: epoch 3 exists; epoch 4 is not proposed yet."""

    def __init__(self) -> None:
        self.reads: list[int] = []
        self.down = False

    def get_epoch(self, epoch: int) -> Info:
        self.reads.append(epoch)
        if self.down:
            raise Web3Exception("connection refused")
        return Info((A, B), (B,)) if epoch == 3 else Info((), ())


def test_chain_roster_reads_once_and_skips_unknown_epochs() -> None:
    chain = FakeGovernance()
    roster = chain_roster(chain)  # type: ignore[arg-type]
    expected = EpochRoster(
        3,
        dealers=(bytes.fromhex("bb" * 20),),
        members=(bytes.fromhex("aa" * 20), bytes.fromhex("bb" * 20)),
    )
    assert roster(3) == expected
    assert roster(3) == expected
    assert chain.reads == [3]
    assert roster(4) is None and roster(4) is None
    assert chain.reads == [3, 4, 4]  # not cached: it may be proposed any moment
    assert roster(0) is None and chain.reads == [3, 4, 4]


def test_chain_roster_treats_an_rpc_error_as_unknown() -> None:
    chain = FakeGovernance()
    chain.down = True
    roster = chain_roster(chain)  # type: ignore[arg-type]
    assert roster(3) is None
    chain.down = False
    assert roster(3) is not None


@pytest.mark.parametrize("epoch", [-1, 0])
def test_chain_roster_never_asks_about_impossible_epochs(epoch: int) -> None:
    chain = FakeGovernance()
    assert chain_roster(chain)(epoch) is None  # type: ignore[arg-type]
    assert chain.reads == []


class Aborted(Exception):
    pass


class FakeContext:
    """The two things the interceptor's refusal uses of a grpc.aio servicer context."""

    code: grpc.StatusCode | None = None
    details = ""

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.code, self.details = code, details
        raise Aborted


def test_interceptor_refuses_any_streaming_method() -> None:
    async def test() -> None:
        gate = PeerGate(view=lambda: None, verifier=None, roster=lambda e: None)  # type: ignore[arg-type]
        interceptor = PeerAuthInterceptor(gate)

        async def continuation(details: object) -> grpc.RpcMethodHandler[Any, Any]:
            return grpc.unary_stream_rpc_method_handler(lambda request, context: iter(()))

        details: Any = SimpleNamespace(method="/tkms.v1.Peer/Watch", invocation_metadata=())
        handler = await interceptor.intercept_service(continuation, details)
        assert handler is not None and handler.unary_stream is None
        context = FakeContext()
        behavior: Any = handler.unary_unary
        with capture_logs() as logs, pytest.raises(Aborted):
            await behavior(b"", context)
        assert context.code == grpc.StatusCode.UNAUTHENTICATED
        assert "no rule for streaming method /tkms.v1.Peer/Watch" in context.details
        assert [e["event"] for e in logs] == ["peer_refused"]

    asyncio.run(test())
