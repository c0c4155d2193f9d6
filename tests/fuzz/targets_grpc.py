"""Fuzz targets for every method of the node's gRPC services: Kms, Peer, Admin.

Each case is (method, request bytes): a hypothesis-built or randomly filled request, often
edited as bytes, or plain random bytes, fed through the method's deserializer into the real
servicer (`tests.fuzz.grpc_harness`). Documented answers: the response type, or a status
such as INVALID_ARGUMENT, PERMISSION_DENIED, UNAUTHENTICATED, RESOURCE_EXHAUSTED, UNAVAILABLE
with a message. INTERNAL (the edge's catch-all) is a finding.

* Kms: the real `KmsServicer` with the real `Authorizer` (simulator evidence verified in full,
  an in-process chain view and approval function), a real key share, a real rate limiter.
  Pools hold valid evidence and keys so that many requests pass authorization and derive.
* Peer: the real `PeerAuthInterceptor`/`PeerGate`/`PeerVerifier` in front of the real
  `PeerServicer`, whose status comes from a real `EpochManager` over a real sqlite journal;
  callers present no certificate, garbage, or a genuine attested node certificate.
* Admin: the real `AdminServicer` (its requests have no fields; unknown fields and garbage
  must be ignored or refused by the deserializer).
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import grpc
from google.protobuf.message import Message
from hypothesis import strategies as st

from attest import BindingLabel, default_policy
from contracts import AuthDecision
from mpc import G1, G2, MemberIndex, Polynomial
from mpc.k256 import public_key
from node.admin_service import AdminServicer, NodeStatus
from node.authz import Authorizer
from node.chainview import ChainView, Committee, NodeRecord
from node.daemon import Node
from node.epochs import EpochManager
from node.identity import NodeIdentity
from node.journal import Journal
from node.kms_root import KmsRoot, KmsRoots
from node.kms_service import KmsServicer
from node.metrics import NodeMetrics
from node.peer_service import (
    EpochRoster,
    PeerAuthInterceptor,
    PeerGate,
    PeerServicer,
)
from node.ratelimit import RateLimiter
from node.ratls import PeerVerifier
from node.sealing import FileSealer
from node.shares import ShareStore
from protos.tkms.v1 import admin_pb2, common_pb2, kms_pb2, peer_pb2
from tests.fuzz.grpc_harness import Caller, FuzzContext, Handler, Method, captured_logs, methods_of
from tests.fuzz.messages import (
    Pools,
    edited_wire,
    message_strategy,
    perturbed_seed,
    random_message,
)
from tests.fuzz.mutate import seeded
from tests.fuzz.runner import Prepared, Target

APP = b"\xab" * 20
OTHER_APP = b"\xcd" * 20
Case = tuple[str, bytes, int]
"""(method name, request bytes, caller seed): the seed picks the caller's certificate."""


def _describe(case: Case) -> str:
    return f"{case[0]} {case[1].hex()} caller={case[2]}"


def _cases(methods: list[Method], pools: Pools) -> tuple[Any, Any]:
    """(fast, rich) strategies of (method name, request bytes)."""

    def fast(rng: random.Random) -> Case:
        return (*_request(rng), rng.randrange(2**32))

    def _request(rng: random.Random) -> tuple[str, bytes]:
        method = rng.choice(methods)
        roll = rng.random()
        if roll < 0.1:
            return method.name, rng.randbytes(rng.randint(0, 300))
        seeds = pools.seeds.get(method.name)
        if seeds and roll < 0.5:
            msg = rng.choice(seeds)
            if rng.random() < 0.85:
                msg = perturbed_seed(rng, msg, pools)
            return method.name, edited_wire(rng, msg)
        return method.name, edited_wire(rng, random_message(rng, method.request, pools))

    def serialized(name: str) -> Callable[[Message], tuple[str, bytes]]:
        return lambda msg: (name, msg.SerializeToString())

    requests = st.one_of(
        *(message_strategy(m.request, pools).map(serialized(m.name)) for m in methods),
        st.tuples(st.sampled_from([m.name for m in methods]), st.binary(max_size=400)),
    )
    rich = st.tuples(requests, st.integers(0, 2**32 - 1)).map(lambda p: (*p[0], p[1]))
    return seeded(fast), rich


