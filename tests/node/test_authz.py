"""The key-release pipeline step by step, with an in-process chain view and approval function."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from attest import BindingLabel, compute_report_data, event_log_to_json
from attest.providers import SimulatorProvider
from contracts import AppBootInfo, AuthDecision, NoQuorum
from guest.measure import measure_app_boot
from mpc import G1
from node import daemon
from node.authz import Authorizer, Evidence
from node.chainview import ChainView
from node.cli import init_node_dir
from node.config import load_config
from node.errors import NotReady, PolicyDenied, RateLimited
from node.metrics import NodeMetrics
from node.ratelimit import RateLimiter
from node.tee import SIMULATED_OS_IMAGE, SIMULATED_PLATFORM

APP = b"\xab" * 20
NOW = 1_800_000_000.0
#: The fingerprint of the network these tests' apps measure as their key provider.
NETWORK = bytes.fromhex("f1" * 32)


def view(**changes: object) -> ChainView:
    base = ChainView(
        chain_id=31337,
        governance=b"\x42" * 20,
        head=100,
        head_timestamp=int(NOW) - 2,
        latest_generation=1,
        committees={},
        running_epoch=0,
        nodes={},
        simulator_allowed=True,
        fingerprint=NETWORK,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def app_evidence(
    key: bytes,
    label: BindingLabel = BindingLabel.KDF_V1,
    app_id: bytes = APP,
    kms_id: str = NETWORK.hex(),
) -> Evidence:
    provider = SimulatorProvider()
    measure_app_boot(
        provider,
        app_id=app_id,
        compose=b"{}",
        instance_id=os.urandom(20),
        kms_id=kms_id,
        os_image=SIMULATED_OS_IMAGE,
    )
    quote = provider.get_quote(compute_report_data(label, key))
    return Evidence(quote=quote, event_log=event_log_to_json(provider.event_log()))


ALLOWED = AuthDecision(True, "")


class Approvals:
    def __init__(self, decision: AuthDecision = ALLOWED) -> None:
        self.decision = decision
        self.calls: list[tuple[AppBootInfo, int]] = []

    def __call__(self, info: AppBootInfo, block: int) -> AuthDecision:
        self.calls.append((info, block))
        return self.decision


def authorizer(
    current: ChainView | None, approvals: Approvals, *, rate: float = 100, burst: int = 100
) -> tuple[Authorizer, NodeMetrics]:
    metrics = NodeMetrics()
    return (
        Authorizer(
            view=lambda: current,
            approve=approvals,
            max_head_age=30,
            limiter=RateLimiter(rate, burst, clock=lambda: NOW),
            metrics=metrics,
            accept_simulator=True,
            clock=lambda: NOW,
        ),
        metrics,
    )


E = G1.base_mul(777).to_bytes()


def steps(metrics: NodeMetrics) -> dict[tuple[str, str], float]:
    out = {}
    for family in metrics.pipeline.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                out[(sample.labels["step"], sample.labels["outcome"])] = sample.value
    return out


def test_an_approved_app_passes_every_step_and_is_asked_about_at_the_view_head() -> None:
    approvals = Approvals()
    authz, metrics = authorizer(view(), approvals)
    result = authz.authorize(
        app_evidence(E), binding=(BindingLabel.KDF_V1, E), app_ids=[APP], cost=1
    )
    assert result.app_id == APP
    ((info, block),) = approvals.calls
    assert block == 100 and info.app_id.lower() == "0x" + APP.hex()
    assert info.os_image_hash == SIMULATED_OS_IMAGE
    counted = steps(metrics)
    for step in (
        "chain",
        "evidence",
        "replay",
        "identity",
        "binding",
        "approval",
        "ownership",
        "rate",
    ):
        assert counted[(step, "ok")] == 1, step


def test_a_stale_chain_view_fails_closed() -> None:
    approvals = Approvals()
    authz, metrics = authorizer(view(head_timestamp=int(NOW) - 31), approvals)
    with pytest.raises(NotReady, match=r"chain view is stale: head 100 is 31s old \(bound 30s\)"):
        authz.authorize(app_evidence(E), binding=(BindingLabel.KDF_V1, E), app_ids=[APP], cost=1)
    assert approvals.calls == []
    assert steps(metrics)[("chain", "stale")] == 1
    authz, _ = authorizer(None, approvals)
    with pytest.raises(NotReady, match="no chain view yet"):
        authz.authorize(app_evidence(E), binding=(BindingLabel.KDF_V1, E), app_ids=[APP], cost=1)


def test_rpc_endpoints_that_disagree_release_nothing_and_clients_learn_no_endpoint() -> None:
    """The view is fresh, but the node's RPC endpoints disagree (`ChainWatcher.disagreement`),
    or disagree on this app's approval read: refused either way (node/daemon.py wiring)."""
    approvals = Approvals()
    problem: list[str] = ["the node's RPC endpoints disagree about the chain (no quorum)"]

    def approve(info: AppBootInfo, block: int) -> AuthDecision:
        if not problem:  # the watcher saw agreement, this read did not
            raise NoQuorum("eth_call", "the endpoints disagree: https://rpc.example/***: 0x01")
        return approvals(info, block)

    authz = Authorizer(
        view=lambda: view(),
        approve=approve,
        max_head_age=30,
        limiter=RateLimiter(100, 100, clock=lambda: NOW),
        metrics=NodeMetrics(),
        accept_simulator=True,
        chain_problem=lambda: problem[0] if problem else None,
        clock=lambda: NOW,
    )

    def ask() -> object:
        return authz.authorize(
            app_evidence(E), binding=(BindingLabel.KDF_V1, E), app_ids=[APP], cost=1
        )

    with pytest.raises(NotReady, match="RPC endpoints disagree .*; refusing to release keys"):
        ask()
    assert approvals.calls == []
    problem.clear()
    with pytest.raises(NotReady, match="RPC endpoints disagree \\(no quorum\\)") as caught:
        ask()
    assert "rpc.example" not in str(caught.value)


