"""SEV-SNP report verification against AMD's pinned ARKs, with the vendored real reports.

Positive: virtee/sev's Milan report (UpToDate), trustee's (OutOfDate: CURRENT microcode 0xce
above REPORTED 0x73), dstack's live-CVM capture (OutOfDate: REPORTED SNP SPL 23, the others 24;
upstream says OutOfDate). Negative: virtee's and dstack's own tamper tests and every check named.
"""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from attest import (
    PolicyError,
    SnpPolicy,
    SnpProduct,
    VerificationError,
    verify_amd_snp_report,
)
from attest._snp_certs import AMD_ARK_SHA256, amd_ark, load_certificate, read_vcek_claims
from attest.errors import AttestError
from attest.providers import SnpSimulator, verify_simulator_snp_report
from tests.attest.snp_data import NOW, SET_IDS, SETS, SnpSet
from tests.conftest import ATTESTATION_DATA

ANY_TCB = SnpPolicy(accepted_tcb_statuses=("UpToDate", "OutOfDate"))
VIRTEE, TRUSTEE, DSTACK = SETS


def _xor(raw: bytes, offset: int, mask: int = 0xFF) -> bytes:
    return raw[:offset] + bytes([raw[offset] ^ mask]) + raw[offset + 1 :]


@pytest.mark.parametrize("s", SETS, ids=SET_IDS)
def test_real_reports_verify_with_their_tcb_status(s: SnpSet) -> None:
    v = verify_amd_snp_report(s.report, s.chain, now=NOW, policy=ANY_TCB)
    assert v.product is SnpProduct.MILAN
    assert v.tcb_status == s.tcb_status
    assert v.source == "amd" and not v.simulated
    assert v.advisory_ids == ()
    vcek = load_certificate(s.vcek, "VCEK")
    assert v.reported_tcb.spls() == read_vcek_claims(vcek).spls


def test_default_policy_accepts_up_to_date_and_refuses_out_of_date() -> None:
    verify_amd_snp_report(VIRTEE.report, VIRTEE.chain, now=NOW, policy=SnpPolicy())
    with pytest.raises(PolicyError, match=r"TCB status OutOfDate is not accepted .*snpSPL=23") as e:
        verify_amd_snp_report(DSTACK.report, DSTACK.chain, now=NOW, policy=SnpPolicy())
    assert e.value.check == "snp-tcb-status" and e.value.found == "OutOfDate"


def test_the_arks_are_pinned() -> None:
    from cryptography.hazmat.primitives import hashes

    for product in SnpProduct:
        cert = amd_ark(product)
        assert cert.fingerprint(hashes.SHA256()) == AMD_ARK_SHA256[product]
        vendored = ATTESTATION_DATA / f"virtee-sev/builtin/{product.value.lower()}/ark.pem"
        assert x509.load_pem_x509_certificate(vendored.read_bytes()) == cert


@pytest.mark.parametrize("s", SETS, ids=SET_IDS)
def test_upstream_negative_flipping_the_policy_byte_breaks_the_signature(s: SnpSet) -> None:
    """virtee/sev: ``report[21] ^= 0x80`` must fail the report signature."""
    with pytest.raises(VerificationError, match=r"signature \(offset 0x2a0\) does not verify"):
        verify_amd_snp_report(_xor(s.report, 21, 0x80), s.chain, now=NOW, policy=ANY_TCB)


@pytest.mark.parametrize("s", SETS, ids=SET_IDS)
def test_upstream_negative_flipping_vcek_byte_40_breaks_the_chain(s: SnpSet) -> None:
    """virtee/sev: flipping VCEK DER byte 40 must fail the chain."""
    with pytest.raises(VerificationError, match="the VCEK is not signed by the ASK"):
        verify_amd_snp_report(
            s.report, [s.ask, _xor(s.vcek_der(), 40, 0x01)], now=NOW, policy=ANY_TCB
        )


