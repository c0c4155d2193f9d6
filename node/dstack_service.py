"""dstack's KMS RPCs answered from the threshold network (docs/dstack-kms.md).

An unmodified dstack guest asks ONE KMS for its keys in plain (GetAppKey), so the node it
asks assembles them: it authorizes the guest's RA-TLS client certificate (quote and event log
bound to the certificate's key by `ratls-cert:`) through the node's key-release pipeline with
dstack's key-provider rule (`node.authz.dstack_provider_rule`), requires the app's AppAuth to
have opted in (`dstackKmsRelease`), then gathers t partials of the app's root seed: its own
and those of other members (`Peer.DstackAppPartial`), each of which authorizes the same
certificate and the opt-in itself before it answers, encrypted to this node's ephemeral key
(`node.gather`). From the seed come the keys, as the guest agent derives them where dstack
defines them (`mpc.dstack_keys`); the k256 key is signed with the generation's KMS root.

The other RPCs: GetMeta (the KMS root as `k256_pubkey`, the governance, the chain, and the
node's attestation of the CA with the root as `bootstrap_info`, `node.dstack_ca`), and
GetTempCaCert and SignCert with the network's dstack CA (`node.dstack_ca`). GetKmsKey hands a
dstack KMS's own root keys to another KMS; tkms has no root key to hand over and refuses it,
as it refuses GetAppEnvEncryptPubKey (the env key, like every app key, exists only where t
partials were combined for an attested app; envs are IBE-encrypted in tkms).

Errors are `NodeError`s whose message says which step refused and why; the pRPC layer
(`node.dstack_prpc`) answers them as dstack does (status 400, `{"error": ...}`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives.serialization import Encoding

from attest import (
    AttestError,
    BindingLabel,
    CsrError,
    VerifiedEvidence,
    decode_csr,
    event_log_to_json,
    read_ratls_certificate,
)
from contracts import AppAuthClient, CallReverted, GovernanceClient
from mpc import Generation, KeyRequest, NetworkContext
from mpc.derive import derive_partial
from mpc.dstack_keys import APP_ROOT_PURPOSE, app_k256_secret, disk_crypt_key, env_crypt_key
from mpc.group import Rng
from mpc.k256 import public_key
from mpc.keyschedule import derive_app_seed
from mpc.sharing import Share
from mpc.types import Epoch
from node.authz import Authorized, Authorizer, Evidence, dstack_provider_rule
from node.chainview import Committee, NodeRecord, to_checksum
from node.config import DstackKmsConfig
from node.dstack_ca import AppCa, DstackCa, bootstrap_report_data, issue_leaf
from node.errors import InvalidRequest, NodeError, NotReady, PolicyDenied
from node.gather import gather_sigma, held_share, lend_partial_request
from node.kms_root import KmsRoot, encode_partial
from node.logs import get_logger
from node.tee import simulator_refusal
from protos.tkms.v1 import dstack_kms_rpc_pb2 as dstack
from protos.tkms.v1 import kms_pb2

log = get_logger("tkms.node.dstack")

#: Seconds to gather an app's partials from peers (a guest tries its next KMS URL after).
GATHER_TIMEOUT: Final = 8.0
MAX_CLIENT_CERT: Final = 64 * 1024
MAX_VM_CONFIG: Final = 64 * 1024
APP_CA_CACHE: Final = 256

ShareLookup = Callable[[int], tuple[Committee, Share] | None]
RootSource = Callable[[int], Awaitable[KmsRoot]]
#: (app_id, block) -> whether the app's AppAuth opted in (`dstackKmsRelease`) at that block.
OptIn = Callable[[bytes, int], bool]
#: report_data -> this node's attestation (SCALE VersionedAttestation) binding it.
AttestKeys = Callable[[bytes], bytes]
#: (member, generation, epoch, requester key, client certificate DER, vm_config) -> its partial.
FetchAppPartial = Callable[[NodeRecord, int, int, bytes, bytes, str], Awaitable[kms_pb2.Partial]]


class NotServed(NodeError):
    """A dstack RPC tkms deliberately does not serve (the message says why)."""


def chain_opt_in(client: GovernanceClient) -> OptIn:
    """The OptIn of the apps of `client`'s chain: their AppAuth's `dstackKmsRelease`."""

    def read(app_id: bytes, block: int) -> bool:
        app = AppAuthClient(client.w3, "0x" + app_id.hex())
        try:
            return app.get_dstack_kms_release(block=block)
        except CallReverted:  # a controller that is not an AppAuth never opted in
            return False

    return read


@dataclass(frozen=True, slots=True)
class _Authorized:
    app: Authorized
    ca: DstackCa


class DstackKmsService:
    """The dstack KMS methods (module docstring); one per node, shared by listener and peers."""

    def __init__(
        self,
        *,
        authorizer: Authorizer,
        shares: ShareLookup,
        roots: RootSource,
        fetch: FetchAppPartial,
        opt_in: OptIn,
        config: DstackKmsConfig,
        accept_simulator: bool,
        attest_keys: AttestKeys | None = None,
        rng: Rng = os.urandom,
        timeout: float = GATHER_TIMEOUT,
    ) -> None:
        self._authz, self._shares, self._roots, self._fetch = authorizer, shares, roots, fetch
        self._opt_in, self._config, self._rng, self._timeout = opt_in, config, rng, timeout
        self._accept_simulator = accept_simulator
        self._attest_keys = attest_keys
        self._cas: dict[tuple[int, bytes], DstackCa] = {}
        self._bootstrap: dict[tuple[int, bytes], dstack.BootstrapResponse] = {}
        self._opted: OrderedDict[tuple[bytes, int], bool] = OrderedDict()
        self._app_cas: OrderedDict[tuple[int, bytes], AppCa] = OrderedDict()

    # -- shared pieces ------------------------------------------------------------------

    async def ca(self, generation: int | None = None) -> tuple[DstackCa, KmsRoot]:
        """The dstack CA of `generation` (default: the one this endpoint serves)."""
        g = self._config.generation if generation is None else generation
        committee, _ = held_share(self._shares, g)
        root = await self._roots(committee.generation)
        key = (root.generation, root.public)
        ca = self._cas.get(key)
        if ca is None:
            view = self._authz.fresh_view()
            ca = await asyncio.to_thread(
                DstackCa.derive,
                root.secret,
                chain_id=view.chain_id,
                governance=view.governance,
                generation=root.generation,
            )
            bootstrap = await self._attest(ca, root)
            if len(self._cas) >= 8:
                self._cas.clear()
                self._bootstrap.clear()
            self._cas[key] = ca
            if bootstrap is not None:
                self._bootstrap[key] = bootstrap
            log.info("dstack_ca_ready", generation=root.generation, key_provider=ca.key_provider_id)
        return ca, root

    async def _attest(self, ca: DstackCa, root: KmsRoot) -> dstack.BootstrapResponse | None:
        """GetMeta's `bootstrap_info`: this node's TEE quoting the CA with the root."""
        if self._attest_keys is None:
            return None
        spki = bytes.fromhex(ca.key_provider_id)
        report_data = bootstrap_report_data(spki, root.public)
        try:
            attestation = await asyncio.to_thread(self._attest_keys, report_data)
        except Exception as exc:  # informational: the endpoint serves without it
            log.warning("dstack_bootstrap_attestation_failed", error=f"{type(exc).__name__}: {exc}")
            return None
        return dstack.BootstrapResponse(
            ca_pubkey=spki, k256_pubkey=root.public, attestation=attestation
        )

    async def _opted_in(self, app_id: bytes, head: int) -> None:
        key = (app_id, head)
        allowed = self._opted.get(key)
        if allowed is None:
            try:
                allowed = await asyncio.to_thread(self._opt_in, app_id, head)
            except Exception as exc:  # a chain read that fails must not release keys
                raise NotReady(
                    f"cannot read whether app 0x{app_id.hex()} opted in: {exc}"
                ) from None
            self._opted[key] = allowed
            if len(self._opted) > 4096:
                self._opted.popitem(last=False)
        if not allowed:
            raise PolicyDenied(
                f"opt-in: app 0x{app_id.hex()} has not opted in to the dstack-compatible "
                f"endpoint at block {head} (its AppAuth's dstackKmsRelease is false): a node "
                "assembles only the keys of apps whose owner allowed it"
            )

    async def _authorize(
        self, evidence: Evidence, spki: bytes, generation: int | None, claimed_app: bytes | None
    ) -> _Authorized:
        ca, _ = await self.ca(generation)
        rule = dstack_provider_rule([ca.key_provider_id])
        binding = (BindingLabel.RATLS_CERT, spki)
        app = self._authz.authorize_without_chain_call(
            evidence, binding=binding, app_ids=[], cost=1, rule=rule
        )
        if app is None:  # a cache miss asks the chain, off the event loop
            app = await asyncio.to_thread(
                self._authz.authorize, evidence, binding=binding, app_ids=[], cost=1, rule=rule
            )
        if claimed_app is not None and claimed_app != app.app_id:
            raise PolicyDenied(
                f"identity: the certificate names app 0x{claimed_app.hex()}, the TD measured "
                f"0x{app.app_id.hex()}"
            )
        await self._opted_in(app.app_id, app.view.head)
        return _Authorized(app, ca)

    async def _authorize_certificate(
        self, der: bytes, vm_config: str, generation: int | None
    ) -> _Authorized:
        if not der:
            raise PolicyDenied(
                "No attestation provided: GetAppKey needs an RA-TLS client certificate"
            )
        if len(der) > MAX_CLIENT_CERT:
            raise InvalidRequest(f"client certificate is over {MAX_CLIENT_CERT} bytes")
        if len(vm_config) > MAX_VM_CONFIG:
            raise InvalidRequest(f"vm_config is over {MAX_VM_CONFIG} bytes")
        try:
            att = read_ratls_certificate(der)
        except AttestError as exc:
            raise PolicyDenied(f"client certificate: {exc}") from None
        evidence = Evidence(
            quote=att.quote,
            event_log=event_log_to_json(att.event_log),
            vm_config=vm_config or att.vm_config or "",
        )
        return await self._authorize(evidence, att.public_key_der, generation, att.app_id)

    def _gateway_app_id(self) -> str:
        return f"0x{self._config.gateway_app_id}" if self._config.gateway_app_id else ""

    # -- the RPCs -------------------------------------------------------------------------

    async def get_meta(self) -> dstack.GetMetaResponse:
        view = self._authz.fresh_view()
        ca, root = await self.ca()
        # "development": this node accepts simulated TEEs here (docs/dstack-kms.md)
        is_dev = (
            simulator_refusal(
                accept_locally=self._accept_simulator,
                chain_id=view.chain_id,
                allowed_on_chain=view.simulator_allowed,
            )
            is None
        )
        meta = dstack.GetMetaResponse(
            ca_cert=ca.ca_pem,
            allow_any_upgrade=is_dev,
            k256_pubkey=root.public,
            is_dev=is_dev,
            kms_contract_address=to_checksum(view.governance),
            chain_id=view.chain_id,
        )
        if self._config.gateway_app_id:
            meta.gateway_app_id = self._gateway_app_id()
        bootstrap = self._bootstrap.get((root.generation, root.public))
        if bootstrap is not None:
            meta.bootstrap_info.CopyFrom(bootstrap)
        return meta

    async def get_temp_ca_cert(self) -> dstack.GetTempCaCertResponse:
        ca, _ = await self.ca()
        return dstack.GetTempCaCertResponse(
            temp_ca_cert=ca.temp_pem, temp_ca_key=ca.temp_key_pem, ca_cert=ca.ca_pem
        )

    async def get_app_key(
        self, request: dstack.GetAppKeyRequest, client_certificate: bytes
    ) -> dstack.AppKeyResponse:
        if request.api_version > 1:
            raise InvalidRequest(f"Unsupported API version: {request.api_version}")
        checked = await self._authorize_certificate(client_certificate, request.vm_config, None)
        app, ca = checked.app, checked.ca
        identity = app.evidence.identity
        assert identity is not None  # the pipeline refuses evidence without one
        committee, share = held_share(self._shares, ca.generation)
        seed = await self._app_seed(committee, share, app, client_certificate, request.vm_config)
        k256 = app_k256_secret(seed, app.app_id)
        k256_public = public_key(k256)
        _, root = await self.ca(ca.generation)
        signature = await asyncio.to_thread(root.sign_app_key, app.app_id, k256_public)
        log.info(
            "dstack_app_keys_released",
            app=f"0x{app.app_id.hex()}",
            generation=ca.generation,
            instance=identity.instance_id.hex(),
        )
        return dstack.AppKeyResponse(
            ca_cert=ca.ca_pem,
            disk_crypt_key=disk_crypt_key(seed, identity.instance_id),
            env_crypt_key=env_crypt_key(seed),
            k256_key=k256,
            k256_signature=signature,
            tproxy_app_id=self._gateway_app_id(),
            gateway_app_id=self._gateway_app_id(),
            os_image_hash=identity.os_image_hash,
        )

    async def _app_seed(
        self, committee: Committee, share: Share, app: Authorized, der: bytes, vm_config: str
    ) -> bytes:
        g, epoch = committee.generation, committee.epoch
        network = NetworkContext(
            chain_id=app.view.chain_id,
            contract=app.view.governance,
            generation=Generation(g),
            epoch=Epoch(epoch),
        )
        request = KeyRequest.app_key(app.app_id, APP_ROOT_PURPOSE)

        async def fetch(index: int, peer: NodeRecord, requester: bytes) -> kms_pb2.Partial:
            return await self._fetch(peer, g, epoch, requester, der, vm_config)

        sigma = await gather_sigma(
            committee=committee,
            share=share,
            request=request,
            network=network,
            fetch=fetch,
            rng=self._rng,
            timeout=self._timeout,
            what=f"the keys of app 0x{app.app_id.hex()}",
        )
        return derive_app_seed(
            sigma, generation=Generation(g), app_id=app.app_id, purpose=APP_ROOT_PURPOSE
        )

    async def app_partial(
        self, generation: int, epoch: int, requester: bytes, der: bytes, vm_config: str
    ) -> kms_pb2.Partial:
        """A member's request (`Peer.DstackAppPartial`): our partial of the app's root seed,
        only after this node authorized the guest's certificate and the app's opt-in itself."""
        committee, share, key = lend_partial_request(self._shares, generation, epoch, requester)
        app = (await self._authorize_certificate(der, vm_config, generation)).app
        network = NetworkContext(
            chain_id=app.view.chain_id,
            contract=app.view.governance,
            generation=Generation(generation),
            epoch=Epoch(epoch),
        )
        partial = derive_partial(
            share,
            KeyRequest.app_key(app.app_id, APP_ROOT_PURPOSE),
            requester=key,
            network=network,
            rng=self._rng,
            verification_key=committee.verification_key(share.member),
        )
        return encode_partial(partial)

    async def sign_cert(self, request: dstack.SignCertRequest) -> dstack.SignCertResponse:
        try:
            csr = decode_csr(bytes(request.csr), bytes(request.signature), request.api_version)
        except CsrError as exc:
            raise InvalidRequest(str(exc)) from None
        if len(request.vm_config) > MAX_VM_CONFIG:
            raise InvalidRequest(f"vm_config is over {MAX_VM_CONFIG} bytes")
        evidence = Evidence(
            quote=csr.quote,
            event_log=csr.event_log_json(),
            vm_config=request.vm_config or csr.vm_config,
        )
        checked = await self._authorize(evidence, csr.pubkey, None, None)
        app, ca = checked.app, checked.ca
        verified, identity = app.evidence, app.evidence.identity
        # the CSR's attestation is read as DstackTdx only (attest._csr), so this holds
        assert isinstance(verified, VerifiedEvidence) and identity is not None
        app_ca = self._app_ca(ca, app.app_id)
        report_data = verified.quote.td_report.report_data
        now = dt.datetime.now(dt.UTC)
        try:
            leaf = await asyncio.to_thread(
                issue_leaf, app_ca, csr, identity=identity, report_data=report_data, now=now
            )
        except ValueError as exc:
            raise InvalidRequest(f"csr config: {exc}") from None
        log.info("dstack_cert_signed", app=f"0x{app.app_id.hex()}", subject=csr.config.subject)
        return dstack.SignCertResponse(
            certificate_chain=[leaf.public_bytes(Encoding.PEM).decode(), app_ca.pem, ca.ca_pem]
        )

    def _app_ca(self, ca: DstackCa, app_id: bytes) -> AppCa:
        key = (ca.generation, app_id)
        found = self._app_cas.get(key)
        if found is None or found.cert.issuer != ca.ca_cert.subject:
            found = self._app_cas[key] = ca.app_ca(app_id)
            if len(self._app_cas) > APP_CA_CACHE:
                self._app_cas.popitem(last=False)
        return found

    def get_kms_key(self, request: dstack.GetKmsKeyRequest) -> dstack.KmsKeyResponse:
        raise NotServed(
            "GetKmsKey is not served: it hands a dstack KMS's own root keys to another KMS "
            "instance (dstack's replication). tkms has no root key to hand over: the master "
            "secret is threshold-shared and never assembled; nodes join by resharing on chain"
        )

    def get_app_env_encrypt_pub_key(self, request: dstack.AppId) -> dstack.PublicKeyResponse:
        raise NotServed(
            "GetAppEnvEncryptPubKey is not served: an app's env key exists only where t "
            "partials were combined for its attested TD, never for an unauthenticated caller; "
            "encrypt envs to the app id with `tkms app encrypt-env` (IBE) instead"
        )
