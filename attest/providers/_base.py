"""The interface every TEE provider implements, and its error type.

A provider is what a node or guest agent asks for evidence: a quote binding 64 bytes of
report_data, the event log that explains the quote's RTMRs, and a way to measure runtime events
into RTMR3 (dstack's runtime events; RTMR0-2 belong to firmware and the boot chain and are never
extended from user space).
"""

from __future__ import annotations

from typing import Protocol

from attest._eventlog import EventLogEntry
from attest.errors import AttestError

__all__ = ["RUNTIME_RTMR", "ProviderError", "TeeProvider", "check_report_data"]

#: The only RTMR runtime events may extend.
RUNTIME_RTMR = 3


class ProviderError(AttestError):
    """The TEE could not produce a quote or extend a register."""

    def diagnostics(self) -> str:
        return f"TEE provider failed: {self}"


class TeeProvider(Protocol):
    """A source of TDX evidence (`tdx` on real hardware, `simulator` elsewhere)."""

    @property
    def name(self) -> str:
        """``"tdx"`` or ``"simulator"``."""
        ...

    def get_quote(self, report_data: bytes) -> bytes:
        """A quote whose REPORTDATA is `report_data` (exactly 64 bytes)."""
        ...

    def extend_rtmr(
        self, index: int, event: str, payload: bytes, *, version: int = 1
    ) -> EventLogEntry:
        """Measure a dstack runtime event into RTMR `index` (must be 3); return its log entry."""
        ...

    def event_log(self) -> tuple[EventLogEntry, ...]:
        """Every event measured so far (boot events, then runtime events), in order."""
        ...


def check_report_data(report_data: bytes) -> bytes:
    """Return `report_data` as bytes, or raise `ProviderError` unless it has 64 bytes."""
    if len(report_data) != 64:
        raise ProviderError(f"report_data must be 64 bytes, got {len(report_data)}")
    return bytes(report_data)


def check_runtime_index(index: int) -> None:
    """Refuse runtime extension of anything but RTMR3."""
    if index != RUNTIME_RTMR:
        raise ProviderError(f"runtime events may only extend RTMR3, not RTMR{index}")
