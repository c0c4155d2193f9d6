"""Which backend addresses the gateway relays to: public addresses, plus ranges the operator allows.

A registration names the host the proxy connects to, and `-<port>` in a client's SNI picks the
port. Without a check, an approved app could register 127.0.0.1, 169.254.169.254 (a cloud's
metadata service) or a private address and so make the gateway relay any client into the
gateway's own network, on any port.

Rules (docs/gateway.md, docs/security.md):

* The host is an IP address literal, never a name: a name is resolved when connecting, and what
  it resolves to then need not be what it resolved to when it was checked (DNS rebinding).
* IPv4-mapped IPv6 addresses (``::ffff:a.b.c.d``) are judged, and stored, as the IPv4 address;
  a 6to4 address (``2002::/16``) is also judged by the IPv4 address it embeds.
* Refused unless inside one of the operator's `allowed` networks: loopback, link-local,
  private (RFC 1918, unique-local, site-local), reserved, and every other address that is not
  globally routable (shared 100.64.0.0/10, documentation, benchmarking, IPv4-compatible and
  NAT64 forms, ...).
* Always refused, whatever is allowed: unspecified (0.0.0.0 and :: connect to this host) and
  multicast (no TCP peer).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class BackendRefused(ValueError):
    """A backend address the gateway does not relay to; the message says which kind it is."""


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """CIDR strings as networks; `ValueError` naming the first bad one (host bits set count)."""
    networks: list[IPNetwork] = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value, strict=True))
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a network in CIDR form: {exc}") from None
    return tuple(networks)


def _normalized(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _category(address: IPAddress) -> str | None:
    """Why `address` is not a public unicast address, or None if it is one."""
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return "site-local"
    if address.is_private:
        return "private"
    if address.is_reserved:
        return "reserved"
    if not address.is_global:
        return "not globally routable"
    if isinstance(address, ipaddress.IPv6Address) and address.sixtofour is not None:
        embedded = _category(address.sixtofour)
        if embedded is not None:
            return f"6to4 for {address.sixtofour}, which is {embedded}"
    return None


def parse_host(host: str) -> IPAddress:
    """`host` as an IP address (IPv4-mapped IPv6 as IPv4), or `ValueError`: names are refused."""
    try:
        return _normalized(ipaddress.ip_address(host))
    except ValueError:
        raise ValueError(
            f"host {host[:80]!r} is not an IP address (names are not accepted: what a name "
            "resolves to can change between the check and the connection)"
        ) from None


@dataclass(frozen=True, slots=True)
class BackendPolicy:
    """Public unicast addresses, plus `allowed` networks (the gateway config's
    `[registration] allowed_backend_networks`; empty by default)."""

    allowed: tuple[IPNetwork, ...] = ()

    def check(self, address: IPAddress) -> None:
        """Return if the gateway may relay to `address`, else `BackendRefused` saying why."""
        if address.is_unspecified or address.is_multicast:
            kind = "unspecified" if address.is_unspecified else "multicast"
            raise BackendRefused(f"host {address} is {kind}, never a backend")
        if any(address in network for network in self.allowed):
            return
        category = _category(address)
        if category is not None:
            allowed = ", ".join(str(n) for n in self.allowed) or "none"
            raise BackendRefused(
                f"host {address} is {category}: this gateway relays only to public addresses "
                f"and to its allowed_backend_networks ({allowed})"
            )
