"""Keys are the app's, not the TEE vendor's: one app id gets the same keys on TDX and SEV-SNP.

Three real `KmsServicer`s (t = 2) over real gRPC ask real governance on anvil; the guest's
`KmsClient` fetches the app's keys exactly as the guest agent does (`guest.agent.fetch_keys`:
root seed, IBE key, the network's signature over the root key), once with the evidence of a
simulated TDX guest and once with that of a simulated SEV-SNP guest of the same app. With both
platforms approved the keys are identical; take the SNP image away and only SNP is refused.
"""

from __future__ import annotations

import os
from typing import Any

from attest import make_mr_config
from attest.providers import SimulatorProvider, SnpSimulator
from contracts import AppBootInfo, AuthDecision
from guest import keys
from guest.agent import provider_evidence
from guest.evidence_source import EvidenceSource, SnpEvidence
from guest.kms_client import AppKeyRequest, DerivationError, KmsClient
from guest.measure import compose_hash, measure_app_boot
from mpc import Generation, derive_app_seed
from node.tee import SIMULATED_OS_IMAGE, SIMULATED_PLATFORM, SIMULATED_SNP_OS_IMAGE
from tests.node import test_authz_chain as tdx
from tests.node.test_authz_chain import COMPOSE, Chain
from tests.node.test_sign_statements import FINGERPRINT, GEN1, client_committee, run, view_of

base_chain = tdx.base_chain
chain = tdx.chain


def tdx_guest(app_id: bytes) -> EvidenceSource:
    provider = SimulatorProvider(SIMULATED_PLATFORM)
    measure_app_boot(
        provider,
        app_id=app_id,
        compose=COMPOSE,
        instance_id=os.urandom(20),
        kms_id=FINGERPRINT.hex(),
        os_image=SIMULATED_OS_IMAGE,
    )
    return provider_evidence(provider)


def snp_guest(app_id: bytes) -> EvidenceSource:
    sim = SnpSimulator()
    document = make_mr_config(
        app_id=app_id,
        compose_hash=compose_hash(COMPOSE),
        key_provider="kms",
        key_provider_id=FINGERPRINT,
        instance_id=os.urandom(20),
    )
    return lambda report_data: SnpEvidence(sim.attest(report_data, document))


def fetch(chain: Chain, guests: list[EvidenceSource], app_id: bytes | None = None) -> list[Any]:
    """What each guest's agent derives for `app_id` (default: the chain's app) as it starts:
    (root seed, IBE key), or the network's refusal. (The agent's later steps, certification
    and the KMS root's signature, use the same seed and need a full node.)"""

    def approve(info: AppBootInfo, block: int) -> AuthDecision:
        return chain.reader.is_app_allowed(info)  # the views' head is not anvil's: ask latest

    async def ask(ports: list[int]) -> list[Any]:
        out: list[Any] = []
        for guest in guests:
            client = KmsClient(client_committee(1, GEN1, ports), guest, timeout=5)
            wanted = app_id or chain.app_id
            try:
                result = await client.derive(
                    [AppKeyRequest(wanted, keys.ROOT_PURPOSE), AppKeyRequest(wanted, ibe=True)]
                )
                sigma, ibe_key = result.sigmas
                seed = derive_app_seed(
                    sigma, generation=Generation(1), app_id=wanted, purpose=keys.ROOT_PURPOSE
                )
                out.append((seed, ibe_key))
            except DerivationError as exc:
                out.append(exc)
            finally:
                await client.close()
        return out

    return list(run([view_of()] * 3, [None] * 3, ask, approve))


def test_one_app_gets_the_same_keys_on_tdx_and_on_sev_snp(chain: Chain) -> None:
    chain.owner.send_add_os_image(SIMULATED_SNP_OS_IMAGE)
    on_tdx, on_snp, on_snp_again = fetch(
        chain, [tdx_guest(chain.app_id), snp_guest(chain.app_id), snp_guest(chain.app_id)]
    )
    assert not isinstance(on_tdx, Exception) and not isinstance(on_snp, Exception)
    seed, ibe_key = on_tdx
    assert on_snp[0] == seed and on_snp[1] == ibe_key  # root seed and IBE key: the same
    assert on_snp_again[0] == seed  # another SNP chip, another instance: still the app's keys
    assert len(seed) == 32 and seed != bytes(32)

    chain.owner.send_remove_os_image(SIMULATED_SNP_OS_IMAGE)
    on_tdx_now, on_snp_now = fetch(chain, [tdx_guest(chain.app_id), snp_guest(chain.app_id)])
    assert on_tdx_now[0] == seed
    assert isinstance(on_snp_now, DerivationError)
    assert "OS image is not allowed" in str(on_snp_now)


def test_an_snp_guest_of_another_app_gets_nothing_of_this_apps(chain: Chain) -> None:
    """The key is the app id's, and the app id is the one HOST_DATA binds: an SNP guest
    launched for another app gets neither this app's keys nor its own (not registered)."""
    chain.owner.send_add_os_image(SIMULATED_SNP_OS_IMAGE)
    other = b"\x77" * 20
    (as_victim,) = fetch(chain, [snp_guest(other)], app_id=chain.app_id)
    (as_itself,) = fetch(chain, [snp_guest(other)], app_id=other)
    for refused in (as_victim, as_itself):
        assert isinstance(refused, DerivationError)
        assert f"approval: app 0x{other.hex()}: App not registered" in str(refused)
