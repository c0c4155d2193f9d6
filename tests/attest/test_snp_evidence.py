"""The SEV-SNP evidence pipeline (decode, report, identity, binding) and its SCALE envelope."""

from __future__ import annotations

import dataclasses
import json

import pytest

from attest import (
    AttestationFormatError,
    BindingLabel,
    EvidenceError,
    SnpPolicy,
    compute_report_data,
    decode_snp_attestation,
    encode_snp_attestation,
    make_snp_report_verifier,
    verify_snp_evidence,
)
from attest.providers import SnpSimulator
from tests.attest.snp_data import DSTACK_BIN, NOW, dstack_attestation, dstack_attestation_with_certs

ANY_TCB = SnpPolicy(accepted_tcb_statuses=("UpToDate", "OutOfDate"))
REAL = make_snp_report_verifier(now=NOW, policy=ANY_TCB)
E = bytes(range(48))
DOC = json.dumps(
    {"app_id": "ab" * 20, "compose_hash": "11" * 32, "key_provider": "kms",
     "key_provider_id": "5e" * 32, "version": 3},
    separators=(",", ":"),
)  # fmt: skip


def test_the_dstack_envelope_decodes_and_reencodes_byte_for_byte() -> None:
    raw = DSTACK_BIN.read_bytes()
    att = decode_snp_attestation(raw)
    assert len(att.report) == 1184 and att.cert_chain == ()
    assert [name for name, _ in att.runtime_events][:3] == [
        "system-preparing",
        "app-id",
        "compose-hash",
    ]
    assert encode_snp_attestation(att) == raw


def test_the_real_dstack_attestation_verifies_up_to_its_binding() -> None:
    ev = verify_snp_evidence(dstack_attestation_with_certs(), verify_report=REAL, binding=None)
    assert ev.identity.app_id.hex() == "86e59625be93207bc2351c4d1bba20037cec8e16"
    assert ev.tcb_status == "OutOfDate" and not ev.simulated and ev.platform == "amd-sev-snp"
    # its report_data is the capture marker, which binds no key of ours
    with pytest.raises(EvidenceError, match="step 4 .*report_data") as e:
        verify_snp_evidence(
            dstack_attestation_with_certs(), verify_report=REAL, binding=(BindingLabel.KDF_V1, E)
        )
    assert e.value.step == "binding"


def test_without_certificates_the_real_attestation_is_refused_at_step_1() -> None:
    with pytest.raises(EvidenceError, match="no AMD certificates") as e:
        verify_snp_evidence(DSTACK_BIN.read_bytes(), verify_report=REAL, binding=None)
    assert e.value.step == "quote"


def test_default_policy_refuses_the_out_of_date_capture() -> None:
    strict = make_snp_report_verifier(now=NOW, policy=SnpPolicy())
    with pytest.raises(EvidenceError, match="TCB status OutOfDate"):
        verify_snp_evidence(dstack_attestation_with_certs(), verify_report=strict, binding=None)


def test_a_substituted_document_is_refused_at_the_identity_step() -> None:
    att = decode_snp_attestation(dstack_attestation_with_certs())
    evil = encode_snp_attestation(dataclasses.replace(att, mr_config=DOC))
    with pytest.raises(EvidenceError, match="not the one the report binds") as e:
        verify_snp_evidence(evil, verify_report=REAL, binding=None)
    assert e.value.step == "identity"


def test_the_document_may_come_from_the_config_as_in_dstack() -> None:
    att = decode_snp_attestation(dstack_attestation_with_certs())
    moved = encode_snp_attestation(dataclasses.replace(att, mr_config=""))
    ev = verify_snp_evidence(moved, verify_report=REAL, binding=None)  # config has "mr_config"
    assert ev.mr_config.document == att.mr_config
    bare = encode_snp_attestation(dataclasses.replace(att, mr_config="", config="{}"))
    with pytest.raises(EvidenceError, match="carries no mr_config document"):
        verify_snp_evidence(bare, verify_report=REAL, binding=None)


def test_simulator_evidence_binds_a_key_when_simulators_are_allowed() -> None:
    sim = SnpSimulator()
    raw = sim.attest(compute_report_data(BindingLabel.KDF_V1, E), DOC)
    with pytest.raises(EvidenceError, match="simulator SEV-SNP report refused"):
        verify_snp_evidence(raw, verify_report=REAL, binding=(BindingLabel.KDF_V1, E))
    allowed = make_snp_report_verifier(now=NOW, policy=SnpPolicy(allow_simulator=True))
    ev = verify_snp_evidence(raw, verify_report=allowed, binding=(BindingLabel.KDF_V1, E))
    assert ev.simulated and ev.identity.app_id == bytes.fromhex("ab" * 20)
    assert ev.identity.key_provider is not None and ev.identity.key_provider.id == "5e" * 32
    with pytest.raises(EvidenceError, match="step 4") as e:
        verify_snp_evidence(raw, verify_report=allowed, binding=(BindingLabel.KDF_V1, bytes(48)))
    assert e.value.step == "binding"


def test_the_envelope_report_data_must_be_the_reports() -> None:
    sim = SnpSimulator()
    att = decode_snp_attestation(sim.attest(compute_report_data(BindingLabel.KDF_V1, E), DOC))
    lying = encode_snp_attestation(dataclasses.replace(att, report_data=bytes(64)))
    allowed = make_snp_report_verifier(now=NOW, policy=SnpPolicy(allow_simulator=True))
    with pytest.raises(EvidenceError, match="is not the report's") as e:
        verify_snp_evidence(lying, verify_report=allowed, binding=None)
    assert e.value.step == "quote"


RAW = DSTACK_BIN.read_bytes()


@pytest.mark.parametrize(
    ("raw", "match", "offset"),
    [
        (b"", "shorter than its 2-byte header", None),
        (b"\x01\x03", "unknown attestation version byte 0x01", 0),
        (RAW[:1] + b"\x00" + RAW[2:], "quote kind 0 is not DstackAmdSevSnp", 1),
        (RAW[:500], r"truncated while reading report: need 1184 bytes", 4),
        (RAW + b"\0", "1 trailing bytes", len(RAW)),
        (RAW[:1188] + b"\x14" + RAW[1189:], "cert_chain has 5 certificates, limit 4", 1188),
    ],
    ids=["empty", "version", "kind", "truncated", "trailing", "chain-limit"],
)
def test_malformed_envelopes_say_where(raw: bytes, match: str, offset: int | None) -> None:
    with pytest.raises(AttestationFormatError, match=match) as e:
        decode_snp_attestation(raw)
    assert e.value.offset == offset


def test_dstack_attestation_fixture_is_v0_snp() -> None:
    att = dstack_attestation()
    assert att.report_data == b"attest-test-fixture-2026".ljust(64, b"\0")
    assert json.loads(att.config)["os_image_hash"].startswith("32b47673")
