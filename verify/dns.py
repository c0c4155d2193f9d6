"""A small DNS client for CAA records (RFC 1035 wire format, RFC 8659 CAA RDATA).

Only what the verifier needs: one question (`CAA`, class IN) to one server over UDP, again over
TCP when the answer is truncated; answers are matched by id and question, names decoded with
compression pointers (bounded, no loops). Encoding and decoding are pure functions
(`encode_query`, `parse_response`); `query_caa` does the I/O. A server that does not answer,
or answers with an error code other than NXDOMAIN, raises `DnsError`: the verifier fails
closed rather than read "no CAA record" into a silence.
"""

from __future__ import annotations

import secrets
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

TYPE_CNAME = 5
TYPE_CAA = 257
CLASS_IN = 1
RCODE_NXDOMAIN = 3
_MAX_POINTERS = 32


class DnsError(Exception):
    """No usable answer: the message names the server, the name and what went wrong."""


@dataclass(frozen=True)
class CaaRecord:
    """One CAA resource record: flags, tag (`issue`, `issuewild`, `iodef`, ...) and value."""

    flags: int
    tag: str
    value: str

    @property
    def critical(self) -> bool:
        return bool(self.flags & 0x80)

    def __str__(self) -> str:
        return f'{self.flags} {self.tag} "{self.value}"'


@dataclass(frozen=True)
class Answer:
    """What the server said for one name: its CAA records, a CNAME target, or nothing."""

    rcode: int
    records: tuple[CaaRecord, ...]
    cname: str | None


def _encode_name(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split("."):
        raw = label.encode("idna") if label else b""
        if not 0 < len(raw) < 64:
            raise DnsError(f"{name!r} is not a DNS name (label {label!r})")
        out += bytes([len(raw)]) + raw
    return out + b"\0"


def encode_query(name: str, query_id: int, rtype: int = TYPE_CAA) -> bytes:
    """A standard query with recursion desired (a recursive resolver or an authority)."""
    header = struct.pack(">HHHHHH", query_id, 0x0100, 1, 0, 0, 0)
    return header + _encode_name(name) + struct.pack(">HH", rtype, CLASS_IN)


def _read_name(data: bytes, offset: int) -> tuple[str, int]:
    """(name, offset after it in the record) with compression pointers followed."""
    labels: list[str] = []
    end: int | None = None
    for _ in range(_MAX_POINTERS):
        if offset >= len(data):
            raise DnsError("truncated name in the answer")
        length = data[offset]
        if length & 0xC0 == 0xC0:
            if offset + 1 >= len(data):
                raise DnsError("truncated compression pointer")
            end = offset + 2 if end is None else end
            offset = ((length & 0x3F) << 8) | data[offset + 1]
            continue
        if length == 0:
            return ".".join(labels), (offset + 1 if end is None else end)
        labels.append(data[offset + 1 : offset + 1 + length].decode("ascii", "replace"))
        offset += 1 + length
    raise DnsError("too many compression pointers in a name")


def parse_caa_rdata(rdata: bytes) -> CaaRecord:
    if len(rdata) < 2 or len(rdata) < 2 + rdata[1] or rdata[1] == 0:
        raise DnsError("malformed CAA record")
    tag_len = rdata[1]
    tag = rdata[2 : 2 + tag_len].decode("ascii", "replace").lower()
    return CaaRecord(rdata[0], tag, rdata[2 + tag_len :].decode("utf-8", "replace"))


def parse_response(data: bytes, name: str, query_id: int) -> tuple[Answer, bool]:
    """(answer, truncated) for our question about `name`; DnsError if it is not the answer."""
    if len(data) < 12:
        raise DnsError("answer shorter than a DNS header")
    rid, flags, qdcount, ancount, _, _ = struct.unpack(">HHHHHH", data[:12])
    if rid != query_id or not flags & 0x8000:
        raise DnsError("the answer does not match the query id")
    offset = 12
    for _ in range(qdcount):
        qname, offset = _read_name(data, offset)
        if qname.lower().rstrip(".") != name.lower().rstrip("."):
            raise DnsError(f"the answer is for {qname!r}, not {name!r}")
        offset += 4
    records: list[CaaRecord] = []
    cname: str | None = None
    for _ in range(ancount):
        owner, offset = _read_name(data, offset)
        if offset + 10 > len(data):
            raise DnsError("truncated resource record")
        rtype, rclass, _, length = struct.unpack(">HHIH", data[offset : offset + 10])
        offset += 10
        rdata = data[offset : offset + length]
        if len(rdata) != length:
            raise DnsError("truncated record data")
        if rclass == CLASS_IN and rtype == TYPE_CAA:
            records.append(parse_caa_rdata(rdata))
        elif rclass == CLASS_IN and rtype == TYPE_CNAME and owner.lower() == name.lower():
            cname, _ = _read_name(data, offset)
        offset += length
    return Answer(flags & 0xF, tuple(records), cname), bool(flags & 0x0200)


def system_resolver() -> str:
    """The first `nameserver` of /etc/resolv.conf as HOST:53 (127.0.0.1:53 without one)."""
    try:
        lines = Path("/etc/resolv.conf").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            host = parts[1]
            return f"[{host}]:53" if ":" in host else f"{host}:53"
    return "127.0.0.1:53"


def split_server(server: str) -> tuple[str, int]:
    host, _, port = server.rpartition(":")
    if not host or not port.isdigit():
        raise DnsError(f"DNS server {server!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def _exchange_tcp(address: tuple[str, int], packet: bytes, timeout: float) -> bytes:
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(struct.pack(">H", len(packet)) + packet)
        data = b""
        while len(data) < 2 or len(data) < 2 + struct.unpack(">H", data[:2])[0]:
            chunk = sock.recv(65535)
            if not chunk:
                raise DnsError("the server closed the TCP connection mid-answer")
            data += chunk
    return data[2 : 2 + struct.unpack(">H", data[:2])[0]]


def query_caa(server: str, name: str, *, timeout: float = 3.0) -> Answer:
    """Ask `server` (HOST:PORT) for the CAA records of `name`."""
    host, port = split_server(server)
    query_id = secrets.randbelow(1 << 16)
    packet = encode_query(name, query_id)
    try:
        family, _, _, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        address = (str(sockaddr[0]), int(sockaddr[1]))
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout)
            sock.sendto(packet, address)
            while True:
                data, sender = sock.recvfrom(65535)
                if sender[:2] == address:  # ignore strays from elsewhere
                    break
        answer, truncated = parse_response(data, name, query_id)
        if truncated:
            answer, _ = parse_response(_exchange_tcp(address, packet, timeout), name, query_id)
    except OSError as exc:
        raise DnsError(f"DNS server {server}: no answer for {name} CAA ({exc})") from None
    except DnsError as exc:
        raise DnsError(f"DNS server {server}: {name} CAA: {exc}") from None
    if answer.rcode not in (0, RCODE_NXDOMAIN):
        raise DnsError(f"DNS server {server} answered {name} CAA with rcode {answer.rcode}")
    return answer
