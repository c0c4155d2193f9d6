"""NVIDIA H100 evidence: NVIDIA's public sample report and device chain (nvtrust), verified up
to the pinned "NVIDIA Device Identity CA"; every malformed or altered input named."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from attest import (
    GpuEvidenceError,
    gpu_event_payload,
    parse_gpu_evidence,
    parse_gpu_report,
    verify_gpu_evidence,
    verify_gpu_report,
)
from attest._gpu_verify import NVIDIA_DEVICE_ROOT_SHA256, certificate_fwid, nvidia_device_root
from tests.attest.gpu_data import CHAIN, NONCE, NOW, REPORT, evidence_text
from tests.conftest import ATTESTATION_DATA


def _xor(raw: bytes, offset: int, mask: int = 0x01) -> bytes:
    return raw[:offset] + bytes([raw[offset] ^ mask]) + raw[offset + 1 :]


def _pems(certs: list[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


CERTS = x509.load_pem_x509_certificates(CHAIN)
SIG = len(REPORT) - 96


def test_the_nvtrust_sample_parses_to_its_fields() -> None:
    r = parse_gpu_report(REPORT)
    assert r.spdm_version == 0x11 and r.nonce == NONCE
    assert len(r.measurements) == 64 and {m.index for m in r.measurements} == set(range(1, 65))
    assert all(m.value_type == r.measurements[0].value_type for m in r.measurements)
    assert r.driver_version == "550.90.07" and r.vbios_version == "96.00.9f.00.01"
    assert r.fwid is not None and r.fwid.hex().startswith("f5c384aebb579217")
    assert r.signed_region == REPORT[:SIG] and len(r.signature) == 96


def test_the_nvtrust_sample_verifies_up_to_nvidias_root() -> None:
    v = verify_gpu_report(REPORT, CHAIN, nonce=NONCE, now=NOW)
    assert "GH100 A01 GSP BROM" in v.device
    assert v.driver_version == "550.90.07"
    assert CERTS[-1] == nvidia_device_root()
    vendored = ATTESTATION_DATA / "nvtrust/verifier_device_root.pem"
    assert (
        hashlib.sha256(
            x509.load_pem_x509_certificate(vendored.read_bytes()).public_bytes(
                serialization.Encoding.DER
            )
        ).digest()
        == NVIDIA_DEVICE_ROOT_SHA256
    )
    assert certificate_fwid(CERTS[0]) == parse_gpu_report(REPORT).fwid


def test_the_nonce_binds_the_report() -> None:
    with pytest.raises(GpuEvidenceError, match=r"answers nonce 931d8dd0.*not 0000.*offset 4\)"):
        verify_gpu_report(REPORT, CHAIN, nonce=bytes(32), now=NOW)
    # the nonce is signed: changing it in the report breaks the signature
    with pytest.raises(GpuEvidenceError, match="signature does not verify"):
        verify_gpu_report(_xor(REPORT, 4), CHAIN, nonce=_xor(NONCE, 0), now=NOW)


def test_every_byte_of_the_report_matters() -> None:
    """Headers byte by byte, the rest sampled, the whole signature: each change is refused."""
    offsets = [*range(45), *range(45, SIG, 7), *range(SIG, len(REPORT))]
    for offset in offsets:
        with pytest.raises(GpuEvidenceError):
            verify_gpu_report(_xor(REPORT, offset), CHAIN, nonce=NONCE, now=NOW)


@pytest.mark.parametrize(
    ("raw", "field", "offset", "match"),
    [
        (REPORT[:30], "request.nonce", 4, "needs 32 bytes, 26 left"),
        (REPORT + b"\0", "response.signature", SIG, "97 bytes follow the opaque data"),
        (REPORT[:SIG], "response.signature", SIG, "0 bytes follow the opaque data"),
        (_xor(REPORT, 0), "request.spdm_version", 0, "0x10, expected 0x11"),
        (_xor(REPORT, 1), "request.code", 1, "expected 0xe0"),
        (_xor(REPORT, 2), "request.param1", 2, "did not ask for a signature"),
        (_xor(REPORT, 38), "response.code", 38, "expected 0x60"),
        (_xor(REPORT, 41), "measurement_record[64].index", 3565, "0 left"),
        (_xor(REPORT, 46), "measurement_record[0].specification", 46, "expected 0x1 \\(DMTF\\)"),
        (_xor(REPORT, 50), "measurement_record[0].value_size", 50, "49 does not fill .* 51"),
    ],
    ids=[
        "truncated",
        "trailing",
        "no-signature",
        "version",
        "request-code",
        "unsigned-request",
        "response-code",
        "block-count",
        "not-dmtf",
        "block-size",
    ],
)
def test_malformed_reports_name_field_and_offset(
    raw: bytes, field: str, offset: int, match: str
) -> None:
    with pytest.raises(GpuEvidenceError, match=match) as e:
        parse_gpu_report(raw)
    assert e.value.field == field and e.value.offset == offset


def test_a_report_whose_fwid_is_not_the_certificates_is_refused() -> None:
    fwid = parse_gpu_report(REPORT).fwid
    assert fwid is not None
    at = REPORT.index(fwid)
    with pytest.raises(GpuEvidenceError, match=r"FWID f5c384ae.* is not the attestation"):
        verify_gpu_report(_xor(REPORT, at + 47), CHAIN, nonce=NONCE, now=NOW)


def test_chain_problems_are_named() -> None:
    leaf_der = CERTS[0].public_bytes(serialization.Encoding.DER)
    tampered = x509.load_der_x509_certificate(_xor(leaf_der, len(leaf_der) - 5))
    with pytest.raises(GpuEvidenceError, match=r"GSP FMC LF.* is not signed by .*GSP BROM"):
        verify_gpu_report(REPORT, _pems([tampered, *CERTS[1:]]), nonce=NONCE, now=NOW)
    with pytest.raises(GpuEvidenceError, match="5 certificates up to NVIDIA's root, got 4"):
        verify_gpu_report(REPORT, _pems([CERTS[0], *CERTS[2:]]), nonce=NONCE, now=NOW)
    with pytest.raises(GpuEvidenceError, match="is not signed by"):
        verify_gpu_report(REPORT, _pems([CERTS[1], CERTS[0], *CERTS[2:]]), nonce=NONCE, now=NOW)
    with pytest.raises(GpuEvidenceError, match="not a PEM certificate chain"):
        verify_gpu_report(REPORT, b"garbage", nonce=NONCE, now=NOW)
    # the root may be left out: it is pinned, not taken from the evidence
    assert verify_gpu_report(REPORT, _pems(CERTS[:4]), nonce=NONCE, now=NOW).report.nonce == NONCE
    before = int(dt.datetime(2022, 1, 1, tzinfo=dt.UTC).timestamp())
    with pytest.raises(GpuEvidenceError, match="Provisioner ICA 1 is not valid at 2022-01-01"):
        verify_gpu_report(REPORT, CHAIN, nonce=NONCE, now=before)


def test_a_chain_to_another_root_is_refused() -> None:
    """A self-made root standing in for NVIDIA's: the pinned root is appended and must sign it."""
    from attest.providers import simulator_root_ca

    fake_root, _ = simulator_root_ca()
    with pytest.raises(GpuEvidenceError, match=r"ICA 1 is not signed by CN=tkms simulator root"):
        verify_gpu_report(REPORT, _pems([*CERTS[:3], fake_root]), nonce=NONCE, now=NOW)
    with pytest.raises(GpuEvidenceError, match="5 certificates up to NVIDIA's root, got 6"):
        verify_gpu_report(REPORT, _pems([*CERTS[:4], fake_root]), nonce=NONCE, now=NOW)


