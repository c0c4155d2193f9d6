"""The four things a third party verifies, each a `Report` of rows (docs/verify.md):

* `verify_domain(NAME)`: the name's certificate is trusted and its key is the gateway's, in a
  fresh quote; the gateway is attested, in the gateway role and approved; CAA pins its ACME
  account; the app behind the name is attested and approved now; its KMS network is attested
  and approved member by member; a key the app got verifies to the network's key on chain.
* `verify_app(APP_ID)`: the app's part of that, reached through a gateway or directly.
* `verify_gateway(URL)`: the gateway's part, and its own KMS network.
* `verify_node(ADDRESS)`: one KMS node: registered, approved, serving its key, attested.

Nothing is taken from the operator: names, keys and quotes are checked against each other and
against governance at a recent head.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from attest import AttestError, BindingLabel, read_ratls_certificate
from contracts import ContractsError, NodeStatus
from gateway.names import RouteError, parse_server_name
from guest.committee import CommitteeError, kms_endpoint
from verify.chain import (
    ChainView,
    allowed_check,
    app_registry_check,
    compose_check,
    head_check,
    os_image_check,
)
from verify.dns import Answer, query_caa, system_resolver
from verify.fetch import FetchError, Target, peer_certificate, spki_of, trust, unverified
from verify.gateway_checks import gateway_checks
from verify.keyproof import key_proof_check
from verify.kms import active_members, fetch_served, member_check, network_checks
from verify.quotes import Attested, TrustPolicy, check_evidence
from verify.report import Check, Compared, Report, failed, judged

__all__ = ["Options", "verify_app", "verify_domain", "verify_gateway", "verify_node"]


@dataclass
class Options:
    """Where to read the chain, what to trust, and how to reach names."""

    view: ChainView
    trust: TrustPolicy
    ca_file: str | None = None
    dns_server: str = field(default_factory=system_resolver)
    max_head_age: float = 300.0
    key_proof: bool = True
    #: the gateway app the domain's owner names (None: any app governance approves whose
    #: ACME account the domain's CAA records pin)
    gateway_app: bytes | None = None

    def lookup(self) -> Callable[[str], Answer]:
        return lambda name: query_caa(self.dns_server, name)


def _report(kind: str, target: str, options: Options) -> Report:
    view = options.view
    report = Report(kind, target)
    report.context = {
        "chain_id": view.chain_id,
        "governance": view.governance_address,
        "head": view.head,
        "simulators": options.trust.simulator_note,
        "dns_server": options.dns_server,
    }
    report.add(head_check(view, options.max_head_age))
    return report


def _app_evidence(target: Target, app_id: bytes | None, options: Options) -> Attested:
    """The RA-TLS certificate `target` serves (the app's own TLS, never the gateway's), its
    evidence checked, and its app id compared with the one asked for."""
    try:
        der = peer_certificate(target, unverified())
        attestation = read_ratls_certificate(der)
    except (FetchError, AttestError) as exc:
        return Attested([failed("app: quote (DCAP, TCB)", f"no app evidence from {target}: {exc}")])
    attested = check_evidence(
        "app",
        attestation.quote,
        attestation.event_log,
        options.trust,
        binding=(BindingLabel.RATLS_CERT, spki_of(der), "its TLS key"),
        vm_config=attestation.vm_config,
    )
    if app_id is not None:
        measured = attested.identity.app_id if attested.identity else b""
        attested.checks.append(
            judged(
                "app: identity is the app asked for",
                measured == app_id,
                f"the TEE measured app 0x{measured.hex()}",
                Compared("app_id", "0x" + app_id.hex(), "0x" + measured.hex()),
            )
        )
    return attested


def _app_rows(report: Report, attested: Attested, proof: Target | None, options: Options) -> None:
    """The app's evidence, its approvals now, its network and (via `proof`) a key it got."""
    report.add(*attested.checks)
    info = attested.boot_info()
    if info is None or attested.identity is None:
        return
    view = options.view
    report.add(
        app_registry_check(view, info.app_id, "app"),
        allowed_check(view, info, "app"),
        compose_check(view, info.app_id, info.compose_hash, "app"),
        os_image_check(view, info.os_image_hash, "app"),
    )
    provider = attested.identity.key_provider
    fingerprint = bytes.fromhex(provider.id) if provider and provider.id else None
    network = network_checks(view, options.trust, fingerprint)
    report.add(*network)
    if proof is not None and options.key_proof and not network[0].failed:
        report.add(key_proof_check(proof, unverified(), view, attested.identity.app_id))
    elif not options.key_proof:
        report.add(Check("a key the app got verifies", "warn", "not checked (--no-key-proof)"))


