"""DCAP collateral: load it from dcap-qvl's QuoteCollateralV3 JSON, or fetch it from a PCCS
with an on-disk cache keyed by (FMSPC, PCK CA).

Nothing here verifies collateral: `verify_quote` hands it to dcap-qvl, which checks the
signatures over the exact `tcb_info`/`qe_identity` text, the issuer chains, the CRLs and the
validity windows against an explicit `now`. The cache therefore never has to be trusted; a
tampered cache file only makes verification fail.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import dcap_qvl
from cryptography import x509

from attest.errors import CollateralError

_REQUIRED_KEYS = (
    "pck_crl_issuer_chain",
    "root_ca_crl",
    "pck_crl",
    "tcb_info_issuer_chain",
    "tcb_info",
    "tcb_info_signature",
    "qe_identity_issuer_chain",
    "qe_identity",
    "qe_identity_signature",
)
_FMSPC = re.compile(r"^[0-9A-F]{12}$")

# (pccs_url, raw quote) -> dcap-qvl collateral; swapped in tests, never the network there.
Fetcher = Callable[[str, bytes], Any]


@dataclass(frozen=True, slots=True)
class Collateral:
    """Collateral in dcap-qvl's shape, plus the decoded (still unverified) JSON documents."""

    json_text: str
    qvl: Any = field(repr=False, compare=False)
    tcb_info: Mapping[str, Any] = field(repr=False, compare=False)
    qe_identity: Mapping[str, Any] = field(repr=False, compare=False)

    @property
    def fmspc(self) -> str:
        """FMSPC the TCB info is for (upper-case hex)."""
        return str(self.tcb_info.get("fmspc", "")).upper()

    @property
    def next_update(self) -> int:
        """Earliest `nextUpdate` of TCB info, QE identity and both CRLs, as unix seconds:
        after it, verification fails and the cache must refresh."""
        doc = json.loads(self.json_text)
        times = [
            _unix(self.tcb_info.get("nextUpdate"), "tcb_info.nextUpdate"),
            _unix(self.qe_identity.get("nextUpdate"), "qe_identity.nextUpdate"),
        ]
        for name in ("pck_crl", "root_ca_crl"):
            try:
                crl = x509.load_der_x509_crl(bytes.fromhex(doc[name]))
            except ValueError as exc:
                raise CollateralError(f"{name} is not a hex DER CRL: {exc}") from exc
            if crl.next_update_utc is not None:
                times.append(int(crl.next_update_utc.timestamp()))
        return min(times)


def _unix(value: Any, where: str) -> int:
    try:
        return int(datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp())
    except ValueError as exc:
        raise CollateralError(f"{where} is not an RFC 3339 time: {value!r}") from exc


def collateral_from_json(text: str, *, where: str = "collateral") -> Collateral:
    """Parse dcap-qvl's QuoteCollateralV3 JSON (as in ``*_collateral.json`` files)."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CollateralError(f"{where}: invalid JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise CollateralError(f"{where}: expected a JSON object")
    missing = [k for k in _REQUIRED_KEYS if k not in doc]
    if missing:
        raise CollateralError(f"{where}: missing field(s) {', '.join(missing)}")
    try:
        qvl = dcap_qvl.QuoteCollateralV3.from_json(text)
    except ValueError as exc:
        raise CollateralError(f"{where}: not dcap-qvl QuoteCollateralV3 JSON ({exc})") from exc
    return Collateral(
        json_text=text,
        qvl=qvl,
        tcb_info=_inner_json(doc["tcb_info"], f"{where}: tcb_info"),
        qe_identity=_inner_json(doc["qe_identity"], f"{where}: qe_identity"),
    )


def _inner_json(text: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(text, str):
        raise CollateralError(f"{where} must be the signed JSON text, as a string")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CollateralError(f"{where}: invalid JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise CollateralError(f"{where}: expected a JSON object")
    return doc


def load_collateral(path: Path) -> Collateral:
    """Read a collateral JSON file."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise CollateralError(f"cannot read collateral file {path}: {exc}") from exc
    return collateral_from_json(text, where=str(path))


def fetch_in_child(pccs_url: str, raw_quote: bytes, *, timeout: float = 60.0) -> Any:
    """dcap-qvl ``QuoteCollateralV3`` for `raw_quote` from `pccs_url`, fetched by dcap-qvl's
    own client in a child process (see `attest._pccs_fetch` for why).

    Raises RuntimeError with dcap-qvl's message when the fetch fails or times out.
    """
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "attest._pccs_fetch", pccs_url],
            input=raw_quote,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"no answer within {timeout:g} s") from exc
    if proc.returncode != 0:
        message = proc.stderr.decode("utf-8", "replace").strip() or f"exit {proc.returncode}"
        raise RuntimeError(message)
    return dcap_qvl.QuoteCollateralV3.from_json(proc.stdout.decode("utf-8"))


def cache_key(raw_quote: bytes) -> str:
    """``<FMSPC>-<ca>``: collateral depends on the platform family and the PCK issuing CA."""
    try:
        parsed = dcap_qvl.parse_quote(raw_quote)
        fmspc, ca = parsed.fmspc().upper(), parsed.ca().lower()
    except ValueError as exc:
        raise CollateralError(f"cannot read FMSPC/CA from the quote: {exc}") from exc
    if not _FMSPC.match(fmspc) or ca not in ("platform", "processor"):
        raise CollateralError(f"unexpected FMSPC {fmspc!r} or PCK CA {ca!r} in the quote")
    return f"{fmspc}-{ca}"


def fetch_collateral(
    raw_quote: bytes,
    *,
    pccs_url: str | None,
    cache_dir: Path,
    now: int,
    fetcher: Fetcher = fetch_in_child,
) -> Collateral:
    """Collateral for this quote: from `cache_dir` while still valid at `now`, else the PCCS.

    The cache holds ``<FMSPC>-<ca>.json`` files (see `cache_key`); a fetched document is
    written atomically (temp file + rename). With ``pccs_url=None`` the directory is the only
    source (offline nodes: operators drop collateral files in), and a missing or expired
    entry is an error.
    """
    key = cache_key(raw_quote)
    path = cache_dir / f"{key}.json"
    problem = f"no collateral file {path.name} in {cache_dir}"
    if path.is_file():
        try:
            cached = load_collateral(path)
            if cached.next_update >= now:
                return cached
            problem = f"collateral {path} expired at {cached.next_update} (now {now})"
        except CollateralError as exc:
            problem = str(exc)  # unreadable entries are replaced by a fresh fetch
    if pccs_url is None:
        raise CollateralError(f"{problem}, and no PCCS URL to fetch it from")
    try:
        fetched = fetcher(pccs_url, raw_quote)
    except (ValueError, RuntimeError, OSError) as exc:
        raise CollateralError(f"fetching collateral from {pccs_url} failed: {exc}") from exc
    collateral = collateral_from_json(fetched.to_json(), where=f"collateral from {pccs_url}")
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".collateral-", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(collateral.json_text)
    os.replace(tmp, path)
    return collateral
