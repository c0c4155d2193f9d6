"""A sans-I/O reader of the TLS ClientHello: the SNI and ALPN the proxy routes on.

No TLS library shows the hello before it terminates the connection, and passthrough must not
terminate, so this one parser is ours. `HelloReader().feed(chunk)` takes the bytes as they
arrive and returns a `ClientHello` once it is complete, None while more bytes are needed; it
never changes what it was fed (the proxy forwards or replays exactly those bytes).
`parse_client_hello(data)` is the same for bytes already in hand.

Rules:
- The hello may be split over at most `MAX_HELLO_RECORDS` handshake records and any number of
  reads. Everything up to the end of the hello must fit in `MAX_HELLO_BYTES` (16 KiB + one
  record header), so a peer cannot make the proxy buffer more than that; a prefix of a valid
  hello is never an error.
- The work is linear in the bytes fed: each byte is copied once into the reassembled message,
  each record header is read once, and the body is parsed once, when it is complete (a hello
  re-parsed from the start on every read costs O(records^2): 2 s of CPU for a 16 KiB hello in
  one-byte records).
- Anything else raises `HelloError` naming what is wrong and its byte offset in the data: not a
  handshake record, a handshake that is not a ClientHello, too many records, a length running
  past its container, a bad server_name list, a non-ASCII host name, a duplicated extension.
- Only the fields the proxy needs are decoded; cipher suites and other extensions are skipped
  after their lengths are checked. ALPN names that are not ASCII are kept with backslash escapes
  (they are only logged).
"""

from __future__ import annotations

from dataclasses import dataclass

RECORD_HEADER = 5
MAX_RECORD_PAYLOAD = 1 << 14
MAX_HELLO_BYTES = MAX_RECORD_PAYLOAD + RECORD_HEADER
#: Records one hello may span; Python, browsers and curl send one (two for very large hellos).
MAX_HELLO_RECORDS = 8

_HANDSHAKE = 0x16
_CLIENT_HELLO = 0x01
_EXT_SERVER_NAME = 0x0000
_EXT_ALPN = 0x0010
_HOST_NAME = 0x00


class HelloError(ValueError):
    """The bytes are not a well-formed TLS ClientHello; the message says what and where."""


@dataclass(frozen=True, slots=True)
class ClientHello:
    """What the proxy needs from a hello: the SNI host name (None if absent) and ALPN names."""

    server_name: str | None
    alpn: tuple[str, ...]


def parse_client_hello(data: bytes) -> ClientHello | None:
    """The ClientHello at the start of `data`, or None if `data` ends before it does."""
    return HelloReader().feed(data)