def test_governance_refusal_is_permission_denied_with_its_reason() -> None:
    authz, metrics = authorizer(view(), Approvals(AuthDecision(False, "Compose hash not allowed")))
    with pytest.raises(PolicyDenied, match="approval: app 0xabab.*: Compose hash not allowed"):
        authz.authorize(app_evidence(E), binding=(BindingLabel.KDF_V1, E), app_ids=[APP], cost=1)
    assert steps(metrics)[("approval", "denied")] == 1


def test_keys_of_another_app_are_refused() -> None:
    authz, _ = authorizer(view(), Approvals())
    with pytest.raises(PolicyDenied, match="ownership: app 0xabab.* asked for a key of app 0x0101"):
        authz.authorize(
            app_evidence(E), binding=(BindingLabel.KDF_V1, E), app_ids=[APP, b"\x01" * 20], cost=2
        )


def test_evidence_bound_to_another_key_or_label_is_refused() -> None:
    authz, _ = authorizer(view(), Approvals())
    other = G1.base_mul(778).to_bytes()
    with pytest.raises(PolicyDenied, match="binding"):
        authz.authorize(
            app_evidence(other), binding=(BindingLabel.KDF_V1, E), app_ids=[APP], cost=1
        )
    with pytest.raises(PolicyDenied, match="binding"):
        authz.authorize(
            app_evidence(E, BindingLabel.SIGN_V1),
            binding=(BindingLabel.KDF_V1, E),
            app_ids=[APP],
            cost=1,
        )


def test_simulator_evidence_needs_governance_to_allow_simulators() -> None:
    authz, metrics = authorizer(view(simulator_allowed=False), Approvals())
    with pytest.raises(PolicyDenied, match="evidence: .*simulator"):
        authz.authorize(app_evidence(E), binding=(BindingLabel.KDF_V1, E), app_ids=[APP], cost=1)
    assert steps(metrics)[("evidence", "denied")] == 1


def test_tampered_evidence_is_refused_at_the_quote_or_replay_step() -> None:
    authz, _ = authorizer(view(), Approvals())
    good = app_evidence(E)
    flipped = bytearray(good.quote)
    flipped[600] ^= 1  # inside the TD report: the quote signature no longer verifies
    with pytest.raises(PolicyDenied, match="evidence"):
        authz.authorize(
            Evidence(bytes(flipped), good.event_log),
            binding=(BindingLabel.KDF_V1, E),
            app_ids=[APP],
            cost=1,
        )
    other_log = app_evidence(E).event_log  # another instance id: RTMR3 replays differently
    with pytest.raises(PolicyDenied, match="replay"):
        authz.authorize(
            Evidence(good.quote, other_log), binding=(BindingLabel.KDF_V1, E), app_ids=[APP], cost=1
        )