def _prepared(
    methods: list[Method],
    handlers: dict[str, Handler],
    pools: Pools,
    context: Callable[[int], FuzzContext],
    cleanup: Callable[[], None] = lambda: None,
) -> Prepared:
    logs = captured_logs()
    capture = logs.__enter__()
    caller = Caller(capture)
    by_name = {m.name: m for m in methods}
    fast, rich = _cases(methods, pools)

    def close() -> None:
        caller.close()
        logs.__exit__(None, None, None)
        cleanup()

    return Prepared(
        strategy=fast,
        rich=rich,
        check=lambda case: caller.call(
            by_name[case[0]], handlers[case[0]], case[1], context(case[2])
        ),
        allowed=(),
        describe=_describe,
        close=close,
        outcomes=caller.summary,
    )


# -- Kms -------------------------------------------------------------------------------------


def _committee(secret: Polynomial) -> Committee:
    members = tuple(
        NodeRecord(
            address=bytes([k]) * 20,
            kms_endpoint=f"127.0.0.1:{k}",
            peer_endpoint="",
            tls_key_hash=bytes(32),
            deal_public_key=b"",
        )
        for k in (1, 2, 3)
    )
    return Committee(
        generation=1,
        epoch=1,
        threshold=2,
        members=members,
        public=secret.commitments(),
        pk2=G2.base_mul(secret.secret),
    )


def _kms() -> Prepared:
    from tests.node.test_authz import NETWORK, app_evidence

    secret = Polynomial.random(1, random.Random(7).randbytes)
    share = secret.share(MemberIndex(1))
    committee = _committee(secret)

    def view() -> ChainView:
        return ChainView(
            chain_id=31337,
            governance=b"\x42" * 20,
            head=100 + int(time.time()) // 2,
            head_timestamp=int(time.time()),
            latest_generation=1,
            committees={1: committee},
            running_epoch=0,
            nodes={},
            simulator_allowed=True,
            fingerprint=NETWORK,
        )

    def approve(info: Any, block: int) -> AuthDecision:
        if info.app_id.lower() == "0x" + APP.hex():
            return AuthDecision(True, "")
        return AuthDecision(False, "app not registered")

    metrics = NodeMetrics()
    authorizer = Authorizer(
        view=view,
        approve=approve,
        max_head_age=60,
        limiter=RateLimiter(5000, 5000),
        metrics=metrics,
        accept_simulator=True,
    )
    root = KmsRoot(generation=1, public=public_key(b"\x31" * 32), secret=b"\x31" * 32)

    async def roots(generation: int) -> KmsRoot:
        return root

    servicer = KmsServicer(
        authorizer=authorizer,
        shares=lambda generation: (committee, share) if generation in (0, 1) else None,
        metrics=metrics,
        max_keys=16,
        env_policy=lambda app_id, block: (b"\x0e" * 20, 1),
        roots=roots,
    )
    requester = G1.base_mul(777).to_bytes()
    signed_key = b"\x04" + b"\x55" * 64
    app_key = public_key(b"\x32" * 32)
    kdf = app_evidence(requester, BindingLabel.KDF_V1)
    sign = app_evidence(signed_key, BindingLabel.SIGN_V1)
    other = app_evidence(requester, BindingLabel.KDF_V1, app_id=OTHER_APP)
    app_sign = app_evidence(app_key, BindingLabel.SIGN_V1)
    evidences = [
        common_pb2.Evidence(quote=e.quote, event_log=e.event_log)
        for e in (kdf, sign, other, app_sign)
    ]
    keys = [
        kms_pb2.KeyRequest(app_id=APP, kind=kms_pb2.KeyRequest.KIND_KDF, purpose=b"disk"),
        kms_pb2.KeyRequest(app_id=APP, kind=kms_pb2.KeyRequest.KIND_IBE),
        kms_pb2.KeyRequest(app_id=OTHER_APP, kind=kms_pb2.KeyRequest.KIND_KDF),
    ]
    pools = Pools(
        {
            "evidence": list(evidences),
            "keys": list(keys),
            "requester_key": [requester, G1.base_mul(778).to_bytes(), bytes([0xC0]) + bytes(47)],
            "public_key": [signed_key, app_key, root.public],
            "app_id": [APP, OTHER_APP],
            "quote": [e.quote for e in evidences],
            "event_log": [e.event_log for e in evidences],
            "generation": [0, 1, 2],
            "kind": [0, 1, 2, 3, 4],
        },
        seeds={
            "GetMeta": [kms_pb2.GetMetaRequest()],
            "DerivePartial": [
                kms_pb2.DerivePartialRequest(
                    evidence=evidences[0], requester_key=requester, keys=keys[:1]
                ),
                kms_pb2.DerivePartialRequest(
                    evidence=evidences[0], requester_key=requester, keys=keys[:2], generation=1
                ),
            ],
            "SignPartial": [
                kms_pb2.SignPartialRequest(evidence=evidences[1], public_key=signed_key),
                kms_pb2.SignPartialRequest(
                    kind=kms_pb2.SignPartialRequest.KIND_KMS_ROOT, generation=1
                ),
            ],
            "SignAppKey": [kms_pb2.SignAppKeyRequest(evidence=evidences[3], public_key=app_key)],
        },
    )
    methods = methods_of(kms_pb2.DESCRIPTOR, "Kms")
    handlers = {m.name: cast(Handler, getattr(servicer, m.name)) for m in methods}
    return _prepared(methods, handlers, pools, lambda caller: FuzzContext())


