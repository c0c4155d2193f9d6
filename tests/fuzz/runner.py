"""Runs one fuzz target under hypothesis and collects what it finds.

Rules:
- A case may raise only the errors its target documents (`Prepared.allowed`); any other
  exception is a finding, and so is a case slower than `slow` seconds (the per-case budget is
  our own timer, CPU time with a wall-time backstop; hypothesis's deadline is off). A case
  still running after `hang` seconds is interrupted by SIGALRM (main thread only) and
  reported as a hang.
- Findings never stop the run: they are recorded, deduplicated by (kind, exception type,
  innermost frame), and counted, so one bug does not hide another.
- Generation is derandomized by `seed` (`hypothesis.seed`), with no example database and no
  shrinking: a finding is reproduced from its input, printed in hex. The main strategy's cases
  come `BATCH` per hypothesis example; the `rich` strategy (if any) gets `RICH_SHARE` of the
  cases, one per example.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

SLOW_SECONDS = 2.0
HANG_SECONDS = 30.0
#: A case is slow when it used more than `slow` seconds of this process's CPU time, or more
#: than WALL_FACTOR times that in wall time: on a shared, loaded machine wall time alone
#: flags cases that merely waited for a core.
WALL_FACTOR = 5
RICH_SHARE = 0.05
#: Fast-path cases per hypothesis example: hypothesis costs ~1 ms per example (far more on a
#: loaded machine) and little per draw within one, so the cheap cases come in batches.
BATCH = 25
EXAMPLES_PER_FINDING = 3


class Unavailable(Exception):
    """A target cannot run here (e.g. a tool it needs is missing); the message says why."""


class Hang(BaseException):
    """Raised into a case that outlived the hang budget (a BaseException: no target allows it)."""


@dataclass(frozen=True, slots=True)
class Prepared:
    """A target ready to run: what to generate, what to call, and which errors are documented."""

    strategy: SearchStrategy[Any]
    check: Callable[[Any], None]
    allowed: tuple[type[BaseException], ...]
    describe: Callable[[Any], str] = lambda case: bytes(case).hex()
    close: Callable[[], None] = lambda: None
    #: Slower, richer hypothesis strategies, given `RICH_SHARE` of the cases when set.
    rich: SearchStrategy[Any] | None = None
    #: What the cases led to (e.g. gRPC status counts), printed under the summary line.
    outcomes: Callable[[], str] = lambda: ""


@dataclass(frozen=True, slots=True)
class Target:
    """A named boundary; `prepare` builds it (may raise `Unavailable`)."""

    name: str
    boundary: str
    prepare: Callable[[], Prepared]


@dataclass(slots=True)
class Finding:
    kind: str  # "exception", "slow" or "hang"
    summary: str
    inputs: list[str]
    traceback: str
    count: int = 1


@dataclass(slots=True)
class Report:
    name: str
    cases: int = 0
    seconds: float = 0.0
    slowest: float = 0.0
    skipped: str = ""
    outcomes: str = ""
    findings: dict[str, Finding] = field(default_factory=dict)

    @property
    def failures(self) -> int:
        return sum(f.count for f in self.findings.values())

    @property
    def rate(self) -> float:
        return self.cases / self.seconds if self.seconds else 0.0


def _innermost(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "?"
    last = frames[-1]
    return f"{last.filename}:{last.lineno}"


@contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    """SIGALRM raises `Hang` after `seconds`; a no-op off the main thread or without SIGALRM."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGALRM"):
        yield
        return

    def fire(signum: int, frame: FrameType | None) -> None:
        raise Hang(f"case still running after {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextmanager
def _quiet_simulator_warnings() -> Iterator[None]:
    """Simulator evidence logs a warning on every use: by design, and noise at 100k cases."""
    logger = logging.getLogger("attest.simulator")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _record(report: Report, key: str, make: Callable[[], Finding], case_text: str) -> None:
    found = report.findings.get(key)
    if found is None:
        report.findings[key] = make()
        return
    found.count += 1
    if len(found.inputs) < EXAMPLES_PER_FINDING:
        found.inputs.append(case_text)


def run_target(
    target: Target,
    cases: int,
    seed_value: int = 0,
    *,
    slow: float = SLOW_SECONDS,
    hang: float = HANG_SECONDS,
) -> Report:
    """Run `cases` generated cases through `target` and return what happened."""
    report = Report(target.name)
    try:
        with _quiet_simulator_warnings():
            prepared = target.prepare()
    except Unavailable as exc:
        report.skipped = str(exc)
        return report

    def one(case: Any) -> None:
        report.cases += 1
        start, cpu_start = time.perf_counter(), time.process_time()
        failure: BaseException | None = None
        try:
            with _alarm(hang):
                prepared.check(case)
        except prepared.allowed:
            pass
        except (Exception, Hang) as exc:
            failure = exc
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu_start
        report.slowest = max(report.slowest, elapsed)
        if failure is not None:
            kind = "hang" if isinstance(failure, Hang) else "exception"
            text = prepared.describe(case)
            summary = f"{type(failure).__name__}: {failure}"[:500]
            tb = "".join(traceback.format_exception(failure))
            key = f"{kind}|{type(failure).__name__}|{_innermost(failure)}"
            _record(report, key, lambda: Finding(kind, summary, [text], tb), text)
        elif cpu > slow or elapsed > WALL_FACTOR * slow:
            text = prepared.describe(case)
            summary = f"case took {elapsed:.2f} s, {cpu:.2f} s of CPU (budget {slow:.1f} s)"
            _record(report, "slow", lambda: Finding("slow", summary, [text], ""), text)

    rich = 0 if prepared.rich is None else max(1, int(cases * RICH_SHARE))
    fast = cases - rich
    runs: list[tuple[SearchStrategy[Any], int, int]] = [
        (prepared.strategy, -(-fast // BATCH), BATCH)
    ]
    if prepared.rich is not None:
        runs.append((prepared.rich, rich, 1))
    started = time.perf_counter()
    try:
        with _quiet_simulator_warnings():
            for strategy, examples, size in runs:
                budget = report.cases + (fast if size > 1 else rich)
                batch = _batch_runner(one, report, budget)
                settings(
                    max_examples=examples,
                    database=None,
                    deadline=None,
                    phases=[Phase.generate],
                    suppress_health_check=list(HealthCheck),
                    derandomize=False,
                    print_blob=False,
                )(
                    seed(seed_value)(given(st.lists(strategy, min_size=size, max_size=size))(batch))
                )()
    except Exception as exc:  # the harness itself broke (a strategy bug): report, don't hide
        tb = "".join(traceback.format_exception(exc))
        report.findings["harness"] = Finding("harness", f"{type(exc).__name__}: {exc}", [], tb)
    finally:
        report.seconds = time.perf_counter() - started
        report.outcomes = prepared.outcomes()
        prepared.close()
    return report


def _batch_runner(
    one: Callable[[Any], None], report: Report, budget: int
) -> Callable[[list[Any]], None]:
    """Runs a batch's cases until the report has counted `budget` of them."""

    def batch(items: list[Any]) -> None:
        for item in items:
            if report.cases < budget:
                one(item)

    return batch


def format_report(report: Report) -> str:
    """One summary line, then every finding with its inputs (hex) and traceback."""
    if report.skipped:
        return f"{report.name:<24} skipped: {report.skipped}"
    lines = [
        f"{report.name:<24} {report.cases:>8} cases {report.seconds:>8.1f} s "
        f"{report.rate:>9.0f} cases/s  slowest {report.slowest * 1000:>7.1f} ms  "
        f"failures {report.failures}"
    ]
    if report.outcomes:
        lines.append(f"  outcomes: {report.outcomes}")
    for finding in report.findings.values():
        lines.append(f"  [{finding.kind}] x{finding.count}: {finding.summary}")
        for text in finding.inputs:
            lines.append(f"    input: {text[:4000]}")
        if finding.traceback:
            lines.extend("    " + line for line in finding.traceback.rstrip().splitlines())
    return "\n".join(lines)


def print_report(report: Report) -> None:
    print(format_report(report), flush=True)
    sys.stdout.flush()