def test_rate_limit_per_app_and_requester_key() -> None:
    authz, metrics = authorizer(view(), Approvals(), rate=1, burst=3)
    evidence = app_evidence(E)
    authz.authorize(evidence, binding=(BindingLabel.KDF_V1, E), app_ids=[APP], cost=2)
    with pytest.raises(RateLimited):
        authz.authorize(evidence, binding=(BindingLabel.KDF_V1, E), app_ids=[APP], cost=2)
    assert steps(metrics)[("rate", "limited")] == 1


def test_verified_evidence_and_approvals_are_cached() -> None:
    approvals = Approvals()
    authz, metrics = authorizer(view(), approvals)
    evidence = app_evidence(E)
    for _ in range(3):
        authz.authorize(evidence, binding=(BindingLabel.KDF_V1, E), app_ids=[APP], cost=1)
    assert steps(metrics)[("evidence", "cached")] == 2
    assert len(approvals.calls) == 1  # same identity, same head


def test_concurrent_misses_at_a_new_head_make_one_chain_call() -> None:
    class Slow(Approvals):
        def __call__(self, info: AppBootInfo, block: int) -> AuthDecision:
            time.sleep(0.2)  # a chain call in flight while the other requests arrive
            return super().__call__(info, block)

    approvals = Slow()
    views = [view()]
    authz = Authorizer(
        view=lambda: views[-1],
        approve=approvals,
        max_head_age=30,
        limiter=RateLimiter(1000, 1000, clock=lambda: NOW),
        metrics=NodeMetrics(),
        accept_simulator=True,
        clock=lambda: NOW,
    )
    evidence = app_evidence(E)
    authz.authorize(evidence, binding=(BindingLabel.KDF_V1, E), app_ids=[APP], cost=1)
    views.append(view(head=101))
    with ThreadPoolExecutor(8) as pool:
        results = list(
            pool.map(
                lambda _: authz.authorize(
                    evidence, binding=(BindingLabel.KDF_V1, E), app_ids=[APP], cost=1
                ),
                range(8),
            )
        )
    assert [r.app_id for r in results] == [APP] * 8
    assert [block for _, block in approvals.calls] == [100, 101]


# -- simulator evidence: the node's own TEE and the chain id have a say (docs/security.md) ----


def test_a_tdx_node_refuses_simulator_evidence_whatever_governance_says() -> None:
    metrics = NodeMetrics()
    authz = Authorizer(
        view=lambda: view(simulator_allowed=True),
        approve=Approvals(),
        max_head_age=30,
        limiter=RateLimiter(100, 100, clock=lambda: NOW),
        metrics=metrics,
        accept_simulator=False,
        clock=lambda: NOW,
    )
    with pytest.raises(
        PolicyDenied,
        match=r'evidence: simulator quote refused: this node runs on TDX \(tee = "tdx"\)',
    ):
        authz.authorize(app_evidence(E), binding=(BindingLabel.KDF_V1, E), app_ids=[APP], cost=1)
    assert steps(metrics)[("evidence", "denied")] == 1


@pytest.mark.parametrize("chain_id", [1, 10, 8453, 11155111])
def test_simulator_evidence_is_refused_off_development_chains(chain_id: int) -> None:
    """Even with simulatorAllowed set (by a direct contract call), a public chain never gets
    keys released to forgeable evidence."""
    authz, _ = authorizer(view(chain_id=chain_id, simulator_allowed=True), Approvals())
    with pytest.raises(
        PolicyDenied, match=rf"simulator quote refused: chain {chain_id} is not a development"
    ):
        authz.authorize(app_evidence(E), binding=(BindingLabel.KDF_V1, E), app_ids=[APP], cost=1)
    dev, _ = authorizer(view(chain_id=1337, simulator_allowed=True), Approvals())
    dev.authorize(app_evidence(E), binding=(BindingLabel.KDF_V1, E), app_ids=[APP], cost=1)


