"""The `tdx` provider against a fake configfs-tsm tree and fake sysfs/ACPI files in tmp_path.

`FakeTsm` plays the kernel's part: `mkdir` of a report entry creates its attributes
(`provider`, `generation`) and an `outblob` FIFO whose writer answers only once the reader
opens it, after `inblob` has been written, as configfs-tsm generates the quote on read.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from attest import parse_event_log, replay_rtmrs
from attest.providers import ProviderError, SimulatorProvider, TdxProvider, TeeProvider


class FakeTsm:
    def __init__(self, answer: Callable[[bytes], bytes], *, extra_writes: int = 0) -> None:
        self.answer = answer
        self.extra_writes = extra_writes
        self.entries: list[Path] = []
        self.threads: list[threading.Thread] = []

    def mkdir(self, path: Path) -> None:
        os.mkdir(path)
        (path / "provider").write_text("tdx_guest\n")
        (path / "generation").write_text("0\n")
        os.mkfifo(path / "outblob")
        self.entries.append(path)
        t = threading.Thread(target=self._serve, args=(path,), daemon=True)
        t.start()
        self.threads.append(t)

    def _serve(self, path: Path) -> None:
        with contextlib.suppress(OSError), (path / "outblob").open("wb") as out:
            inblob = (path / "inblob").read_bytes()
            (path / "generation").write_text(f"{1 + self.extra_writes}\n")
            out.write(self.answer(inblob))

    def rmdir(self, path: Path) -> None:
        with contextlib.suppress(OSError):  # release a writer still waiting for a reader
            os.close(os.open(path / "outblob", os.O_RDONLY | os.O_NONBLOCK))
        shutil.rmtree(path)


def _provider(tmp_path: Path, kernel: FakeTsm) -> TdxProvider:
    root = tmp_path / "tsm" / "report"
    root.mkdir(parents=True)
    return TdxProvider(
        tsm_root=root,
        ccel_path=tmp_path / "CCEL",
        rtmr3_path=tmp_path / "rtmr3:sha384",
        runtime_log=tmp_path / "run" / "runtime_events.log",
        kernel=kernel,
    )


def test_quote_carries_report_data_and_entry_is_removed(tmp_path: Path) -> None:
    sim = SimulatorProvider()
    kernel = FakeTsm(sim.get_quote)
    tdx = _provider(tmp_path, kernel)
    quote = tdx.get_quote(b"\x42" * 64)
    assert quote[568:632] == b"\x42" * 64
    assert not any(tdx.tsm_root.iterdir())
    assert kernel.entries[0].name.startswith(f"tkms-{os.getpid()}-")


def test_generation_race_is_detected(tmp_path: Path) -> None:
    tdx = _provider(tmp_path, FakeTsm(lambda rd: b"quote", extra_writes=1))
    with pytest.raises(ProviderError, match="generation went from 0 to 2 .*expected 1"):
        tdx.get_quote(bytes(64))
    assert not any(tdx.tsm_root.iterdir())


def test_missing_configfs_is_a_clear_error(tmp_path: Path) -> None:
    tdx = TdxProvider(tsm_root=tmp_path / "absent")
    with pytest.raises(ProviderError, match="cannot create configfs-tsm entry"):
        tdx.get_quote(bytes(64))


def test_empty_outblob_is_refused(tmp_path: Path) -> None:
    tdx = _provider(tmp_path, FakeTsm(lambda rd: b""))
    with pytest.raises(ProviderError, match="returned a quote of 0 bytes"):
        tdx.get_quote(bytes(64))


def test_report_data_length_checked_before_any_io(tmp_path: Path) -> None:
    kernel = FakeTsm(lambda rd: b"q")
    with pytest.raises(ProviderError, match="report_data must be 64 bytes, got 32"):
        _provider(tmp_path, kernel).get_quote(bytes(32))
    assert kernel.entries == []


def test_extend_rtmr3_writes_digest_and_logs(tmp_path: Path, attestation_data: Path) -> None:
    tdx = _provider(tmp_path, FakeTsm(lambda rd: b""))
    (tmp_path / "CCEL").write_bytes((attestation_data / "dstack" / "ccel.bin").read_bytes())
    (tmp_path / "rtmr3:sha384").write_bytes(b"")
    entry = tdx.extend_rtmr(3, "app-id", b"\x01" * 20)
    assert (tmp_path / "rtmr3:sha384").read_bytes() == entry.digest
    tdx.extend_rtmr(3, "compose-hash", b"\x02" * 32, version=2)
    log = tdx.event_log()
    assert len(log) == 18 + 2
    assert [e.event for e in log[-2:]] == ["app-id", "compose-hash"] and log[-1].version == 2
    expected = bytes(48)
    for e in log[-2:]:
        expected = hashlib.sha384(expected + e.digest).digest()
    assert replay_rtmrs(log).rtmrs[3] == expected
    lines = (tmp_path / "run" / "runtime_events.log").read_text().splitlines()
    assert parse_event_log("[" + ",".join(lines) + "]") == log[-2:]


def test_extend_refuses_other_registers_and_reports_io(tmp_path: Path) -> None:
    tdx = _provider(tmp_path, FakeTsm(lambda rd: b""))
    with pytest.raises(ProviderError, match="only extend RTMR3, not RTMR0"):
        tdx.extend_rtmr(0, "x", b"")
    with pytest.raises(ProviderError, match="cannot extend RTMR3 via"):
        TdxProvider(rtmr3_path=tmp_path / "no" / "such").extend_rtmr(3, "x", b"")
    assert not (tmp_path / "run" / "runtime_events.log").exists()


def test_both_providers_satisfy_the_interface(tmp_path: Path) -> None:
    providers: list[TeeProvider] = [SimulatorProvider(), _provider(tmp_path, FakeTsm(bytes))]
    assert [p.name for p in providers] == ["simulator", "tdx"]


def test_corrupt_runtime_log_is_reported(tmp_path: Path, attestation_data: Path) -> None:
    tdx = _provider(tmp_path, FakeTsm(lambda rd: b""))
    (tmp_path / "CCEL").write_bytes((attestation_data / "dstack" / "ccel.bin").read_bytes())
    tdx.runtime_log.parent.mkdir(parents=True)
    tdx.runtime_log.write_text('{"imr": 3,\n')
    with pytest.raises(ProviderError, match="runtime log .* is corrupt"):
        tdx.event_log()
    with pytest.raises(ProviderError, match="cannot read the CCEL table"):
        TdxProvider(ccel_path=tmp_path / "absent").event_log()