def verify_domain(name: Target, options: Options) -> Report:
    report = _report("domain", str(name), options)
    base = name.name.split(".", 1)[1] if "." in name.name else ""
    try:
        route = parse_server_name(name.name, base)
    except RouteError as exc:
        report.add(failed("name routes to an app", f"{name.name}: {exc}"))
        return report
    try:
        served = spki_of(peer_certificate(name, trust(options.ca_file)))
        roots = options.ca_file or "the system's trusted roots"
        report.add(
            judged(
                "TLS certificate for the name", True, f"valid for {name.name}, chains to {roots}"
            )
        )
    except FetchError as exc:
        report.add(failed("TLS certificate for the name", str(exc)))
        try:
            served = spki_of(peer_certificate(name, unverified()))
        except FetchError:
            return report  # nothing answers for the name: every other row would say the same
    gateway = gateway_checks(
        options.view,
        options.trust,
        name.with_name(f"gateway.{base}"),
        options.lookup(),
        options.dns_server,
        options.gateway_app,
    )
    report.add(*gateway.checks)
    suffix = f"-{route.port}" if route.port is not None else ""
    prefix = "i-" if route.instance else ""
    passthrough = name.with_name(f"{prefix}{route.target}{suffix}s.{base}")
    if route.passthrough:
        report.add(
            judged(
                "the name is passed through to the app's own TLS key",
                True,
                "the gateway never sees this name's plaintext; the app's evidence binds its key",
            )
        )
    else:
        report.add(
            judged(
                "the name's certificate key is the gateway's quoted key",
                served == gateway.served_spki,
                "the name serves the key the gateway just quoted"
                if served == gateway.served_spki
                else "the name serves a key the gateway's fresh quote does not cover",
                Compared("SPKI", (gateway.served_spki or b"").hex(), served.hex()),
            )
        )
    app_id = None if route.instance else bytes.fromhex(route.target)
    attested = _app_evidence(passthrough, app_id, options)
    proof = name if not route.passthrough else passthrough
    _app_rows(report, attested, proof, options)
    return report


def verify_app(
    app_id: bytes, options: Options, *, via: Target | None, endpoint: Target | None
) -> Report:
    """`via`: a gateway name `<app>-<port>.<base>` (evidence through its passthrough twin);
    `endpoint`: the app's TLS port itself."""
    report = _report("app", "0x" + app_id.hex(), options)
    if endpoint is not None:
        evidence_at, proof = endpoint, endpoint
    elif via is not None:
        base = via.name.split(".", 1)[1]
        try:
            route = parse_server_name(via.name, base)
        except RouteError as exc:
            report.add(failed("name routes to an app", f"{via.name}: {exc}"))
            return report
        suffix = f"-{route.port}" if route.port is not None else ""
        evidence_at = via.with_name(f"{app_id.hex()}{suffix}s.{base}")
        proof = via.with_name(f"{app_id.hex()}{suffix}.{base}")
    else:
        report.add(failed("app reachable", "give --gateway NAME or --endpoint HOST:PORT"))
        return report
    _app_rows(report, _app_evidence(evidence_at, app_id, options), proof, options)
    return report


def verify_gateway(site: Target, options: Options) -> Report:
    """`site`: the gateway's own name (`gateway.<base>`) or its base domain."""
    if not site.name.startswith("gateway."):
        site = site.with_name(f"gateway.{site.name}")
    report = _report("gateway", str(site), options)
    facts = gateway_checks(options.view, options.trust, site, options.lookup(), options.dns_server)
    report.add(*facts.checks)
    if facts.app_id is not None:
        report.add(*network_checks(options.view, options.trust, facts.fingerprint))
    return report


def verify_node(address: str, options: Options) -> Report:
    """One KMS node by its Ethereum address: its registry record, then `member_check`."""
    report = _report("node", address, options)
    view = options.view
    try:
        node = view.governance.get_node(address, block=view.head)
        if node.status == NodeStatus.NONE:
            raise CommitteeError(f"no node {address} is registered in {view.governance_address}")
        endpoint = kms_endpoint(node.endpoint)
    except (ContractsError, CommitteeError) as exc:
        report.add(failed("registered on chain", str(exc)))
        return report
    members = [m.lower() for m in active_members(view)]
    index = members.index(address.lower()) + 1 if address.lower() in members else 0
    report.add(
        Check(
            "member of the active committee",
            "pass" if index else "warn",
            f"member {index} of {len(members)}"
            if index
            else "registered, not in the active committee",
        )
    )
    [served] = fetch_served([endpoint])
    report.add(
        member_check(view, options.trust, index, address, endpoint, node.tls_key_hash, served)
    )
    return report
