"""The DNS records the gateway writes itself: the provider interface and the CAA value.

`AcmeIssuer` publishes DNS-01 challenge records (RFC 8555 §8.4) through a `DnsProvider`, and
`CertificateManager` pins the base domain's CAA records (RFC 8659, with the `accounturi` and
`validationmethods` parameters of RFC 8657) to the gateway's ACME account through the same
provider. Providers: `gateway.dns_rfc2136` (dynamic updates signed with TSIG, for any
authoritative server that takes them: Knot, BIND, PowerDNS) and `gateway.dns_cloudflare`
(Cloudflare's v4 API); `gateway.dns_providers` builds the configured one.

A name may hold several TXT values at once: a wildcard `*.base` and `base` are both validated
at `_acme-challenge.base`, so `set_txt` adds a value and `clear_txt` removes every value.

Provider credentials (a TSIG secret, an API token) are read from files only the gateway can
read (`read_secret_file`), and never appear in a log line, an error or a repr.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Protocol


class DnsError(Exception):
    """A record could not be written or removed; the message says which, where and why."""


class DnsProvider(Protocol):
    #: Seconds to wait after publishing before the CA may look (a provider whose servers are
    #: updated asynchronously); 0 when the update is on the authoritative server on return.
    propagation_seconds: float

    def set_txt(self, fqdn: str, value: str) -> None:
        """Add `value` to the TXT records of `fqdn` (a name without the trailing dot)."""
        ...

    def clear_txt(self, fqdn: str) -> None:
        """Remove every TXT record of `fqdn`."""
        ...

    def set_caa(self, fqdn: str, value: str) -> None:
        """Make `0 issue "value"` and `0 issuewild "value"` the only issuer CAA records of
        `fqdn` (other CAA tags, such as iodef, stay), without a moment in between where `fqdn`
        has no issuer restriction at all (which would let any CA issue)."""
        ...


def caa_value(issuer_domain: str, account_uri: str) -> str:
    """The CAA `issue`/`issuewild` value letting only `account_uri` at `issuer_domain` issue,
    and only after a DNS-01 validation (RFC 8657 §3 and §4)."""
    if not issuer_domain or any(c in issuer_domain for c in ' ;="'):
        raise ValueError(f"CAA issuer domain {issuer_domain!r} is not a domain name")
    if not account_uri or any(c.isspace() or c in ';"' for c in account_uri):
        raise ValueError(f"ACME account URI {account_uri!r} cannot be a CAA parameter value")
    return f"{issuer_domain}; accounturi={account_uri}; validationmethods=dns-01"


def caa_zone_lines(fqdn: str, value: str) -> list[str]:
    """The zone-file lines of the two CAA records `DnsProvider.set_caa(fqdn, value)` writes."""
    name = fqdn.rstrip(".")
    return [f'{name}. CAA 0 issue "{value}"', f'{name}. CAA 0 issuewild "{value}"']


def in_zone(fqdn: str, zone: str) -> bool:
    """Whether `fqdn` is `zone` or a name under it (case-insensitive, trailing dots ignored)."""
    name, apex = fqdn.lower().rstrip("."), zone.lower().rstrip(".")
    return name == apex or name.endswith("." + apex)


def read_secret_file(path: Path, what: str) -> str:
    """The stripped text of the credential file `path` (`what` names it in errors).

    Refused, naming the file but never its content: a missing, empty or non-regular file, and
    one that its group or others may read or write (it must be mode 0600 or stricter, as ssh
    wants of a private key), since anyone who reads it can rewrite the zone's CAA records.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise DnsError(f"{what} {path}: cannot open: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise DnsError(f"{what} {path}: not a regular file")
        if info.st_mode & 0o077:
            mode = stat.S_IMODE(info.st_mode)
            raise DnsError(
                f"{what} {path}: mode {mode:04o} lets others read it; it must be 0600 "
                f"(chmod 600 {path})"
            )
        with os.fdopen(os.dup(fd), "rb") as handle:
            raw = handle.read(65536)
    finally:
        os.close(fd)
    try:
        text = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        raise DnsError(f"{what} {path}: not ASCII text") from None
    if not text:
        raise DnsError(f"{what} {path}: empty")
    return text
