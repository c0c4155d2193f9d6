"""The public `Kms` gRPC service: GetMeta, DerivePartial, SignPartial, SignAppKey (design §6.2).

SignPartial signs four kinds of statement, each only when it is true of this node's view:
an attested app's public key (`tkms-app-pubkey:v1`), the env signer and version an attested
app's AppAuth names now (`tkms-app-env:v1`, with the app's nonce), an activated
generation's key under the previous generation's key (`tkms-generation:v1`), and the
generation's secp256k1 KMS root as this node derived it (`tkms-k256-root:v1`). The last two
are public data: no evidence, one partial per generation, epoch and key, cached.
SignAppKey is dstack's KMS signature over an attested app's secp256k1 key, made with the
generation's KMS root (`node.kms_root`), so dstack's verifiers accept the app's key chain.

The servicer decodes and bounds every field, runs the authorization pipeline, calls the pure
`mpc` functions and encodes the answer. One edge (`_edge`) maps errors to status codes:
`NodeError` subclasses carry theirs, malformed bytes are INVALID_ARGUMENT, and anything
unexpected is INTERNAL with a log event (never with secrets).
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

import grpc

from attest import BindingLabel
from contracts import AppAuthClient, CallReverted, GovernanceClient
from mpc import G1, EncodingError, Generation, KeyRequest, NetworkContext, derive_partial
from mpc._fixedbase import PreparedPoint
from mpc.anchor import generation_statement
from mpc.group import Rng
from mpc.k256 import decode_public_key
from mpc.kmsroot import kms_root_statement
from mpc.sharing import Share
from mpc.tsig import (
    SignaturePartial,
    app_env_binding,
    app_env_statement,
    app_pubkey_statement,
    sign_partial,
)
from mpc.types import Epoch
from node.authz import Authorized, Authorizer, Evidence
from node.chainview import Committee
from node.errors import InvalidRequest, NodeError, NotReady, PolicyDenied
from node.gather import held_share
from node.kms_root import KmsRoot, encode_partial
from node.logs import get_logger
from node.manifest import epoch_manifest, revocation_notice
from node.metrics import NodeMetrics
from protos.tkms.v1 import common_pb2, kms_pb2, kms_pb2_grpc

log = get_logger("tkms.node.kms")

MAX_QUOTE: Final = 64 * 1024
MAX_EVENT_LOG: Final = 1024 * 1024
MAX_VM_CONFIG: Final = 64 * 1024
MAX_PURPOSE: Final = 256
MAX_SIGNED_KEY: Final = 1024
APP_ID_SIZE: Final = 20
NONCE_SIZES: Final = range(16, 65)
#: Requester keys kept decoded, least recently used evicted. A key used 16 times gets a
#: ~0.5 MB multiplication table, so this bounds the tables at ~16 MB.
REQUESTER_CACHE: Final = 32

ShareLookup = Callable[[int], tuple[Committee, Share] | None]
"""generation (0 = latest) -> the active committee of that generation and this node's share."""

EnvPolicy = Callable[[bytes, int], tuple[bytes, int]]
"""(app_id, block) -> (env signer, env version) the app's controller names at that block;
(20 zero bytes, 0) for a controller that names none."""

RootSource = Callable[[int], Awaitable[KmsRoot]]
"""generation (0 = latest) -> its KMS root (`node.kms_root.KmsRoots.get`)."""

_SIGN = kms_pb2.SignPartialRequest


def chain_env_policy(client: GovernanceClient) -> EnvPolicy:
    """The EnvPolicy of the apps of `client`'s chain, read from their AppAuth at a block."""

    def read(app_id: bytes, block: int) -> tuple[bytes, int]:
        app = AppAuthClient(client.w3, "0x" + app_id.hex())
        try:
            signer = app.get_env_signer(block=block)
            version = app.get_env_version(block=block)
        except CallReverted:  # a controller that is not an AppAuth names no env signer
            return bytes(APP_ID_SIZE), 0
        return bytes.fromhex(signer.removeprefix("0x")), version

    return read


Ctx = grpc.aio.ServicerContext[Any, Any]
Req = TypeVar("Req")
Resp = TypeVar("Resp")


