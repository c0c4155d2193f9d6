"""Quote parser: real quotes from the vendored test data, README values, strict-bounds errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from attest import Quote, QuoteParseError, UnsupportedQuoteError, parse_quote, read_pck_info
from attest._quote_input import EvidenceInputError, load_evidence


def _sets(base: Path) -> list[dict[str, Any]]:
    sets: list[dict[str, Any]] = json.loads((base / "expected.json").read_text())["sets"]
    return sets


SET_IDS = list("ABCDEFGHIJK")
# (set id, version, body type, FMSPC) from the README's section 1 table
LAYOUT = {
    "A": (4, 2, "B0C06F000000"),
    "B": (4, 2, "20A06F000000"),
    "C": (4, 2, "90C06F000000"),
    "D": (5, 3, "90C06F000000"),
    "E": (5, 3, "90C06F000000"),
    "F": (5, 3, "90C06F000000"),
    "G": (5, 3, "90C06F000000"),
    "H": (4, 2, "00806F050000"),
    "I": (4, 2, "00806F050000"),
    "J": (4, 2, "50806F000000"),
    "K": (4, 2, "50806F000000"),
}


def load_set_quote(base: Path, set_id: str) -> Quote:
    entry = next(s for s in _sets(base) if s["id"] == set_id)
    return parse_quote(load_evidence(base / entry["quote"]).quote)


@pytest.mark.parametrize("set_id", SET_IDS)
def test_every_section1_quote_parses_with_its_layout(attestation_data: Path, set_id: str) -> None:
    quote = load_set_quote(attestation_data, set_id)
    version, body_type, fmspc = LAYOUT[set_id]
    assert (quote.version, quote.body_type) == (version, body_type)
    assert read_pck_info(quote).fmspc_hex == fmspc
    assert (quote.td_report.tee_tcb_svn2 is not None) == (body_type == 3)
    assert (quote.td_report.mr_service_td is not None) == (body_type == 3)
    assert len(quote.pck_certificates()) == 3
    assert (
        quote.pck_leaf_certificate()
        .subject.rfc4514_string()
        .endswith("CN=Intel SGX PCK Certificate")
    )
    assert len(read_pck_info(quote).ppid) == 16


def test_readme_td_report_values(attestation_data: Path) -> None:
    a = load_set_quote(attestation_data, "A").td_report
    assert a.tee_tcb_svn.hex().startswith("06010300")
    assert a.mr_td.hex() == (
        "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407"
        "de03ae6dc5f87f27428b2538873118b7"
    )
    assert a.rtmr3 == bytes(48)
    assert a.report_data.hex().startswith("9a9d48e7f6799642")
    assert a.report_data.hex().endswith("2b523f20")
    c = load_set_quote(attestation_data, "C").td_report
    assert c.rtmr3.hex() == (
        "0f787c3877f3e95095d5a4d13dd0fe0233803b30120d8469866719dc28f519ce"
        "021fe1e53459121e7a5a4443147185a8"
    )
    assert c.report_data == bytes.fromhex("1234") + bytes(62)
    d = load_set_quote(attestation_data, "D").td_report
    assert d.tee_tcb_svn.hex().startswith("0b010400")
    assert d.tee_tcb_svn2 is not None and d.tee_tcb_svn2.hex().startswith("0d010400")
    i = load_set_quote(attestation_data, "I").td_report
    assert i.report_data == (attestation_data / "go-tdx-guest/ccel/nonce.dat").read_bytes()
    assert i.rtmrs[0].hex().startswith("3fa2f61f395b7f5f")


def test_attribute_properties(attestation_data: Path) -> None:
    j = load_set_quote(attestation_data, "J")
    assert j.is_debug and j.sept_ve_disabled and not j.has_service_td
    k = load_set_quote(attestation_data, "K")
    assert not k.is_debug and not k.sept_ve_disabled
    e = load_set_quote(attestation_data, "E")
    assert e.has_service_td and e.td_report.mr_service_td is not None
    assert e.td_report.mr_service_td.hex().startswith("383c87d3")


def test_header_fields_and_signed_region(attestation_data: Path) -> None:
    raw = (attestation_data / "dcap-qvl/tdx_quote").read_bytes()
    quote = parse_quote(raw)
    assert quote.header.tee_type == 0x81 and quote.header.attestation_key_type == 2
    assert quote.header.qe_vendor_id.hex() == "939a7233f79c4ca9940a0db3957f0607"
    assert quote.header.user_data == raw[28:48]
    assert quote.signed_region == raw[:632]
    assert quote.signature.ecdsa_signature == raw[636:700]
    assert quote.signature.attestation_key == raw[700:764]
    assert quote.signature.qe_report.raw == raw[770:1154]
    assert quote.signature.qe_report.mr_enclave == raw[834:866]
    assert quote.signature.qe_auth_data == raw[1220:1252]
    assert quote.pck_chain_pem.startswith(b"-----BEGIN CERTIFICATE-----")
    v5 = load_set_quote(attestation_data, "D")
    assert v5.signed_length == 48 + 6 + 648


def test_trailing_bytes_are_ignored(attestation_data: Path) -> None:
    padded = (attestation_data / "dcap-qvl/tdx_quote").read_bytes()
    assert len(padded) == 5006
    assert parse_quote(padded) == parse_quote(padded[:4936])
    text_tail = (attestation_data / "go-tdx-guest/tdx_prod_quote_SPR_E4.dat").read_bytes()
    assert len(parse_quote(text_tail).raw) == len(text_tail) - 39


def test_sgx_quote_is_refused_clearly(attestation_data: Path) -> None:
    raw = (attestation_data / "dcap-qvl/sgx_quote").read_bytes()
    with pytest.raises(UnsupportedQuoteError, match="SGX quotes are not accepted by tkms") as e:
        parse_quote(raw)
    assert e.value.offset == 4 and e.value.field == "header.tee_type"


def _mutate(raw: bytes, offset: int, value: int) -> bytes:
    return raw[:offset] + bytes([value]) + raw[offset + 1 :]


@pytest.mark.parametrize(
    ("mutate", "match", "offset"),
    [
        (
            lambda q: q[:1000],
            r"quote truncated at offset 1000 while reading signature data \(need 4936 bytes\)",
            1000,
        ),
        (lambda q: q[:20], r"truncated at offset 20 while reading header.qe_vendor_id", 20),
        (lambda q: q[:600], r"truncated at offset 600 while reading td_report.report_data", 600),
        (lambda q: _mutate(q, 0, 3), r"unsupported quote version 3 .*expected 4 or 5", 0),
        (lambda q: _mutate(q, 2, 3), r"attestation key type 3 .*expected 2 = ECDSA-P256", 2),
        (lambda q: _mutate(q, 4, 0x82), r"unsupported tee_type 0x00000082", 4),
        (
            lambda q: _mutate(q, 764, 5),
            r"certification data type 5 at offset 764 is not allowed .*require type 6",
            764,
        ),
        (
            lambda q: _mutate(q, 632, 0x10),
            r"signature_data_len at offset 632 is inconsistent",
            632,
        ),
        (lambda q: _mutate(q, 766, 0x47), r"signature_data_len at offset 632 is inconsistent", 632),
        (lambda q: _mutate(q, 1252, 4), r"inner certification data type 4 at offset 1252", 1252),
        (
            lambda q: _mutate(q, 1255, 0x0F),
            r"pck_cert_chain at offset 1258 needs 3934 bytes but the signature data ends at "
            r"offset 4936",
            1258,
        ),
        (lambda q: _mutate(q, 1218, 0x21), r"inner certification data type 24064", 1253),
    ],
)
def test_malformed_quotes_name_field_and_offset(
    attestation_data: Path, mutate: Any, match: str, offset: int
) -> None:
    raw = (attestation_data / "dcap-qvl/tdx_quote").read_bytes()
    with pytest.raises(QuoteParseError, match=match) as e:
        parse_quote(mutate(raw))
    assert e.value.offset == offset


def test_v5_body_descriptor_checked(attestation_data: Path) -> None:
    raw = (attestation_data / "go-tdx-guest/quote_v5_sample.dat").read_bytes()
    with pytest.raises(UnsupportedQuoteError, match="unsupported v5 body type 4 at offset 48"):
        parse_quote(_mutate(raw, 48, 4))
    with pytest.raises(QuoteParseError, match="v5 body size 584 at offset 50 does not match"):
        parse_quote(raw[:50] + (584).to_bytes(4, "little") + raw[54:])


def test_bad_pem_in_chain_is_a_parse_error(attestation_data: Path) -> None:
    raw = (attestation_data / "dcap-qvl/tdx_quote").read_bytes()
    broken = raw[:1258] + b"-----BEGIN CERTIFICATE-----\n!!!!" + raw[1258 + 32 :]
    quote = parse_quote(broken)
    with pytest.raises(
        QuoteParseError, match=r"PCK certificate chain cannot be parsed as PEM X\.509"
    ):
        quote.pck_certificates()
    with pytest.raises(QuoteParseError, match="Intel SGX extension of the PCK leaf"):
        read_pck_info(quote)


def test_evidence_formats(attestation_data: Path, tmp_path: Path) -> None:
    binary = load_evidence(attestation_data / "dcap-qvl/tdx_quote")
    hexed = load_evidence(attestation_data / "dcap-qvl/near-gas-test/quote_hex.txt")
    as_json = load_evidence(attestation_data / "dstack/quote-report.json")
    assert (binary.source_format, hexed.source_format, as_json.source_format) == (
        "bin",
        "hex",
        "json",
    )
    assert as_json.event_log is not None and json.loads(as_json.event_log)[0]["imr"] == 0
    prefixed = tmp_path / "q.hex"
    prefixed.write_text("0x" + binary.quote.hex() + "\n")
    assert load_evidence(prefixed).quote == binary.quote
    bad = tmp_path / "bad.json"
    bad.write_text('{"quote": 5}')
    with pytest.raises(EvidenceInputError, match="object with a hex string 'quote'"):
        load_evidence(bad)
    with pytest.raises(EvidenceInputError, match="cannot read quote file"):
        load_evidence(tmp_path / "missing")


def test_public_names_are_exported() -> None:
    import attest

    mine = {
        "AllOf",
        "AttestError",
        "Collateral",
        "CollateralError",
        "NoServiceTd",
        "NotDebugTd",
        "PckInfo",
        "Policy",
        "PolicyError",
        "QeReport",
        "Quote",
        "QuoteHeader",
        "QuoteParseError",
        "QuoteSignature",
        "SeptVeDisabled",
        "TcbStatusIn",
        "TdReport",
        "UnsupportedQuoteError",
        "VerificationError",
        "VerifiedQuote",
        "collateral_from_json",
        "default_policy",
        "fetch_collateral",
        "load_collateral",
        "parse_quote",
        "read_pck_info",
        "verify_quote",
    }
    assert mine <= set(attest.__all__)
    assert len(attest.__all__) == len(set(attest.__all__))
    for name in attest.__all__:
        assert getattr(attest, name) is not None
