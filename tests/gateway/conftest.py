"""Gateway test fixtures: one real Knot DNS server and one real Pebble validating against it per
test module, and a provider wrapper that records what the gateway writes and when."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Callable, Iterator

import dns.message
import dns.query
import dns.rdata
import dns.rdatatype
import pytest

from gateway.dns_rfc2136 import Rfc2136Provider
from gateway.knot import KnotServer, knotd_path
from gateway.pebble import Pebble

#: The zones the module's DNS server serves (names the tests get certificates for).
ZONES = ("gw.test", "other.test", "nonce.test")


def require_knot() -> None:
    try:
        knotd_path()
    except RuntimeError:
        pytest.skip("knotd is not installed (Debian package `knot`; `make install`)")


def require_pebble() -> None:
    require_knot()
    if shutil.which("pebble") is None:
        pytest.skip("pebble is not installed (Debian package `pebble`; `make install`)")


@pytest.fixture(scope="module")
def knot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KnotServer]:
    """Knot DNS serving ZONES on a free 127.0.0.1 port, stopped after the module."""
    require_knot()
    server = KnotServer.start(tmp_path_factory.mktemp("knot"), ZONES)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def pebble(knot: KnotServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pebble]:
    """Pebble on free 127.0.0.1 ports resolving at `knot`, stopped after the module."""
    require_pebble()
    instance = Pebble.start(tmp_path_factory.mktemp("pebble"), knot.address)
    try:
        yield instance
    finally:
        instance.stop()


def dns_for(knot: KnotServer, zone: str = "gw.test", secret: str | None = None) -> Rfc2136Provider:
    """The gateway's provider for `zone` on `knot`, with the server's key (or `secret`)."""
    return Rfc2136Provider(knot.address, zone, knot.key_name, secret or knot.secret())


def free_port() -> int:
    """A TCP port on 127.0.0.1 with nothing listening (for 'server down' tests)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def records(address: str, name: str, rdtype: str) -> list[dns.rdata.Rdata]:
    """The `rdtype` records of `name` as the server at `address` answers over UDP: what any
    resolver, a CA or a verifier sees."""
    host, _, port = address.rpartition(":")
    answer = dns.query.udp(dns.message.make_query(name, rdtype), host, port=int(port), timeout=2)
    wanted = dns.rdatatype.from_text(rdtype)
    return [rd for rrset in answer.answer if rrset.rdtype == wanted for rd in rrset]


def query(address: str, name: str, rdtype: str) -> list[str]:
    """The `rdtype` records of `name` in zone-file text, sorted."""
    return sorted(rd.to_text() for rd in records(address, name, rdtype))


def query_txt(address: str, name: str) -> list[bytes]:
    """The TXT strings of `name`, sorted."""
    return sorted(b"".join(getattr(rd, "strings", ())) for rd in records(address, name, "TXT"))


class Recording:
    """A DnsProvider passing every call to `inner`, recording (call, name, what the server
    held for `watch(name)` right after it)."""

    def __init__(
        self, inner: Rfc2136Provider, watch: Callable[[str], object] | None = None
    ) -> None:
        self.inner = inner
        self.watch = watch or (lambda _: None)
        self.calls: list[tuple[str, str, object]] = []
        self.propagation_seconds = inner.propagation_seconds

    def set_txt(self, fqdn: str, value: str) -> None:
        self.inner.set_txt(fqdn, value)
        self.calls.append(("set_txt", fqdn, self.watch(fqdn)))

    def clear_txt(self, fqdn: str) -> None:
        # What the server held until now (validation is over when the client clears).
        self.calls.append(("clear_txt", fqdn, self.watch(fqdn)))
        self.inner.clear_txt(fqdn)

    def set_caa(self, fqdn: str, value: str) -> None:
        self.inner.set_caa(fqdn, value)
        self.calls.append(("set_caa", fqdn, self.watch(fqdn)))
