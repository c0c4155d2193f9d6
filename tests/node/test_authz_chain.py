"""Key release binds an app to its whole platform, against real governance on anvil.

The attack (docs/security.md, "platform"): a host boots a TD with its own firmware or kernel,
extends RTMR3 with the victim's app-id and an approved compose-hash, claims an approved OS image
(in the RTMR3 `os-image-hash` event it writes itself and in the unmeasured VM config) and asks
for the victim's keys. The node recomputes the OS image from MRTD and RTMR0-2, so governance
sees the image the TD really booted. Real quotes from the test data go through the same
platform check (`isKmsAllowed`, whose platform rules `isAppAllowed` shares).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from web3 import Web3

from attest import (
    AllOf,
    BindingLabel,
    SimulatorAllowed,
    VerifiedEvidence,
    compute_report_data,
    default_policy,
    event_log_to_json,
    load_collateral,
    make_quote_verifier,
    verify_evidence,
)
from attest.providers import SimulatorConfig, SimulatorProvider
from contracts import Anvil, AppFactoryClient, GovernanceClient, Transactor, anvil_account, deploy
from guest.measure import compose_hash, measure_app_boot
from mpc import G1
from node.authz import Authorized, Authorizer, Evidence, boot_info, key_provider_problem
from node.chainview import ChainView
from node.errors import PolicyDenied
from node.metrics import NodeMetrics
from node.ratelimit import RateLimiter
from node.tee import SIMULATED_OS_IMAGE, SIMULATED_PLATFORM

COMPOSE = b'{"services": {"web": {"image": "nginx"}}}'
E = G1.base_mul(4242).to_bytes()
SET_C_NOW = 1772323200
#: The network fingerprint the view reports (no DKG runs here, so a fixed value stands in).
NETWORK = bytes.fromhex("5e" * 32)


@dataclass
class Chain:
    w3: Web3
    owner: GovernanceClient
    reader: GovernanceClient
    app_id: bytes
    governance: str


@pytest.fixture(scope="module")
def base_chain() -> Iterator[Chain]:
    with Anvil() as anvil:
        w3 = anvil.web3()
        tx = Transactor(w3, anvil_account(0))
        deployment = deploy(tx, allow_simulator=True)
        owner = GovernanceClient(w3, deployment.governance, tx)
        factory = AppFactoryClient(w3, deployment.app_factory, Transactor(w3, anvil_account(1)))
        _, app = factory.send_deploy_app(
            compose_hashes=[compose_hash(COMPOSE)], allow_any_device=True
        )
        owner.send_add_os_image(SIMULATED_OS_IMAGE)
        yield Chain(
            w3=w3,
            owner=owner,
            reader=GovernanceClient(w3, deployment.governance),
            app_id=bytes.fromhex(app.removeprefix("0x")),
            governance=deployment.governance,
        )


@pytest.fixture
def chain(base_chain: Chain) -> Iterator[Chain]:
    w3 = base_chain.w3
    snapshot = w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
    yield base_chain
    w3.provider.make_request("evm_revert", [snapshot])  # type: ignore[arg-type]


def authorizer(chain: Chain) -> Authorizer:
    def view() -> ChainView:
        head = chain.w3.eth.get_block("latest")
        return ChainView(
            chain_id=chain.w3.eth.chain_id,
            governance=bytes.fromhex(chain.governance.removeprefix("0x")),
            head=int(head["number"]),
            head_timestamp=int(time.time()),
            latest_generation=0,
            committees={},
            running_epoch=0,
            nodes={},
            simulator_allowed=chain.reader.get_simulator_allowed(),
            fingerprint=NETWORK,
        )

    return Authorizer(
        view=view,
        approve=lambda info, block: chain.reader.is_app_allowed(info, block=block),
        max_head_age=60,
        limiter=RateLimiter(100, 100),
        metrics=NodeMetrics(),
        accept_simulator=True,
    )


def booted(
    chain: Chain,
    platform: SimulatorConfig,
    *,
    kms_id: str | None = None,
    key_provider_event: bool = True,
    claimed_image: bytes = SIMULATED_OS_IMAGE,
) -> Evidence:
    """A TD on `platform` that measures the app as the guest agent does (`measure_app_boot`),
    claims `claimed_image` everywhere a claim can be made, and binds E."""
    template = SimulatorProvider(platform)
    measure_app_boot(
        template,
        app_id=chain.app_id,
        compose=COMPOSE,
        instance_id=os.urandom(20),
        kms_id=kms_id or NETWORK.hex(),
        os_image=claimed_image,
    )
    provider = SimulatorProvider(platform)
    for event in template.event_log():
        if key_provider_event or event.event != "key-provider":
            provider.extend_rtmr(3, event.event, event.event_payload)
    quote = provider.get_quote(compute_report_data(BindingLabel.KDF_V1, E))
    return Evidence(
        quote=quote,
        event_log=event_log_to_json(provider.event_log()),
        vm_config=json.dumps({"os_image_hash": claimed_image.hex()}),
    )


def verify(evidence: Evidence) -> VerifiedEvidence:
    """Steps 1-4 alone, as a node runs them (to read the identity governance is asked about)."""
    policy = AllOf([*default_policy().checks, SimulatorAllowed()])
    return verify_evidence(
        evidence.quote,
        evidence.event_log,
        verify_quote=make_quote_verifier(now=int(time.time()), policy=policy),
        binding=(BindingLabel.KDF_V1, E),
        vm_config=evidence.vm_config,
    )


def release(chain: Chain, evidence: Evidence) -> Authorized:
    return authorizer(chain).authorize(
        evidence, binding=(BindingLabel.KDF_V1, E), app_ids=[chain.app_id], cost=1
    )


def test_an_approved_app_on_the_approved_image_gets_its_keys(chain: Chain) -> None:
    granted = release(chain, booted(chain, SIMULATED_PLATFORM))
    assert granted.app_id == chain.app_id
    identity = granted.evidence.identity
    assert identity is not None and identity.os_image_hash == SIMULATED_OS_IMAGE


def _host(what: str) -> bytes:
    return hashlib.sha384(b"the host's own " + what.encode()).digest()


FORGED_PLATFORMS = {
    "firmware (MRTD)": dataclasses.replace(SIMULATED_PLATFORM, mr_td=_host("TDVF")),
    "firmware config (RTMR0)": dataclasses.replace(SIMULATED_PLATFORM, rtmr0=_host("ACPI")),
    "kernel (RTMR1)": dataclasses.replace(SIMULATED_PLATFORM, rtmr1=_host("kernel")),
    "cmdline/initrd (RTMR2)": dataclasses.replace(SIMULATED_PLATFORM, rtmr2=_host("initrd")),
}


@pytest.mark.parametrize("forged", FORGED_PLATFORMS.values(), ids=FORGED_PLATFORMS.keys())
def test_another_firmware_or_kernel_cannot_claim_the_approved_image(
    chain: Chain, forged: SimulatorConfig
) -> None:
    """Same app-id, approved compose-hash, approved image claimed in RTMR3 and in the VM config;
    only the platform differs. Before the fix this TD received partials."""
    with pytest.raises(PolicyDenied, match="approval: .*OS image is not allowed"):
        release(chain, booted(chain, forged))
    # Once governance approves that platform's image, the same evidence passes: the refusal was
    # about the platform, nothing else.
    evidence = booted(chain, forged)
    info = boot_info(verify(evidence))
    chain.owner.send_add_os_image(info.os_image_hash)
    assert release(chain, evidence).app_id == chain.app_id


def test_a_td_without_a_key_provider_event_is_refused(chain: Chain) -> None:
    with pytest.raises(
        PolicyDenied, match="identity: the event log has no key-provider event before system-ready"
    ):
        release(chain, booted(chain, SIMULATED_PLATFORM, key_provider_event=False))


def test_a_td_that_chose_another_kms_is_refused(chain: Chain) -> None:
    with pytest.raises(PolicyDenied, match=r"identity: the key provider is KMS '0x1111.*', not"):
        release(chain, booted(chain, SIMULATED_PLATFORM, kms_id="0x" + "11" * 20))
    # Naming this network's governance address is not naming this network (Security III G-01).
    with pytest.raises(PolicyDenied, match=f"not this network {NETWORK.hex()}"):
        release(chain, booted(chain, SIMULATED_PLATFORM, kms_id=chain.governance))


def test_a_device_outside_the_apps_list_is_refused(chain: Chain) -> None:
    """deviceId is SHA-256 of the PCK's PPID, judged by the app's controller as dstack's is."""
    factory = AppFactoryClient(
        chain.w3, chain.reader.get_app_factory(), Transactor(chain.w3, anvil_account(1))
    )
    device = hashlib.sha256(SIMULATED_PLATFORM.ppid).digest()
    _, pinned = factory.send_deploy_app(compose_hashes=[compose_hash(COMPOSE)], device_ids=[device])
    pinned_chain = dataclasses.replace(chain, app_id=bytes.fromhex(pinned.removeprefix("0x")))
    assert release(pinned_chain, booted(pinned_chain, SIMULATED_PLATFORM)).app_id
    elsewhere = dataclasses.replace(SIMULATED_PLATFORM, ppid=b"\x77" * 16)
    with pytest.raises(PolicyDenied, match="approval: .*Device not allowed"):
        release(pinned_chain, booted(pinned_chain, elsewhere))