@pytest.mark.parametrize(
    ("name", "offset"),
    [("report_data", 0x50), ("measurement", 0x90), ("host_data", 0xC0), ("signature", 0x2A0)],
)
def test_dstack_tamper_offsets_break_the_signature(name: str, offset: int) -> None:
    """dstack-attest tests/sev_snp_verify.rs forged_report_bytes_fail_signature_verification."""
    with pytest.raises(VerificationError, match="does not verify"):
        verify_amd_snp_report(_xor(DSTACK.report, offset), DSTACK.chain, now=NOW, policy=ANY_TCB)


def test_every_byte_of_a_report_is_covered() -> None:
    """Each byte flipped is refused: signed bytes by the signature, the rest by the parser."""
    for offset in range(len(VIRTEE.report)):
        with pytest.raises(AttestError):
            verify_amd_snp_report(
                _xor(VIRTEE.report, offset, 0x01), VIRTEE.chain, now=NOW, policy=ANY_TCB
            )


def test_a_vcek_for_another_tcb_or_chip_is_named() -> None:
    with pytest.raises(
        VerificationError, match=r"VCEK is for TCB .*ucodeSPL': 115.*ucodeSPL': 114"
    ):
        verify_amd_snp_report(
            _xor(VIRTEE.report, 0x187, 0x01), VIRTEE.chain, now=NOW, policy=ANY_TCB
        )
    with pytest.raises(VerificationError, match=r"VCEK is for chip d49554ec.*CHIP_ID is c38427a3"):
        verify_amd_snp_report(TRUSTEE.report, VIRTEE.chain, now=NOW, policy=ANY_TCB)


def test_wrong_or_malformed_certificates_are_refused() -> None:
    with pytest.raises(VerificationError, match="no AMD certificates"):
        verify_amd_snp_report(VIRTEE.report, [], now=NOW, policy=ANY_TCB)
    with pytest.raises(VerificationError, match=r"must be \[ASK, VCEK\], got 1"):
        verify_amd_snp_report(VIRTEE.report, [VIRTEE.vcek], now=NOW, policy=ANY_TCB)
    junk = b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"
    with pytest.raises(VerificationError, match=r"cert_chain\[1\] \(VCEK\) is not an X.509"):
        verify_amd_snp_report(VIRTEE.report, [VIRTEE.ask, junk], now=NOW, policy=ANY_TCB)
    # dstack's wrong_collateral_is_rejected: the ASK presented as the VCEK
    with pytest.raises(VerificationError, match="the VCEK is not signed by the ASK"):
        verify_amd_snp_report(DSTACK.report, [DSTACK.ask, DSTACK.ask], now=NOW, policy=ANY_TCB)


def test_a_tampered_ask_fails_the_chain() -> None:
    """dstack's tampered_real_amd_ask_fails_chain_verification: flip the ASK's last byte."""
    der = x509.load_pem_x509_certificate(DSTACK.ask).public_bytes(serialization.Encoding.DER)
    with pytest.raises(VerificationError, match="the ASK is not signed by ARK-Milan"):
        verify_amd_snp_report(
            DSTACK.report, [_xor(der, len(der) - 1, 0x01), DSTACK.vcek], now=NOW, policy=ANY_TCB
        )


def test_another_products_ask_is_refused() -> None:
    genoa = (ATTESTATION_DATA / "virtee-sev/builtin/genoa/ask.pem").read_bytes()
    with pytest.raises(VerificationError, match="from a Milan processor but its ASK is ARK-Genoa"):
        verify_amd_snp_report(DSTACK.report, [genoa, DSTACK.vcek], now=NOW, policy=ANY_TCB)
    # a v2 report has no CPUID: the Genoa ASK chains to ARK-Genoa, the Milan VCEK does not
    with pytest.raises(VerificationError, match="the VCEK is not signed by the ASK"):
        verify_amd_snp_report(VIRTEE.report, [genoa, VIRTEE.vcek], now=NOW, policy=ANY_TCB)
    # an ARK passed as ASK names itself as issuer, but is not signed by the pinned key's ... ASK
    milan_ark = (ATTESTATION_DATA / "virtee-sev/builtin/milan/ark.pem").read_bytes()
    with pytest.raises(VerificationError, match="the VCEK is not signed by the ASK"):
        verify_amd_snp_report(VIRTEE.report, [milan_ark, VIRTEE.vcek], now=NOW, policy=ANY_TCB)


