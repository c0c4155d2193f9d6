"""The key-release authorization pipeline (design §6.3), steps numbered as there.

(1-4) evidence -> replay -> identity -> binding, by `attest.verify_evidence` for a TDX quote,
      or evidence -> identity -> binding by `attest.verify_snp_evidence` for an AMD SEV-SNP
      attestation (`Evidence.attestation`; SNP has no runtime register to replay, the identity
      is the MrConfigV3 document HOST_DATA binds). Simulator evidence (of either TEE) only when
      this node's TEE, governance's `simulatorAllowed` and a development chain all allow it
      (`node.tee.simulator_refusal`). The identity must name this network's fingerprint as its
      key provider (`key_provider_problem`); its os_image_hash is the platform hash recomputed
      from the signed registers (TDX: MRTD and RTMR0-2; SNP: MEASUREMENT and POLICY, tagged as
      SNP), never taken from the VM config or an RTMR3 event, so governance approves each
      platform's images separately (`addOsImage`) and an app keeps its keys on whichever
      platform governance allows: keys depend on the app id, never on the TEE;
(5) chain: the chain view is fresh, else fail closed (UNAVAILABLE);
(6) approval: `isAppAllowed(AppBootInfo)` at the view's head, cached by (identity, head);
(7) ownership: every requested key belongs to the evidence's app_id;
(8) rate: the token bucket of (app_id, requester key): a replay of someone's evidence can only
    spend the bucket of the key that evidence binds, never the bucket of a fresh request.
Each step counts its outcome in `tkms_authz_steps{step, outcome}`. A refusal raises
`PolicyDenied` (PERMISSION_DENIED) naming the step and the reason; it never says more than the
caller could learn from the chain, and never anything secret.

Verified evidence is cached for a short time by the digest of everything the verdict depends
on (quote, event log, VM config, SNP attestation, binding, governance and fingerprint, whether
simulators are accepted), so an app that reuses its ephemeral key and quote for a burst of
requests is verified once; the cache entry also holds the app's AppBootInfo and its digest, so a
cached request rebuilds neither. When a new head makes the approval cache miss, concurrent requests
of one app wait for a single `isAppAllowed` call instead of each making its own.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from attest import (
    AllOf,
    AppIdentity,
    AttestError,
    BindingLabel,
    Collateral,
    SnpPolicy,
    VerifiedSnpEvidence,
    decode_snp_attestation,
    default_policy,
    is_simulator_quote,
    make_snp_report_verifier,
    parse_quote,
    verify_snp_evidence,
)
from attest._evidence import EvidenceError, VerifiedEvidence, make_quote_verifier, verify_evidence
from attest.providers import is_simulator_snp_chain
from attest.providers._simulator_verify import SimulatorAllowed
from contracts import AppBootInfo, AuthDecision, NoQuorum
from node.chainview import ChainView
from node.errors import NotReady, PolicyDenied
from node.logs import get_logger
from node.metrics import NodeMetrics
from node.ratelimit import RateLimiter
from node.tee import simulator_refusal

log = get_logger("tkms.node.authz")

#: Asks governance whether an app may boot/get keys, at a given block.
ApprovalCheck = Callable[[AppBootInfo, int], AuthDecision]

_STEP_NAMES = {
    "quote": "evidence",
    "replay": "replay",
    "identity": "identity",
    "binding": "binding",
}


@dataclass(frozen=True, slots=True)
class Evidence:
    """What a caller sends: a TDX quote with its event log, or (SEV-SNP) `attestation`,
    dstack's VersionedAttestation, with `quote` and `event_log` empty."""

    quote: bytes
    event_log: str
    vm_config: str = ""
    attestation: bytes = b""


#: Evidence that passed steps 1-4 on either TEE.
PlatformEvidence = VerifiedEvidence | VerifiedSnpEvidence


@dataclass(frozen=True, slots=True)
class _Checked:
    """Evidence that passed steps 1-4, with what step 6 asks governance about."""

    verified: PlatformEvidence
    info: AppBootInfo
    info_digest: bytes  # what the approval cache is keyed by, with the head


