"""ACME issuance against a real Pebble validating at a real DNS server (Knot) the client writes
to by RFC 2136: accounts, DNS-01 wildcards, errors; the Pebble launcher."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from gateway import _servers as servers
from gateway import pebble as pebble_module
from gateway.acme_client import AcmeError, AcmeIssuer, IssuedCertificate, caa_record
from gateway.dns01 import DnsError
from gateway.dns_rfc2136 import Rfc2136Provider
from gateway.knot import KnotServer
from gateway.pebble import Pebble, PebbleError
from tests.gateway.conftest import Recording, dns_for, free_port, query_txt, require_pebble

REPO = Path(__file__).resolve().parents[2]


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def issuer_for(
    pebble: Pebble, key: ec.EllipticCurvePrivateKey | None = None, contact: str | None = None
) -> AcmeIssuer:
    return AcmeIssuer(
        pebble.directory_url, key or new_key(), ca_bundle=str(pebble.ca_bundle), contact=contact
    )


def verify_for(pebble: Pebble, issued: IssuedCertificate, hostname: str) -> None:
    chain = x509.load_pem_x509_certificates(issued.chain_pem)
    roots = x509.load_pem_x509_certificates(pebble.roots_pem())
    verifier = PolicyBuilder().store(Store(roots)).build_server_verifier(x509.DNSName(hostname))
    verifier.verify(chain[0], chain[1:])


class NoDns:
    """A DNS provider that publishes nothing, so that validation must fail."""

    propagation_seconds = 0.0

    def set_txt(self, fqdn: str, value: str) -> None:
        pass

    def clear_txt(self, fqdn: str) -> None:
        pass

    def set_caa(self, fqdn: str, value: str) -> None:
        pass


def test_wildcard_certificate_chains_to_pebble_root_and_txt_records_are_cleared(
    pebble: Pebble, knot: KnotServer
) -> None:
    issuer = issuer_for(pebble)
    cert_key = new_key()
    dns = Recording(dns_for(knot), watch=lambda name: query_txt(knot.address, name))
    issued = issuer.issue(["*.gw.test", "gw.test"], cert_key, dns)
    verify_for(pebble, issued, "app-1.gw.test")
    verify_for(pebble, issued, "gw.test")
    for outside in ("app-1.other.test", "a.app-1.gw.test"):
        with pytest.raises(VerificationError):
            verify_for(pebble, issued, outside)
    leaf = x509.load_pem_x509_certificates(issued.chain_pem)[0]
    assert leaf.public_key() == cert_key.public_key()
    assert (issued.not_before, issued.not_after) == (
        leaf.not_valid_before_utc,
        leaf.not_valid_after_utc,
    )
    assert issued.not_before < issued.not_after
    # Both values (the wildcard's and the name's) were on the real server while Pebble
    # validated, and are gone afterwards.
    [first, second, cleared] = dns.calls
    assert first[:2] == second[:2] == ("set_txt", "_acme-challenge.gw.test")
    assert len(second[2]) == 2  # type: ignore[arg-type]
    assert cleared == ("clear_txt", "_acme-challenge.gw.test", second[2])
    assert query_txt(knot.address, "_acme-challenge.gw.test") == []


def test_register_reuses_the_account_of_the_same_key(pebble: Pebble) -> None:
    key = new_key()
    first = issuer_for(pebble, key).register()
    assert issuer_for(pebble, key).register() == first
    assert issuer_for(pebble).register() != first
    assert first.startswith(pebble.directory_url.removesuffix("/dir"))


def test_unpublished_challenge_fails_with_the_servers_problem_detail(pebble: Pebble) -> None:
    with pytest.raises(AcmeError, match=r"validating nodns\.test at https://.*TXT"):
        issuer_for(pebble).issue(["nodns.test"], new_key(), NoDns(), timeout=20)


def test_dns_provider_down_is_named(pebble: Pebble, knot: KnotServer) -> None:
    dead = Rfc2136Provider(f"127.0.0.1:{free_port()}", "dead.test", "k", knot.secret())
    with pytest.raises(
        AcmeError,
        match=r"publishing the DNS-01 record for dead\.test: adding TXT _acme-challenge\.dead"
        r"\.test\. at 127\.0\.0\.1:\d+: Connection refused",
    ):
        issuer_for(pebble).issue(["dead.test"], new_key(), dead)
    with pytest.raises(DnsError, match=r"removing TXT x\.dead\.test\. at .*: Connection refused"):
        dead.clear_txt("x.dead.test")


def test_pebble_down_gives_a_clear_error() -> None:
    url = f"https://127.0.0.1:{free_port()}/dir"
    issuer = AcmeIssuer(url, new_key())
    with pytest.raises(AcmeError, match=rf"reading the directory at {url}: .*refused"):
        issuer.register()
    with pytest.raises(AcmeError, match=rf"reading the directory at {url}"):
        issuer.issue(["down.test"], new_key(), NoDns())


def test_untrusted_https_is_refused(pebble: Pebble) -> None:
    # Without Pebble's CA bundle, the system trust store must not accept its test certificate.
    issuer = AcmeIssuer(pebble.directory_url, new_key())
    with pytest.raises(AcmeError, match="reading the directory at .*CERTIFICATE_VERIFY_FAILED"):
        issuer.register()


def test_caa_record_pins_the_account_and_the_method() -> None:
    uri = "https://acme.example/acct/42"
    value = f"letsencrypt.org; accounturi={uri}; validationmethods=dns-01"
    assert caa_record("gw.example.", "letsencrypt.org", uri).splitlines() == [
        f'gw.example. CAA 0 issue "{value}"',
        f'gw.example. CAA 0 issuewild "{value}"',
    ]
    # A value that would end the parameter list or the quoted string is refused, not written.
    for bad in ("https://x/acct/1; accounturi=https://evil/acct/2", 'https://x/"', ""):
        with pytest.raises(ValueError, match="cannot be a CAA parameter value"):
            caa_record("gw.example", "letsencrypt.org", bad)
    with pytest.raises(ValueError, match="is not a domain name"):
        caa_record("gw.example", "letsencrypt.org; x=y", uri)


def test_pebble_state_round_trips_and_stop_leaves_no_process(
    tmp_path: Path, knot: KnotServer
) -> None:
    require_pebble()
    instance = Pebble.start(tmp_path, knot.address, detach=True)
    pids = list(instance.pids)
    try:
        assert len(pids) == 1
        assert all(os.getsid(pid) == pid for pid in pids)  # own sessions: they outlive us
        loaded = Pebble.from_dict(instance.to_dict())
        assert loaded.to_dict() == instance.to_dict()
        assert loaded.roots_pem().startswith(b"-----BEGIN CERTIFICATE-----")
        assert (tmp_path / "pebble-ca.pem").read_bytes() == loaded.ca_bundle.read_bytes()
    finally:
        instance.stop()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    with pytest.raises(ValueError, match="pebble state: pids must be a list"):
        Pebble.from_dict({**instance.to_dict(), "pids": "12"})


def test_stop_from_another_process_ends_only_pebble(tmp_path: Path, knot: KnotServer) -> None:
    # As `tkms testnet down` does: another process loads the state and stops the instance.
    require_pebble()
    instance = Pebble.start(tmp_path, knot.address, detach=True)
    bystander = subprocess.Popen(["sleep", "30"])
    try:
        state = {**instance.to_dict(), "pids": [*instance.pids, bystander.pid]}
        script = "import json, sys; from gateway.pebble import Pebble; "
        script += "Pebble.from_dict(json.loads(sys.argv[1])).stop()"
        subprocess.run(
            [sys.executable, "-c", script, json.dumps(state)], check=True, timeout=20, cwd=REPO
        )
        # Pebble ended (a zombie until we, its parent, reap it); the pid that is not a Pebble
        # process was left alone.
        for pid in instance.pids:
            assert Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] == "Z"
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()
        instance.stop()


def test_pebble_that_cannot_start_names_its_log(
    tmp_path: Path, knot: KnotServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_pebble()
    spawned: list[subprocess.Popen[bytes]] = []
    real_spawn = servers.spawn

    def recording_spawn(*args: Any) -> subprocess.Popen[bytes]:
        spawned.append(real_spawn(*args))
        return spawned[-1]

    monkeypatch.setattr(pebble_module, "spawn", recording_spawn)
    monkeypatch.setattr(pebble_module, "PEBBLE", "false")
    with pytest.raises(
        PebbleError, match=rf"/dir: process \d+ exited; see the log {tmp_path}/pebble\.log"
    ):
        Pebble.start(tmp_path, knot.address)
    assert len(spawned) == 1
    assert spawned[0].poll() is not None


def test_a_port_taken_before_the_child_binds_it_is_retried(
    tmp_path: Path, knot: KnotServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_pebble()
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    taken: int = squatter.getsockname()[1]
    real_free_port = servers.free_port
    handed_out: list[int] = []

    def racy_free_port(*kinds: socket.SocketKind) -> int:
        # The first ACME port handed out is already someone else's, as in a lost race.
        port = taken if not handed_out else real_free_port(*kinds)
        handed_out.append(port)
        return port

    monkeypatch.setattr(pebble_module, "free_port", racy_free_port)
    try:
        instance = Pebble.start(tmp_path, knot.address)
        try:
            assert f":{taken}/" not in instance.directory_url
            assert handed_out.count(taken) == 1
            assert instance.roots_pem().startswith(b"-----BEGIN CERTIFICATE-----")
        finally:
            instance.stop()
    finally:
        squatter.close()


def test_contact_is_sent_and_a_refused_one_carries_the_servers_problem(pebble: Pebble) -> None:
    assert issuer_for(pebble, contact="mailto:ops@example.com").register()
    with pytest.raises(AcmeError, match=r"registering the account .*invalidContact.*not-an-email"):
        issuer_for(pebble, contact="not-an-email").register()


def test_rejected_nonces_are_retried(tmp_path: Path, knot: KnotServer) -> None:
    # Pebble rejects 40% of valid nonces: acme alone retries once, which fails most issuances.
    require_pebble()
    instance = Pebble.start(tmp_path, knot.address, env={"PEBBLE_WFE_NONCEREJECT": "40"})
    try:
        issued = issuer_for(instance).issue(["nonce.test"], new_key(), dns_for(knot, "nonce.test"))
        verify_for(instance, issued, "nonce.test")
    finally:
        instance.stop()


def test_pebble_stopped_after_registration_gives_a_clear_error(
    tmp_path: Path, knot: KnotServer
) -> None:
    require_pebble()
    instance = Pebble.start(tmp_path, knot.address)
    try:
        issuer = issuer_for(instance)
        issuer.register()
    finally:
        instance.stop()
    with pytest.raises(AcmeError, match=r"ordering gone\.test at https://.*Connection refused"):
        issuer.issue(["gone.test"], new_key(), NoDns())
