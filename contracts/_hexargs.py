"""Parsing of hex arguments (addresses, 32-byte hashes, keys) with errors naming the argument."""

from __future__ import annotations

from eth_typing import ChecksumAddress
from eth_utils.address import is_checksum_address, to_checksum_address

from contracts.errors import InvalidInput


def parse_hex(
    argument: str, value: str, length: int | None = None, *, secret: bool = False
) -> bytes:
    """`0x`-prefixed or bare hex; `length` is the exact byte length required, if any.

    Messages quote the value to show the typo, except for a `secret` (a private key).
    """
    text = value.strip()
    if text[:2].lower() == "0x":
        text = text[2:]
    shown = "" if secret else f" in {value!r}"
    if len(text) % 2:
        raise InvalidInput(argument, f"odd number of hex digits ({len(text)}){shown}")
    try:
        data = bytes.fromhex(text)
    except ValueError:
        raise InvalidInput(argument, f"not hex{shown.replace(' in', ':')}") from None
    if length is not None and len(data) != length:
        raise InvalidInput(argument, f"expected {length} bytes, got {len(data)}")
    return data


def parse_bytes32(argument: str, value: str | bytes) -> bytes:
    if isinstance(value, bytes):
        if len(value) != 32:
            raise InvalidInput(argument, f"expected 32 bytes, got {len(value)}")
        return value
    return parse_hex(argument, value, 32)


def parse_address(argument: str, value: str) -> ChecksumAddress:
    """A 20-byte address; mixed case must be a valid EIP-55 checksum (catches typos)."""
    raw = parse_hex(argument, value, 20)
    text = value.strip()
    body = text[2:] if text[:2].lower() == "0x" else text
    if body != body.lower() and body != body.upper() and not is_checksum_address("0x" + body):
        raise InvalidInput(argument, f"bad EIP-55 checksum in {value!r}")
    return to_checksum_address(raw)


def parse_private_key(argument: str, value: str) -> bytes:
    key = parse_hex(argument, value, 32, secret=True)
    if not any(key):
        raise InvalidInput(argument, "the zero key is not a private key")
    return key