def _edge(
    method: Callable[[KmsServicer, Req, Ctx], Awaitable[Resp]],
) -> Callable[[KmsServicer, Req, Ctx], Awaitable[Resp]]:
    name = method.__name__

    @functools.wraps(method)
    async def wrapper(self: KmsServicer, request: Req, context: Ctx) -> Resp:
        start = time.perf_counter()
        code: grpc.StatusCode = grpc.StatusCode.OK
        message = ""
        try:
            return await method(self, request, context)
        except NodeError as exc:
            code, message = exc.grpc_code, str(exc)
        except EncodingError as exc:
            code, message = grpc.StatusCode.INVALID_ARGUMENT, str(exc)
        except Exception:
            log.exception("rpc_failed", method=name)
            code, message = grpc.StatusCode.INTERNAL, f"{name}: internal error"
        finally:
            self._observe(name, "ok" if code is grpc.StatusCode.OK else code.name, start)
        await context.abort(code, message)

    return wrapper


def _evidence(msg: common_pb2.Evidence) -> Evidence:
    if msg.attestation:
        if msg.quote or msg.event_log:
            raise InvalidRequest(
                "evidence: set either quote (TDX, with event_log) or attestation (SEV-SNP)"
            )
        if len(msg.attestation) > MAX_QUOTE:
            raise InvalidRequest(
                f"evidence.attestation is {len(msg.attestation)} bytes, at most {MAX_QUOTE}"
            )
    elif not msg.quote:
        raise InvalidRequest("evidence.quote is empty (and no SEV-SNP attestation is set)")
    if len(msg.quote) > MAX_QUOTE:
        raise InvalidRequest(f"evidence.quote is {len(msg.quote)} bytes, at most {MAX_QUOTE}")
    if len(msg.event_log) > MAX_EVENT_LOG:
        raise InvalidRequest(f"evidence.event_log is over {MAX_EVENT_LOG} bytes")
    if len(msg.vm_config) > MAX_VM_CONFIG:
        raise InvalidRequest(f"evidence.vm_config is over {MAX_VM_CONFIG} bytes")
    return Evidence(
        quote=bytes(msg.quote),
        event_log=msg.event_log,
        vm_config=msg.vm_config,
        attestation=bytes(msg.attestation),
    )


def _key_request(i: int, msg: kms_pb2.KeyRequest) -> KeyRequest:
    if len(msg.app_id) != APP_ID_SIZE:
        raise InvalidRequest(f"keys[{i}].app_id must be {APP_ID_SIZE} bytes, got {len(msg.app_id)}")
    app_id = bytes(msg.app_id)
    if msg.kind == kms_pb2.KeyRequest.KIND_KDF:
        if len(msg.purpose) > MAX_PURPOSE:
            raise InvalidRequest(
                f"keys[{i}].purpose is {len(msg.purpose)} bytes, at most {MAX_PURPOSE}"
            )
        return KeyRequest.app_key(app_id, bytes(msg.purpose))
    if msg.kind == kms_pb2.KeyRequest.KIND_IBE:
        if msg.purpose:
            raise InvalidRequest(f"keys[{i}].purpose must be empty for KIND_IBE")
        return KeyRequest.ibe_key(app_id)
    raise InvalidRequest(f"keys[{i}].kind {msg.kind} is not KIND_KDF or KIND_IBE")


