"""Real Intel TDX through the Linux kernel: configfs-tsm quotes and RTMR3 extension.

Quotes (Linux `configfs-tsm`, Documentation/ABI/testing/configfs-tsm-report): make a fresh
entry directory under ``/sys/kernel/config/tsm/report``, read its `generation`, write the 64
bytes of report_data to `inblob`, read the quote from `outblob`, read `generation` again and
require exactly one increment (our own write): any other value means another writer changed the
entry between our write and our read, and the quote may not carry our report_data. The entry is
removed afterwards.

RTMR3 extension: the kernel's TDX guest measurement attribute
``/sys/class/misc/tdx_guest/measurements/rtmr3:sha384`` (Linux 6.16+), which extends RTMR3 with
the 48 bytes written to it. dstack does the same through Intel's libtdx_attest
(`tdx_att_extend`, the older `/dev/tdx_guest` ioctl). Each runtime event is then appended to a
JSON-lines runtime log so `event_log()` can explain RTMR3; boot events come from the ACPI CCEL
table (``/sys/firmware/acpi/tables/data/CCEL``).

Every path is injectable so tests can run against a fake configfs tree.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import uuid
from pathlib import Path
from typing import Protocol

from attest._ccel import parse_ccel
from attest._eventlog import (
    DSTACK_RUNTIME_EVENT_TYPE,
    EventLogEntry,
    event_log_to_json,
    parse_event_log,
)
from attest._replay import runtime_event_digest
from attest.providers._base import ProviderError, check_report_data, check_runtime_index

__all__ = ["ConfigfsKernel", "TdxProvider"]

TSM_REPORT_ROOT = Path("/sys/kernel/config/tsm/report")
CCEL_PATH = Path("/sys/firmware/acpi/tables/data/CCEL")
RTMR3_PATH = Path("/sys/class/misc/tdx_guest/measurements/rtmr3:sha384")
RUNTIME_LOG = Path("/run/log/tkms/runtime_events.log")
_MAX_QUOTE = 1 << 20


class ConfigfsKernel(Protocol):
    """The two configfs operations the kernel implements (creating and removing an entry)."""

    def mkdir(self, path: Path) -> None: ...

    def rmdir(self, path: Path) -> None: ...


class _OsKernel:
    def mkdir(self, path: Path) -> None:
        os.mkdir(path)

    def rmdir(self, path: Path) -> None:
        os.rmdir(path)


def _read_generation(entry: Path) -> int:
    text = (entry / "generation").read_text().strip()
    try:
        return int(text)
    except ValueError:
        raise ProviderError(f"{entry / 'generation'} holds {text!r}, not a number") from None


class TdxProvider:
    """A `TeeProvider` for a TDX guest (configfs-tsm quotes, sysfs RTMR3 extension)."""

    name = "tdx"

    def __init__(
        self,
        *,
        tsm_root: Path = TSM_REPORT_ROOT,
        ccel_path: Path = CCEL_PATH,
        rtmr3_path: Path = RTMR3_PATH,
        runtime_log: Path = RUNTIME_LOG,
        kernel: ConfigfsKernel | None = None,
    ) -> None:
        self.tsm_root = tsm_root
        self.ccel_path = ccel_path
        self.rtmr3_path = rtmr3_path
        self.runtime_log = runtime_log
        self._kernel = kernel or _OsKernel()
        # The kernel serialises configfs writers only per entry; one extend at a time keeps
        # the runtime log in the same order as the register.
        self._lock = threading.Lock()

    def get_quote(self, report_data: bytes) -> bytes:
        report_data = check_report_data(report_data)
        entry = self.tsm_root / f"tkms-{os.getpid()}-{uuid.uuid4().hex}"
        try:
            self._kernel.mkdir(entry)
        except OSError as exc:
            raise ProviderError(f"cannot create configfs-tsm entry {entry}: {exc}") from None
        try:
            return self._quote_from(entry, report_data)
        except OSError as exc:
            raise ProviderError(f"configfs-tsm I/O failed in {entry}: {exc}") from None
        finally:
            # A leftover entry is harmless; the quote (or its error) matters more.
            with contextlib.suppress(OSError):
                self._kernel.rmdir(entry)

    def _quote_from(self, entry: Path, report_data: bytes) -> bytes:
        provider = entry / "provider"
        if provider.exists() and provider.read_text().strip() != "tdx_guest":
            raise ProviderError(f"configfs-tsm provider is {provider.read_text().strip()!r}")
        before = _read_generation(entry)
        (entry / "inblob").write_bytes(report_data)
        with (entry / "outblob").open("rb") as f:
            quote = f.read(_MAX_QUOTE + 1)
        after = _read_generation(entry)
        if after != before + 1:
            raise ProviderError(
                f"configfs-tsm generation went from {before} to {after} around our request "
                f"(expected {before + 1}): another writer used {entry.name}; retry"
            )
        if not quote or len(quote) > _MAX_QUOTE:
            raise ProviderError(f"configfs-tsm returned a quote of {len(quote)} bytes")
        return quote

    def extend_rtmr(
        self, index: int, event: str, payload: bytes, *, version: int = 1
    ) -> EventLogEntry:
        check_runtime_index(index)
        digest = runtime_event_digest(event, payload, version)
        entry = EventLogEntry(
            imr=index,
            event_type=DSTACK_RUNTIME_EVENT_TYPE,
            digest=digest,
            event=event,
            event_payload=bytes(payload),
            version=version,
        )
        line = event_log_to_json([entry])[1:-1] + "\n"
        with self._lock:
            try:
                with self.rtmr3_path.open("wb", buffering=0) as f:
                    f.write(digest)
            except OSError as exc:
                raise ProviderError(f"cannot extend RTMR3 via {self.rtmr3_path}: {exc}") from None
            try:
                self.runtime_log.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.runtime_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                with os.fdopen(fd, "a") as log:
                    log.write(line)
            except OSError as exc:
                raise ProviderError(
                    f"RTMR3 was extended but the runtime log {self.runtime_log} could not be "
                    f"written ({exc}): the event log no longer explains RTMR3"
                ) from None
        return entry

    def event_log(self) -> tuple[EventLogEntry, ...]:
        try:
            boot = parse_ccel(self.ccel_path.read_bytes())
        except OSError as exc:
            raise ProviderError(f"cannot read the CCEL table {self.ccel_path}: {exc}") from None
        try:
            lines = self.runtime_log.read_text().splitlines()
        except FileNotFoundError:
            lines = []
        try:
            items = [json.loads(line) for line in lines if line.strip()]
        except ValueError as exc:
            raise ProviderError(f"runtime log {self.runtime_log} is corrupt: {exc}") from None
        return (*boot, *parse_event_log(items))
