"""`python -m attest.bench`: timings of the attestation hot paths, one `name: value unit` line each.

Uses the real test data vendored in the checkout (``tests/data/attestation``) for the
quote, collateral and dstack event log; the RA-TLS line uses the simulator provider, so it
measures the certificate and evidence path rather than DCAP.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

from attest._collateral import load_collateral
from attest._dcap import verify_quote
from attest._eventlog import parse_event_log
from attest._quote import parse_quote
from attest._quote_input import load_evidence
from attest._replay import verify_replay
from attest.policy import default_policy

_SET_C_NOW = 1772323200


def _data_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "tests" / "data" / "attestation"


def _timeit(fn: Callable[[], object], *, min_seconds: float = 0.5, min_runs: int = 5) -> float:
    """Mean over enough runs to last `min_seconds`; returns seconds/run."""
    fn()  # warm-up (imports, caches)
    runs, start = 0, time.perf_counter()
    while runs < min_runs or time.perf_counter() - start < min_seconds:
        fn()
        runs += 1
    return (time.perf_counter() - start) / runs


def _ratls_seconds() -> float | None:
    """RA-TLS certificate verification with the simulator provider, when attest has it."""
    try:
        from cryptography.hazmat.primitives.asymmetric import ec

        from attest._evidence import make_quote_verifier
        from attest._ratls import create_ratls_certificate, verify_ratls_certificate
        from attest.policy import AllOf, SeptVeDisabled
        from attest.providers import SimulatorAllowed, SimulatorProvider
    except ImportError:
        return None
    provider = SimulatorProvider()
    cert = create_ratls_certificate(ec.generate_private_key(ec.SECP256R1()), provider)
    now = int(time.time())
    verifier = make_quote_verifier(now=now, policy=AllOf([SimulatorAllowed(), SeptVeDisabled()]))
    logging.getLogger("attest.simulator").setLevel(logging.ERROR)  # its warning on every use
    return _timeit(lambda: verify_ratls_certificate(cert, verify_quote=verifier))


def _snp_and_gpu_lines(base: Path) -> list[str]:
    """SEV-SNP report verification (AMD chain) and H100 GPU report verification, real data."""
    from attest._gpu_verify import verify_gpu_report
    from attest._snp_verify import SnpPolicy, verify_amd_snp_report

    report = bytes.fromhex((base / "virtee-sev/report_milan.hex").read_text().strip())
    chain = [
        (base / "virtee-sev/builtin/milan/ask.pem").read_bytes(),
        (base / "virtee-sev/vcek_milan.der").read_bytes(),
    ]
    now = int(time.time())
    snp = _timeit(lambda: verify_amd_snp_report(report, chain, now=now, policy=SnpPolicy()))
    gpu = bytes.fromhex((base / "nvtrust/hopperAttestationReport.txt").read_text().strip())
    gpu_chain = (base / "nvtrust/hopperCertChain.txt").read_bytes()
    gpu_s = _timeit(lambda: verify_gpu_report(gpu, gpu_chain, nonce=gpu[4:36], now=now))
    return [
        f"SEV-SNP report verification (ARK -> ASK -> VCEK, signature, policy): {snp * 1e3:.2f} ms",
        f"H100 GPU report verification (5-cert chain, FWID, signature): {gpu_s * 1e3:.2f} ms",
    ]


def main() -> int:
    base = _data_dir()
    if not base.is_dir():
        print(f"attest.bench: test data not found at {base} (run from a checkout)", file=sys.stderr)
        return 2
    evidence = load_evidence(base / "dstack/quote-report.json")
    collateral = load_collateral(base / "dcap-qvl/tdx_quote_outdated_collateral.json")
    raw = evidence.quote
    policy = default_policy()
    quote = parse_quote(raw)
    assert evidence.event_log is not None
    log_text = evidence.event_log
    events = parse_event_log(log_text)

    parse_s = _timeit(lambda: parse_quote(raw))
    print(f"parse: {parse_s * 1e6:.1f} µs")
    verify_s = _timeit(lambda: verify_quote(raw, collateral, now=_SET_C_NOW, policy=policy))
    print(f"full verification with collateral: {verify_s * 1e3:.2f} ms")
    replay_s = _timeit(lambda: verify_replay(parse_event_log(log_text), quote.td_report.rtmrs))
    print(f"event-log replay ({len(events)} events, parse + replay): {replay_s * 1e3:.3f} ms")
    ratls_s = _ratls_seconds()
    if ratls_s is None:
        print("RA-TLS certificate verification: n/a (attest RA-TLS module not available)")
    else:
        print(f"RA-TLS certificate verification (simulator): {ratls_s * 1e3:.2f} ms")
    for line in _snp_and_gpu_lines(base):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
