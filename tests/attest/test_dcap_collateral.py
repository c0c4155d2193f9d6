"""Collateral loading and the on-disk PCCS cache (never the network: fetchers are local)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import dcap_qvl
import pytest

from attest import (
    CollateralError,
    PolicyError,
    collateral_from_json,
    default_policy,
    fetch_collateral,
    load_collateral,
    verify_quote,
)
from attest._collateral import cache_key

NOW_A = 1751328000
COLLATERAL_A = "dcap-qvl/tdx_quote_collateral.json"


class FileFetcher:
    """Stands in for a PCCS: serves one collateral file and counts the requests."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.calls: list[str] = []

    def __call__(self, url: str, raw_quote: bytes) -> Any:
        self.calls.append(url)
        return dcap_qvl.QuoteCollateralV3.from_json(self.path.read_text())


def _never(url: str, raw_quote: bytes) -> Any:
    raise AssertionError("the cache should have answered")


def test_load_and_properties(attestation_data: Path) -> None:
    collateral = load_collateral(attestation_data / COLLATERAL_A)
    assert collateral.fmspc == "B0C06F000000"
    assert collateral.tcb_info["id"] == "TDX" and collateral.qe_identity["id"] == "TD_QE"
    assert collateral.next_update == 1752919235  # QE identity/TCB info nextUpdate, 2025-07-19


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("not json", r"^c: invalid JSON"),
        ("[]", r"^c: expected a JSON object"),
        ('{"tcb_info": "{}"}', r"^c: missing field\(s\) pck_crl_issuer_chain, root_ca_crl"),
    ],
)
def test_malformed_collateral(text: str, match: str) -> None:
    with pytest.raises(CollateralError, match=match):
        collateral_from_json(text, where="c")


def test_inner_document_must_be_json_text(attestation_data: Path) -> None:
    doc = json.loads((attestation_data / COLLATERAL_A).read_text())
    doc["qe_identity"] = "{not json"
    with pytest.raises(CollateralError, match="qe_identity: invalid JSON"):
        collateral_from_json(json.dumps(doc))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CollateralError, match="cannot read collateral file"):
        load_collateral(tmp_path / "nope.json")


def test_cache_key(attestation_data: Path) -> None:
    assert cache_key((attestation_data / "dcap-qvl/tdx_quote").read_bytes()) == (
        "B0C06F000000-platform"
    )
    with pytest.raises(CollateralError, match="cannot read FMSPC/CA"):
        cache_key(b"\x04\x00" + bytes(100))


def test_fetch_miss_then_hit(attestation_data: Path, tmp_path: Path) -> None:
    quote = (attestation_data / "dcap-qvl/tdx_quote").read_bytes()
    pccs = FileFetcher(attestation_data / COLLATERAL_A)
    cache = tmp_path / "cache"
    first = fetch_collateral(
        quote, pccs_url="https://pccs.test", cache_dir=cache, now=NOW_A, fetcher=pccs
    )
    assert pccs.calls == ["https://pccs.test"]
    assert sorted(p.name for p in cache.iterdir()) == ["B0C06F000000-platform.json"]
    second = fetch_collateral(
        quote, pccs_url="https://pccs.test", cache_dir=cache, now=NOW_A, fetcher=_never
    )
    assert second.json_text == first.json_text
    verified = verify_quote(quote, second, now=NOW_A, policy=default_policy())
    assert verified.tcb_status == "UpToDate"


def test_expired_or_corrupt_cache_is_refetched(attestation_data: Path, tmp_path: Path) -> None:
    quote = (attestation_data / "dcap-qvl/tdx_quote").read_bytes()
    pccs = FileFetcher(attestation_data / COLLATERAL_A)
    fetch_collateral(quote, pccs_url="u", cache_dir=tmp_path, now=NOW_A, fetcher=pccs)
    later = 1752919235 + 1
    fetch_collateral(quote, pccs_url="u", cache_dir=tmp_path, now=later, fetcher=pccs)
    assert len(pccs.calls) == 2
    (tmp_path / "B0C06F000000-platform.json").write_text("{garbage")
    fetch_collateral(quote, pccs_url="u", cache_dir=tmp_path, now=NOW_A, fetcher=pccs)
    assert len(pccs.calls) == 3
    assert load_collateral(tmp_path / "B0C06F000000-platform.json").fmspc == "B0C06F000000"


def test_fetch_failure_is_a_collateral_error(attestation_data: Path, tmp_path: Path) -> None:
    quote = (attestation_data / "dcap-qvl/tdx_quote").read_bytes()

    def failing(url: str, raw_quote: bytes) -> Any:
        raise ValueError("connection refused")

    with pytest.raises(CollateralError, match=r"fetching collateral from u failed: connection"):
        fetch_collateral(quote, pccs_url="u", cache_dir=tmp_path, now=NOW_A, fetcher=failing)
    assert list(tmp_path.iterdir()) == []


def test_real_dcap_qvl_fetch_against_a_closed_local_port(
    attestation_data: Path, tmp_path: Path
) -> None:
    """The default fetcher is dcap-qvl's own client; a refused local connection surfaces as
    CollateralError naming the request, and nothing is cached."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    quote = (attestation_data / "dcap-qvl/tdx_quote").read_bytes()
    with pytest.raises(
        CollateralError,
        match=rf"fetching collateral from http://127.0.0.1:{port} failed: .*error sending "
        rf"request for url \(http://127.0.0.1:{port}/sgx/certification/v4/pckcrl",
    ):
        fetch_collateral(quote, pccs_url=f"http://127.0.0.1:{port}", cache_dir=tmp_path, now=NOW_A)
    assert list(tmp_path.iterdir()) == []


def test_unacceptable_td_attribute_bits_are_refused_first(attestation_data: Path) -> None:
    raw = bytearray((attestation_data / "dcap-qvl/tdx_quote").read_bytes())
    raw[48 + 120 + 3] |= 0x20  # TDATTRIBUTES bit 29: migratable
    collateral = load_collateral(attestation_data / COLLATERAL_A)
    with pytest.raises(PolicyError, match=r"set bit\(s\) 29 that tkms never accepts"):
        verify_quote(bytes(raw), collateral, now=NOW_A, policy=default_policy())


def test_offline_directory_mode(attestation_data: Path, tmp_path: Path) -> None:
    quote = (attestation_data / "dcap-qvl/tdx_quote").read_bytes()
    with pytest.raises(
        CollateralError, match=r"no collateral file B0C06F000000-platform.json in .*no PCCS URL"
    ):
        fetch_collateral(quote, pccs_url=None, cache_dir=tmp_path, now=NOW_A)
    source = (attestation_data / COLLATERAL_A).read_text()
    (tmp_path / "B0C06F000000-platform.json").write_text(source)
    assert fetch_collateral(quote, pccs_url=None, cache_dir=tmp_path, now=NOW_A).fmspc == (
        "B0C06F000000"
    )
    with pytest.raises(CollateralError, match=r"expired at 1752919235 \(now 1752919236\)"):
        fetch_collateral(quote, pccs_url=None, cache_dir=tmp_path, now=1752919236)
