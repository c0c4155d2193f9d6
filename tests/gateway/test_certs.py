"""The certificate manager against a real Pebble and a real DNS server (Knot): issue, seal,
reuse on restart, renew, refuse; the CAA pin to the ACME account, and its re-pin."""

from __future__ import annotations

import asyncio
import base64
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.verification import PolicyBuilder, Store
from structlog.testing import capture_logs

from gateway.acme_client import AcmeError, AcmeIssuer, IssuedCertificate
from gateway.certs import (
    ACCOUNT_ITEM,
    CAA_ITEM,
    CHAIN_CA_ITEM,
    CHAIN_ITEM,
    KEY_ITEM,
    CertificateManager,
)
from gateway.dns01 import DnsError, DnsProvider
from gateway.keystore import SealedStore, SealedStoreError
from gateway.knot import KnotServer
from gateway.pebble import Pebble
from tests.gateway.conftest import Recording, dns_for, free_port, query

SEALING_KEY = bytes(range(32))
BASE = "gw.test"
TEN_YEARS = 10 * 365 * 86400.0


class Loaded:
    """Records what the manager handed to the TLS front."""

    def __init__(self) -> None:
        self.calls: list[tuple[bytes, bytes]] = []

    def __call__(self, chain_pem: bytes, key_pem: bytes) -> None:
        self.calls.append((chain_pem, key_pem))


class CountingIssuer(AcmeIssuer):
    """A real issuer that also counts its orders and account look-ups."""

    orders = 0
    registrations = 0

    def register(self) -> str:
        self.registrations += 1
        return super().register()

    def issue(self, *args: Any, **kwargs: Any) -> IssuedCertificate:
        self.orders += 1
        return super().issue(*args, **kwargs)


def acme_calls(mgr: CertificateManager) -> tuple[int, int]:
    """(orders, account look-ups) the manager's issuer made."""
    assert isinstance(mgr.issuer, CountingIssuer)
    return mgr.issuer.orders, mgr.issuer.registrations


@dataclass(frozen=True)
class Acme:
    """The module's ACME server and the DNS server it validates at."""

    pebble: Pebble
    knot: KnotServer


@pytest.fixture(scope="module")
def acme(pebble: Pebble, knot: KnotServer) -> Acme:
    return Acme(pebble, knot)


def manager(
    acme: Acme,
    data: Path,
    *,
    sealing_key: bytes = SEALING_KEY,
    directory_url: str | None = None,
    on_certificate: Callable[[bytes, bytes], None] | None = None,
    renew_before: float = 86400.0,
    retry_after: float = 300.0,
    dns: DnsProvider | None = None,
    caa_issuer: str = "pebble.test",
) -> CertificateManager:
    store = SealedStore(data, sealing_key)
    issuer = CountingIssuer(
        directory_url or acme.pebble.directory_url,
        store.load_or_create_key("acme-account"),
        ca_bundle=str(acme.pebble.ca_bundle),
    )
    return CertificateManager(
        store,
        issuer,
        BASE,
        dns or dns_for(acme.knot),
        on_certificate or Loaded(),
        renew_before=renew_before,
        caa_issuer=caa_issuer,
        retry_after=retry_after,
    )


def pinned(account_uri: str, issuer: str = "pebble.test") -> list[str]:
    """The CAA records (zone-file text) pinning BASE to `account_uri`, sorted."""
    value = f"{issuer}; accounturi={account_uri}; validationmethods=dns-01"
    return [f'0 issue "{value}"', f'0 issuewild "{value}"']


@dataclass(frozen=True)
class Issued:
    data: Path
    certificate: IssuedCertificate
    account_uri: str


@pytest.fixture(scope="module")
def issued_once(acme: Acme, tmp_path_factory: pytest.TempPathFactory) -> Issued:
    """A store holding one issued certificate; tests get copies (`issued`) to save issuances."""
    data = tmp_path_factory.mktemp("issued")
    mgr = manager(acme, data)
    certificate = mgr.ensure()
    assert mgr.account_uri is not None
    return Issued(data, certificate, mgr.account_uri)


