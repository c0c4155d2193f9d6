"""`tkms attest verify-snp` and `tkms attest snp-platform-hash`: SEV-SNP evidence from files.

``verify-snp EVIDENCE [--ask FILE --vcek FILE]`` verifies an SEV-SNP report against AMD's pinned
ARKs (docs/attest-snp.md). EVIDENCE is dstack's VersionedAttestation (what a dstack guest
agent's ``Attest`` returns on SNP: binary, hex text, or a JSON object with a hex
``attestation`` field), or a bare 1184-byte report (binary or hex). ``--ask``/``--vcek`` give
the AMD certificates (PEM or DER) when the evidence does not carry them. Exit status as
``verify``: 0 accepted, 1 rejected, 2 unusable input. The report fields, the platform hash
governance approves (``os_image_hash``) and, when the evidence carries the MrConfigV3 document
HOST_DATA binds, the app identity are printed also when the report is rejected.

``snp-platform-hash --measurement HEX --policy HEX`` prints the SEV-SNP platform hash for a
launch MEASUREMENT (e.g. from ``sev-snp-measure`` or dstack-mr) and guest POLICY: the value to
pass to ``tkms chain allow-os-image``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from attest._snp_evidence import make_snp_report_verifier
from attest._snp_identity import compute_snp_identity, mr_config_document, snp_platform_hash
from attest._snp_report import SNP_REPORT_SIZE, parse_snp_report
from attest._snp_verify import SNP_TCB_STATUSES, SnpPolicy
from attest._versioned_snp import SnpAttestation, decode_snp_attestation
from attest.errors import AttestError, QuoteParseError, UnsupportedQuoteError

EXIT_ACCEPTED, EXIT_REJECTED, EXIT_UNUSABLE = 0, 1, 2


class _Unusable(Exception):
    """Input that cannot be judged at all (exit 2)."""


def register_snp(commands: Any) -> None:
    """Add ``verify-snp`` and ``snp-platform-hash`` under ``tkms attest``."""
    verify = commands.add_parser(
        "verify-snp",
        help="verify an AMD SEV-SNP report (or dstack attestation) against AMD's ARKs",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verify.add_argument("evidence", type=Path, metavar="EVIDENCE")
    verify.add_argument("--ask", type=Path, metavar="FILE", help="AMD ASK (PEM or DER)")
    verify.add_argument("--vcek", type=Path, metavar="FILE", help="the chip's VCEK (PEM or DER)")
    verify.add_argument("--now", type=int, metavar="UNIX_SECONDS", help="default: the clock")
    verify.add_argument("--allow-debug", action="store_true", help="accept debug guests")
    verify.add_argument(
        "--allow-simulator",
        action="store_true",
        help="UNSAFE: accept reports of the tkms SEV-SNP simulator (anyone can forge them)",
    )
    verify.add_argument(
        "--accept-tcb",
        action="append",
        choices=SNP_TCB_STATUSES,
        metavar="STATUS",
        help="accepted TCB status, UpToDate or OutOfDate (repeatable; default UpToDate only)",
    )
    verify.add_argument("--json", action="store_true", help="print one JSON object")
    verify.set_defaults(handler=_handle_verify)
    image = commands.add_parser(
        "snp-platform-hash",
        help="the SEV-SNP platform hash governance allows for a MEASUREMENT and POLICY",
        description='SHA-256("tkms-platform:amd-sev-snp:v1" || 0x00 || MEASUREMENT || '
        "u64le(POLICY)): the value to pass to `tkms chain allow-os-image` for SNP guests.",
    )
    image.add_argument("--measurement", required=True, metavar="HEX", help="48 bytes")
    image.add_argument("--policy", required=True, metavar="HEX", help="guest POLICY, e.g. 0x30000")
    image.set_defaults(handler=_handle_platform_hash)


def _handle_platform_hash(args: argparse.Namespace) -> int:
    try:
        measurement = bytes.fromhex(str(args.measurement).removeprefix("0x"))
        policy = int(str(args.policy), 16)
    except ValueError:
        print("error: --measurement and --policy must be hex", file=sys.stderr)
        return EXIT_UNUSABLE
    try:
        print("0x" + snp_platform_hash(measurement, policy).hex())
    except AttestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    return EXIT_ACCEPTED


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise _Unusable(f"cannot read {what} {path}: {exc.strerror}") from exc


def _unhex(data: bytes) -> bytes:
    """Binary as is; hex text (optionally 0x), or JSON with a hex "attestation", decoded."""
    text = data.strip()
    if text[:1] == b"{":
        try:
            field = json.loads(text)["attestation"]
            return bytes.fromhex(str(field).removeprefix("0x"))
        except (ValueError, KeyError, TypeError) as exc:
            raise _Unusable("JSON evidence needs a hex 'attestation' field") from exc
    try:
        return bytes.fromhex(text.decode("ascii").removeprefix("0x"))
    except (UnicodeDecodeError, ValueError):
        return data


def _load(args: argparse.Namespace) -> SnpAttestation:
    raw = _unhex(_read(args.evidence, "evidence"))
    if len(raw) == SNP_REPORT_SIZE and raw[:1] != b"\x00":
        att = SnpAttestation(
            report=raw,
            cert_chain=(),
            mr_config="",
            runtime_events=(),
            report_data=raw[0x50:0x90],
            config="",
        )
    else:
        try:
            att = decode_snp_attestation(raw)
        except AttestError as exc:
            raise _Unusable(f"{args.evidence}: {exc}") from exc
    if args.ask is not None or args.vcek is not None:
        if args.ask is None or args.vcek is None:
            raise _Unusable("--ask and --vcek go together")
        chain = (_read(args.ask, "ASK"), _read(args.vcek, "VCEK"))
        att = SnpAttestation(
            report=att.report,
            cert_chain=chain,
            mr_config=att.mr_config,
            runtime_events=att.runtime_events,
            report_data=att.report_data,
            config=att.config,
        )
    return att


def evaluate(args: argparse.Namespace, *, now: int) -> tuple[int, dict[str, Any]]:
    """Verify the evidence named by `args`; returns (exit status, report)."""
    att = _load(args)
    report: dict[str, Any] = {"accepted": False, "reason": None, "now": now, "tcb_status": None}
    try:
        parsed = parse_snp_report(att.report)
    except UnsupportedQuoteError as exc:
        return EXIT_REJECTED, {**report, "reason": str(exc)}
    except QuoteParseError as exc:
        raise _Unusable(f"{args.evidence}: {exc}") from exc
    report.update(
        version=parsed.version,
        product=None if parsed.product is None else parsed.product.value,
        measurement=parsed.measurement.hex(),
        policy=f"0x{parsed.policy:x}",
        host_data=parsed.host_data.hex(),
        report_data=parsed.report_data.hex(),
        chip_id=parsed.chip_id.hex(),
        os_image_hash=snp_platform_hash(parsed.measurement, parsed.policy).hex(),
        identity=None,
    )
    policy = SnpPolicy(
        accepted_tcb_statuses=tuple(args.accept_tcb or ("UpToDate",)),
        allow_debug=args.allow_debug,
        allow_simulator=args.allow_simulator,
    )
    reasons: list[str] = []
    try:
        verified = make_snp_report_verifier(now=now, policy=policy)(att.report, att.cert_chain)
        report["tcb_status"] = verified.tcb_status
        report["source"] = verified.source
    except AttestError as exc:
        reasons.append(str(exc))
    if att.mr_config or att.config:
        try:
            document = mr_config_document(att.mr_config, att.config)
            identity, _ = compute_snp_identity(parsed, document, vm_config=att.config or None)
            report["identity"] = identity.to_json_dict()
        except AttestError as exc:
            reasons.append(str(exc))
    report["accepted"] = not reasons
    report["reason"] = "; ".join(reasons) or None
    return (EXIT_ACCEPTED if not reasons else EXIT_REJECTED), report


def _handle_verify(args: argparse.Namespace) -> int:
    now = int(time.time()) if args.now is None else args.now
    try:
        code, report = evaluate(args, now=now)
    except _Unusable as exc:
        code, report = EXIT_UNUSABLE, {"accepted": False, "reason": str(exc), "now": now}
    if args.json:
        print(json.dumps(report, indent=2))
        return code
    out = sys.stdout if code == EXIT_ACCEPTED else sys.stderr
    head = f"OK: accepted, TCB {report['tcb_status']}" if code == EXIT_ACCEPTED else "REJECTED"
    print(head if code == EXIT_ACCEPTED else f"{head}: {report['reason']}", file=out)
    for key in ("tcb_status", "product", "measurement", "policy", "os_image_hash", "host_data"):
        if report.get(key) is not None:
            print(f"  {key}: {report[key]}", file=out)
    if report.get("identity"):
        print(f"  app_id: {report['identity']['app_id']}", file=out)
    return code
