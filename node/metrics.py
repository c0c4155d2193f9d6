"""Prometheus metrics of one node, in a registry of its own (several nodes may share a process).

Every step of the key-release pipeline counts its outcomes (design §6.3), so an operator can
see where requests are refused; the gauges describe the epoch, the peers and the chain view.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class NodeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "tkms_requests",
            "Public RPCs by method and result (ok or a gRPC code).",
            ["method", "result"],
            registry=r,
        )
        self.latency = Histogram(
            "tkms_request_latency_seconds",
            "Public RPC latency by method.",
            ["method"],
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r,
        )
        self.pipeline = Counter(
            "tkms_authz_steps",
            "Authorization pipeline steps by step and outcome.",
            ["step", "outcome"],
            registry=r,
        )
        self.partials = Counter(
            "tkms_partials", "Partials computed, by kind.", ["kind"], registry=r
        )
        self.attestations = Counter(
            "tkms_attestations",
            "Evidence verifications by result and TEE kind.",
            ["result", "tee"],
            registry=r,
        )
        self.epoch = Gauge("tkms_epoch", "Active committee epoch (0 before the first).", registry=r)
        self.generation = Gauge("tkms_generation", "Latest active key generation.", registry=r)
        self.epoch_phase = Gauge(
            "tkms_epoch_phase",
            "1 for the phase an in-flight epoch is in.",
            ["epoch", "phase"],
            registry=r,
        )
        self.faults = Counter(
            "tkms_protocol_faults",
            "Faults recorded against peers in DKG/reshare.",
            ["kind", "member"],
            registry=r,
        )
        self.peer_faults = Counter(
            "tkms_peer_faults",
            "Faults recorded in DKG/reshare against each peer, by its Ethereum address.",
            ["peer", "kind"],
            registry=r,
        )
        self.peers_reachable = Gauge(
            "tkms_peers_reachable",
            "Other committee members whose health probe answered SERVING in the last 3 s.",
            registry=r,
        )
        self.chain_head = Gauge("tkms_chain_head", "Latest chain block seen.", registry=r)
        self.chain_lag = Gauge(
            "tkms_chain_head_age_seconds", "Age of the latest block seen.", registry=r
        )
        self.health = Gauge("tkms_health", "0 = Down, 1 = Degraded, 2 = Normal.", registry=r)
        self.rpc_diverged = Counter(
            "tkms_rpc_diverged",
            "Reads where an RPC endpoint (URL redacted) answered against the quorum or was stale.",
            ["endpoint"],
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
