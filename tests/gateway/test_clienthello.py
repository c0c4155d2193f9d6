"""The ClientHello reader against Python's own TLS client, re-split records, and broken hellos."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.clienthello import (
    MAX_HELLO_BYTES,
    MAX_HELLO_RECORDS,
    ClientHello,
    HelloError,
    HelloReader,
    parse_client_hello,
)
from tests.gateway.tlsfixtures import client_hello, record, resplit

_label = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=20)
# A letter in the last label: Python's client sends no SNI for names that read as IP addresses.
hostnames = st.tuples(
    st.lists(_label, min_size=1, max_size=3),
    st.text("abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8),
).map(lambda parts: ".".join([*parts[0], parts[1]]))
alpn_lists = st.lists(
    st.text("abcdefghijklmnopqrstuvwxyz0123456789/.-", min_size=1, max_size=12),
    max_size=3,
    unique=True,
)


def handshake(body: bytes, msg_type: int = 1) -> bytes:
    return bytes([msg_type]) + len(body).to_bytes(3, "big") + body


def ext(ext_type: int, data: bytes) -> bytes:
    return ext_type.to_bytes(2, "big") + len(data).to_bytes(2, "big") + data


def sni(*names: bytes, name_type: int = 0) -> bytes:
    entries = b"".join(bytes([name_type]) + len(n).to_bytes(2, "big") + n for n in names)
    return ext(0, len(entries).to_bytes(2, "big") + entries)


def hello(
    extensions: bytes | None, *, session_id: bytes = b"", suites: bytes = b"\x13\x01"
) -> bytes:
    """A hand-built hello in one record; `extensions=None` leaves the block out entirely."""
    body = (
        b"\x03\x03"
        + bytes(32)
        + bytes([len(session_id)])
        + session_id
        + len(suites).to_bytes(2, "big")
        + suites
        + b"\x01\x00"
    )
    if extensions is not None:
        body += len(extensions).to_bytes(2, "big") + extensions
    return record(handshake(body))


@given(hostnames, alpn_lists)
def test_real_hellos_give_their_name_and_alpn(name: str, alpn: list[str]) -> None:
    data = client_hello(name, alpn)
    assert parse_client_hello(data) == ClientHello(server_name=name, alpn=tuple(alpn))


@given(hostnames, st.data())
def test_a_prefix_of_a_hello_needs_more_bytes(name: str, data: st.DataObject) -> None:
    raw = client_hello(name)
    cut = data.draw(st.integers(0, len(raw) - 1))
    assert parse_client_hello(raw[:cut]) is None
    assert parse_client_hello(raw) is not None


@given(hostnames, alpn_lists, st.lists(st.integers(1, 600), max_size=6))
def test_a_hello_split_over_records_reads_the_same(
    name: str, alpn: list[str], cuts: list[int]
) -> None:
    raw = resplit(client_hello(name, alpn), cuts)
    assert parse_client_hello(raw) == ClientHello(server_name=name, alpn=tuple(alpn))
    for cut in range(0, len(raw), 97):
        assert parse_client_hello(raw[:cut]) is None


def test_trailing_bytes_after_the_hello_are_left_alone() -> None:
    raw = client_hello("a.example.com") + record(b"\x01", content_type=0x14)
    assert parse_client_hello(raw) == ClientHello(server_name="a.example.com", alpn=())


@given(hostnames, st.data())
def test_mutated_hellos_parse_or_fail_with_an_offset(name: str, data: st.DataObject) -> None:
    raw = bytearray(client_hello(name, ["h2"]))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    try:
        result = parse_client_hello(bytes(raw))
    except HelloError as exc:
        found = re.search(r"offset (\d+)", str(exc))
        assert found is not None, str(exc)
        assert 0 <= int(found[1]) < len(raw)
    else:
        assert result is None or isinstance(result, ClientHello)


def test_no_sni_and_no_extensions() -> None:
    assert parse_client_hello(client_hello(None)) == ClientHello(server_name=None, alpn=())
    assert parse_client_hello(hello(None)) == ClientHello(server_name=None, alpn=())


def test_an_unknown_name_type_is_skipped() -> None:
    entries = b"\x05\x00\x01z" + b"\x00\x00\x05a.b.c"
    data = hello(ext(0, len(entries).to_bytes(2, "big") + entries))
    assert parse_client_hello(data) == ClientHello(server_name="a.b.c", alpn=())


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"GET / HTTP/1.1\r\n", r"not a TLS handshake record: content type 0x47 at offset 0"),
        (b"\x16\x02\x00\x00\x10", r"version major 0x02 at offset 1"),
        (b"\x16\x03\x01\x00\x00", r"record length 0 at offset 3"),
        (b"\x16\x03\x01\x40\x01", r"record length 16385 at offset 3"),
        (record(handshake(b"\x03\x03", msg_type=2)), r"handshake type 2 at offset 5 is not"),
        (hello(b"", session_id=bytes(33)), r"session_id of 33 bytes \(max 32\) at offset 43"),
        (hello(b"", suites=b"\x13"), r"cipher_suites of 1 bytes at offset 44"),
        (hello(ext(0x10, b"\x00")), r"truncated ALPN protocol list length"),
        (hello(b"\x00\x0a\x00\x09abc"), r"truncated extension 0x000a: 9 bytes needed, 3 left"),
        (hello(sni(b"a.b") + sni(b"c.d")), r"extension 0x0000 repeated"),
        (hello(sni(b"a.b", b"c.d")), r"bad server_name list: two host names"),
        (hello(sni(b"")), r"bad server_name list: empty host name"),
        (hello(ext(0, b"\x00\x09\x00\x00\x01a")), r"truncated server_name list"),
        (hello(ext(0, b"")), r"truncated server_name list length"),
        (hello(sni(b"caf\xc3\xa9.test")), r"non-ASCII or control byte 0xc3 in host name"),
        (hello(sni(b"a b")), r"control byte 0x20 in host name"),
        (hello(ext(0x10, b"\x00\x02\x00\x00")), r"empty ALPN protocol name"),
    ],
)
def test_malformed_hellos_say_what_and_where(data: bytes, message: str) -> None:
    with pytest.raises(HelloError, match=message):
        parse_client_hello(data)


def test_offsets_point_at_the_bad_byte_across_records() -> None:
    data = resplit(hello(sni(b"x\x01y.example")), [20, 40])  # two record headers before it
    bad = data.index(b"x\x01y") + 1
    with pytest.raises(HelloError, match=rf"control byte 0x01 in host name at offset {bad}$"):
        parse_client_hello(data)


def test_bytes_after_the_extensions_are_refused() -> None:
    data = bytearray(hello(sni(b"a.b")))
    # Grow the handshake and record lengths by one and append a stray byte to the body.
    data[3:5] = (int.from_bytes(data[3:5], "big") + 1).to_bytes(2, "big")
    data[6:9] = (int.from_bytes(data[6:9], "big") + 1).to_bytes(3, "big")
    data += b"\x00"
    with pytest.raises(
        HelloError, match=rf"1 bytes after the extensions at offset {len(data) - 1}"
    ):
        parse_client_hello(bytes(data))


def test_a_hello_larger_than_the_cap_is_refused_before_it_is_read() -> None:
    big = hello(ext(0x15, bytes(MAX_HELLO_BYTES)))  # padding extension past 16 KiB
    header_only = resplit(big, [16000])[:5]
    assert parse_client_hello(header_only) is None  # the first record alone fits
    with pytest.raises(HelloError, match=r"runs past 16389 bytes"):
        parse_client_hello(resplit(big, [16000])[: 16005 + 10])


def test_the_largest_hello_that_fits_is_read() -> None:
    pad = MAX_HELLO_BYTES - len(hello(sni(b"a.b") + ext(0x15, b"")))
    data = hello(sni(b"a.b") + ext(0x15, bytes(pad)))
    assert len(data) == MAX_HELLO_BYTES
    assert parse_client_hello(data) == ClientHello(server_name="a.b", alpn=())


@given(hostnames, alpn_lists, st.lists(st.integers(1, 600), max_size=6), st.data())
def test_bytes_fed_in_any_pieces_read_as_the_whole(
    name: str, alpn: list[str], cuts: list[int], data: st.DataObject
) -> None:
    raw = resplit(client_hello(name, alpn), cuts) + record(b"\x01", content_type=0x14)
    reader = HelloReader()
    pos, result = 0, None
    while result is None:
        size = data.draw(st.integers(1, 64))
        result = reader.feed(raw[pos : pos + size])
        pos += size
    assert result == parse_client_hello(raw) == ClientHello(server_name=name, alpn=tuple(alpn))
    assert reader.data == raw[: min(pos, len(raw))]  # what was fed, untouched


def test_a_hello_in_more_records_than_the_cap_is_refused_at_the_extra_header() -> None:
    raw = client_hello("a.example.com")
    size = int.from_bytes(raw[3:5], "big")
    at_cap = resplit(raw, list(range(1, MAX_HELLO_RECORDS)))
    assert parse_client_hello(at_cap) == ClientHello(server_name="a.example.com", alpn=())
    over = resplit(raw, list(range(1, MAX_HELLO_RECORDS + 1)))
    ninth = 6 * MAX_HELLO_RECORDS  # eight one-byte records before it
    assert size > MAX_HELLO_RECORDS
    with pytest.raises(HelloError, match=rf"more than 8 records \(record at offset {ninth}\)"):
        parse_client_hello(over)
    reader = HelloReader()
    assert reader.feed(over[:ninth]) is None
    with pytest.raises(HelloError, match="more than 8 records"):
        reader.feed(over[ninth : ninth + 5])


def test_a_refused_or_finished_reader_takes_no_more_bytes() -> None:
    reader = HelloReader()
    with pytest.raises(HelloError):
        reader.feed(b"GET /")
    with pytest.raises(RuntimeError, match="already complete or refused"):
        reader.feed(b"x")
