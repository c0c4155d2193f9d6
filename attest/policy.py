"""tkms policy over verified quotes: one small class per check, combined by `AllOf`.

A policy's `verify(verified)` returns None or raises `PolicyError` saying what was found and
what was expected; it never returns a bool (ignoring a bool would be a silent accept).

The default (`default_policy()`), in the order the checks run:
1. `NotDebugTd`       TDATTRIBUTES.DEBUG must be 0 (a debug TD's memory is readable by the host);
2. `NoServiceTd`      MR_SERVICETD must be all zero (no bound service TD such as a MigTD);
3. `SeptVeDisabled`   TDATTRIBUTES.SEPT_VE_DISABLE must be 1;
4. `TcbStatusIn`      the TCB status must be one of the accepted ones (default: only UpToDate).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Protocol

from attest.errors import PolicyError

if TYPE_CHECKING:
    from attest._dcap import VerifiedQuote

# Every TCB status Intel's collateral can yield, best first.
TCB_STATUSES: tuple[str, ...] = (
    "UpToDate",
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
    "OutOfDate",
    "OutOfDateConfigurationNeeded",
    "Revoked",
)


class Policy(Protocol):
    """Anything that can judge a verified quote."""

    @property
    def name(self) -> str:
        """Short name used in `VerifiedQuote.checks` and in error messages."""
        ...

    def verify(self, verified: VerifiedQuote) -> None:
        """Return None when the quote passes; raise `PolicyError` otherwise."""
        ...


class NotDebugTd:
    """Reject TDs launched in debug mode (TDATTRIBUTES bit 0)."""

    name = "not-debug-td"

    def verify(self, verified: VerifiedQuote) -> None:
        if verified.quote.is_debug:
            attrs = verified.quote.td_report.td_attributes.hex()
            raise PolicyError(
                f"debug TD (TDATTRIBUTES {attrs} has DEBUG = 1; expected 0)",
                check=self.name,
                found="DEBUG=1",
                expected="DEBUG=0",
            )


class NoServiceTd:
    """Reject TD 1.5 quotes that bind a service TD (non-zero MR_SERVICETD)."""

    name = "no-service-td"

    def verify(self, verified: VerifiedQuote) -> None:
        mr = verified.quote.td_report.mr_service_td
        if mr is not None and any(mr):
            raise PolicyError(
                f"service TD (MR_SERVICETD non-zero: {mr.hex()}; expected all zero)",
                check=self.name,
                found=mr.hex(),
                expected="0" * 96,
            )


class SeptVeDisabled:
    """Require SEPT_VE_DISABLE (TDATTRIBUTES bit 28), as dstack and Intel guidance do."""

    name = "sept-ve-disabled"

    def verify(self, verified: VerifiedQuote) -> None:
        if not verified.quote.sept_ve_disabled:
            attrs = verified.quote.td_report.td_attributes.hex()
            raise PolicyError(
                f"SEPT_VE_DISABLE not set (TDATTRIBUTES {attrs}; expected bit 28 = 1)",
                check=self.name,
                found="SEPT_VE_DISABLE=0",
                expected="SEPT_VE_DISABLE=1",
            )


class TcbStatusIn:
    """Accept only the listed TCB statuses (minimum TCB level)."""

    name = "tcb-status"

    def __init__(self, accepted: Iterable[str] = ("UpToDate",)) -> None:
        self.accepted = tuple(accepted)
        if not self.accepted:
            raise ValueError("TcbStatusIn needs at least one accepted TCB status")
        unknown = [s for s in self.accepted if s not in TCB_STATUSES]
        if unknown:
            raise ValueError(
                f"unknown TCB status {', '.join(unknown)} (known: {', '.join(TCB_STATUSES)})"
            )

    def verify(self, verified: VerifiedQuote) -> None:
        if verified.tcb_status not in self.accepted:
            wanted = (
                self.accepted[0]
                if len(self.accepted) == 1
                else f"(accepted: {', '.join(self.accepted)})"
            )
            advisories = ", ".join(verified.advisory_ids) or "none"
            raise PolicyError(
                f"TCB status {verified.tcb_status} below the minimum {wanted} "
                f"(advisories: {advisories})",
                check=self.name,
                found=verified.tcb_status,
                expected=", ".join(self.accepted),
            )


class AllOf:
    """All checks must pass; they run in order and the first failure is raised."""

    name = "all-of"

    def __init__(self, checks: Sequence[Policy]) -> None:
        # An empty AllOf would accept everything: refuse it as API misuse (sigstore's rule).
        if not checks:
            raise ValueError("AllOf needs at least one check; an empty policy accepts anything")
        self.checks = tuple(checks)

    @property
    def names(self) -> tuple[str, ...]:
        """Names of the checks, in the order they run."""
        return tuple(c.name for c in self.checks)

    def verify(self, verified: VerifiedQuote) -> None:
        for check in self.checks:
            check.verify(verified)


def default_policy(
    *,
    accepted_tcb_statuses: Iterable[str] = ("UpToDate",),
    allow_debug: bool = False,
    allow_service_td: bool = False,
) -> AllOf:
    """tkms's policy: no debug TD, no service TD, SEPT_VE_DISABLE set, TCB UpToDate.

    `allow_debug` and `allow_service_td` drop the matching check (development and
    migration-TD setups); `accepted_tcb_statuses` widens the minimum TCB status.
    """
    checks: list[Policy] = []
    if not allow_debug:
        checks.append(NotDebugTd())
    if not allow_service_td:
        checks.append(NoServiceTd())
    checks.append(SeptVeDisabled())
    checks.append(TcbStatusIn(accepted_tcb_statuses))
    return AllOf(checks)