@pytest.mark.parametrize(("tee", "refused"), [("tdx", True), ("simulator", False)])
def test_the_node_daemon_gives_its_tee_a_say(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tee: str, refused: bool
) -> None:
    """`tee = "tdx"` in the node's config reaches the authorizer (a simulator stands in for the
    TDX hardware so that the node can be built here)."""
    init_node_dir(tmp_path, tee="simulator", sealing="file")
    config = tmp_path / "node.toml"
    config.write_text(
        f'data_dir = "{tmp_path}"\ntee = "{tee}"\n[chain]\nrpc_url = "http://127.0.0.1:9"\n'
        'governance = "0x4242424242424242424242424242424242424242"\n'
    )
    monkeypatch.setattr(daemon, "make_provider", lambda _: SimulatorProvider(SIMULATED_PLATFORM))
    node = daemon.Node(load_config(config, environ={}))
    node._build()
    try:
        node.watcher.view = view(head_timestamp=int(time.time()))
        ask = functools.partial(
            node.authorizer.authorize_without_chain_call,
            app_evidence(E),
            binding=(BindingLabel.KDF_V1, E),
            app_ids=[APP],
            cost=1,
        )
        if refused:
            with pytest.raises(PolicyDenied, match="this node runs on TDX"):
                ask()
        else:
            assert ask() is None  # evidence accepted; governance would be asked next
    finally:
        node.journal.close()


# -- replays and the evidence cache (docs/security.md) -----------------------------------------


def test_a_replayed_request_cannot_drain_the_apps_other_requests() -> None:
    """Anyone who saw a request (a relay, a malicious node) can replay it; the replay verifies,
    but spends only the bucket of the key it binds, whose answers it cannot decrypt."""
    authz, metrics = authorizer(view(), Approvals(), rate=0.001, burst=3)
    seen = app_evidence(E)
    authz.authorize(seen, binding=(BindingLabel.KDF_V1, E), app_ids=[APP], cost=1)
    with pytest.raises(RateLimited):
        for _ in range(5):  # the replayer
            authz.authorize(seen, binding=(BindingLabel.KDF_V1, E), app_ids=[APP], cost=1)
    fresh = G1.base_mul(778).to_bytes()  # the app's next request (a new boot, a new key)
    granted = authz.authorize(
        app_evidence(fresh), binding=(BindingLabel.KDF_V1, fresh), app_ids=[APP], cost=3
    )
    assert granted.app_id == APP
    assert steps(metrics)[("rate", "limited")] == 1


def test_the_evidence_cache_key_covers_the_vm_config() -> None:
    """A cached verdict is never reused for evidence with another VM config: the config is
    part of what was verified (a malformed one is refused, a different claim is reported)."""
    authz, _ = authorizer(view(), Approvals())
    base = app_evidence(E)
    first = dataclasses.replace(base, vm_config=json.dumps({"os_image_hash": "ab" * 32}))
    granted = authz.authorize(first, binding=(BindingLabel.KDF_V1, E), app_ids=[APP], cost=1)
    assert granted.evidence.identity is not None
    assert granted.evidence.identity.claimed_os_image_hash == b"\xab" * 32
    other = dataclasses.replace(base, vm_config=json.dumps({"os_image_hash": "cd" * 32}))
    granted = authz.authorize(other, binding=(BindingLabel.KDF_V1, E), app_ids=[APP], cost=1)
    assert granted.evidence.identity is not None
    assert granted.evidence.identity.claimed_os_image_hash == b"\xcd" * 32
    broken = dataclasses.replace(base, vm_config="{not json")
    with pytest.raises(PolicyDenied, match="identity: vm_config has no usable os_image_hash"):
        authz.authorize(broken, binding=(BindingLabel.KDF_V1, E), app_ids=[APP], cost=1)


def test_key_provider_must_name_this_networks_fingerprint() -> None:
    """Security III G-01: a TD that measured another network (e.g. a copy of the chain with
    the same governance address and its own nodes) gets no keys here, and a node that does
    not know its own fingerprint yet releases nothing."""
    other = bytes.fromhex("f2" * 32)
    authz, _ = authorizer(view(fingerprint=other), Approvals())
    refused = f"identity: the key provider is KMS '{NETWORK.hex()}', not this network {other.hex()}"
    with pytest.raises(PolicyDenied, match=refused):
        authz.authorize(app_evidence(E), binding=(BindingLabel.KDF_V1, E), app_ids=[APP], cost=1)
    authz, _ = authorizer(view(fingerprint=None), Approvals())
    with pytest.raises(PolicyDenied, match="does not know its network's fingerprint yet"):
        authz.authorize(app_evidence(E), binding=(BindingLabel.KDF_V1, E), app_ids=[APP], cost=1)
    # The governance address alone (what the key provider named before) is not enough.
    old = app_evidence(E, kms_id="0x" + "42" * 20)
    authz, _ = authorizer(view(), Approvals())
    with pytest.raises(PolicyDenied, match="identity: the key provider is KMS '0x4242"):
        authz.authorize(old, binding=(BindingLabel.KDF_V1, E), app_ids=[APP], cost=1)