class HelloReader:
    """Reassembles a ClientHello from bytes as they arrive, in time linear in the bytes.

    `feed(chunk)` takes the next bytes received and returns the `ClientHello` once it is
    complete, None while more are needed, or raises `HelloError`. Every byte is looked at
    once: the reader keeps the handshake message reassembled so far and where the next record
    header is, so a hello dribbled in many small reads or records costs what a whole one does,
    and the body is parsed once, when it is complete. `data` is every byte fed, untouched.
    """

    def __init__(self) -> None:
        self._data = bytearray()
        self._message = bytearray()
        self._origins: list[tuple[int, int]] = []  # (offset in message, offset in data) per record
        self._pos = 0  # the next byte of data to look at
        self._record: tuple[int, int] | None = None  # (header offset, end) of the current record
        self._needed: int | None = None  # handshake header + body length, once the header is in
        self._done = False

    @property
    def data(self) -> bytes:
        """Every byte fed so far (the proxy forwards or replays exactly these)."""
        return bytes(self._data)

    @property
    def received(self) -> int:
        return len(self._data)

    def feed(self, chunk: bytes) -> ClientHello | None:
        """Add `chunk`; the hello once complete, else None (`HelloError` if it cannot be one)."""
        if self._done:
            raise RuntimeError("the ClientHello is already complete or refused")
        self._data += chunk
        try:
            hello = self._advance()
        except HelloError:
            self._done = True
            raise
        if hello is not None:
            self._done = True
            return hello
        # A hello must end within MAX_HELLO_BYTES, so None always means fewer bytes than that.
        if len(self._data) >= MAX_HELLO_BYTES:
            self._done = True
            raise HelloError(f"ClientHello runs past {MAX_HELLO_BYTES} bytes")
        return None

    def _advance(self) -> ClientHello | None:
        data = self._data
        while self._pos < len(data):
            if self._record is None:
                if not self._header(data, self._pos):
                    return None
                continue
            _, end = self._record
            take = min(end, len(data))
            first = not self._message
            self._message += data[self._pos : take]
            if first and self._message[0] != _CLIENT_HELLO:
                kind = self._message[0]
                at = self._pos
                raise HelloError(f"handshake type {kind} at offset {at} is not ClientHello (1)")
            self._pos = take
            if self._needed is None and len(self._message) >= 4:
                self._needed = 4 + int.from_bytes(self._message[1:4], "big")
                self._check_size()
            if self._needed is not None and len(self._message) >= self._needed:
                message = bytes(self._message[: self._needed])
                return _Body(message, self._origins).parse()
            if self._pos == end:
                self._record = None
        return None

    def _header(self, data: bytearray, pos: int) -> bool:
        """Read the record header at `pos`; False while its 5 bytes are not all in."""
        if data[pos] != _HANDSHAKE:
            raise HelloError(
                f"not a TLS handshake record: content type 0x{data[pos]:02x} at offset {pos}"
            )
        if pos + RECORD_HEADER > len(data):
            return False
        if data[pos + 1] != 0x03:
            raise HelloError(
                f"not a TLS record: version major 0x{data[pos + 1]:02x} at offset {pos + 1}"
            )
        length = int.from_bytes(data[pos + 3 : pos + 5], "big")
        if length == 0 or length > MAX_RECORD_PAYLOAD:
            raise HelloError(
                f"record length {length} at offset {pos + 3} is not in 1..{MAX_RECORD_PAYLOAD}"
            )
        if len(self._origins) == MAX_HELLO_RECORDS:
            # Real clients use one record, two at most; many tiny records only cost work.
            raise HelloError(
                f"ClientHello split into more than {MAX_HELLO_RECORDS} records "
                f"(record at offset {pos})"
            )
        start = pos + RECORD_HEADER
        self._origins.append((len(self._message), start))
        self._record = (pos, start + length)
        self._pos = start
        self._check_size()
        return True

    def _check_size(self) -> None:
        """Refuse a hello whose end (as far as it is known) lies past MAX_HELLO_BYTES."""
        if self._needed is None or self._record is None:
            return  # decided once the handshake header is in, or by the byte count
        header, end = self._record
        before, start = self._origins[-1]
        if self._needed > before + (end - start):
            too_big = end >= MAX_HELLO_BYTES  # it continues in a later record
        else:
            too_big = start + self._needed - before > MAX_HELLO_BYTES
        if too_big:
            raise HelloError(
                f"ClientHello runs past {MAX_HELLO_BYTES} bytes (record at offset {header})"
            )