@pytest.fixture
def issued(issued_once: Issued, tmp_path: Path) -> Issued:
    """A restart: a copy of the data directory of a gateway that issued its certificate."""
    data = tmp_path / "data"
    shutil.copytree(issued_once.data, data)
    return Issued(data, issued_once.certificate, issued_once.account_uri)


def serial(chain_pem: bytes) -> int:
    return x509.load_pem_x509_certificates(chain_pem)[0].serial_number


def snapshot(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in directory.iterdir()}


def dead_url() -> str:
    return f"https://127.0.0.1:{free_port()}/dir"


def test_ensure_issues_a_wildcard_hands_it_over_and_seals_it(acme: Acme, tmp_path: Path) -> None:
    loaded = Loaded()
    mgr = manager(acme, tmp_path, on_certificate=loaded)
    issued = mgr.ensure()
    [(chain_pem, key_pem)] = loaded.calls
    assert chain_pem == issued.chain_pem
    chain = x509.load_pem_x509_certificates(chain_pem)
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert chain[0].public_key() == key.public_key()
    roots = x509.load_pem_x509_certificates(acme.pebble.roots_pem())
    verifier = (
        PolicyBuilder().store(Store(roots)).build_server_verifier(x509.DNSName("app-1.gw.test"))
    )
    verifier.verify(chain[0], chain[1:])
    # Only sealed files: neither the key nor the chain is written in the clear.
    files = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    assert sorted(files) == sorted(
        f"{item}.sealed"
        for item in ("acme-account", KEY_ITEM, CHAIN_ITEM, CHAIN_CA_ITEM, ACCOUNT_ITEM, CAA_ITEM)
    )
    der = chain[0].public_bytes(serialization.Encoding.DER)
    assert not any(der in blob or b"PRIVATE KEY" in blob for blob in files.values())
    assert mgr.account_uri is not None
    value = f"pebble.test; accounturi={mgr.account_uri}; validationmethods=dns-01"
    assert mgr.caa_records().splitlines() == [
        f'gw.test. CAA 0 issue "{value}"',
        f'gw.test. CAA 0 issuewild "{value}"',
    ]


def test_restart_reuses_the_sealed_certificate_without_an_order(acme: Acme, issued: Issued) -> None:
    loaded = Loaded()
    dns = Recording(dns_for(acme.knot))
    restarted = manager(acme, issued.data, on_certificate=loaded, dns=dns)
    assert restarted.ensure() == issued.certificate
    assert acme_calls(restarted) == (0, 0)
    assert dns.calls == []  # the pin is sealed as done: no DNS traffic either
    assert [chain for chain, _ in loaded.calls] == [issued.certificate.chain_pem]
    assert restarted.account_uri == issued.account_uri
    assert restarted.seconds_until_renewal() > 0


def test_a_certificate_due_for_renewal_is_reissued_for_the_same_key(
    acme: Acme, issued: Issued
) -> None:
    old = issued.certificate
    renewing = manager(acme, issued.data, renew_before=TEN_YEARS)
    renewed = renewing.ensure()
    assert acme_calls(renewing) == (1, 2)  # ensure() and issue() each make sure of the account
    assert serial(renewed.chain_pem) != serial(old.chain_pem)
    first_key, second_key = (
        x509.load_pem_x509_certificates(c.chain_pem)[0].public_key() for c in (old, renewed)
    )
    assert first_key == second_key
    # The renewed chain replaced the sealed one.
    restarted = manager(acme, issued.data)
    assert restarted.ensure().chain_pem == renewed.chain_pem
    assert acme_calls(restarted) == (0, 0)


def test_a_certificate_from_another_acme_directory_is_not_reused(
    acme: Acme, issued: Issued
) -> None:
    # Another CA, or the next Pebble run (a new root): here one that is down.
    before = snapshot(issued.data)
    url = dead_url()
    with capture_logs() as logs, pytest.raises(AcmeError, match=f"reading the directory at {url}"):
        manager(acme, issued.data, directory_url=url).ensure()
    assert "certificate_other_ca" in [event["event"] for event in logs]
    assert snapshot(issued.data) == before