@dataclass(frozen=True, slots=True)
class Authorized:
    """An app that passed every step, and the chain view it was judged against."""

    app_id: bytes
    evidence: PlatformEvidence
    view: ChainView

    @property
    def platform(self) -> str:
        """The TEE the app proved itself on: "tdx" or "amd-sev-snp"."""
        return self.evidence.platform


def boot_info(evidence: PlatformEvidence) -> AppBootInfo:
    """What governance is asked about. The platform is in os_image_hash: a TDX and an SNP
    platform hash never coincide (attest._snp_identity), so approving one approves nothing on
    the other."""
    identity = evidence.identity
    if identity is None:
        raise PolicyDenied("step 3 (identity): the event log has no dstack app identity")
    return AppBootInfo(
        app_id="0x" + identity.app_id.hex(),
        compose_hash=identity.compose_hash,
        instance_id="0x" + (identity.instance_id or bytes(20)).hex(),
        device_id=identity.device_id or bytes(32),
        mr_aggregated=identity.mr_aggregated,
        mr_system=identity.mr_system or bytes(32),
        # An unknown image is all zeros: governance refuses it unless it allowed that value.
        os_image_hash=identity.os_image_hash or bytes(32),
        tcb_status=evidence.tcb_status,
        advisory_ids=tuple(evidence.advisory_ids),
    )


#: The key-provider name dstack's boot measures for a KMS (`{"name": "kms", "id": ...}`).
KMS_KEY_PROVIDER = "kms"


def key_provider_problem(identity: AppIdentity, fingerprint: bytes | None) -> str | None:
    """Why `identity` may not get keys from the network of `fingerprint`, or None.

    The TD must have measured, before ``system-ready``, that it takes its keys from a KMS whose
    id is this network's fingerprint (`mpc.anchor`, what `guest.measure` writes). Without it
    the TD never committed to a key provider (dstack measures it into mr_system), and its keys
    could come from anywhere; with another id it trusts another network.
    """
    kp = identity.key_provider
    if kp is None:
        return "the event log has no key-provider event before system-ready"
    if kp.name != KMS_KEY_PROVIDER:
        return f"the key provider is {kp.name!r}, not {KMS_KEY_PROVIDER!r}"
    if fingerprint is None:
        return "this node does not know its network's fingerprint yet (no generation 1 key)"
    if kp.id.lower().removeprefix("0x") != fingerprint.hex():
        return f"the key provider is KMS {kp.id!r}, not this network {fingerprint.hex()}"
    return None


def _is_simulator(evidence: Evidence) -> bool:
    try:
        if evidence.attestation:
            return is_simulator_snp_chain(decode_snp_attestation(evidence.attestation).cert_chain)
        return is_simulator_quote(parse_quote(evidence.quote))
    except AttestError:
        return False  # not evidence at all: verification says why