class _Body:
    """A cursor over the reassembled hello message that reports offsets in the original data."""

    def __init__(self, message: bytes, origins: list[tuple[int, int]]) -> None:
        self.message = message
        self.origins = origins
        self.pos = 4  # after the handshake header

    def where(self, pos: int) -> int:
        """The offset in the original data of message byte `pos`."""
        base_msg, base_data = self.origins[0]
        for msg_off, data_off in self.origins:
            if msg_off > pos:
                break
            base_msg, base_data = msg_off, data_off
        return base_data + pos - base_msg

    def fail(self, what: str, pos: int | None = None) -> HelloError:
        return HelloError(f"{what} at offset {self.where(self.pos if pos is None else pos)}")

    def take(self, n: int, what: str, end: int) -> bytes:
        if self.pos + n > end:
            raise self.fail(f"truncated {what}: {n} bytes needed, {end - self.pos} left")
        out = self.message[self.pos : self.pos + n]
        self.pos += n
        return out

    def uint(self, n: int, what: str, end: int) -> int:
        return int.from_bytes(self.take(n, what, end), "big")

    def vector(self, n: int, what: str, end: int) -> tuple[int, int]:
        """A length-prefixed block's (start, end) in the message; the cursor moves past it."""
        length = self.uint(n, f"{what} length", end)
        start = self.pos
        self.take(length, what, end)
        return start, start + length

    def parse(self) -> ClientHello:
        end = len(self.message)
        self.take(2, "legacy_version", end)
        self.take(32, "random", end)
        sid_start, sid_end = self.vector(1, "session_id", end)
        if sid_end - sid_start > 32:
            raise self.fail(f"session_id of {sid_end - sid_start} bytes (max 32)", sid_start - 1)
        cs_start, cs_end = self.vector(2, "cipher_suites", end)
        if cs_end == cs_start or (cs_end - cs_start) % 2:
            raise self.fail(f"cipher_suites of {cs_end - cs_start} bytes", cs_start - 2)
        cm_start, cm_end = self.vector(1, "compression_methods", end)
        if cm_end == cm_start:
            raise self.fail("empty compression_methods", cm_start - 1)
        if self.pos == end:  # a hello without extensions (allowed before TLS 1.3)
            return ClientHello(server_name=None, alpn=())
        ext_start, ext_end = self.vector(2, "extensions", end)
        if ext_end != end:
            raise self.fail(f"{end - ext_end} bytes after the extensions", ext_end)
        self.pos = ext_start
        return self.extensions(ext_end)

    def extensions(self, end: int) -> ClientHello:
        seen: set[int] = set()
        server_name: str | None = None
        alpn: tuple[str, ...] = ()
        while self.pos < end:
            type_at = self.pos
            ext_type = self.uint(2, "extension type", end)
            if ext_type in seen:
                raise self.fail(f"extension 0x{ext_type:04x} repeated", type_at)
            seen.add(ext_type)
            body_start, body_end = self.vector(2, f"extension 0x{ext_type:04x}", end)
            self.pos = body_start
            if ext_type == _EXT_SERVER_NAME:
                server_name = self.server_name(body_end)
            elif ext_type == _EXT_ALPN:
                alpn = self.alpn(body_end)
            self.pos = body_end
        return ClientHello(server_name=server_name, alpn=alpn)

    def server_name(self, end: int) -> str:
        list_start, list_end = self.vector(2, "server_name list", end)
        if list_end != end or list_end == list_start:
            raise self.fail(
                "bad server_name list: its length does not fill the extension", list_start - 2
            )
        host: str | None = None
        self.pos = list_start
        while self.pos < list_end:
            type_at = self.pos
            name_type = self.uint(1, "server_name type", list_end)
            name_start, name_end = self.vector(2, "server_name", list_end)
            if name_type != _HOST_NAME:
                continue  # no other type is defined; skipping is what RFC 6066 asks
            if host is not None:
                raise self.fail("bad server_name list: two host names", type_at)
            host = self.host_name(self.message[name_start:name_end], name_start)
        if host is None:
            raise self.fail("bad server_name list: no host name", list_start)
        return host

    def host_name(self, raw: bytes, start: int) -> str:
        if not raw:
            raise self.fail("bad server_name list: empty host name", start)
        for i, byte in enumerate(raw):
            if byte > 0x7E or byte <= 0x20:
                raise self.fail(f"non-ASCII or control byte 0x{byte:02x} in host name", start + i)
        return raw.decode("ascii")

    def alpn(self, end: int) -> tuple[str, ...]:
        list_start, list_end = self.vector(2, "ALPN protocol list", end)
        if list_end != end or list_end == list_start:
            raise self.fail(
                "bad ALPN protocol list: its length does not fill the extension", list_start - 2
            )
        names: list[str] = []
        self.pos = list_start
        while self.pos < list_end:
            name_start, name_end = self.vector(1, "ALPN protocol name", list_end)
            if name_end == name_start:
                raise self.fail("empty ALPN protocol name", name_start - 1)
            names.append(self.message[name_start:name_end].decode("ascii", "backslashreplace"))
        return tuple(names)
