"""Strict, pure-Python parser for TDX DCAP quotes (v4 and v5; TD 1.0 and TD 1.5 bodies).

Rules:
- Every read is bounds-checked; a short or inconsistent quote raises `QuoteParseError`
  naming the field and the byte offset. No other exception escapes `parse_quote`.
- `signature_data_len` decides where the quote ends; bytes after it are ignored (real quotes
  come zero-padded in fixed buffers). Inside the signature data every length must add up
  exactly: the certification data must fill it, and the inner PCK chain must fill that.
- Only what tkms verifies is accepted: ECDSA-P256 attestation keys, certification data type 6
  (QE report) wrapping type 5 (PEM PCK chain). SGX quotes are recognised and refused.
"""

from __future__ import annotations

import struct

from attest._quote_types import (
    ATT_KEY_TYPE_ECDSA_P256,
    BODY_TYPE_TD10,
    BODY_TYPE_TD15,
    CERT_TYPE_PCK_CHAIN,
    CERT_TYPE_QE_REPORT,
    TEE_TYPE_SGX,
    TEE_TYPE_TDX,
    QeReport,
    Quote,
    QuoteHeader,
    QuoteSignature,
    TdReport,
)
from attest.errors import QuoteParseError, UnsupportedQuoteError

HEADER_LEN = 48
TD10_LEN = 584
TD15_LEN = 648
QE_REPORT_LEN = 384

# TD report fields in order: (name, length). TD 1.5 appends the last two.
_TD10_FIELDS: tuple[tuple[str, int], ...] = (
    ("tee_tcb_svn", 16),
    ("mr_seam", 48),
    ("mr_signer_seam", 48),
    ("seam_attributes", 8),
    ("td_attributes", 8),
    ("xfam", 8),
    ("mr_td", 48),
    ("mr_config_id", 48),
    ("mr_owner", 48),
    ("mr_owner_config", 48),
    ("rtmr0", 48),
    ("rtmr1", 48),
    ("rtmr2", 48),
    ("rtmr3", 48),
    ("report_data", 64),
)
_TD15_EXTRA: tuple[tuple[str, int], ...] = (("tee_tcb_svn2", 16), ("mr_service_td", 48))


class _Reader:
    """Reads consecutive fields from `data[pos:end]`, failing with offset and field name."""

    def __init__(self, data: bytes, pos: int, end: int, region: str) -> None:
        self.data = data
        self.pos = pos
        self.end = end
        self.region = region

    def take(self, n: int, field: str) -> bytes:
        stop = self.pos + n
        if stop > self.end:
            if self.end >= len(self.data) and stop > len(self.data):
                raise QuoteParseError(
                    f"quote truncated at offset {len(self.data)} while reading {field} "
                    f"(need {stop} bytes)",
                    offset=len(self.data),
                    field=field,
                )
            raise QuoteParseError(
                f"{field} at offset {self.pos} needs {n} bytes but the {self.region} ends at "
                f"offset {self.end}",
                offset=self.pos,
                field=field,
            )
        out = self.data[self.pos : stop]
        self.pos = stop
        return out

    def u16(self, field: str) -> int:
        value: int = struct.unpack("<H", self.take(2, field))[0]
        return value

    def u32(self, field: str) -> int:
        value: int = struct.unpack("<I", self.take(4, field))[0]
        return value


