"""dstack app identity from the real dstack fixtures (README section 3)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from attest import TdReport, parse_quote, read_pck_info
from attest._eventlog import DSTACK_RUNTIME_EVENT_TYPE, EventLogEntry, parse_event_log
from attest._identity import (
    AppIdentity,
    IdentityError,
    compute_app_identity,
    expected_mr_config_id,
    has_runtime_events,
    os_image_hash_of,
)
from attest._replay import verify_replay
from tests.attest.test_evidence_data import load_json, td_field


def _load(base: Path, name: str) -> tuple[tuple[EventLogEntry, ...], bytes, dict[str, str]]:
    doc = load_json(base / "dstack" / name)
    return parse_event_log(doc["event_log"]), bytes.fromhex(doc["quote"]), doc


def _identity_of(
    base: Path, name: str, vm_config: str | None = None
) -> tuple[AppIdentity, bytes, dict[str, str]]:
    entries, raw, doc = _load(base, name)
    quote = parse_quote(raw)
    verify_replay(entries, quote.td_report.rtmrs)
    ppid = read_pck_info(quote).ppid
    ident = compute_app_identity(entries, quote.td_report, ppid=ppid, vm_config=vm_config)
    return ident, raw, doc


def _runtime(name: str, payload: bytes) -> EventLogEntry:
    return EventLogEntry(
        imr=3, event_type=DSTACK_RUNTIME_EVENT_TYPE, digest=b"", event=name, event_payload=payload
    )


def test_quote_report_identity(attestation_data: Path) -> None:
    ident, _, doc = _identity_of(attestation_data, "quote-report.json")
    assert ident.app_id.hex() == "3763bc34552cf3a27ff71ad5f7a90471562a1a2d"
    assert ident.compose_hash.hex().startswith("3763bc34") and len(ident.compose_hash) == 32
    assert ident.compose_hash.hex().endswith("60da27e7")
    assert ident.instance_id.hex().startswith("c3714eb6") and ident.instance_id.hex().endswith("c9")
    assert ident.key_provider is not None and ident.key_provider.name == "local-sgx"
    assert ident.key_provider.id.startswith("1b7a4937") and ident.key_provider.id.endswith("cf8b")
    assert ident.claimed_os_image_hash == b""  # this OS emits no os-image-hash event
    with_vm, _, _ = _identity_of(attestation_data, "quote-report.json", vm_config=doc["vm_config"])
    assert with_vm.claimed_os_image_hash.hex().startswith("14ad42d0")
    assert (ident.claimed_os_image_hash_source, with_vm.claimed_os_image_hash_source) == (
        "none",
        "vm_config",
    )


def _platform(raw: bytes) -> bytes:
    return b"".join(td_field(raw, n) for n in ("mr_td", "rt_mr0", "rt_mr1", "rt_mr2"))


@pytest.mark.parametrize("name", ["quote-report.json", "tdx-lite-getquote.json"])
def test_os_image_hash_is_recomputed_from_the_quote_not_taken_from_claims(
    attestation_data: Path, name: str
) -> None:
    """The hash governance approves comes from MRTD and RTMR0-2 (docs/security.md, item 1):
    neither the host's VM config nor the guest's own os-image-hash event can set it."""
    ident, raw, doc = _identity_of(attestation_data, name, vm_config=None)
    expected = hashlib.sha256(_platform(raw) + bytes(32)).digest()
    assert ident.os_image_hash == expected
    assert ident.os_image_hash == os_image_hash_of(*(td_field(raw, n) for n in _REGS))
    # It is dstack's mr_system of the same TD measured without a key provider.
    entries, _, _ = _load(attestation_data, name)
    boot = compute_app_identity(entries, parse_quote(raw).td_report, ppid=None, boottime_mr=True)
    assert boot.mr_system == ident.os_image_hash
    for claim in ([doc["vm_config"]] if "vm_config" in doc else []) + [
        json.dumps({"os_image_hash": "ab" * 32})
    ]:
        claimed, _, _ = _identity_of(attestation_data, name, vm_config=claim)
        assert claimed.os_image_hash == expected
        assert claimed.claimed_os_image_hash == bytes.fromhex(json.loads(claim)["os_image_hash"])
    if ident.claimed_os_image_hash_source == "event":  # tdx-lite: the guest wrote 07a2388c…
        assert ident.claimed_os_image_hash != expected


_REGS = ("mr_td", "rt_mr0", "rt_mr1", "rt_mr2")


def test_os_image_hash_of_checks_register_sizes() -> None:
    with pytest.raises(IdentityError, match="RTMR1 must be 48 bytes, got 32"):
        os_image_hash_of(bytes(48), bytes(48), bytes(32), bytes(48))


def test_mr_aggregated_and_device_id_follow_dstack(attestation_data: Path) -> None:
    ident, raw, _ = _identity_of(attestation_data, "quote-report.json")
    f = {n: td_field(raw, n) for n in ("mr_td", "rt_mr0", "rt_mr1", "rt_mr2", "rt_mr3")}
    # All of MRCONFIGID/MROWNER/MROWNERCONFIG are zero here, so they are left out.
    assert td_field(raw, "mr_config_id") == bytes(48)
    regs = f["mr_td"] + f["rt_mr0"] + f["rt_mr1"] + f["rt_mr2"]
    assert ident.mr_aggregated == hashlib.sha256(regs + f["rt_mr3"]).digest()
    mr_kp = hashlib.sha256(ident.key_provider_info).digest()
    assert ident.mr_system == hashlib.sha256(regs + mr_kp).digest()
    assert (
        ident.device_id.hex()
        == hashlib.sha256(
            bytes.fromhex("897d3eb76ea887b783f9ad3d0771034b")  # PPID as dcap-qvl reads it
        ).hexdigest()
    )


def test_tdx_lite_identity_and_mr_config_id(attestation_data: Path) -> None:
    ident, raw, _ = _identity_of(attestation_data, "tdx-lite-getquote.json")
    assert ident.app_id.hex() == "86b0e55f2fa8e4fb69d890f14f54d5612707646e"
    assert ident.compose_hash.hex().endswith("aade77caa9")
    assert ident.key_provider is not None and ident.key_provider.name == "kms"
    assert ident.claimed_os_image_hash.hex().startswith("07a2388c")  # the os-image-hash event
    assert ident.claimed_os_image_hash_source == "event"
    mr_config_id = td_field(raw, "mr_config_id")
    assert mr_config_id == expected_mr_config_id(ident.compose_hash)
    f = [td_field(raw, n) for n in ("mr_td", "rt_mr0", "rt_mr1", "rt_mr2", "rt_mr3")]
    owner = mr_config_id + td_field(raw, "mr_owner") + td_field(raw, "mr_owner_config")
    assert ident.mr_aggregated == hashlib.sha256(b"".join(f) + owner).digest()


def test_boottime_mode_stops_at_boot_mr_done(attestation_data: Path) -> None:
    entries, raw, _ = _load(attestation_data, "quote-report.json")
    td = parse_quote(raw).td_report
    full = compute_app_identity(entries, td, ppid=None)
    boot = compute_app_identity(entries, td, ppid=None, boottime_mr=True)
    assert boot.key_provider_info == b"" and boot.key_provider is None
    assert boot.mr_aggregated != full.mr_aggregated
    assert boot.mr_system != full.mr_system  # no key provider measured at boot
    assert full.device_id == hashlib.sha256(b"").digest()


def test_events_after_system_ready_cannot_override(attestation_data: Path) -> None:
    entries, raw, _ = _load(attestation_data, "quote-report.json")
    forged = (*entries, _runtime("app-id", b"\xee" * 20))
    ident = compute_app_identity(forged, parse_quote(raw).td_report, ppid=None)
    assert ident.app_id.hex() == "3763bc34552cf3a27ff71ad5f7a90471562a1a2d"


def test_logs_without_runtime_events(attestation_data: Path) -> None:
    entries, raw, _ = _load(attestation_data, "quote-report.json")
    boot_only = [e for e in entries if e.imr != 3]
    assert not has_runtime_events(boot_only) and has_runtime_events(entries)
    with pytest.raises(IdentityError, match="no dstack runtime events"):
        compute_app_identity(boot_only, parse_quote(raw).td_report, ppid=None)


def test_runtime_event_outside_rtmr3_is_rejected(attestation_data: Path) -> None:
    entries, raw, _ = _load(attestation_data, "quote-report.json")
    moved = EventLogEntry(
        imr=2, event_type=DSTACK_RUNTIME_EVENT_TYPE, digest=b"", event="app-id", event_payload=b"x"
    )
    with pytest.raises(IdentityError, match="'app-id' is on RTMR2, expected RTMR3"):
        compute_app_identity([*entries, moved], parse_quote(raw).td_report, ppid=None)


def test_bad_key_provider_payload(attestation_data: Path) -> None:
    _, raw, _ = _load(attestation_data, "quote-report.json")
    td = parse_quote(raw).td_report
    for payload, message in [(b"{", "not JSON"), (json.dumps({"name": 1}).encode(), "must be")]:
        with pytest.raises(IdentityError, match=message):
            compute_app_identity([_runtime("key-provider", payload)], td, ppid=None)
    with pytest.raises(IdentityError, match="no usable os_image_hash"):
        compute_app_identity([_runtime("app-id", b"a")], td, ppid=None, vm_config="[]")


_NAMES = ["app-id", "compose-hash", "instance-id", "key-provider", "boot-mr-done", "system-ready"]


@given(
    st.lists(
        st.tuples(st.sampled_from([*_NAMES, "x"]), st.binary(max_size=40), st.sampled_from([1, 2])),
        min_size=1,
        max_size=8,
    ),
    st.booleans(),
)
def test_random_runtime_logs_give_identity_or_identity_error(
    events: list[tuple[str, bytes, int]], boot: bool
) -> None:
    entries = [
        EventLogEntry(
            imr=3,
            event_type=DSTACK_RUNTIME_EVENT_TYPE,
            digest=b"",
            event=n,
            event_payload=p,
            version=v,
        )
        for n, p, v in events
    ]
    td = TdReport(**{name: bytes(n) for name, n in _TD_SIZES.items()})
    try:
        ident = compute_app_identity(entries, td, ppid=None, boottime_mr=boot)
    except IdentityError:
        return
    names = [n for n, _, _ in events]
    if "app-id" in names and (
        "system-ready" not in names or names.index("app-id") < names.index("system-ready")
    ):
        assert ident.app_id == events[names.index("app-id")][1]
    else:
        assert ident.app_id == b""


_TD_SIZES = {
    "tee_tcb_svn": 16,
    "mr_seam": 48,
    "mr_signer_seam": 48,
    "seam_attributes": 8,
    "td_attributes": 8,
    "xfam": 8,
    "mr_td": 48,
    "mr_config_id": 48,
    "mr_owner": 48,
    "mr_owner_config": 48,
    "rtmr0": 48,
    "rtmr1": 48,
    "rtmr2": 48,
    "rtmr3": 48,
    "report_data": 64,
}
