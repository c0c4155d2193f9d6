"""`tkms attest verify`: verify a TDX quote (and its event log) from files.

Exit status: 0 accepted, 1 rejected (the evidence is not acceptable), 2 unusable input
(unreadable or malformed files, no collateral). With ``--json`` one JSON object is printed;
the measurement fields show what the quote states, also when it is rejected.

`tkms attest os-image-hash --mrtd HEX --rtmr0 HEX --rtmr1 HEX --rtmr2 HEX` prints the OS image
hash governance allows for a TD with those registers (e.g. `dstack-mr`'s output for an image
and a VM shape). AMD SEV-SNP: `verify-snp` and `snp-platform-hash` (attest/cli_snp.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from attest._ccel import parse_ccel
from attest._collateral import Collateral, fetch_collateral, load_collateral
from attest._dcap import VerifiedQuote, verify_quote_authenticity
from attest._eventlog import EventLogEntry, EventLogError, parse_event_log
from attest._evidence import is_simulator_quote
from attest._identity import compute_app_identity, has_runtime_events, os_image_hash_of
from attest._quote import parse_quote
from attest._quote_input import EvidenceInputError, load_evidence
from attest._quote_pck import read_pck_info
from attest._quote_types import Quote
from attest._replay import verify_replay
from attest.cli_snp import register_snp
from attest.errors import (
    AttestError,
    CollateralError,
    PolicyError,
    QuoteParseError,
    UnsupportedQuoteError,
    VerificationError,
)
from attest.policy import TCB_STATUSES, AllOf, default_policy
from attest.providers import SimulatorAllowed, verify_simulator_quote

EXIT_ACCEPTED, EXIT_REJECTED, EXIT_UNUSABLE = 0, 1, 2
T = TypeVar("T")


class _Unusable(Exception):
    """Input that cannot be judged at all (exit 2)."""


def register(subparsers: Any, name: str, help_text: str) -> None:
    """Add ``tkms <name> verify``."""
    parser = subparsers.add_parser(name, help=help_text, description=help_text)
    commands = parser.add_subparsers(dest="attest_command", metavar="COMMAND")
    verify = commands.add_parser(
        "verify",
        help="verify a TDX quote with DCAP collateral and tkms policy",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verify.add_argument("quote", type=Path, metavar="QUOTE", help="binary, hex or JSON quote")
    source = verify.add_mutually_exclusive_group()
    source.add_argument("--collateral", type=Path, metavar="FILE", help="dcap-qvl JSON")
    source.add_argument("--pccs-url", metavar="URL", help="fetch collateral from this PCCS")
    verify.add_argument(
        "--collateral-cache",
        type=Path,
        metavar="DIR",
        help="collateral cache, <FMSPC>-<ca>.json files; alone: offline, files only "
        "(default with --pccs-url: ~/.cache/tkms/collateral)",
    )
    verify.add_argument("--now", type=int, metavar="UNIX_SECONDS", help="default: the clock")
    verify.add_argument("--event-log", type=Path, metavar="FILE", help="dstack JSON or CCEL")
    verify.add_argument("--allow-debug", action="store_true", help="accept debug TDs")
    verify.add_argument("--allow-service-td", action="store_true", help="accept MR_SERVICETD")
    verify.add_argument(
        "--allow-simulator",
        action="store_true",
        help="UNSAFE: accept quotes from the tkms simulator (anyone can forge them)",
    )
    verify.add_argument(
        "--accept-tcb",
        action="append",
        choices=TCB_STATUSES,
        metavar="STATUS",
        help="accepted TCB status (repeatable; default UpToDate only)",
    )
    verify.add_argument("--json", action="store_true", help="print one JSON object")
    verify.set_defaults(handler=_handle_verify)
    image = commands.add_parser(
        "os-image-hash",
        help="the OS image hash governance allows for MRTD and RTMR0-2",
        description="SHA-256(MRTD || RTMR0 || RTMR1 || RTMR2 || 32 zero bytes): the value to "
        "pass to `tkms chain allow-os-image` for a TD that boots with these registers.",
    )
    for register_name in ("mrtd", "rtmr0", "rtmr1", "rtmr2"):
        image.add_argument(f"--{register_name}", required=True, metavar="HEX", help="48 bytes")
    image.set_defaults(handler=_handle_os_image_hash)
    register_snp(commands)


def _handle_os_image_hash(args: argparse.Namespace) -> int:
    registers = []
    for name in ("mrtd", "rtmr0", "rtmr1", "rtmr2"):
        text = str(getattr(args, name)).removeprefix("0x")
        try:
            value = bytes.fromhex(text)
        except ValueError:
            print(f"error: --{name}: not hex: {text[:20]!r}", file=sys.stderr)
            return EXIT_UNUSABLE
        if len(value) != 48:
            print(f"error: --{name}: must be 48 bytes, got {len(value)}", file=sys.stderr)
            return EXIT_UNUSABLE
        registers.append(value)
    print("0x" + os_image_hash_of(*registers).hex())
    return EXIT_ACCEPTED


def _handle_verify(args: argparse.Namespace) -> int:
    now = int(time.time()) if args.now is None else args.now
    try:
        code, report = evaluate(args, now=now)
    except _Unusable as exc:
        code, report = EXIT_UNUSABLE, {**_blank_report(now), "reason": str(exc)}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_text(code, report)
    return code


def evaluate(args: argparse.Namespace, *, now: int) -> tuple[int, dict[str, Any]]:
    """Verify the evidence named by `args`; returns (exit status, report)."""
    evidence = _load(lambda: load_evidence(args.quote))
    report = _blank_report(now)
    try:
        quote = parse_quote(evidence.quote)
    except UnsupportedQuoteError as exc:
        return EXIT_REJECTED, {**report, "reason": str(exc)}
    except QuoteParseError as exc:
        raise _Unusable(f"{args.quote}: {exc}") from exc
    entries = _event_log(args.event_log, evidence.event_log)
    td = quote.td_report
    simulator = _is_simulator(quote)
    collateral = None if simulator else _load(lambda: _collateral(args, evidence.quote, now))
    report.update(
        quote_version=quote.version,
        mrtd=quote.td_report.mr_td.hex(),
        report_data=quote.td_report.report_data.hex(),
        mr_config_id=quote.td_report.mr_config_id.hex(),
        **{f"rtmr{i}": r.hex() for i, r in enumerate(quote.td_report.rtmrs)},
        # what governance allows as an OS image (attest._identity), from the quote alone
        os_image_hash=os_image_hash_of(td.mr_td, td.rtmr0, td.rtmr1, td.rtmr2).hex(),
    )
    reasons: list[str] = []
    ppid = read_pck_info(quote).ppid
    try:
        if collateral is None:
            authentic = _verify_simulator(args, evidence.quote, now)
        else:
            authentic = verify_quote_authenticity(evidence.quote, collateral, now=now)
        report["tcb_status"] = authentic.tcb_status
        report["advisory_ids"] = list(authentic.advisory_ids)
        ppid = authentic.ppid
        _policy(args).verify(authentic)
    except AttestError as exc:
        reasons.append(str(exc))
    if entries is not None:
        try:
            verify_replay(entries, quote.td_report.rtmrs)
            report["replayed"] = True
        except AttestError as exc:
            report["replayed"] = False
            reasons.append(str(exc))
        if report["replayed"] and has_runtime_events(entries):
            try:
                identity = compute_app_identity(
                    entries, quote.td_report, ppid=ppid, vm_config=evidence.vm_config
                )
                report["identity"] = identity.to_json_dict()
            except AttestError as exc:
                reasons.append(str(exc))
    report["accepted"] = not reasons
    report["reason"] = "; ".join(reasons) or None
    return (EXIT_ACCEPTED if not reasons else EXIT_REJECTED), report


def _blank_report(now: int) -> dict[str, Any]:
    """Every key the JSON output promises, before anything is known."""
    report: dict[str, Any] = {
        "accepted": False,
        "tcb_status": None,
        "advisory_ids": [],
        "reason": None,
        "now": now,
        "quote_version": None,
        "mrtd": None,
        "report_data": None,
        "mr_config_id": None,
        "os_image_hash": None,
        "replayed": None,
        "identity": None,
    }
    report.update({f"rtmr{i}": None for i in range(4)})
    return report


def _load(read: Callable[[], T]) -> T:
    try:
        return read()
    except (EvidenceInputError, CollateralError, EventLogError) as exc:
        raise _Unusable(str(exc)) from exc


def _policy(args: argparse.Namespace) -> AllOf:
    return default_policy(
        accepted_tcb_statuses=args.accept_tcb or ("UpToDate",),
        allow_debug=args.allow_debug,
        allow_service_td=args.allow_service_td,
    )


def _is_simulator(quote: Quote) -> bool:
    try:
        return is_simulator_quote(quote)
    except ValueError:  # a root certificate whose key does not parse is not the simulator's
        return False


def _verify_simulator(args: argparse.Namespace, raw: bytes, now: int) -> VerifiedQuote:
    """Simulator quotes verify against the simulator root, and only with --allow-simulator."""
    if not args.allow_simulator:
        raise PolicyError(
            "simulator quote (chained to the public tkms simulator root CA); not accepted "
            "without --allow-simulator",
            check="simulator-allowed",
            found="simulator quote",
            expected="hardware TDX quote",
        )
    try:
        return verify_simulator_quote(raw, now=now, policy=AllOf([SimulatorAllowed()]))
    except ValueError as exc:  # malformed key material inside a simulator chain
        raise VerificationError(f"simulator quote invalid: {exc}", reason=str(exc)) from exc


def _collateral(args: argparse.Namespace, raw_quote: bytes, now: int) -> Collateral:
    if args.collateral is not None:
        return load_collateral(args.collateral)
    cache = args.collateral_cache
    if args.pccs_url is not None or cache is not None:
        default = Path.home() / ".cache" / "tkms" / "collateral"
        return fetch_collateral(
            raw_quote, pccs_url=args.pccs_url, cache_dir=cache or default, now=now
        )
    raise _Unusable(
        "no collateral: pass --collateral FILE, --pccs-url URL or --collateral-cache DIR"
    )


def _event_log(path: Path | None, embedded: str | None) -> Sequence[EventLogEntry] | None:
    """--event-log wins over the quote file's own `event_log`; JSON or binary CCEL."""
    if path is None:
        return None if embedded is None else _load(lambda: parse_event_log(embedded))
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _Unusable(f"cannot read event log {path}: {exc.strerror}") from exc
    if data.lstrip()[:1] in (b"[", b"{"):
        if data.lstrip()[:1] == b"{":
            data = _event_log_field(data, path)
        return _load(lambda: parse_event_log(data))
    return _load(lambda: parse_ccel(data))


