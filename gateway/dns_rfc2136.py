"""A `DnsProvider` writing to an authoritative server by RFC 2136 dynamic updates with TSIG.

Every change is one UPDATE message over TCP to the zone's primary server, signed with a TSIG
key (RFC 8945) the server allows to update the zone; the server applies a message all or
nothing (RFC 2136 §3.7). So `set_caa` needs no guard records: it reads the name's CAA RRset
and sends one message that requires exactly that RRset to still be there (a value-dependent
prerequisite, §2.4.2; or, if there was none, that there still is none), deletes the old issuer
records and adds the new ones. A concurrent change makes the prerequisite fail (NXRRSET or
YXRRSET) and the read-and-replace is tried again.

Refusals are reported by what they mean for the operator: a secret that is not the server's
(TSIG BADSIG), a key the server does not know or does not let change that name and type
(BADKEY: Knot answers this way when its ACL refuses), a clock too far off (BADTIME), a server
that does not serve the zone (NOTAUTH without a signature). The secret itself is never in an
error, a log line or a repr.
"""

from __future__ import annotations

import binascii
import time
from collections.abc import Iterable

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.CAA
import dns.rdtypes.ANY.TXT
import dns.tsig
import dns.update

from gateway.dns01 import DnsError, in_zone

#: TSIG algorithms accepted in the configuration (RFC 8945 §6: SHA-256 is the one to use).
ALGORITHMS = {
    "hmac-sha256": dns.tsig.HMAC_SHA256,
    "hmac-sha384": dns.tsig.HMAC_SHA384,
    "hmac-sha512": dns.tsig.HMAC_SHA512,
}
_ISSUER_TAGS = (b"issue", b"issuewild")
_CAS_ATTEMPTS = 3


class _Key(dns.tsig.Key):
    """dnspython's TSIG key, whose repr would show the secret, with a repr that does not."""

    def __repr__(self) -> str:
        return f"<TSIG key {self.name} ({self.algorithm}), secret not shown>"


def parse_server(server: str) -> tuple[str, int]:
    """(host, port) of `host:port` or `[v6]:port`; ValueError naming the value if malformed."""
    host, sep, port = server.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"DNS server {server!r} is not host:port")
    return host, int(port)


