"""A local PCCS (real HTTP on 127.0.0.1, free port) serving set A's collateral, plus the CLI
path that uses it. Responses have the shapes dcap-qvl 0.7.0's client expects: raw PCS JSON
bodies with URL-encoded issuer-chain headers, DER PCK CRL, hex root CRL."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from attest import default_policy, fetch_collateral, verify_quote
from tests.conftest import REPO_ROOT

NOW_A = 1751328000


@dataclass
class LocalPccs:
    url: str
    requests: list[str] = field(default_factory=list)


def _routes(collateral: dict[str, str]) -> dict[str, tuple[bytes, dict[str, str]]]:
    def chain(name: str) -> str:
        return urllib.parse.quote(collateral[name])

    tcb = f'{{"tcbInfo":{collateral["tcb_info"]},"signature":"{collateral["tcb_info_signature"]}"}}'
    qe = (
        f'{{"enclaveIdentity":{collateral["qe_identity"]},'
        f'"signature":"{collateral["qe_identity_signature"]}"}}'
    )
    return {
        "/sgx/certification/v4/pckcrl": (
            bytes.fromhex(collateral["pck_crl"]),
            {"SGX-PCK-CRL-Issuer-Chain": chain("pck_crl_issuer_chain")},
        ),
        "/tdx/certification/v4/tcb": (
            tcb.encode(),
            {"TCB-Info-Issuer-Chain": chain("tcb_info_issuer_chain")},
        ),
        "/tdx/certification/v4/qe/identity": (
            qe.encode(),
            {"SGX-Enclave-Identity-Issuer-Chain": chain("qe_identity_issuer_chain")},
        ),
        "/sgx/certification/v4/rootcacrl": (collateral["root_ca_crl"].encode(), {}),
    }


@pytest.fixture
def local_pccs(attestation_data: Path) -> Iterator[LocalPccs]:
    collateral = json.loads((attestation_data / "dcap-qvl/tdx_quote_collateral.json").read_text())
    routes = _routes(collateral)
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            route = routes.get(self.path.split("?")[0])
            if route is None:
                self.send_response(404)
                self.end_headers()
                return
            body, headers = route
            self.send_response(200)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield LocalPccs(url=f"http://127.0.0.1:{server.server_port}", requests=seen)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_real_dcap_qvl_fetch_from_a_local_pccs(
    attestation_data: Path, tmp_path: Path, local_pccs: LocalPccs
) -> None:
    quote = (attestation_data / "dcap-qvl/tdx_quote").read_bytes()
    collateral = fetch_collateral(quote, pccs_url=local_pccs.url, cache_dir=tmp_path, now=NOW_A)
    assert [p.split("?")[0] for p in local_pccs.requests] == [
        "/sgx/certification/v4/pckcrl",
        "/tdx/certification/v4/tcb",
        "/tdx/certification/v4/qe/identity",
        "/sgx/certification/v4/rootcacrl",
    ]
    assert "fmspc=B0C06F000000" in local_pccs.requests[1]
    verified = verify_quote(quote, collateral, now=NOW_A, policy=default_policy())
    assert verified.tcb_status == "UpToDate"
    again = fetch_collateral(quote, pccs_url=local_pccs.url, cache_dir=tmp_path, now=NOW_A)
    assert again.json_text == collateral.json_text and len(local_pccs.requests) == 4


def test_cli_with_pccs_url_fetches_once_then_uses_the_cache(
    attestation_data: Path, tmp_path: Path, local_pccs: LocalPccs
) -> None:
    cmd = [
        sys.executable,
        "-m",
        "attest.cli",
        "attest",
        "verify",
        str(attestation_data / "dcap-qvl/tdx_quote"),
        "--pccs-url",
        local_pccs.url,
        "--collateral-cache",
        str(tmp_path),
        "--now",
        "1751328000",
        "--json",
    ]
    for _ in range(2):
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=60, check=False, cwd=REPO_ROOT
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert json.loads(proc.stdout)["tcb_status"] == "UpToDate"
    assert len(local_pccs.requests) == 4  # the second run was served from the cache
    assert [p.name for p in tmp_path.iterdir()] == ["B0C06F000000-platform.json"]
