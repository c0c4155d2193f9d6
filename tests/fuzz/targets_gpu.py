"""Fuzz targets for attest/'s NVIDIA GPU evidence: the SPDM report parser and the document check.

Documented errors: `parse_gpu_report` and `verify_gpu_evidence` raise only `GpuEvidenceError`.
"""

from __future__ import annotations

from attest import GpuEvidenceError, parse_gpu_report, verify_gpu_evidence
from tests.attest.gpu_data import NOW, REPORT, evidence_text
from tests.fuzz.mutate import fast_mutants, raw_or_mutant, rich_mutants
from tests.fuzz.runner import Prepared, Target

#: Request header, response header, the block count and record length, the first block's sizes,
#: the opaque length, the first opaque field's type and size, and the signature's first byte.
HOT = [
    0,
    1,
    2,
    3,
    37,
    38,
    41,
    42,
    43,
    44,
    46,
    47,
    50,
    3597,
    3598,
    3599,
    3600,
    3601,
    len(REPORT) - 96,
]


def _report_parser() -> Prepared:
    def check(data: bytes) -> None:
        report = parse_gpu_report(data)
        if report.raw != data or report.signed_region + report.signature != data:
            raise AssertionError("parsed report does not describe the bytes it came from")

    return Prepared(
        strategy=raw_or_mutant([REPORT], HOT, max_raw=512),
        rich=rich_mutants([REPORT], HOT, max_raw=512),
        check=check,
        allowed=(GpuEvidenceError,),
    )


def _evidence() -> Prepared:
    text = evidence_text().encode()

    def check(data: bytes) -> None:
        verified = verify_gpu_evidence(data.decode("utf-8", "replace"), now=NOW)
        if any(d.report.raw != REPORT for d in verified.devices):
            raise AssertionError("a changed report verified")

    return Prepared(
        strategy=fast_mutants([text], max_edits=2),
        check=check,
        allowed=(GpuEvidenceError,),
    )


TARGETS = (
    Target(
        "gpu-report", "attest.parse_gpu_report: mutated NVIDIA H100 sample report", _report_parser
    ),
    Target(
        "gpu-evidence",
        "attest.verify_gpu_evidence: mutated NVIDIA evidence document (H100 sample)",
        _evidence,
    ),
)