class Rfc2136Provider:
    """TXT and CAA records in `zone` on the primary server `server` (host:port), changed with
    UPDATE messages signed by the TSIG key `key_name` (`secret` in base64)."""

    propagation_seconds = 0.0  # the primary answers with the change once it acknowledged it

    def __init__(
        self,
        server: str,
        zone: str,
        key_name: str,
        secret: str,
        *,
        algorithm: str = "hmac-sha256",
        ttl: int = 60,
        timeout: float = 5.0,
    ) -> None:
        self.server = server
        self._host, self._port = parse_server(server)
        self.zone = dns.name.from_text(zone.rstrip(".") + ".")
        self.key_name = key_name
        if algorithm not in ALGORITHMS:
            raise ValueError(f"TSIG algorithm {algorithm!r} is not one of {sorted(ALGORITHMS)}")
        try:
            raw = binascii.a2b_base64(secret.encode("ascii"), strict_mode=True)
        except (binascii.Error, UnicodeEncodeError):
            raise ValueError(f"the secret of TSIG key {key_name!r} is not base64") from None
        if len(raw) < 16:
            raise ValueError(f"the secret of TSIG key {key_name!r} is shorter than 16 bytes")
        self._key = _Key(key_name, raw, ALGORITHMS[algorithm])
        self.ttl = ttl
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"Rfc2136Provider({self.server!r}, zone={self.zone}, key={self.key_name!r})"

    # -- DnsProvider ----------------------------------------------------------------------

    def set_txt(self, fqdn: str, value: str) -> None:
        name = self._name(fqdn)
        if len(value.encode()) > 255:
            raise DnsError(f"TXT value for {fqdn} is longer than 255 bytes")
        update = self._update()
        txt = dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, [value.encode()])
        update.add(name, self.ttl, txt)
        self._send(update, f"adding TXT {name}")

    def clear_txt(self, fqdn: str) -> None:
        name = self._name(fqdn)
        update = self._update()
        update.delete(name, dns.rdatatype.TXT)
        self._send(update, f"removing TXT {name}")

    def set_caa(self, fqdn: str, value: str) -> None:
        name = self._name(fqdn)
        wanted = [_caa(tag, value) for tag in _ISSUER_TAGS]
        for attempt in range(1, _CAS_ATTEMPTS + 1):
            current = self.caa(fqdn)
            stale = [rd for rd in current if rd.tag in _ISSUER_TAGS and rd not in wanted]
            missing = [rd for rd in wanted if rd not in current]
            if not stale and not missing:
                return
            update = self._update()
            if current:
                update.present(name, *current)  # exactly the RRset we read is still there
            else:
                update.absent(name, dns.rdatatype.CAA)
            if stale:
                update.delete(name, *stale)
            if missing:
                update.add(name, self.ttl, *missing)
            # NXRRSET/YXRRSET: the RRset is no longer what we read (or appeared meanwhile).
            changed = (dns.rcode.NXRRSET, dns.rcode.YXRRSET)
            rcode = self._send(update, f"pinning CAA {name}", allow=changed)
            if rcode == dns.rcode.NOERROR:
                return
            if attempt == _CAS_ATTEMPTS:
                raise DnsError(
                    f"pinning CAA {name} at {self.server}: the records kept changing under us "
                    f"({_CAS_ATTEMPTS} attempts)"
                )
            time.sleep(0.1 * attempt)

    # -- reading back ---------------------------------------------------------------------

    def caa(self, fqdn: str) -> list[dns.rdtypes.ANY.CAA.CAA]:
        """The CAA records of `fqdn` as the server has them (an authoritative answer)."""
        return [rd for rd in self._query(fqdn, dns.rdatatype.CAA) if isinstance(rd, _CAA)]

    def txt(self, fqdn: str) -> list[bytes]:
        """The TXT strings of `fqdn` as the server has them (an authoritative answer)."""
        records = self._query(fqdn, dns.rdatatype.TXT)
        return [b"".join(rd.strings) for rd in records if isinstance(rd, _TXT)]

    def _query(self, fqdn: str, rdtype: dns.rdatatype.RdataType) -> list[dns.rdata.Rdata]:
        name = self._name(fqdn)
        query = dns.message.make_query(name, rdtype)
        what = f"reading {dns.rdatatype.to_text(rdtype)} {name}"
        try:
            answer = dns.query.tcp(query, self._host, port=self._port, timeout=self.timeout)
        except (dns.exception.DNSException, OSError) as exc:
            raise DnsError(f"{what} at {self.server}: {_transport(exc, self.timeout)}") from None
        rcode = answer.rcode()
        if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            raise DnsError(f"{what} at {self.server}: answered {dns.rcode.to_text(rcode)}")
        if not answer.flags & dns.flags.AA:
            raise DnsError(f"{what}: {self.server} is not authoritative for {self.zone}")
        rrset = answer.get_rrset(answer.answer, name, dns.rdataclass.IN, rdtype)
        return list(rrset) if rrset is not None else []

    # -- sending --------------------------------------------------------------------------

    def _name(self, fqdn: str) -> dns.name.Name:
        if not in_zone(fqdn, self.zone.to_text()):
            raise DnsError(f"{fqdn} is not in the zone {self.zone} that {self.server} updates")
        try:
            return dns.name.from_text(fqdn.rstrip(".") + ".")
        except dns.exception.DNSException as exc:
            raise DnsError(f"{fqdn!r} is not a DNS name: {exc}") from None

    def _update(self) -> dns.update.UpdateMessage:
        return dns.update.UpdateMessage(self.zone, keyring=self._key, keyname=self._key.name)

    def _send(
        self, update: dns.update.UpdateMessage, what: str, allow: Iterable[dns.rcode.Rcode] = ()
    ) -> dns.rcode.Rcode:
        """Send `update`; returns its rcode if NOERROR or one of `allow`, else raises."""
        where = f"{what} at {self.server}"
        key = f"TSIG key {self.key_name!r}"
        try:
            answer = dns.query.tcp(update, self._host, port=self._port, timeout=self.timeout)
        except dns.tsig.PeerBadSignature:
            raise DnsError(
                f"{where}: the server refused the signature of {key}: "
                "its secret is not the one the server has (TSIG BADSIG)"
            ) from None
        except dns.tsig.PeerBadKey:
            raise DnsError(
                f"{where}: the server refused {key}: it does not know the key, or does not let "
                f"it make this change (TSIG BADKEY)"
            ) from None
        except dns.tsig.PeerBadTime:
            raise DnsError(
                f"{where}: the server refused {key}: our clock and the server's differ by "
                "more than the signature's allowed skew (TSIG BADTIME)"
            ) from None
        except dns.message.UnknownTSIGKey:
            raise DnsError(f"{where}: the answer is signed with a key we do not know") from None
        except (dns.exception.DNSException, OSError) as exc:
            raise DnsError(f"{where}: {_transport(exc, self.timeout)}") from None
        rcode = answer.rcode()
        if rcode == dns.rcode.NOERROR or rcode in allow:
            return rcode
        raise DnsError(f"{where}: refused with {dns.rcode.to_text(rcode)}{_meaning(rcode)}")


_CAA = dns.rdtypes.ANY.CAA.CAA
_TXT = dns.rdtypes.ANY.TXT.TXT


def _caa(tag: bytes, value: str) -> dns.rdtypes.ANY.CAA.CAA:
    return _CAA(dns.rdataclass.IN, dns.rdatatype.CAA, 0, tag, value.encode())  # type: ignore[no-untyped-call]


def _transport(exc: Exception, timeout: float) -> str:
    if isinstance(exc, dns.exception.Timeout):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    # An unsigned answer to a signed update: a server that does not serve the zone or does
    # not know the key answers NOTAUTH without a signature, which dnspython refuses as such.
    if "requires a TSIG" in str(exc):
        return "the server answered without a TSIG signature (does it serve this zone?)"
    return str(exc) or type(exc).__name__


def _meaning(rcode: dns.rcode.Rcode) -> str:
    meanings = {
        dns.rcode.REFUSED: " (the server does not allow this update)",
        dns.rcode.NOTAUTH: " (the server is not authoritative for the zone, or refused the key)",
        dns.rcode.NOTZONE: " (the name is outside the zone)",
        dns.rcode.SERVFAIL: " (the server failed to apply it; see its log)",
    }
    return meanings.get(rcode, "")
