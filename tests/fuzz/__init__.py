"""Fuzzing every input boundary of tkms (issue 9, "Bad input").

Each target feeds generated input to one real parser or handler and accepts only the errors
that boundary documents; anything else raised, or a case slower than the per-case budget, is
a finding reported with the reproducing input (hex) and its traceback.
`python -m tests.fuzz --list` names the targets; `docs/reliability-fuzz.md` explains the rest.
"""

from tests.fuzz.registry import TARGETS, register_target
from tests.fuzz.runner import Finding, Prepared, Report, Target, Unavailable, run_target

__all__ = [
    "TARGETS",
    "Finding",
    "Prepared",
    "Report",
    "Target",
    "Unavailable",
    "register_target",
    "run_target",
]