def test_a_certificate_for_another_base_domain_is_not_reused(acme: Acme, issued: Issued) -> None:
    store = SealedStore(issued.data, SEALING_KEY)
    other = CertificateManager(
        store,
        AcmeIssuer(
            acme.pebble.directory_url,
            store.load_or_create_key("acme-account"),
            ca_bundle=str(acme.pebble.ca_bundle),
        ),
        "other.test",
        dns_for(acme.knot, "other.test"),
        Loaded(),
    )
    leaf = x509.load_pem_x509_certificates(other.ensure().chain_pem)[0]
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(names.get_values_for_type(x509.DNSName)) == ["*.other.test", "other.test"]
    assert leaf.serial_number != serial(issued.certificate.chain_pem)


def test_tampered_sealed_chain_is_refused_and_changes_nothing(acme: Acme, issued: Issued) -> None:
    path = issued.data / f"{CHAIN_ITEM}.sealed"
    blob = bytearray(path.read_bytes())
    blob[-5] ^= 0x01
    path.write_bytes(bytes(blob))
    before = snapshot(issued.data)
    loaded = Loaded()
    with pytest.raises(SealedStoreError, match=rf"{path}: cannot unseal"):
        manager(acme, issued.data, on_certificate=loaded).ensure()
    assert loaded.calls == []
    assert snapshot(issued.data) == before


def test_wrong_sealing_key_is_refused(acme: Acme, issued: Issued) -> None:
    before = snapshot(issued.data)
    with pytest.raises(SealedStoreError, match=r"acme-account\.sealed: cannot unseal: wrong"):
        manager(acme, issued.data, sealing_key=bytes(32))
    store = SealedStore(issued.data, bytes(32))
    issuer = AcmeIssuer(acme.pebble.directory_url, store.load_or_create_key("fresh-account"))
    mgr = CertificateManager(store, issuer, BASE, dns_for(acme.knot), Loaded())
    with pytest.raises(SealedStoreError, match=rf"{KEY_ITEM}\.sealed: cannot unseal: wrong"):
        mgr.ensure()
    after = snapshot(issued.data)
    assert after.pop("fresh-account.sealed")  # the only new file: a new item of the new key
    assert after == before


def test_caa_records_need_the_account(acme: Acme, tmp_path: Path) -> None:
    with pytest.raises(AcmeError, match="ACME account is not known yet"):
        manager(acme, tmp_path).caa_records()


def test_first_issue_with_the_server_down_is_a_clear_error(acme: Acme, tmp_path: Path) -> None:
    url = dead_url()
    loaded = Loaded()
    with pytest.raises(AcmeError, match=rf"reading the directory at {url}"):
        manager(acme, tmp_path, directory_url=url, on_certificate=loaded).ensure()
    assert loaded.calls == []
    assert not (tmp_path / f"{CHAIN_ITEM}.sealed").exists()


def test_run_renews_in_the_background_and_stops(acme: Acme, issued: Issued) -> None:

    async def scenario() -> list[tuple[bytes, bytes]]:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loaded = Loaded()

        def renewed(chain_pem: bytes, key_pem: bytes) -> None:
            loaded(chain_pem, key_pem)
            loop.call_soon_threadsafe(stop.set)

        mgr = manager(acme, issued.data, renew_before=TEN_YEARS, on_certificate=renewed)
        await asyncio.wait_for(mgr.run(stop), timeout=20)
        return loaded.calls

    [(chain_pem, _)] = asyncio.run(scenario())
    assert serial(chain_pem) != serial(issued.certificate.chain_pem)


def renewal_failures(mgr: CertificateManager) -> list[str]:
    """The errors `run()` logs as failed renewals in half a second, then stopped."""

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(mgr.run(stop))
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.wait_for(task, timeout=5)

    with capture_logs() as logs:
        asyncio.run(scenario())
    return [e["error"] for e in logs if e["event"] == "certificate_renewal_failed"]


