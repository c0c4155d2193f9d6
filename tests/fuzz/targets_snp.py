"""Fuzz targets for attest/'s SEV-SNP side: the report parser, the dstack envelope, the pipeline.

Documented errors: `parse_snp_report` raises only `QuoteParseError` (its `SnpReportError` and
`UnsupportedQuoteError` subclasses); `decode_snp_attestation` only `AttestationFormatError`;
`verify_snp_evidence` only `AttestError` subclasses.
"""

from __future__ import annotations

from functools import cache

from attest import (
    AttestationFormatError,
    AttestError,
    QuoteParseError,
    SnpPolicy,
    decode_snp_attestation,
    make_snp_report_verifier,
    parse_snp_report,
    verify_snp_evidence,
)
from tests.attest.snp_data import NOW, SETS, dstack_attestation_with_certs
from tests.fuzz.mutate import fast_mutants, raw_or_mutant, rich_mutants
from tests.fuzz.runner import Prepared, Target

#: VERSION, SIGNATURE_ALGO, CPUID family/model, the top of R and S, the reserved tail.
HOT = [0, 1, 0x30, 0x34, 0x48, 0x188, 0x189, 0x2A0 + 47, 0x2A0 + 48, 0x2E8 + 48, 0x330, 0x49F]


@cache
def real_reports() -> tuple[bytes, ...]:
    return tuple(s.report for s in SETS)


def _report_parser() -> Prepared:
    def check(data: bytes) -> None:
        report = parse_snp_report(data)
        if report.raw != data or report.signed_region != data[:0x2A0]:
            raise AssertionError("parsed report does not describe the bytes it came from")

    return Prepared(
        strategy=raw_or_mutant(real_reports(), HOT, max_raw=1300),
        rich=rich_mutants(real_reports(), HOT, max_raw=1300),
        check=check,
        allowed=(QuoteParseError,),
    )


def _envelope_hot(raw: bytes) -> list[int]:
    """The header, the compact lengths around the report, and the start of the tail."""
    return [0, 1, 2, 3, 4, 1188, 1189, 1190, len(raw) - 70, len(raw) - 66, len(raw) - 1]


def _envelope() -> Prepared:
    raw = dstack_attestation_with_certs()

    def check(data: bytes) -> None:
        att = decode_snp_attestation(data)
        if len(att.report_data) != 64 or len(att.cert_chain) > 4:
            raise AssertionError("decoded attestation breaks its own limits")

    return Prepared(
        strategy=fast_mutants([raw], _envelope_hot(raw), max_edits=2),
        check=check,
        allowed=(AttestationFormatError,),
    )


def _evidence() -> Prepared:
    """The real dstack attestation (certificates included) through the whole pipeline."""
    genuine = dstack_attestation_with_certs()
    signed = decode_snp_attestation(genuine).report[:0x2A0]
    offsets = [*_envelope_hot(genuine), *(4 + o for o in HOT)]
    verify = make_snp_report_verifier(
        now=NOW, policy=SnpPolicy(accepted_tcb_statuses=("UpToDate", "OutOfDate"))
    )

    def check(data: bytes) -> None:
        ev = verify_snp_evidence(data, verify_report=verify, binding=None)
        if ev.verified_report.report.signed_region != signed:
            raise AssertionError("a report with a changed signed region verified")

    return Prepared(
        strategy=fast_mutants([genuine], offsets, max_edits=2),
        check=check,
        allowed=(AttestError,),
    )


TARGETS = (
    Target(
        "snp-report",
        "attest.parse_snp_report: mutated real SEV-SNP reports and raw bytes",
        _report_parser,
    ),
    Target(
        "snp-envelope",
        "attest.decode_snp_attestation: mutated dstack SEV-SNP VersionedAttestation",
        _envelope,
    ),
    Target(
        "snp-evidence",
        "attest.verify_snp_evidence: mutated real dstack attestation with AMD certificates",
        _evidence,
    ),
)
