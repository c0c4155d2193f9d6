"""Read a quote from a file as operators have it: binary, hex text, or a GetQuote-style JSON.

Formats (detected from the content, not the file name):
- binary: the raw quote bytes (starts with the little-endian version 4 or 5);
- hex text: one hex string, optionally ``0x``-prefixed, whitespace ignored;
- JSON: an object with a hex ``quote`` field and, optionally, ``event_log`` (a JSON string or
  list, as dstack's GetQuote response has it) and ``vm_config``, kept as text for the
  event-log and identity code;
- a dstack `VersionedAttestation` (V0, `attest._versioned`), binary or hex (a quote never
  starts with a zero byte; a V0 attestation always does), or dstack's Attest response, a JSON
  object with a hex ``attestation`` field: its quote, event log and VM config, once they agree.
"""

from __future__ import annotations

import binascii
import json
import string
from dataclasses import dataclass
from pathlib import Path

from attest._versioned import decode_versioned_attestation, evidence_from_attestation
from attest.errors import AttestError

_HEX_CHARS = frozenset(string.hexdigits + string.whitespace)


class EvidenceInputError(AttestError):
    """An evidence file could not be read or decoded (not a quote problem as such)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EvidenceInput:
    """A quote read from a file, with the event log when the file carried one."""

    quote: bytes
    event_log: str | None
    source_format: str
    vm_config: str | None = None


def decode_quote_text(text: str, *, where: str) -> bytes:
    """Decode a hex quote (``0x`` prefix and whitespace allowed)."""
    cleaned = "".join(text.split())
    if cleaned[:2] in ("0x", "0X"):
        cleaned = cleaned[2:]
    try:
        return binascii.unhexlify(cleaned)
    except (binascii.Error, ValueError) as exc:
        raise EvidenceInputError(f"{where}: not valid hex ({exc})") from exc


def load_evidence(path: Path) -> EvidenceInput:
    """Read `path` as a binary quote, a hex text quote, or a JSON object with ``quote``."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EvidenceInputError(f"cannot read quote file {path}: {exc.strerror}") from exc
    if not data.strip():
        raise EvidenceInputError(f"quote file {path} is empty")
    stripped = data.lstrip()
    if stripped[:1] == b"{":
        return _load_json(data, path)
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        text = None
    if text is not None and set(text) <= _HEX_CHARS | {"x", "X"}:
        raw = decode_quote_text(text, where=str(path))
        if raw[:1] == b"\0":
            return _from_attestation(raw, path)
        return EvidenceInput(quote=raw, event_log=None, source_format="hex")
    if data[:1] == b"\0":
        return _from_attestation(data, path)
    return EvidenceInput(quote=data, event_log=None, source_format="bin")


def _from_attestation(raw: bytes, path: Path) -> EvidenceInput:
    try:
        quote, event_log, vm_config = evidence_from_attestation(decode_versioned_attestation(raw))
    except AttestError as exc:
        raise EvidenceInputError(f"{path}: dstack attestation: {exc}") from exc
    return EvidenceInput(
        quote=quote,
        event_log=event_log,
        source_format="attestation",
        vm_config=vm_config or None,
    )


def _load_json(data: bytes, path: Path) -> EvidenceInput:
    try:
        doc = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EvidenceInputError(f"{path}: invalid JSON ({exc})") from exc
    if isinstance(doc, dict) and "quote" not in doc and isinstance(doc.get("attestation"), str):
        raw = decode_quote_text(doc["attestation"], where=f"{path}: field 'attestation'")
        return _from_attestation(raw, path)
    if not isinstance(doc, dict) or not isinstance(doc.get("quote"), str):
        raise EvidenceInputError(
            f"{path}: JSON must be an object with a hex string 'quote' (GetQuote) or "
            "'attestation' (Attest)"
        )
    event_log, vm_config = doc.get("event_log"), doc.get("vm_config")
    if event_log is not None and not isinstance(event_log, str):
        event_log = json.dumps(event_log)
    if vm_config is not None and not isinstance(vm_config, str):
        vm_config = json.dumps(vm_config)
    return EvidenceInput(
        quote=decode_quote_text(doc["quote"], where=f"{path}: field 'quote'"),
        event_log=event_log,
        source_format="json",
        vm_config=vm_config,
    )