def test_run_retries_failed_renewals_until_stopped(acme: Acme, issued: Issued) -> None:
    mgr = manager(
        acme, issued.data, directory_url=dead_url(), renew_before=TEN_YEARS, retry_after=0.05
    )
    failures = renewal_failures(mgr)
    assert len(failures) >= 2
    assert "reading the directory" in failures[0]


def caa_watch(acme: Acme) -> Recording:
    """The module's provider, recording the base domain's CAA records after every call."""
    return Recording(dns_for(acme.knot), watch=lambda _: query(acme.knot.address, BASE, "CAA"))


def test_ensure_pins_caa_to_the_account_before_it_orders(acme: Acme, tmp_path: Path) -> None:
    dns = caa_watch(acme)
    mgr = manager(acme, tmp_path, dns=dns)
    mgr.ensure()
    assert mgr.account_uri is not None
    pin = pinned(mgr.account_uri)
    assert dns.calls[0] == ("set_caa", BASE, pin)
    # Every challenge record was written (so the order was placed) after the pin was in place.
    assert [call for call, _, _ in dns.calls] == ["set_caa", "set_txt", "set_txt", "clear_txt"]
    assert all(caa == pin for _, _, caa in dns.calls)
    assert query(acme.knot.address, BASE, "CAA") == pin


def test_a_new_account_is_pinned_before_it_orders_and_the_old_pin_is_gone(
    acme: Acme, issued: Issued
) -> None:
    (issued.data / "acme-account.sealed").unlink()  # a new account key: a new ACME account
    dns = caa_watch(acme)
    renewing = manager(acme, issued.data, renew_before=TEN_YEARS, dns=dns)
    renewing.ensure()
    new_uri = renewing.account_uri
    assert new_uri is not None and new_uri != issued.account_uri
    assert acme_calls(renewing)[0] == 1
    assert dns.calls[0] == ("set_caa", BASE, pinned(new_uri))
    assert all(caa == pinned(new_uri) for call, _, caa in dns.calls if call == "set_txt")
    assert query(acme.knot.address, BASE, "CAA") == pinned(new_uri)
    # A restart now trusts the sealed pin: nothing is written again.
    quiet = Recording(dns_for(acme.knot))
    manager(acme, issued.data, dns=quiet).ensure()
    assert quiet.calls == []


def test_a_changed_caa_issuer_is_pinned_at_restart_without_an_order(
    acme: Acme, issued: Issued
) -> None:
    restarted = manager(acme, issued.data, caa_issuer="other-ca.test")
    restarted.ensure()
    assert acme_calls(restarted) == (0, 0)
    assert query(acme.knot.address, BASE, "CAA") == pinned(issued.account_uri, "other-ca.test")


def test_a_wrong_tsig_key_is_refused_by_the_server_and_nothing_is_ordered(
    acme: Acme, tmp_path: Path
) -> None:
    before = query(acme.knot.address, BASE, "CAA")
    wrong = base64.b64encode(bytes(32)).decode()
    mgr = manager(acme, tmp_path, dns=dns_for(acme.knot, secret=wrong))
    with pytest.raises(DnsError) as refused:
        mgr.ensure()
    assert re.fullmatch(
        r"pinning CAA gw\.test\. at 127\.0\.0\.1:\d+: the server refused the signature of TSIG "
        r"key 'tkms-gateway': its secret is not the one the server has \(TSIG BADSIG\)",
        str(refused.value),
    )
    assert wrong not in str(refused.value) and acme.knot.secret() not in str(refused.value)
    assert acme_calls(mgr)[0] == 0
    assert not (tmp_path / f"{CHAIN_ITEM}.sealed").exists()
    assert not (tmp_path / f"{CAA_ITEM}.sealed").exists()
    assert query(acme.knot.address, BASE, "CAA") == before


def test_run_retries_dns_failures_while_the_old_certificate_serves(
    acme: Acme, issued: Issued
) -> None:
    wrong = dns_for(acme.knot, secret=base64.b64encode(bytes(32)).decode())
    mgr = manager(acme, issued.data, renew_before=TEN_YEARS, retry_after=0.05, dns=wrong)
    failures = renewal_failures(mgr)
    assert len(failures) >= 2
    assert "TSIG BADSIG" in failures[0]
