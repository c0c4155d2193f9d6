"""Every fuzz target with a small budget (the full runs are `python -m tests.fuzz`)."""

from __future__ import annotations

import time

import pytest
from hypothesis import strategies as st

from tests.fuzz import TARGETS, Prepared, Target, Unavailable, run_target
from tests.fuzz.__main__ import main
from tests.fuzz.runner import format_report

SMOKE_CASES = 300


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_target_runs_clean_on_a_small_budget(name: str) -> None:
    report = run_target(TARGETS[name], SMOKE_CASES, seed_value=1)
    # Every target's inputs are in the checkout: a target that cannot run here is a failure.
    assert not report.skipped, report.skipped
    assert report.failures == 0, format_report(report)
    # hypothesis may stop early only where a strategy's space is exhausted
    assert report.cases >= SMOKE_CASES * 0.9 or name == "grpc-admin", format_report(report)


def _target(check: object, allowed: tuple[type[BaseException], ...] = (ValueError,)) -> Target:
    def prepare() -> Prepared:
        return Prepared(strategy=st.binary(max_size=4), check=check, allowed=allowed)  # type: ignore[arg-type]

    return Target("synthetic", "a test of the runner", prepare)


def test_an_undocumented_exception_is_reported_with_input_and_traceback() -> None:
    def check(data: bytes) -> None:
        if len(data) == 3:
            raise KeyError("three")
        raise ValueError("documented")

    report = run_target(_target(check), 200)
    assert report.cases == 200
    (finding,) = report.findings.values()
    assert finding.kind == "exception" and finding.summary == "KeyError: 'three'"
    assert all(len(bytes.fromhex(text)) == 3 for text in finding.inputs)
    assert "raise KeyError" in finding.traceback
    assert "failures " + str(finding.count) in format_report(report)


def test_a_slow_case_is_a_finding() -> None:
    def check(data: bytes) -> None:
        if data == b"":
            deadline = time.process_time() + 0.06
            while time.process_time() < deadline:  # busy: a slow parser, not a wait
                pass

    report = run_target(_target(check), 50, slow=0.05)
    assert [f.kind for f in report.findings.values()] == ["slow"]
    assert report.findings["slow"].summary.startswith("case took 0.")
    assert "s of CPU (budget 0.1 s)" in report.findings["slow"].summary


def test_a_hanging_case_is_interrupted_and_reported() -> None:
    def check(data: bytes) -> None:
        if data == b"":
            time.sleep(5)

    started = time.perf_counter()
    report = run_target(_target(check), 20, hang=0.2)
    elapsed = time.perf_counter() - started
    (finding,) = report.findings.values()
    assert finding.kind == "hang" and finding.summary == "Hang: case still running after 0 s"
    assert elapsed < 5 * finding.count  # every hanging case was cut short of its 5 s sleep


def test_an_unavailable_target_is_skipped_with_its_reason() -> None:
    def prepare() -> Prepared:
        raise Unavailable("no data here")

    report = run_target(Target("absent", "", prepare), 10)
    assert report.skipped == "no data here" and report.cases == 0


def test_command_lists_targets_and_refuses_unknown_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in TARGETS)
    with pytest.raises(SystemExit) as exited:
        main(["--target", "nope"])
    assert exited.value.code == 2
    assert "unknown target(s) nope" in capsys.readouterr().err


def test_command_exits_1_on_a_failing_target(monkeypatch: pytest.MonkeyPatch) -> None:
    def check(data: bytes) -> None:
        raise KeyError("always")

    monkeypatch.setitem(TARGETS, "synthetic", _target(check))
    assert main(["--target", "synthetic", "--cases", "5"]) == 1
    assert main(["--target", "scalar", "--cases", "5"]) == 0