def parse_quote(data: bytes) -> Quote:
    """Parse a TDX quote (v4/v5). Structure only: nothing is verified here.

    Raises `QuoteParseError` (or its subclass `UnsupportedQuoteError`) on any problem.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"quote must be bytes, not {type(data).__name__}")
    data = bytes(data)
    r = _Reader(data, 0, len(data), "quote")
    header = _parse_header(r)
    body_type = _parse_body_descriptor(r, header.version)
    td_report = _parse_td_report(r, body_type)
    signed_length = r.pos
    sig_len_offset = r.pos
    sig_len = r.u32("signature_data_len")
    sig_end = r.pos + sig_len
    if sig_end > len(data):
        raise QuoteParseError(
            f"quote truncated at offset {len(data)} while reading signature data "
            f"(need {sig_end} bytes)",
            offset=len(data),
            field="signature_data",
        )
    signature = _parse_signature(_Reader(data, r.pos, sig_end, "signature data"), sig_len_offset)
    return Quote(
        raw=data[:sig_end],
        header=header,
        body_type=body_type,
        td_report=td_report,
        signed_length=signed_length,
        signature=signature,
    )


def _parse_header(r: _Reader) -> QuoteHeader:
    version = r.u16("header.version")
    key_type = r.u16("header.attestation_key_type")
    tee_type = r.u32("header.tee_type")
    qe_svn = r.u16("header.qe_svn")
    pce_svn = r.u16("header.pce_svn")
    qe_vendor_id = r.take(16, "header.qe_vendor_id")
    user_data = r.take(20, "header.user_data")
    if tee_type == TEE_TYPE_SGX:
        raise UnsupportedQuoteError(
            f"SGX quotes are not accepted by tkms (found an SGX v{version} quote, tee_type "
            "0x00000000 at offset 4; expected a TDX v4/v5 quote, tee_type 0x00000081)",
            offset=4,
            field="header.tee_type",
        )
    if tee_type != TEE_TYPE_TDX:
        raise UnsupportedQuoteError(
            f"unsupported tee_type 0x{tee_type:08x} at offset 4 (expected TDX 0x00000081)",
            offset=4,
            field="header.tee_type",
        )
    if version not in (4, 5):
        raise UnsupportedQuoteError(
            f"unsupported quote version {version} for a TDX quote at offset 0 (expected 4 or 5)",
            offset=0,
            field="header.version",
        )
    if key_type != ATT_KEY_TYPE_ECDSA_P256:
        raise UnsupportedQuoteError(
            f"unsupported attestation key type {key_type} at offset 2 (expected 2 = ECDSA-P256)",
            offset=2,
            field="header.attestation_key_type",
        )
    return QuoteHeader(
        version=version,
        attestation_key_type=key_type,
        tee_type=tee_type,
        qe_svn=qe_svn,
        pce_svn=pce_svn,
        qe_vendor_id=qe_vendor_id,
        user_data=user_data,
    )


def _parse_body_descriptor(r: _Reader, version: int) -> int:
    """v4 has an implicit TD 1.0 body; v5 states the body type and size before the body."""
    if version == 4:
        return BODY_TYPE_TD10
    offset = r.pos
    body_type = r.u16("body.type")
    body_len = r.u32("body.size")
    expected = {BODY_TYPE_TD10: TD10_LEN, BODY_TYPE_TD15: TD15_LEN}.get(body_type)
    if expected is None:
        raise UnsupportedQuoteError(
            f"unsupported v5 body type {body_type} at offset {offset} "
            "(expected 2 = TD 1.0 or 3 = TD 1.5)",
            offset=offset,
            field="body.type",
        )
    if body_len != expected:
        raise QuoteParseError(
            f"v5 body size {body_len} at offset {offset + 2} does not match body type "
            f"{body_type} (expected {expected})",
            offset=offset + 2,
            field="body.size",
        )
    return body_type


def _parse_td_report(r: _Reader, body_type: int) -> TdReport:
    fields = _TD10_FIELDS + (_TD15_EXTRA if body_type == BODY_TYPE_TD15 else ())
    values = {name: r.take(length, f"td_report.{name}") for name, length in fields}
    return TdReport(**values)


def _parse_signature(r: _Reader, sig_len_offset: int) -> QuoteSignature:
    ecdsa_signature = r.take(64, "signature.ecdsa_signature")
    attestation_key = r.take(64, "signature.attestation_key")
    type_offset = r.pos
    cert_type = r.u16("certification_data.type")
    if cert_type != CERT_TYPE_QE_REPORT:
        raise QuoteParseError(
            f"certification data type {cert_type} at offset {type_offset} is not allowed "
            f"(v4/v5 quotes require type {CERT_TYPE_QE_REPORT} = QE report certification data)",
            offset=type_offset,
            field="certification_data.type",
        )
    cert_size = r.u32("certification_data.size")
    if r.pos + cert_size != r.end:
        raise QuoteParseError(
            f"signature_data_len at offset {sig_len_offset} is inconsistent: certification "
            f"data ends at offset {r.pos + cert_size} but signature data ends at {r.end}",
            offset=sig_len_offset,
            field="signature_data_len",
        )
    qe_raw = r.take(QE_REPORT_LEN, "qe_report")
    qe_report_signature = r.take(64, "qe_report_signature")
    auth_len = r.u16("qe_auth_data.size")
    qe_auth_data = r.take(auth_len, "qe_auth_data")
    inner_offset = r.pos
    inner_type = r.u16("pck_cert_chain.type")
    if inner_type != CERT_TYPE_PCK_CHAIN:
        raise QuoteParseError(
            f"inner certification data type {inner_type} at offset {inner_offset} is not "
            f"supported (expected {CERT_TYPE_PCK_CHAIN} = PEM PCK certificate chain)",
            offset=inner_offset,
            field="pck_cert_chain.type",
        )
    inner_size = r.u32("pck_cert_chain.size")
    pck_chain = r.take(inner_size, "pck_cert_chain")
    if r.pos != r.end:
        raise QuoteParseError(
            f"{r.end - r.pos} unexpected bytes at offset {r.pos} inside the certification "
            f"data (its size says it ends at {r.end})",
            offset=r.pos,
            field="certification_data.size",
        )
    return QuoteSignature(
        ecdsa_signature=ecdsa_signature,
        attestation_key=attestation_key,
        qe_report=_parse_qe_report(qe_raw),
        qe_report_signature=qe_report_signature,
        qe_auth_data=qe_auth_data,
        pck_chain_pem=pck_chain,
    )


def _parse_qe_report(raw: bytes) -> QeReport:
    """SGX REPORT body layout; `raw` has exactly 384 bytes (checked by the caller's read)."""
    return QeReport(
        raw=raw,
        cpu_svn=raw[0:16],
        misc_select=int.from_bytes(raw[16:20], "little"),
        attributes=raw[48:64],
        mr_enclave=raw[64:96],
        mr_signer=raw[128:160],
        isv_prod_id=int.from_bytes(raw[256:258], "little"),
        isv_svn=int.from_bytes(raw[258:260], "little"),
        report_data=raw[320:384],
    )