class KmsServicer(kms_pb2_grpc.KmsServicer):
    def __init__(
        self,
        *,
        authorizer: Authorizer,
        shares: ShareLookup,
        metrics: NodeMetrics,
        max_keys: int,
        env_policy: EnvPolicy | None = None,
        roots: RootSource | None = None,
        health_note: Callable[[], bytes] | None = None,
        rng: Rng = os.urandom,
    ) -> None:
        self._authz = authorizer
        self._health_note = health_note
        self._env_policy = env_policy
        self._roots = roots
        self._links: dict[tuple[int, int, bytes], kms_pb2.SignPartialResponse] = {}
        self._shares = shares
        self._metrics = metrics
        self._max_keys = max_keys
        self._rng = rng
        self._requesters: OrderedDict[bytes, PreparedPoint] = OrderedDict()
        self._verification_keys: dict[tuple[int, int, int], G1] = {}
        self._children: dict[
            tuple[str, str], tuple[Callable[[float], None], Callable[[], None]]
        ] = {}
        self._partials: dict[str, Callable[[], None]] = {}

    def _verification_key(self, committee: Committee, share: Share) -> G1:
        """V_i of this node, computed once per (generation, epoch): an epoch's keys never change."""
        key = (committee.generation, committee.epoch, share.member)
        vk = self._verification_keys.get(key)
        if vk is None:
            if len(self._verification_keys) >= 16:
                self._verification_keys.clear()
            vk = self._verification_keys[key] = committee.verification_key(share.member)
        return vk

    def _observe(self, method: str, outcome: str, start: float) -> None:
        """Count a finished call; the labelled children are looked up once (labels() is slow)."""
        children = self._children.get((method, outcome))
        if children is None:
            children = self._children[method, outcome] = (
                self._metrics.latency.labels(method).observe,
                self._metrics.requests.labels(method, outcome).inc,
            )
        children[0](time.perf_counter() - start)
        children[1]()

    def _count_partial(self, kind: str) -> None:
        inc = self._partials.get(kind)
        if inc is None:
            inc = self._partials[kind] = self._metrics.partials.labels(kind).inc
        inc()

    def _requester(self, data: bytes) -> PreparedPoint:
        """The requester key E, decoded and checked once per key (an app reuses it)."""
        prepared = self._requesters.get(data)
        if prepared is not None:
            self._requesters.move_to_end(data)
            return prepared
        prepared = PreparedPoint(G1.from_bytes(data, "requester_key"))
        self._requesters[data] = prepared
        if len(self._requesters) > REQUESTER_CACHE:
            self._requesters.popitem(last=False)
        return prepared

    async def _authorize(
        self,
        evidence: Evidence,
        *,
        binding: tuple[BindingLabel, bytes],
        app_ids: list[bytes],
        cost: int,
    ) -> Authorized:
        fast = self._authz.authorize_without_chain_call(
            evidence, binding=binding, app_ids=app_ids, cost=cost
        )
        if fast is not None:
            return fast
        # A cache miss asks the chain: in a thread, so the event loop keeps serving.
        return await asyncio.to_thread(
            self._authz.authorize, evidence, binding=binding, app_ids=app_ids, cost=cost
        )

    def _share(self, generation: int) -> tuple[Committee, Share]:
        return held_share(self._shares, generation)

    @_edge
    async def GetMeta(
        self, request: kms_pb2.GetMetaRequest, context: Ctx
    ) -> kms_pb2.GetMetaResponse:
        view = self._authz.fresh_view()
        committee, share = self._share(0)
        return kms_pb2.GetMetaResponse(
            chain_id=view.chain_id,
            governance=view.governance,
            generation=committee.generation,
            epoch=committee.epoch,
            threshold=committee.threshold,
            members=[
                common_pb2.Member(
                    index=k,
                    node_address=m.address,
                    endpoint=m.kms_endpoint,
                    verification_key=committee.verification_key(k).to_bytes(),
                )
                for k, m in enumerate(committee.members, start=1)
            ],
            group_public_key_g1=committee.public.public_key.to_bytes(),
            group_public_key_g2=committee.pk2.to_bytes(),
            my_index=share.member,
        )

    @_edge
    async def DerivePartial(
        self, request: kms_pb2.DerivePartialRequest, context: Ctx
    ) -> kms_pb2.DerivePartialResponse:
        evidence = _evidence(request.evidence)
        requester = self._requester(bytes(request.requester_key))
        if not 1 <= len(request.keys) <= self._max_keys:
            raise InvalidRequest(
                f"keys: between 1 and {self._max_keys} key requests, got {len(request.keys)}"
            )
        keys = [_key_request(i, k) for i, k in enumerate(request.keys)]
        authorized = await self._authorize(
            evidence,
            binding=(BindingLabel.KDF_V1, requester.encoded),
            app_ids=[bytes(k.app_id) for k in request.keys],
            cost=len(keys),
        )
        committee, share = self._share(request.generation)
        network = NetworkContext(
            chain_id=authorized.view.chain_id,
            contract=authorized.view.governance,
            generation=Generation(committee.generation),
            epoch=Epoch(committee.epoch),
        )
        vk = self._verification_key(committee, share)
        partials = []
        for key in keys:
            p = derive_partial(
                share, key, requester=requester, network=network, rng=self._rng, verification_key=vk
            )
            self._count_partial(key.kind.name)
            partials.append(encode_partial(p))
        return kms_pb2.DerivePartialResponse(partials=partials)

    @_edge
    async def SignPartial(
        self, request: kms_pb2.SignPartialRequest, context: Ctx
    ) -> kms_pb2.SignPartialResponse:
        if request.kind == _SIGN.KIND_GENERATION:
            return self._generation_link(request)
        if request.kind == _SIGN.KIND_KMS_ROOT:
            return await self._kms_root(request)
        if request.kind == _SIGN.KIND_EPOCH_MANIFEST:
            return self._epoch_manifest(request)
        if request.kind == _SIGN.KIND_REVOCATION:
            return self._revocation(request)
        if request.kind == _SIGN.KIND_APP_ENV:
            committee, share, statement = await self._app_env(request)
            kind = "SIG_ENV"
        elif request.kind == _SIGN.KIND_APP_PUBKEY:
            committee, share, statement = await self._app_pubkey(request)
            kind = "SIG"
        else:
            raise InvalidRequest(f"kind {request.kind} is not a statement kind this node signs")
        vk = self._verification_key(committee, share)
        partial = sign_partial(share, statement, rng=self._rng, verification_key=vk)
        self._count_partial(kind)
        return _sign_response(committee, statement, partial)

    async def _app_pubkey(
        self, request: kms_pb2.SignPartialRequest
    ) -> tuple[Committee, Share, bytes]:
        evidence = _evidence(request.evidence)
        key = bytes(request.public_key)
        if not 1 <= len(key) <= MAX_SIGNED_KEY:
            raise InvalidRequest(f"public_key must be 1..{MAX_SIGNED_KEY} bytes, got {len(key)}")
        authorized = await self._authorize(
            evidence, binding=(BindingLabel.SIGN_V1, key), app_ids=[], cost=1
        )
        committee, share = self._share(request.generation)
        statement = app_pubkey_statement(
            authorized.view.chain_id, authorized.view.governance, authorized.app_id, key
        )
        return committee, share, statement

    async def _app_env(self, request: kms_pb2.SignPartialRequest) -> tuple[Committee, Share, bytes]:
        """The app's env signer and version, if its AppAuth names exactly these at our head."""
        signer, nonce, version = (
            bytes(request.env_signer),
            bytes(request.nonce),
            request.env_version,
        )
        if len(signer) != APP_ID_SIZE:
            raise InvalidRequest(f"env_signer must be {APP_ID_SIZE} bytes, got {len(signer)}")
        if len(nonce) not in NONCE_SIZES:
            raise InvalidRequest(f"nonce must be 16..64 bytes, got {len(nonce)}")
        if self._env_policy is None:
            raise NotReady("this node does not serve env statements")
        evidence = _evidence(request.evidence)
        authorized = await self._authorize(
            evidence,
            binding=(BindingLabel.SIGN_V1, app_env_binding(signer, version, nonce)),
            app_ids=[],
            cost=1,
        )
        app_id, view = authorized.app_id, authorized.view
        try:
            named = await asyncio.to_thread(self._env_policy, app_id, view.head)
        except Exception as exc:  # a chain read that fails must not sign anything
            raise NotReady(f"cannot read the env policy of app 0x{app_id.hex()}: {exc}") from None
        if named != (signer, version):
            raise PolicyDenied(
                f"env: at block {view.head} app 0x{app_id.hex()} names env signer "
                f"0x{named[0].hex()} and envVersion {named[1]}, not 0x{signer.hex()} and {version}"
            )
        committee, share = self._share(request.generation)
        statement = app_env_statement(
            view.chain_id, view.governance, app_id, signer, version, nonce
        )
        return committee, share, statement

    def _generation_link(self, request: kms_pb2.SignPartialRequest) -> kms_pb2.SignPartialResponse:
        """Our partial over `generation`'s key as our view shows it, with generation-1's share."""
        generation = request.generation
        if generation < 2:
            raise InvalidRequest(f"generation: only generations >= 2 are linked, got {generation}")
        if request.HasField("evidence") or request.public_key or request.env_signer:
            raise InvalidRequest("KIND_GENERATION takes only a generation")
        view = self._authz.fresh_view()
        linked = view.committee(generation)
        if linked is None:
            raise NotReady(f"generation {generation} has no active key in this node's chain view")
        committee, share = self._share(generation - 1)
        statement = generation_statement(view.chain_id, view.governance, generation, linked.pk2)
        return self._signed_once(committee, share, statement, "SIG_GENERATION")

    def _signed_once(
        self, committee: Committee, share: Share, statement: bytes, kind: str
    ) -> kms_pb2.SignPartialResponse:
        """Our partial over a public statement, made once per (epoch, statement): these are
        asked for by anyone, and the same answer serves them all."""
        key = (committee.generation, committee.epoch, statement)
        cached = self._links.get(key)
        if cached is None:
            vk = self._verification_key(committee, share)
            partial = sign_partial(share, statement, rng=self._rng, verification_key=vk)
            self._count_partial(kind)
            if len(self._links) >= 16:
                self._links.clear()
            cached = self._links[key] = _sign_response(committee, statement, partial)
        return cached

    def _epoch_manifest(self, request: kms_pb2.SignPartialRequest) -> kms_pb2.SignPartialResponse:
        """Our partial over the active epoch's manifest as our chain view shows it."""
        extra = request.public_key or request.env_signer or request.subject
        if request.HasField("evidence") or extra:
            raise InvalidRequest("KIND_EPOCH_MANIFEST takes only a generation")
        view = self._authz.fresh_view()
        committee, share = self._share(request.generation)
        statement = epoch_manifest(view, committee).encode()
        return self._signed_once(committee, share, statement, "SIG_MANIFEST")

    def _revocation(self, request: kms_pb2.SignPartialRequest) -> kms_pb2.SignPartialResponse:
        """Our partial over a node-removed notice, if our view no longer approves the node."""
        if request.HasField("evidence") or request.public_key or request.env_signer:
            raise InvalidRequest("KIND_REVOCATION takes only a generation and a subject")
        view = self._authz.fresh_view()
        committee, share = self._share(request.generation)
        statement = revocation_notice(view, committee, bytes(request.subject)).encode()
        return self._signed_once(committee, share, statement, "SIG_REVOCATION")

    def _root_source(self) -> RootSource:
        if self._roots is None:
            raise NotReady("this node does not serve KMS root signatures")
        return self._roots

    async def _kms_root(self, request: kms_pb2.SignPartialRequest) -> kms_pb2.SignPartialResponse:
        """Our partial over the generation's KMS root as we derived it (or refuse another)."""
        if request.HasField("evidence") or request.env_signer or request.nonce:
            raise InvalidRequest("KIND_KMS_ROOT takes only a generation and a public_key")
        expected = bytes(request.public_key)
        if expected:
            decode_public_key(expected, "public_key")
        roots = self._root_source()
        view = self._authz.fresh_view()
        committee, share = self._share(request.generation)
        root = await roots(committee.generation)
        if expected and expected != root.public:
            raise PolicyDenied(
                f"generation {committee.generation}'s KMS root here is {root.public.hex()}, "
                f"not {expected.hex()}"
            )
        statement = kms_root_statement(
            view.chain_id, view.governance, committee.generation, root.public
        )
        return self._signed_once(committee, share, statement, "SIG_KMS_ROOT")

    @_edge
    async def GetHealthNote(
        self, request: kms_pb2.GetHealthNoteRequest, context: Ctx
    ) -> kms_pb2.GetHealthNoteResponse:
        if self._health_note is None:
            raise NotReady("this node does not sign health notes")
        return kms_pb2.GetHealthNoteResponse(envelope=self._health_note())

    @_edge
    async def SignAppKey(
        self, request: kms_pb2.SignAppKeyRequest, context: Ctx
    ) -> kms_pb2.SignAppKeyResponse:
        evidence = _evidence(request.evidence)
        key = decode_public_key(bytes(request.public_key), "public_key")
        roots = self._root_source()
        authorized = await self._authorize(
            evidence, binding=(BindingLabel.SIGN_V1, key), app_ids=[], cost=1
        )
        committee, _ = self._share(request.generation)
        root = await roots(committee.generation)
        # secp256k1 in pure Python takes milliseconds: keep it off the event loop.
        signature = await asyncio.to_thread(root.sign_app_key, authorized.app_id, key)
        self._count_partial("KMS_ISSUED")
        return kms_pb2.SignAppKeyResponse(
            generation=committee.generation, root_public_key=root.public, signature=signature
        )


def _sign_response(
    committee: Committee, statement: bytes, partial: SignaturePartial
) -> kms_pb2.SignPartialResponse:
    return kms_pb2.SignPartialResponse(
        generation=committee.generation,
        epoch=committee.epoch,
        member=partial.member,
        statement=statement,
        sigma=partial.sigma.to_bytes(),
        proof=partial.proof.to_bytes(),
    )