# -- Peer ------------------------------------------------------------------------------------


def _peer() -> Prepared:
    from tests.node.test_ratls import (
        AllowList,
        attested_node,
        make_view,
        mr_aggregated_of,
        self_signed,
    )

    node, stranger = attested_node(), attested_node()
    view = make_view({node.address: node.record()})
    verifier = PeerVerifier(
        policy=default_policy(),
        kms_allowed=AllowList(mr_aggregated_of(node.cert_pem)),
        accept_simulator=True,
    )
    epoch = 5
    receiver = NodeIdentity.generate()  # the node under test; `node` calls it
    me = receiver.eth_address
    roster = EpochRoster(
        epoch=epoch, dealers=(node.address, me, b"\x01" * 20), members=(me, node.address)
    )
    data_dir = Path(tempfile.mkdtemp(prefix="tkms-fuzz-peer-"))
    sealer = FileSealer.open(data_dir, create=True)
    journal = Journal.open(data_dir / "journal.sqlite3", sealer)
    journal.begin_epoch(epoch, bytes(32), "DKG", 1)  # as the driver does when it opens one
    watcher = SimpleNamespace(view=view)
    manager = EpochManager(
        identity=receiver,
        client=cast(Any, None),  # status never reaches the chain
        watcher=cast(Any, watcher),
        journal=journal,
        shares=ShareStore(data_dir / "shares", sealer),
        metrics=NodeMetrics(),
    )
    info = SimpleNamespace(epoch=epoch, dealers=tuple("0x" + a.hex() for a in roster.dealers))
    # The running epoch as the driver would have opened it: we are member 1, dealer 2.
    manager._run = cast(
        Any,
        SimpleNamespace(
            board=SimpleNamespace(info=info),
            epoch=epoch,
            member=1,
            dealer=2,
            info=info,
            stage=SimpleNamespace(name="DEAL"),
            judge=SimpleNamespace(opened=(1, 3)),
        ),
    )
    daemon = SimpleNamespace(epochs=manager, journal=journal)

    async def no_fetch(*args: Any) -> kms_pb2.Partial:
        raise AssertionError("serving a partial never asks peers")

    roots = KmsRoots(shares=manager.share_for, view=lambda: view, fetch=no_fetch)
    servicer = PeerServicer(
        epoch_status=lambda e: Node._epoch_status(cast(Any, daemon), e),
        root_partial=roots.partial_for,
    )
    gate = PeerGate(
        view=lambda: view, verifier=verifier, roster=lambda e: roster if e == epoch else None
    )
    interceptor = PeerAuthInterceptor(gate)
    methods = methods_of(peer_pb2.DESCRIPTOR, "Peer")
    loop_handlers: dict[str, Handler] = {}
    for m in methods:
        inner: Any = grpc.unary_unary_rpc_method_handler(getattr(servicer, m.name))

        async def continuation(details: Any, inner: Any = inner) -> Any:
            return inner

        wrapped = _intercepted(interceptor, continuation, m.path)
        loop_handlers[m.name] = wrapped
    certs: list[list[bytes]] = [
        [node.cert_pem],
        [node.cert_pem],
        [stranger.cert_pem],
        [],
        [b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"],
        [self_signed(node.identity.tls_key)],
    ]

    def context(caller: int) -> FuzzContext:
        rng = random.Random(caller)
        chosen = rng.choice(certs)
        if chosen and rng.random() < 0.1:
            raw = bytearray(chosen[0])
            raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
            chosen = [bytes(raw)]
        return FuzzContext({"x509_pem_cert": chosen} if chosen else {})

    pools = Pools(
        {
            "epoch": [epoch, epoch, 4, 6, 0],
            "generation": [0, 1, 2],
            "requester_key": [G1.base_mul(5).to_bytes(), bytes(48)],
        },
        seeds={
            "EpochStatus": [peer_pb2.EpochStatusRequest(epoch=epoch)],
            "KmsRootPartial": [
                peer_pb2.KmsRootPartialRequest(
                    generation=1, epoch=epoch, requester_key=G1.base_mul(5).to_bytes()
                )
            ],
        },
    )

    def cleanup() -> None:
        journal.close()
        shutil.rmtree(data_dir, ignore_errors=True)

    return _prepared(methods, loop_handlers, pools, context, cleanup)


def _intercepted(interceptor: PeerAuthInterceptor, continuation: Any, path: str) -> Handler:
    """The handler grpc would run for `path`: the interceptor's wrapper around the servicer."""
    resolved: list[Any] = []

    async def handler(request: Any, context: FuzzContext) -> Any:
        if not resolved:
            details = SimpleNamespace(method=path, invocation_metadata=())
            resolved.append(await interceptor.intercept_service(continuation, cast(Any, details)))
        return await resolved[0].unary_unary(request, context)

    return handler


# -- Admin -----------------------------------------------------------------------------------


def _admin() -> Prepared:
    drained: list[bool] = []

    async def reattest() -> bytes:
        return b"\x11" * 32

    async def drain() -> None:
        drained.append(True)

    status = NodeStatus(
        health="NORMAL",
        chain_head=100,
        chain_head_age_seconds=2,
        generation=1,
        epoch=1,
        my_index=1,
        peers_reachable=2,
        epoch_phase="",
    )
    servicer = AdminServicer(status=lambda: status, reattest=reattest, drain=drain)
    methods = methods_of(admin_pb2.DESCRIPTOR, "Admin")
    handlers = {m.name: cast(Handler, getattr(servicer, m.name)) for m in methods}
    return _prepared(methods, handlers, Pools(), lambda caller: FuzzContext())


TARGETS = (
    Target("grpc-kms", "node Kms servicer: GetMeta, DerivePartial, SignPartial", _kms),
    Target("grpc-peer", "node Peer interceptor + servicer: EpochStatus", _peer),
    Target("grpc-admin", "node Admin servicer: Status, Reattest, Drain", _admin),
)
