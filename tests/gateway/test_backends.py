"""Backend addresses: public unicast is relayed to, the gateway's own networks only if allowed."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.backends import BackendPolicy, BackendRefused, parse_host, parse_networks

DEFAULT = BackendPolicy()
LOOPBACK = BackendPolicy(parse_networks(["127.0.0.0/8", "::1/128"]))


def verdict(policy: BackendPolicy, host: str) -> str | None:
    """None if `policy` accepts `host`, else the refusal message."""
    try:
        policy.check(parse_host(host))
    except BackendRefused as exc:
        return str(exc)
    return None


@pytest.mark.parametrize(
    ("host", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("::ffff:169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("fec0::1", "site-local"),
        ("240.0.0.1", "private"),  # Python counts 240/4 as private too; reserved either way
        ("100.64.0.1", "not globally routable"),
        ("192.0.2.1", "private"),  # documentation
        ("::127.0.0.1", "reserved"),  # IPv4-compatible
        ("64:ff9b::a9fe:a9fe", "reserved"),  # NAT64 of 169.254.169.254
        ("2002:7f00:1::", "6to4 for 127.0.0.1, which is loopback"),
        ("2002:a9fe:a9fe::1", "6to4 for 169.254.169.254, which is link-local"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("255.255.255.255", "private"),
    ],
)
def test_internal_addresses_are_refused_by_default(host: str, kind: str) -> None:
    message = verdict(DEFAULT, host)
    assert message is not None and f" is {kind}" in message


@pytest.mark.parametrize("host", ["8.8.8.8", "2606:4700::1111", "2002:808:808::1"])
def test_public_addresses_are_accepted(host: str) -> None:
    assert verdict(DEFAULT, host) is None


def test_an_allowed_network_admits_its_addresses_and_nothing_else() -> None:
    for host in ("127.0.0.1", "127.255.0.9", "::1", "::ffff:127.0.0.2"):
        assert verdict(LOOPBACK, host) is None
    assert verdict(LOOPBACK, "169.254.169.254") == (
        "host 169.254.169.254 is link-local: this gateway relays only to public addresses and "
        "to its allowed_backend_networks (127.0.0.0/8, ::1/128)"
    )
    assert verdict(LOOPBACK, "2002:7f00:1::") is not None  # 6to4 is IPv6, not in 127.0.0.0/8


def test_unspecified_and_multicast_are_refused_even_when_allowed() -> None:
    everything = BackendPolicy(parse_networks(["0.0.0.0/0", "::/0"]))
    assert verdict(everything, "0.0.0.0") == "host 0.0.0.0 is unspecified, never a backend"
    assert verdict(everything, "ff02::1") == "host ff02::1 is multicast, never a backend"
    assert verdict(everything, "10.0.0.1") is None


@pytest.mark.parametrize("host", ["localhost", "metadata.google.internal", "", "10.0.0.1:80"])
def test_names_are_not_addresses(host: str) -> None:
    with pytest.raises(ValueError, match=r"is not an IP address \(names are not accepted"):
        parse_host(host)


def test_an_ipv4_mapped_address_is_read_as_ipv4() -> None:
    assert parse_host("::ffff:10.0.0.9") == ipaddress.IPv4Address("10.0.0.9")


@pytest.mark.parametrize(
    ("value", "message"),
    [("10.0.0.1/8", "has host bits set"), ("10.0.0/8", "is not a network"), ("x", "'x'")],
)
def test_bad_networks_are_named(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_networks(["127.0.0.0/8", value])


NON_PUBLIC_V4 = ["127.0.0.0/8", "169.254.0.0/16", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]


@given(st.sampled_from(NON_PUBLIC_V4), st.integers(0, 2**32 - 1))
def test_every_address_of_the_internal_ranges_is_refused_in_both_forms(
    cidr: str, bits: int
) -> None:
    network = ipaddress.IPv4Network(cidr)
    address = network[bits % network.num_addresses]
    assert verdict(DEFAULT, str(address)) is not None
    assert verdict(DEFAULT, f"::ffff:{address}") == verdict(DEFAULT, str(address))
    assert verdict(BackendPolicy((network,)), str(address)) is None


@given(st.ip_addresses())
def test_the_default_accepts_exactly_global_unicast(address: ipaddress._BaseAddress) -> None:
    normalized = parse_host(str(address))
    accepted = verdict(DEFAULT, str(address)) is None
    sixtofour = getattr(normalized, "sixtofour", None)
    expected = (
        normalized.is_global
        and not normalized.is_multicast
        and not normalized.is_reserved
        and not getattr(normalized, "is_site_local", False)
        and (sixtofour is None or sixtofour.is_global)
    )
    assert accepted == expected
