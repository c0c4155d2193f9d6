"""Gateway test fixtures: one real Pebble (ACME CA) and its DNS test server per test module."""

from __future__ import annotations

import secrets
import shutil
import socket
import struct
from collections.abc import Iterator

import pytest

from gateway.pebble import Pebble


def require_pebble() -> None:
    if shutil.which("pebble") is None or shutil.which("pebble-challtestsrv") is None:
        pytest.skip("pebble is not installed (Debian package `pebble`; `make install`)")


@pytest.fixture(scope="module")
def pebble(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pebble]:
    """Pebble on free 127.0.0.1 ports, stopped (both processes waited for) after the module."""
    require_pebble()
    instance = Pebble.start(tmp_path_factory.mktemp("pebble"))
    try:
        yield instance
    finally:
        instance.stop()


def free_port() -> int:
    """A TCP port on 127.0.0.1 with nothing listening (for 'server down' tests)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def query_txt(dns_address: str, name: str) -> list[bytes]:
    """The TXT strings of `name` as the DNS server at `dns_address` answers (one UDP query)."""
    host, port = dns_address.rsplit(":", 1)
    query_id = secrets.randbelow(1 << 16)
    question = b"".join(bytes([len(label)]) + label.encode() for label in name.split("."))
    packet = struct.pack(">HHHHHH", query_id, 0x0100, 1, 0, 0, 0) + question + b"\0"
    packet += struct.pack(">HH", 16, 1)  # TXT, IN
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2.0)
        sock.sendto(packet, (host, int(port)))
        reply, _ = sock.recvfrom(4096)
    answer_id, _, _, answers, _, _ = struct.unpack(">HHHHHH", reply[:12])
    assert answer_id == query_id
    offset = len(packet)  # the reply repeats our question after the same header size
    values: list[bytes] = []
    for _ in range(answers):
        offset = _skip_name(reply, offset)
        rtype, _, _, length = struct.unpack(">HHIH", reply[offset : offset + 10])
        offset += 10
        rdata, offset = reply[offset : offset + length], offset + length
        while rtype == 16 and rdata:
            values.append(rdata[1 : 1 + rdata[0]])
            rdata = rdata[1 + rdata[0] :]
    return values


def _skip_name(data: bytes, offset: int) -> int:
    while data[offset] != 0:
        if data[offset] & 0xC0 == 0xC0:  # a compression pointer ends the name
            return offset + 2
        offset += 1 + data[offset]
    return offset + 1
