"""Checking one piece of TEE evidence as rows: the quote (DCAP and TCB), the RTMR replay, the
app identity it yields, and the key or statement its report_data binds.

The steps are `attest`'s (design §4), run one by one so that each gets its own row and a
failure in one still shows what the others found. Hardware quotes are verified with DCAP
(collateral from a file, or fetched from a PCCS and cached); simulator quotes only when
governance allows simulators right now on a development chain, and then as a warning row: they
prove no hardware TEE.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from attest import (
    AllOf,
    AppIdentity,
    AttestError,
    BindingLabel,
    Collateral,
    EventLogEntry,
    Policy,
    SimulatorAllowed,
    VerifiedEvidence,
    VerifiedQuote,
    compute_app_identity,
    compute_report_data,
    default_policy,
    fetch_collateral,
    is_simulator_quote,
    make_quote_verifier,
    parse_event_log,
    parse_quote,
    verify_replay,
)
from contracts import AppBootInfo
from verify.report import FAIL, PASS, WARN, Check, Compared, failed, judged


@dataclass
class TrustPolicy:
    """How quotes are judged: `now`, attest's policy, DCAP collateral, and whether simulator
    quotes count (`simulator_allowed`, with `simulator_note` saying why)."""

    now: int
    simulator_allowed: bool = False
    simulator_note: str = "governance does not allow simulated TEEs"
    collateral: Collateral | None = None
    pccs_url: str | None = None
    collateral_cache: Path = field(default_factory=lambda: Path.home() / ".cache/tkms/collateral")
    policy: Policy = field(default_factory=default_policy)

    def _collateral(self, raw: bytes) -> Collateral | None:
        if self.collateral is not None or is_simulator_quote(parse_quote(raw)):
            return self.collateral
        if self.pccs_url is None:
            return None
        return fetch_collateral(
            raw, pccs_url=self.pccs_url, cache_dir=self.collateral_cache, now=self.now
        )

    def verify(self, raw: bytes) -> VerifiedQuote:
        policy = self.policy
        if self.simulator_allowed:
            policy = AllOf([*getattr(policy, "checks", [policy]), SimulatorAllowed()])
        collateral = self._collateral(raw)
        return make_quote_verifier(now=self.now, policy=policy, collateral=collateral)(raw)


@dataclass
class Attested:
    """A piece of evidence checked: its rows, and what it showed when it passed."""

    checks: list[Check]
    identity: AppIdentity | None = None
    verified: VerifiedQuote | None = None
    #: set when the quote, the replay and the identity all passed
    evidence: VerifiedEvidence | None = None

    @property
    def ok(self) -> bool:
        return not any(c.status == FAIL for c in self.checks)

    def boot_info(self) -> AppBootInfo | None:
        """What governance judges (as the nodes and the gateway build it), if verified."""
        from gateway.registration import boot_info

        return boot_info(self.evidence) if self.evidence is not None else None


def _quote_row(subject: str, raw: bytes, trust: TrustPolicy) -> tuple[Check, VerifiedQuote | None]:
    name = f"{subject}: quote (DCAP, TCB)"
    try:
        simulated = is_simulator_quote(parse_quote(raw))
        verified = trust.verify(raw)
    except AttestError as exc:
        why = exc.diagnostics() if hasattr(exc, "diagnostics") else str(exc)
        if "simulator" in str(exc).lower() and not trust.simulator_allowed:
            why = f"{why} ({trust.simulator_note})"
        return failed(name, f"rejected: {why}"), None
    evidence = {
        "tcb_status": verified.tcb_status,
        "advisory_ids": list(verified.advisory_ids),
        "tcb_source": verified.tcb_source,
        "fmspc": verified.fmspc,
        "checks": list(verified.checks),
    }
    if simulated:
        detail = (
            f"SIMULATOR quote, not a hardware TEE: accepted only because {trust.simulator_note}"
        )
        return Check(name, WARN, detail, [], evidence), verified
    advisories = ", ".join(verified.advisory_ids) or "none"
    detail = f"DCAP verified, TCB {verified.tcb_status} (advisories: {advisories})"
    return Check(name, PASS, detail, [], evidence), verified


def check_evidence(
    subject: str,
    raw_quote: bytes,
    event_log: str | bytes | tuple[EventLogEntry, ...],
    trust: TrustPolicy,
    *,
    binding: tuple[BindingLabel, bytes, str] | None,
    vm_config: str | None = None,
) -> Attested:
    """Rows for `subject`'s evidence. `binding` is (label, content, what the content is)."""
    try:
        quote = parse_quote(raw_quote)
    except AttestError as exc:
        return Attested([failed(f"{subject}: quote (DCAP, TCB)", f"unreadable quote: {exc}")])
    quote_row, verified = _quote_row(subject, raw_quote, trust)
    checks = [quote_row]
    td = quote.td_report
    try:
        entries = parse_event_log(event_log) if isinstance(event_log, str | bytes) else event_log
        indices = tuple(sorted({e.imr for e in entries} | {3}))
        replayed = verify_replay(entries, td.rtmrs, indices=indices)
        checks.append(
            judged(
                f"{subject}: RTMR replay",
                True,
                f"{len(entries)} events replay to the quoted RTMR{','.join(map(str, indices))}",
                Compared("RTMR3", td.rtmr3.hex(), replayed.rtmrs[3].hex()),
            )
        )
    except AttestError as exc:
        checks.append(failed(f"{subject}: RTMR replay", str(exc)))
        return Attested(checks, None, verified)
    identity: AppIdentity | None = None
    try:
        ppid = verified.ppid if verified is not None else None
        identity = compute_app_identity(entries, td, ppid=ppid, vm_config=vm_config)
        provider = identity.key_provider
        network = f"{provider.name} {provider.id[:16]}…" if provider else "none"
        checks.append(
            judged(
                f"{subject}: app identity",
                True,
                f"app 0x{identity.app_id.hex()}, compose {identity.compose_hash.hex()[:16]}…, "
                f"key provider {network}",
                identity=identity.to_json_dict(),
            )
        )
    except AttestError as exc:
        checks.append(failed(f"{subject}: app identity", str(exc)))
    evidence = None
    if verified is not None and identity is not None:
        evidence = VerifiedEvidence(
            verified_quote=verified,
            replayed=replayed,
            replayed_rtmrs=indices,
            identity=identity,
            binding=binding[0] if binding else None,
        )
    if binding is not None:
        label, content, what = binding
        expected = compute_report_data(label, content)
        checks.append(
            judged(
                f"{subject}: report_data binds {what}",
                expected == td.report_data,
                f"SHA-512({label.value.decode()!r} ‖ {what})"
                + ("" if expected == td.report_data else ": the quote was made for something else"),
                Compared("report_data", expected.hex(), td.report_data.hex()),
            )
        )
    return Attested(checks, identity, verified, evidence)