def test_the_evidence_document_verifies_each_gpu() -> None:
    text = evidence_text(gpus=2)
    v = verify_gpu_evidence(text, now=NOW)
    assert len(v.devices) == 2 and v.evidence.nonce == NONCE and v.evidence.text == text
    payload = json.loads(gpu_event_payload(v))
    assert payload == {
        "arch": "HOPPER",
        "devices": 2,
        "evidence_sha256": hashlib.sha256(text.encode()).hexdigest(),
        "nonce": NONCE.hex(),
        "provider": "nvidia",
        "version": 2,
    }
    with pytest.raises(GpuEvidenceError, match=r"for nonce 931d8dd0.*not 0000"):
        verify_gpu_evidence(text, now=NOW, expected_nonce=bytes(32))


def test_a_document_whose_nonce_the_reports_do_not_answer_is_refused() -> None:
    with pytest.raises(GpuEvidenceError, match=r"answers nonce 931d8dd0.*evidence_list\[0\]"):
        verify_gpu_evidence(evidence_text(nonce=bytes(32)), now=NOW)
    bad = evidence_text(report=_xor(REPORT, 200))
    with pytest.raises(GpuEvidenceError, match=r"signature does not verify.*evidence_list\[0\]"):
        verify_gpu_evidence(bad, now=NOW)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"nonce": "00"}, "nonce"),
        ({"nonce": 5}, "nonce"),
        ({"arch": "BLACKWELL"}, "arch"),
        ({"evidence_list": []}, "evidence_list"),
        ({"evidence_list": [1]}, "evidence_list[0]"),
        (
            {"evidence_list": [{"evidence": "!!", "certificate": "AA=="}]},
            "evidence_list[0].evidence",
        ),
        ({"evidence_list": [{"evidence": "AA=="}]}, "evidence_list[0].certificate"),
    ],
)
def test_malformed_documents_name_the_field(change: dict[str, object], field: str) -> None:
    doc = {**json.loads(evidence_text()), **change}
    with pytest.raises(GpuEvidenceError) as e:
        parse_gpu_evidence(json.dumps(doc))
    assert e.value.field == field


def test_document_shape_errors() -> None:
    with pytest.raises(GpuEvidenceError, match="not JSON"):
        parse_gpu_evidence("{")
    with pytest.raises(GpuEvidenceError, match="must be a JSON object"):
        parse_gpu_evidence("[]")
    assert base64.b64decode(json.loads(evidence_text())["evidence_list"][0]["evidence"]) == REPORT