class Authorizer:
    """The pipeline of the module docstring. `accept_simulator` is the node's own say
    (`node.tee.accepts_simulator`): False refuses simulator evidence whatever the chain says."""

    def __init__(
        self,
        *,
        view: Callable[[], ChainView | None],
        approve: ApprovalCheck,
        max_head_age: float,
        limiter: RateLimiter,
        metrics: NodeMetrics,
        accept_simulator: bool,
        chain_problem: Callable[[], str | None] = lambda: None,
        collateral: Collateral | None = None,
        clock: Callable[[], float] = time.time,
        evidence_ttl: float = 60.0,
        cache_size: int = 4096,
    ) -> None:
        self._view = view
        self._approve = approve
        self._max_head_age = max_head_age
        self._limiter = limiter
        self._metrics = metrics
        self._accept_simulator = accept_simulator
        self._chain_problem = chain_problem
        self._collateral = collateral
        self._clock = clock
        self._ttl = evidence_ttl
        self._cache_size = cache_size
        self._evidence_cache: OrderedDict[bytes, tuple[float, _Checked]] = OrderedDict()
        self._approval_cache: OrderedDict[tuple[bytes, int], AuthDecision] = OrderedDict()
        self._asking: dict[tuple[bytes, int], threading.Lock] = {}
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, str], Callable[[], None]] = {}

    def _count(self, step: str, outcome: str) -> None:
        inc = self._counters.get((step, outcome))
        if inc is None:
            inc = self._counters[step, outcome] = self._metrics.pipeline.labels(step, outcome).inc
        inc()

    def _deny(self, step: str, reason: str) -> PolicyDenied:
        self._count(step, "denied")
        log.info("key_release_denied", step=step, reason=reason)
        return PolicyDenied(f"{step}: {reason}")

    def _verify(
        self, evidence: Evidence, binding: tuple[BindingLabel, bytes], view: ChainView
    ) -> _Checked:
        refusal = simulator_refusal(
            accept_locally=self._accept_simulator,
            chain_id=view.chain_id,
            allowed_on_chain=view.simulator_allowed,
        )
        # Every input the verdict or the cached identity depends on is in the key.
        parts = (
            evidence.quote,
            evidence.event_log.encode(),
            evidence.vm_config.encode(),
            evidence.attestation,
            binding[0].value,
            binding[1],
            view.governance,
            view.fingerprint or b"",
            b"\x01" if refusal is None else b"\x00",
        )
        digest = hashlib.sha256(b"".join(len(p).to_bytes(4, "big") + p for p in parts)).digest()
        now = self._clock()
        cached = self._evidence_cache.get(digest)
        if cached is not None and now - cached[0] < self._ttl:
            self._count("evidence", "cached")
            return cached[1]
        if refusal is not None and _is_simulator(evidence):
            kind = "SEV-SNP report" if evidence.attestation else "quote"
            raise self._deny("evidence", f"simulator {kind} refused: {refusal}")
        try:
            verified = self._verify_evidence(
                evidence, binding, now=int(now), simulator=refusal is None
            )
        except EvidenceError as exc:
            step = _STEP_NAMES.get(exc.step, exc.step)
            self._metrics.attestations.labels("rejected", "unknown").inc()
            raise self._deny(step, str(exc.cause)) from None
        except AttestError as exc:
            raise self._deny("evidence", str(exc)) from None
        self._metrics.attestations.labels(
            "accepted", "simulator" if verified.simulated else verified.platform
        ).inc()
        identity = verified.identity
        problem = None if identity is None else key_provider_problem(identity, view.fingerprint)
        if problem is not None:
            raise self._deny("identity", problem)
        for step in ("evidence", "replay", "identity", "binding"):
            self._count(step, "ok")
        info = boot_info(verified)
        checked = _Checked(verified, info, hashlib.sha256(repr(info).encode()).digest())
        with self._lock:
            self._evidence_cache[digest] = (now, checked)
            if len(self._evidence_cache) > self._cache_size:
                self._evidence_cache.popitem(last=False)
        return checked

    def _verify_evidence(
        self,
        evidence: Evidence,
        binding: tuple[BindingLabel, bytes],
        *,
        now: int,
        simulator: bool,
    ) -> PlatformEvidence:
        """Steps 1-4 on whichever TEE the evidence comes from (module docstring)."""
        vm_config = evidence.vm_config or None
        if evidence.attestation:
            policy = SnpPolicy(allow_simulator=simulator)
            return verify_snp_evidence(
                evidence.attestation,
                verify_report=make_snp_report_verifier(now=now, policy=policy),
                binding=binding,
                vm_config=vm_config,
            )
        checks = [*default_policy().checks]
        if simulator:
            checks.append(SimulatorAllowed())
        verifier = make_quote_verifier(now=now, policy=AllOf(checks), collateral=self._collateral)
        return verify_evidence(
            evidence.quote,
            evidence.event_log,
            verify_quote=verifier,
            binding=binding,
            vm_config=vm_config,
        )

    def _ask(self, info: AppBootInfo, key: tuple[bytes, int], app_id: bytes) -> AuthDecision:
        """isAppAllowed at the head in `key`; one call per (app, head) however many wait."""
        with self._lock:
            gate = self._asking.setdefault(key, threading.Lock())
        try:
            with gate:
                decision = self._approval_cache.get(key)
                if decision is not None:  # another request asked while this one waited
                    return decision
                try:
                    decision = self._approve(info, key[1])
                except NoQuorum as exc:  # endpoints named in the node's log, not to clients
                    self._count("approval", "no_quorum")
                    why = "disagree" if exc.disagreement else "do not answer"
                    raise NotReady(
                        f"cannot ask governance about app 0x{app_id.hex()}: the node's RPC "
                        f"endpoints {why} (no quorum); refusing to release keys"
                    ) from None
                except Exception as exc:  # a chain call that fails must not release keys
                    self._count("approval", "error")
                    raise NotReady(
                        f"cannot ask governance about app 0x{app_id.hex()}: {exc}"
                    ) from None
                with self._lock:
                    self._approval_cache[key] = decision
                    if len(self._approval_cache) > self._cache_size:
                        self._approval_cache.popitem(last=False)
                return decision
        finally:
            with self._lock:
                if self._asking.get(key) is gate:
                    del self._asking[key]

    def fresh_view(self) -> ChainView:
        """(5) The current chain view, or NotReady when it is missing or stale, or the RPC
        endpoints disagree about the chain (`chain_problem`): fail closed."""
        problem = self._chain_problem()
        if problem is not None:
            self._count("chain", "no_quorum")
            raise NotReady(f"{problem}; refusing to release keys")
        view = self._view()
        if view is None:
            self._count("chain", "stale")
            raise NotReady("no chain view yet: the node has not reached the chain")
        age = view.head_age(self._clock())
        if age > self._max_head_age:
            self._count("chain", "stale")
            raise NotReady(
                f"chain view is stale: head {view.head} is {age:.0f}s old "
                f"(bound {self._max_head_age:.0f}s); refusing to release keys"
            )
        self._count("chain", "ok")
        return view

    def authorize(
        self,
        evidence: Evidence,
        *,
        binding: tuple[BindingLabel, bytes],
        app_ids: Sequence[bytes],
        cost: int,
    ) -> Authorized:
        """Run steps 1-8. Thread-safe: a call that must ask the chain runs off the event loop."""
        result = self._authorize(
            evidence, binding=binding, app_ids=app_ids, cost=cost, may_ask=True
        )
        assert result is not None  # with may_ask, every path returns or raises
        return result

    def authorize_without_chain_call(
        self,
        evidence: Evidence,
        *,
        binding: tuple[BindingLabel, bytes],
        app_ids: Sequence[bytes],
        cost: int,
    ) -> Authorized | None:
        """Steps 1-8 when governance's answer for this app at this head is cached, else None.

        The common case (an app's burst within one block) then never leaves the event loop;
        only a cache miss pays for a thread and a chain call.
        """
        return self._authorize(evidence, binding=binding, app_ids=app_ids, cost=cost, may_ask=False)

    def _authorize(
        self,
        evidence: Evidence,
        *,
        binding: tuple[BindingLabel, bytes],
        app_ids: Sequence[bytes],
        cost: int,
        may_ask: bool,
    ) -> Authorized | None:
        view = self.fresh_view()
        checked = self._verify(evidence, binding, view)  # (1-4)
        verified = checked.verified
        identity = verified.identity
        assert identity is not None  # boot_info refused a missing identity
        # (6) approval at the view's head, cached per block
        key = (checked.info_digest, view.head)
        decision = self._approval_cache.get(key)
        if decision is None and not may_ask:
            return None
        if decision is None:
            decision = self._ask(checked.info, key, identity.app_id)
        if not decision.allowed:
            raise self._deny(
                "approval", f"app 0x{identity.app_id.hex()}: {decision.reason or 'not allowed'}"
            )
        self._count("approval", "ok")
        # (7) ownership
        for app_id in app_ids:
            if app_id != identity.app_id:
                raise self._deny(
                    "ownership",
                    f"app 0x{identity.app_id.hex()} asked for a key of app 0x{app_id.hex()}",
                )
        self._count("ownership", "ok")
        # (8) rate, per (app, requester key): see the module docstring
        requester = hashlib.sha256(binding[0].value + binding[1]).digest()
        try:
            self._limiter.take(identity.app_id, requester, cost)
        except Exception:
            self._count("rate", "limited")
            raise
        self._count("rate", "ok")
        return Authorized(app_id=identity.app_id, evidence=verified, view=view)