def _set_c(attestation_data: Path) -> dict[str, str]:
    doc: dict[str, str] = json.loads(
        (attestation_data / "dstack" / "quote-report.json").read_text()
    )
    return doc


def test_a_real_quote_is_judged_by_its_measured_image_not_its_vm_config(
    chain: Chain, attestation_data: Path
) -> None:
    """Set C (a real dstack CVM): governance allows only what its registers measure."""
    doc = _set_c(attestation_data)
    collateral = load_collateral(
        attestation_data / "dcap-qvl" / "tdx_quote_outdated_collateral.json"
    )
    verified = verify_evidence(
        bytes.fromhex(doc["quote"]),
        doc["event_log"],
        verify_quote=make_quote_verifier(
            now=SET_C_NOW, policy=default_policy(), collateral=collateral
        ),
        binding=None,
        vm_config=doc["vm_config"],
    )
    assert verified.identity is not None
    info = boot_info(verified)
    claimed = verified.identity.claimed_os_image_hash
    assert claimed.hex().startswith("14ad42d0") and info.os_image_hash != claimed
    chain.owner.send_add_kms_measurement(info.mr_aggregated)
    chain.owner.send_add_os_image(claimed)  # the image the VM config names, approved
    assert chain.reader.is_kms_allowed(info).reason == "OS image is not allowed"
    chain.owner.send_add_os_image(info.os_image_hash)  # the image its registers measure
    decision = chain.reader.is_kms_allowed(info)
    assert decision.allowed, decision.reason
    # set C's key provider is dstack's local SGX one: no KMS network released its keys
    assert key_provider_problem(verified.identity, NETWORK) == (
        "the key provider is 'local-sgx', not 'kms'"
    )
