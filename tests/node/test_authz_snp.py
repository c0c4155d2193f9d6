"""Key release to AMD SEV-SNP guests, against real governance on anvil.

Governance approves OS images as platform hashes; an SNP guest's is the tagged SNP platform
hash (attest._snp_identity), so approving a TDX image approves nothing on SEV-SNP and the
other way round, while the app, its compose hash and its keys stay the same on both.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time

import pytest

from attest import BindingLabel, compute_report_data, make_mr_config, snp_platform_hash
from attest.providers import SIMULATED_SNP_POLICY, SnpSimulator
from contracts import AuthDecision
from guest.measure import compose_hash
from node.authz import Authorizer, Evidence, boot_info
from node.errors import PolicyDenied
from node.kms_service import _evidence
from node.metrics import NodeMetrics
from node.ratelimit import RateLimiter
from node.tee import SIMULATED_OS_IMAGE, SIMULATED_PLATFORM, SIMULATED_SNP_OS_IMAGE
from protos.tkms.v1 import common_pb2
from tests.attest.snp_data import dstack_attestation_with_certs
from tests.node import test_authz_chain as tdx
from tests.node.test_authz_chain import COMPOSE, NETWORK, Chain, E, authorizer, booted, release

# The anvil governance of the TDX tests (app deployed, simulated TDX image approved), per module.
base_chain = tdx.base_chain
chain = tdx.chain


def snp_booted(
    chain: Chain, sim: SnpSimulator | None = None, *, kms_id: bytes = NETWORK, key: bytes = E
) -> Evidence:
    """An SNP guest the host launched for the app (HOST_DATA binds its MrConfigV3 document)
    that binds `key` in report_data, as dstack's SNP boot and the guest agent would."""
    document = make_mr_config(
        app_id=chain.app_id,
        compose_hash=compose_hash(COMPOSE),
        key_provider="kms",
        key_provider_id=kms_id,
        instance_id=os.urandom(20),
    )
    sim = sim or SnpSimulator()
    report_data = compute_report_data(BindingLabel.KDF_V1, key)
    return Evidence(quote=b"", event_log="", attestation=sim.attest(report_data, document))


def test_governance_approves_each_platform_separately(chain: Chain) -> None:
    tdx, snp = booted(chain, SIMULATED_PLATFORM), snp_booted(chain)
    assert release(chain, tdx).platform == "tdx"  # the base chain approved the TDX image
    with pytest.raises(PolicyDenied, match="approval: .*OS image is not allowed"):
        release(chain, snp)
    chain.owner.send_add_os_image(SIMULATED_SNP_OS_IMAGE)
    granted = release(chain, snp)
    assert granted.app_id == chain.app_id and granted.platform == "amd-sev-snp"
    identity = granted.evidence.identity
    assert identity is not None and identity.os_image_hash == SIMULATED_SNP_OS_IMAGE
    # taking the TDX image away leaves SNP guests alone, and the other way round
    chain.owner.send_remove_os_image(SIMULATED_OS_IMAGE)
    with pytest.raises(PolicyDenied, match="OS image is not allowed"):
        release(chain, booted(chain, SIMULATED_PLATFORM))
    assert release(chain, snp_booted(chain)).platform == "amd-sev-snp"
    chain.owner.send_remove_os_image(SIMULATED_SNP_OS_IMAGE)
    with pytest.raises(PolicyDenied, match="OS image is not allowed"):
        release(chain, snp_booted(chain))


def test_no_value_computed_for_tdx_or_untagged_approves_an_snp_guest(chain: Chain) -> None:
    """A guest whose MEASUREMENT has the bytes of the approved TDX platform's MRTD, and the
    hashes someone might approve by mistake: none is the tagged SNP platform hash."""
    m = SIMULATED_PLATFORM.mr_td
    sim = SnpSimulator(measurement=m)
    policy = SIMULATED_SNP_POLICY.to_bytes(8, "little")
    for wrong in (hashlib.sha256(m + policy).digest(), hashlib.sha256(m).digest()):
        chain.owner.send_add_os_image(wrong)
    with pytest.raises(PolicyDenied, match="OS image is not allowed"):
        release(chain, snp_booted(chain, sim))
    chain.owner.send_add_os_image(snp_platform_hash(m, SIMULATED_SNP_POLICY))
    assert release(chain, snp_booted(chain, sim)).app_id == chain.app_id


