"""The gateway's evidence site over real sockets: dstack's acme-info and app-info shapes and
bindings, the fresh challenge, and evidence that cannot be produced reported as an error.

The gateway's guest agent is a real agent (simulator TEE, keys from an in-process fake KMS)
serving the dstack guest API on a unix socket; the proxy terminates `gateway.<base>` with a
throwaway CA's certificate."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from attest import (
    AllOf,
    BindingLabel,
    SimulatorAllowed,
    default_policy,
    make_quote_verifier,
    verify_evidence,
    zt_challenge_content,
)
from attest import EvidenceError as AttestEvidenceError
from attest._binding import compute_report_data
from gateway._selfsigned import Issued, ThrowawayCA
from gateway.agent import GuestAgent
from gateway.evidence import HISTORY_ITEM, EvidenceError, GatewayEvidence, leaf_spki
from gateway.evidence_http import EvidenceSite
from gateway.keystore import SealedStore
from gateway.limits import RateLimit
from gateway.proxy import Proxy
from gateway.table import RouteTable
from mpc import Scalar
from tests.gateway.tlsfixtures import BASE
from tests.guest.agent_harness import APP_ID, boot, make_config, serving

T = TypeVar("T")
CA = ThrowawayCA.create()
NAME = f"gateway.{BASE}"
ACCOUNT = "https://acme.example.test/acme/acct/7"


@pytest.fixture(scope="module")
def agent_socket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    tmp = tmp_path_factory.mktemp("gw-agent")
    agent = boot(make_config(tmp), Scalar(1234567))
    with serving(agent, tmp / "dstack.sock"):
        yield tmp / "dstack.sock"


def store(tmp: Path) -> SealedStore:
    return SealedStore(tmp / "sealed", b"\x07" * 32)


def verify(quote_json: str, label: BindingLabel, content: bytes) -> bytes:
    """The app id of a simulator quote that binds `content` under `label` (raises otherwise)."""
    reply = json.loads(quote_json)
    verifier = make_quote_verifier(
        now=int(time.time()), policy=AllOf([*default_policy().checks, SimulatorAllowed()])
    )
    evidence = verify_evidence(
        bytes.fromhex(reply["quote"]),
        reply["event_log"],
        verify_quote=verifier,
        binding=(label, content),
    )
    assert evidence.identity is not None
    return evidence.identity.app_id


def get(port: int, path: str, method: str = "GET") -> tuple[int, Any]:
    """One request to gateway.<base> through the proxy, trusting the throwaway CA."""
    context = ssl.create_default_context(cadata=CA.cert_pem.decode())
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=NAME) as tls,
    ):
        tls.sendall(f"{method} {path} HTTP/1.1\r\nHost: {NAME}\r\n\r\n".encode())
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"access-control-allow-origin: *" in head.lower()
    return int(head.split(b" ", 2)[1]), json.loads(body)


def quoted(agent_socket: Path, tmp_path: Path) -> tuple[Issued, GatewayEvidence]:
    """A certificate, and evidence with its key and the account quoted."""
    cert = CA.issue("*." + BASE, BASE)
    evidence = GatewayEvidence(GuestAgent(str(agent_socket)), store(tmp_path))
    evidence.quote_certificate(cert.chain_pem)
    evidence.quote_account(ACCOUNT)
    return cert, evidence


def serve(evidence: GatewayEvidence, cert: Issued, calls: Callable[[int], T], **site: Any) -> T:
    """Run the proxy with the evidence site while `calls(port)` runs in a thread."""

    async def main() -> T:
        proxy = Proxy(RouteTable(), BASE, site=EvidenceSite(evidence, BASE, **site))
        proxy.set_certificate(cert.chain_pem, cert.key_pem)
        port = await proxy.start("127.0.0.1", 0)
        try:
            return await asyncio.wait_for(asyncio.to_thread(calls, port), 60)
        finally:
            await proxy.close()

    return asyncio.run(main())


def test_acme_and_app_info_have_dstacks_shapes_and_bindings(
    agent_socket: Path, tmp_path: Path
) -> None:
    cert, evidence = quoted(agent_socket, tmp_path)
    acme, info, index = serve(
        evidence,
        cert,
        lambda port: (
            get(port, "/.dstack/acme-info"),
            get(port, "/.dstack/app-info"),
            get(port, "/.dstack/index"),
        ),
    )
    assert acme[0] == 200
    body = acme[1]
    assert set(body) == {"account_uri", "quoted_hist_keys", "account_quote", "account_attestation"}
    assert body["account_uri"] == ACCOUNT
    assert verify(body["account_quote"], BindingLabel.ACME_ACCOUNT, ACCOUNT.encode()) == APP_ID
    attestation = json.loads(body["account_attestation"])
    assert set(attestation) == {"attestation"}
    [entry] = body["quoted_hist_keys"]
    assert set(entry) == {"public_key", "quote", "attestation"}
    spki = bytes.fromhex(entry["public_key"])
    assert spki == leaf_spki(cert.chain_pem)
    assert verify(entry["quote"], BindingLabel.ZT_CERT, spki) == APP_ID
    assert info[0] == 200 and info[1]["app_id"].removeprefix("0x") == APP_ID.hex()
    assert index == (200, {"type": "tkms gateway", "paths": list(index[1]["paths"])})
    assert "/challenge" in index[1]["paths"]


def test_a_challenge_quote_binds_the_nonce_the_live_key_and_the_account(
    agent_socket: Path, tmp_path: Path
) -> None:
    cert, evidence = quoted(agent_socket, tmp_path)
    first, second = os.urandom(32), os.urandom(32)
    answers = serve(
        evidence,
        cert,
        lambda port: [get(port, f"/.dstack/challenge?nonce={n.hex()}") for n in (first, second)],
    )
    spki = leaf_spki(cert.chain_pem)
    for nonce, (status, body) in zip((first, second), answers, strict=True):
        assert status == 200
        assert (body["nonce"], body["public_key"], body["account_uri"]) == (
            nonce.hex(),
            spki.hex(),
            ACCOUNT,
        )
        content = zt_challenge_content(nonce, spki, ACCOUNT)
        assert (
            body["report_data"] == compute_report_data(BindingLabel.ZT_CHALLENGE_V1, content).hex()
        )
        assert verify(body["quote"], BindingLabel.ZT_CHALLENGE_V1, content) == APP_ID
    # A replayed answer does not bind another nonce.
    with pytest.raises(AttestEvidenceError, match="does not bind"):
        verify(
            answers[0][1]["quote"],
            BindingLabel.ZT_CHALLENGE_V1,
            zt_challenge_content(second, spki, ACCOUNT),
        )


def test_bad_requests_get_their_status_and_a_reason(agent_socket: Path, tmp_path: Path) -> None:
    cert, evidence = quoted(agent_socket, tmp_path)
    answers = serve(
        evidence,
        cert,
        lambda port: [
            get(port, "/.dstack/challenge"),
            get(port, "/.dstack/challenge?nonce=zz"),
            get(port, "/.dstack/challenge?nonce=" + "00" * 8),
            get(port, "/.dstack/acme-info", method="POST"),
            get(port, "/.dstack/secrets"),
            *[get(port, "/.dstack/challenge?nonce=" + "11" * 16) for _ in range(3)],
        ],
        challenges=RateLimit(rate=0.001, burst=2),
    )
    statuses = [status for status, _ in answers]
    assert statuses == [400, 400, 400, 405, 404, 200, 429, 429]
    assert "16..64 bytes, got 8" in answers[2][1]["error"]
    assert "too many challenges" in answers[6][1]["error"]


def test_evidence_that_cannot_be_produced_is_an_error_never_an_empty_field(
    tmp_path: Path,
) -> None:
    cert = CA.issue("*." + BASE, BASE)
    gone = GuestAgent(str(tmp_path / "no-agent.sock"), timeout=2)
    evidence = GatewayEvidence(gone, store(tmp_path))
    with pytest.raises(EvidenceError, match="cannot quote the certificate key: guest agent"):
        evidence.quote_certificate(cert.chain_pem)
    with pytest.raises(EvidenceError, match="cannot quote the ACME account"):
        evidence.quote_account(ACCOUNT)
    answers = serve(
        evidence,
        cert,
        lambda port: [
            get(port, "/.dstack/acme-info"),
            get(port, "/.dstack/app-info"),
            get(port, "/.dstack/challenge?nonce=" + "22" * 16),
        ],
    )
    assert [status for status, _ in answers] == [503, 503, 503]
    assert answers[0][1] == {"error": "the ACME account is not quoted yet"}
    assert "cannot read the gateway's app info" in answers[1][1]["error"]


def test_quoted_keys_are_kept_sealed_across_restarts_newest_first(
    agent_socket: Path, tmp_path: Path
) -> None:
    old, new = CA.issue("*." + BASE, BASE), CA.issue("*." + BASE, BASE)
    agent = GuestAgent(str(agent_socket))
    GatewayEvidence(agent, store(tmp_path)).quote_certificate(old.chain_pem)
    assert store(tmp_path).get(HISTORY_ITEM) is not None
    restarted = GatewayEvidence(agent, store(tmp_path))
    restarted.quote_certificate(new.chain_pem)
    restarted.quote_account(ACCOUNT)
    keys = [e["public_key"] for e in restarted.acme_info()["quoted_hist_keys"]]
    assert keys == [leaf_spki(new.chain_pem).hex(), leaf_spki(old.chain_pem).hex()]
    # The live key is the one taken into use last; challenges bind it.
    assert restarted.challenge(b"\x01" * 16)["public_key"] == leaf_spki(new.chain_pem).hex()


def test_a_key_already_quoted_by_this_process_costs_no_second_quote(
    agent_socket: Path, tmp_path: Path
) -> None:
    cert = CA.issue("*." + BASE, BASE)
    calls: list[str] = []

    class Counting(GuestAgent):
        def call(self, endpoint: str, body: dict[str, object]) -> dict[str, object]:
            calls.append(endpoint)
            return super().call(endpoint, body)

    evidence = GatewayEvidence(Counting(str(agent_socket)), store(tmp_path))
    evidence.quote_certificate(cert.chain_pem)
    evidence.quote_certificate(cert.chain_pem)  # a renewal for the same key
    assert calls == ["/GetQuote", "/Attest"]