def test_certificates_outside_their_validity_are_refused() -> None:
    before = int(dt.datetime(2026, 6, 1, tzinfo=dt.UTC).timestamp())  # dstack VCEK: 2026-06-17
    with pytest.raises(VerificationError, match=r"the VCEK is not valid at 2026-06-01T00:00:00Z"):
        verify_amd_snp_report(DSTACK.report, DSTACK.chain, now=before, policy=ANY_TCB)
    after = int(dt.datetime(2031, 1, 1, tzinfo=dt.UTC).timestamp())  # virtee VCEK: to 2030
    with pytest.raises(VerificationError, match="the VCEK is not valid at 2031"):
        verify_amd_snp_report(VIRTEE.report, VIRTEE.chain, now=after, policy=ANY_TCB)


def test_simulator_reports_never_verify_against_amd() -> None:
    sim = SnpSimulator()
    report = sim.report(bytes(64), bytes(32))
    with pytest.raises(VerificationError, match="no AMD root"):
        verify_amd_snp_report(report, list(sim.cert_chain), now=NOW, policy=ANY_TCB)
    with pytest.raises(PolicyError, match="simulator SEV-SNP report refused"):
        verify_simulator_snp_report(report, sim.cert_chain, now=NOW, policy=SnpPolicy())
    # and a real report never verifies as a simulator one
    with pytest.raises(VerificationError, match="not the simulator ASK"):
        verify_simulator_snp_report(
            VIRTEE.report, VIRTEE.chain, now=NOW, policy=SnpPolicy(allow_simulator=True)
        )


SIM_POLICY = SnpPolicy(allow_simulator=True)


def _sim_report(**fields: int) -> tuple[SnpSimulator, bytes]:
    """A simulator report with some 32/64-bit fields set (offset: value)."""
    sim = SnpSimulator()
    raw = bytearray(sim.report(bytes(64), bytes(32)))
    for name, value in fields.items():
        offset, size = {"vmpl": (0x30, 4), "policy": (0x08, 8), "key_info": (0x48, 4)}[name]
        raw[offset : offset + size] = value.to_bytes(size, "little")
    return sim, sim.sign(bytes(raw))


@pytest.mark.parametrize(
    ("fields", "check", "match"),
    [
        ({"vmpl": 1}, "snp-vmpl0", "requested at VMPL 1"),
        ({"policy": 0x30000 | 1 << 18}, "snp-no-migration-agent", "migration agent"),
        ({"key_info": 1 << 2}, "snp-vcek-signed", "signed by a VLEK"),
        ({"key_info": 1 << 1}, "snp-vcek-signed", "masks the chip key"),
        ({"policy": 0x20000}, "snp-platform-matches-policy", "SMT is enabled"),
        ({"policy": 0x30000 | 1 << 23}, "snp-platform-matches-policy", "RAPL off"),
        ({"policy": 0x30000 | 1 << 19}, "snp-not-debug", r"debug guest \(POLICY 0xb0000"),
    ],
    ids=["vmpl", "migration-agent", "vlek", "masked", "smt", "rapl", "debug"],
)
def test_policy_checks_refuse_with_their_name(
    fields: dict[str, int], check: str, match: str
) -> None:
    sim, raw = _sim_report(**fields)
    with pytest.raises(PolicyError, match=match) as e:
        verify_simulator_snp_report(raw, sim.cert_chain, now=NOW, policy=SIM_POLICY)
    assert e.value.check == check


def test_debug_is_a_policy_choice() -> None:
    sim, raw = _sim_report(policy=0x30000 | 1 << 19)
    allowed = SnpPolicy(allow_simulator=True, allow_debug=True)
    assert verify_simulator_snp_report(raw, sim.cert_chain, now=NOW, policy=allowed).simulated


def test_a_policy_must_accept_something() -> None:
    with pytest.raises(ValueError, match="non-empty subset"):
        SnpPolicy(accepted_tcb_statuses=())
    with pytest.raises(ValueError, match="non-empty subset"):
        SnpPolicy(accepted_tcb_statuses=("SWHardeningNeeded",))