def test_boot_info_carries_the_snp_identity(chain: Chain) -> None:
    chain.owner.send_add_os_image(SIMULATED_SNP_OS_IMAGE)
    sim = SnpSimulator()
    granted = release(chain, snp_booted(chain, sim))
    info = boot_info(granted.evidence)
    report = sim.report(bytes(64), bytes(32))
    assert info.mr_system == hashlib.sha256(report[0x90:0xC0]).digest()
    assert info.device_id == hashlib.sha256(sim.chip_id).digest()
    assert info.tcb_status == "UpToDate" and info.advisory_ids == ()
    assert info.compose_hash == compose_hash(COMPOSE)


def test_the_real_dstack_snp_guest_is_refused_for_its_tcb(chain: Chain) -> None:
    """The live dstack capture verifies up to AMD's ARK, but its TCB is OutOfDate (REPORTED
    SNP SPL 23 below the others' 24), and a node accepts UpToDate only."""
    evidence = Evidence(quote=b"", event_log="", attestation=dstack_attestation_with_certs())
    with pytest.raises(PolicyDenied, match=r"^evidence: TCB status OutOfDate is not accepted"):
        release(chain, evidence)


def _authorizer(chain: Chain, *, accept_simulator: bool, allowed_on_chain: bool) -> Authorizer:
    base = authorizer(chain)
    view = base.fresh_view()
    return Authorizer(
        view=lambda: dataclasses.replace(
            view, head_timestamp=int(time.time()), simulator_allowed=allowed_on_chain
        ),
        approve=lambda info, block: AuthDecision(True, ""),
        max_head_age=60,
        limiter=RateLimiter(100, 100),
        metrics=NodeMetrics(),
        accept_simulator=accept_simulator,
    )


def test_simulator_snp_evidence_is_refused_where_simulators_are_not(chain: Chain) -> None:
    evidence = snp_booted(chain)

    def ask(authz: Authorizer) -> None:
        authz.authorize(evidence, binding=(BindingLabel.KDF_V1, E), app_ids=[chain.app_id], cost=1)

    with pytest.raises(
        PolicyDenied, match=r"simulator SEV-SNP report refused: this node runs on TDX"
    ):
        ask(_authorizer(chain, accept_simulator=False, allowed_on_chain=True))
    with pytest.raises(PolicyDenied, match=r"simulator SEV-SNP report refused: governance has"):
        ask(_authorizer(chain, accept_simulator=True, allowed_on_chain=False))
    ask(_authorizer(chain, accept_simulator=True, allowed_on_chain=True))


def test_an_snp_guest_must_name_this_network_and_bind_the_request_key(chain: Chain) -> None:
    chain.owner.send_add_os_image(SIMULATED_SNP_OS_IMAGE)
    with pytest.raises(PolicyDenied, match=r"identity: the key provider is KMS '7a7a"):
        release(chain, snp_booted(chain, kms_id=b"\x7a" * 32))
    with pytest.raises(PolicyDenied, match=r"^binding: report_data"):
        release(chain, snp_booted(chain, key=bytes(48)))
    with pytest.raises(PolicyDenied, match=r"ownership: app 0x.* asked for a key of app 0x0101"):
        authorizer(chain).authorize(
            snp_booted(chain), binding=(BindingLabel.KDF_V1, E), app_ids=[b"\x01" * 20], cost=1
        )


def test_the_kms_service_takes_either_a_quote_or_an_snp_attestation() -> None:
    snp = _evidence(common_pb2.Evidence(attestation=b"\x00\x03"))
    assert snp.attestation == b"\x00\x03" and snp.quote == b""
    from node.errors import InvalidRequest

    with pytest.raises(InvalidRequest, match="either quote .* or attestation"):
        _evidence(common_pb2.Evidence(quote=b"q", attestation=b"a"))
    with pytest.raises(InvalidRequest, match="evidence.quote is empty"):
        _evidence(common_pb2.Evidence())
    with pytest.raises(InvalidRequest, match="evidence.attestation is 65537 bytes"):
        _evidence(common_pb2.Evidence(attestation=bytes(65537)))
