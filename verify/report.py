"""What a verification found: rows of checks, each passed, failed or passed with a warning.

A `Check` is one thing a third party compares (a certificate key against a quote, a compose
hash against the chain, ...): its `detail` says in one line what was compared or why it
failed, `compared` lists the values side by side, `evidence` holds the raw material (folded
away in the HTML page), `links` the transactions that approved (or revoked) what it relies on.
A `Report` passes only when no check failed; warnings (a simulator quote on a dev chain) pass.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["pass", "fail", "warn"]
PASS: Status = "pass"
FAIL: Status = "fail"
WARN: Status = "warn"


@dataclass(frozen=True)
class Compared:
    """One comparison: `what`, the value required and the value found."""

    what: str
    expected: str
    found: str

    @property
    def equal(self) -> bool:
        return self.expected == self.found


@dataclass(frozen=True)
class Link:
    """A transaction on chain a check relies on (or that revoked what it relies on)."""

    label: str
    tx_hash: str
    block: int


@dataclass
class Check:
    name: str
    status: Status
    detail: str
    compared: list[Compared] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)
    links: list[Link] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.status == FAIL

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "detail": self.detail,
            "compared": [c.__dict__ for c in self.compared],
            "links": [link.__dict__ for link in self.links],
            "evidence": self.evidence,
        }


def _cut(value: str, keep: int = 40) -> str:
    return value if len(value) <= keep + 3 else f"{value[: keep - 12]}…{value[-10:]}"


def passed(name: str, detail: str, *compared: Compared, **evidence: Any) -> Check:
    return Check(name, PASS, detail, list(compared), dict(evidence))


def failed(name: str, detail: str, *compared: Compared, **evidence: Any) -> Check:
    return Check(name, FAIL, detail, list(compared), dict(evidence))


def judged(name: str, ok: bool, detail: str, *compared: Compared, **evidence: Any) -> Check:
    return Check(name, PASS if ok else FAIL, detail, list(compared), dict(evidence))


def merged(name: str, steps: list[Check], summary: str) -> Check:
    """One row for several steps (a KMS member's): the worst status, the failing steps'
    reasons as its detail (else `summary`), every comparison and link, the steps as evidence."""
    failing = [s for s in steps if s.failed]
    status: Status = FAIL if failing else (WARN if any(s.status == WARN for s in steps) else PASS)
    detail = "; ".join(f"{s.name}: {s.detail}" for s in failing) if failing else summary
    warned = [s.detail for s in steps if s.status == WARN]
    if not failing and warned:
        detail += f" ({warned[0]})"
    return Check(
        name,
        status,
        detail,
        [c for s in steps for c in s.compared],
        {"steps": [s.to_json() for s in steps]},
        [link for s in steps for link in s.links],
    )


@dataclass
class Report:
    """Every check run against one target (`kind` domain|app|gateway|node, `target`)."""

    kind: str
    target: str
    checks: list[Check] = field(default_factory=list)
    context: dict[str, Any] = field(default_factory=dict)  # chain, governance, head, ...
    started: float = field(default_factory=time.time)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and not any(c.failed for c in self.checks)

    def add(self, *checks: Check) -> None:
        self.checks.extend(checks)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "target": self.target,
            "passed": self.passed,
            "failed": [c.name for c in self.checks if c.failed],
            "warnings": [c.name for c in self.checks if c.status == WARN],
            "context": self.context,
            "checked_at": int(self.started),
            "checks": [c.to_json() for c in self.checks],
        }

    def to_text(self, *, full: bool = False) -> str:
        """A table for a terminal; long values are cut (`full` keeps them; JSON has them all)."""
        marks = {PASS: "PASS", FAIL: "FAIL", WARN: "WARN"}
        width = max((len(c.name) for c in self.checks), default=10)
        lines = [f"tkms verify {self.kind} {self.target}"]
        lines += [f"  {k}: {v}" for k, v in self.context.items() if not isinstance(v, dict)]
        for check in self.checks:
            lines.append(f"{marks[check.status]}  {check.name:<{width}}  {check.detail}")
            for c in check.compared:
                same = "=" if c.equal else "≠"
                found, expected = (
                    (c.found, c.expected) if full else (_cut(c.found), _cut(c.expected))
                )
                lines.append(f"{'':6}{'':<{width}}    {c.what}: {found} {same} {expected}")
            for link in check.links:
                lines.append(
                    f"{'':6}{'':<{width}}    {link.label}: block {link.block} tx {link.tx_hash}"
                )
        verdict = (
            "every check passed" if self.passed else f"{sum(c.failed for c in self.checks)} failed"
        )
        lines.append(f"result: {verdict}")
        return "\n".join(lines)
