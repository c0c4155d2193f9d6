"""SEV-SNP app identity (dstack's MrConfigV3 / HOST_DATA rules) and the SNP platform hash."""

from __future__ import annotations

import hashlib
import json

import pytest

from attest import (
    IdentityError,
    compute_snp_identity,
    os_image_hash_of,
    parse_mr_config,
    parse_snp_report,
    snp_host_data,
    snp_platform_hash,
)
from tests.attest.snp_data import dstack_attestation

ATT = dstack_attestation()
REPORT = parse_snp_report(ATT.report)


def test_host_data_binds_the_dstack_document_byte_for_byte() -> None:
    """The live capture's HOST_DATA is SHA-256("dstack-mr-config-v3:" ‖ 0 ‖ document)."""
    assert snp_host_data(ATT.mr_config) == REPORT.host_data
    pretty = json.dumps(json.loads(ATT.mr_config), indent=2)  # same content, other bytes
    assert parse_mr_config(pretty).app_id == parse_mr_config(ATT.mr_config).app_id
    with pytest.raises(IdentityError, match=r"HOST_DATA \(offset 0xc0\) is 783f0057"):
        compute_snp_identity(REPORT, pretty)


def test_identity_of_the_dstack_capture() -> None:
    identity, config = compute_snp_identity(REPORT, ATT.mr_config, vm_config=ATT.config)
    # sev_snp_verify.rs: "mr_config app_id bound by HOST_DATA"
    assert identity.app_id.hex() == "86e59625be93207bc2351c4d1bba20037cec8e16"
    assert identity.compose_hash.hex().startswith("86e59625be93207bc2351c4d1bba2003")
    assert identity.instance_id.hex() == "d378c00e65112c4235bfeb46c6a0f98fd02145a3"
    assert identity.device_id == hashlib.sha256(REPORT.chip_id).digest()
    assert identity.mr_system == hashlib.sha256(REPORT.measurement).digest()
    assert identity.mr_aggregated == hashlib.sha256(REPORT.measurement + REPORT.host_data).digest()
    assert identity.platform == "amd-sev-snp"
    assert identity.key_provider is not None and identity.key_provider.name == "kms"
    # dstack's guest measured the same KeyProviderInfo text as a (here unmeasured) runtime event
    events = dict(ATT.runtime_events)
    assert identity.key_provider_info == events["key-provider"]
    assert identity.app_id == events["app-id"] and identity.compose_hash == events["compose-hash"]
    # the host's VM config only gives the claim; the platform hash is recomputed
    assert identity.claimed_os_image_hash.hex().startswith("32b4767373ad7fa0")
    assert identity.claimed_os_image_hash_source == "vm_config"
    assert identity.os_image_hash == snp_platform_hash(REPORT.measurement, REPORT.policy)
    assert config.key_provider == "kms" and config.gpu_policy_hash is None


def test_snp_platform_hash_formula_and_separation_from_tdx() -> None:
    m = bytes(range(48))
    expected = hashlib.sha256(
        b"tkms-platform:amd-sev-snp:v1\x00" + m + (0x30000).to_bytes(8, "little")
    ).digest()
    assert snp_platform_hash(m, 0x30000) == expected
    # each launch input is in it
    assert snp_platform_hash(m, 0x30000 | 1 << 19) != expected
    assert snp_platform_hash(bytes(48), 0x30000) != expected
    # a TDX platform hash of registers holding the same bytes is another value
    assert os_image_hash_of(m, m, m, m) != expected
    with pytest.raises(IdentityError, match="MEASUREMENT must be 48 bytes"):
        snp_platform_hash(bytes(32), 0)


def test_a_substituted_document_is_refused() -> None:
    """dstack's substituted_mr_config_breaks_host_data_binding."""
    evil = json.dumps(
        {"app_id": "ab" * 20, "compose_hash": "cd" * 32, "key_provider": "none", "version": 3},
        separators=(",", ":"),
    )
    with pytest.raises(IdentityError, match="not the one the report binds"):
        compute_snp_identity(REPORT, evil)


DOC = {"app_id": "11" * 20, "compose_hash": "22" * 32, "key_provider": "kms", "version": 3}


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"extra": 1}, "unknown fields: extra"),
        ({"app_id": "11" * 19}, "'app_id' must be 20 bytes, got 19"),
        ({"compose_hash": "zz"}, "'compose_hash' is not hex"),
        ({"compose_hash": 5}, "'compose_hash' must be a hex string"),
        ({"key_provider": "sgx"}, "key_provider must be one of"),
        ({"version": 2}, "version must be 3, got 2"),
        ({"init_script_hashes": "aa"}, "'init_script_hashes' must be a list"),
        ({"init_script_hashes": ["aa"]}, "'init_script_hashes' must be 32 bytes"),
    ],
)
def test_malformed_documents_name_the_field(change: dict[str, object], match: str) -> None:
    with pytest.raises(IdentityError, match=match):
        parse_mr_config(json.dumps({**DOC, **change}))


def test_document_shape_errors() -> None:
    with pytest.raises(IdentityError, match="not JSON"):
        parse_mr_config("{")
    with pytest.raises(IdentityError, match="must be a JSON object"):
        parse_mr_config("[]")
    with pytest.raises(IdentityError, match="has no 'compose_hash'"):
        parse_mr_config(json.dumps({"key_provider": "kms"}))


def test_a_document_without_app_id_gives_no_identity() -> None:
    doc = json.dumps({k: v for k, v in DOC.items() if k != "app_id"})
    raw = bytearray(ATT.report)
    raw[0xC0:0xE0] = snp_host_data(doc)
    with pytest.raises(IdentityError, match="names no app_id"):
        compute_snp_identity(parse_snp_report(bytes(raw)), doc)


def test_key_provider_info_is_dstacks_serialization() -> None:
    config = parse_mr_config(json.dumps({**DOC, "key_provider": "local", "key_provider_id": "ab"}))
    assert config.key_provider_info == b'{"name":"local-sgx","id":"ab"}'