def _event_log_field(data: bytes, path: Path) -> bytes:
    """A GetQuote-style JSON object given as --event-log: use its `event_log` field."""
    try:
        doc = json.loads(data)
        log = doc["event_log"]
    except (ValueError, KeyError, TypeError) as exc:
        raise _Unusable(f"{path}: JSON object without an 'event_log' field") from exc
    return (log if isinstance(log, str) else json.dumps(log)).encode()


def _print_text(code: int, report: dict[str, Any]) -> None:
    out = sys.stdout if code == EXIT_ACCEPTED else sys.stderr
    if code == EXIT_ACCEPTED:
        print(f"OK: accepted, TCB {report['tcb_status']}", file=out)
    else:
        print(f"REJECTED: {report['reason']}", file=out)
    keys = ("tcb_status", "advisory_ids", "mrtd", "rtmr0", "rtmr1", "rtmr2", "rtmr3")
    for key in (*keys, "os_image_hash", "report_data", "replayed"):
        if report.get(key) is not None:
            print(f"  {key}: {report[key]}", file=out)
    if report.get("identity"):
        print(f"  app_id: {report['identity']['app_id']}", file=out)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m attest.cli attest verify ...``: the same command without the dispatcher
    (which imports every package's commands, web3 included, before it starts)."""
    parser = argparse.ArgumentParser(prog="python -m attest.cli")
    register(
        parser.add_subparsers(dest="command", metavar="COMMAND"), "attest", "verify TEE evidence"
    )
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return EXIT_UNUSABLE
    code: int = handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
