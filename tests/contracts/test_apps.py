"""Apps: the factory, AppAuth's rules, and every reason `isAppAllowed` can give."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from eth_utils.abi import function_signature_to_4byte_selector
from web3 import Web3

from contracts import (
    IAPP_AUTH_INTERFACE_ID,
    AppAuthClient,
    AppBootInfo,
    AppFactoryClient,
    AppStatus,
    Deployment,
    GovernanceClient,
    InvalidInput,
    TransactionFailed,
    Transactor,
    load_artifact,
)

AsSigner = Callable[[int], GovernanceClient]
COMPOSE = b"\xc0" * 32
OTHER_COMPOSE = b"\xc1" * 32
DEVICE = b"\xde" * 32
IMAGE = b"\x1a" * 32


@pytest.fixture
def app_id(governance: GovernanceClient, factory: AppFactoryClient) -> str:
    """An app owned by account 1 allowing COMPOSE on DEVICE; the OS image IMAGE is allowed."""
    governance.send_add_os_image(IMAGE)
    _, app = factory.send_deploy_app(compose_hashes=[COMPOSE], device_ids=[DEVICE])
    return app


@pytest.fixture
def app(w3: Web3, app_id: str, signers: list[Transactor]) -> AppAuthClient:
    return AppAuthClient(w3, app_id, signers[1])


def boot(app_id: str, **changes: object) -> AppBootInfo:
    fields: dict[str, object] = {
        "app_id": app_id,
        "compose_hash": COMPOSE,
        "device_id": DEVICE,
        "os_image_hash": IMAGE,
    }
    fields.update(changes)
    return AppBootInfo(**fields)  # type: ignore[arg-type]


def test_interface_id_is_dstacks(
    w3: Web3, governance: GovernanceClient, app: AppAuthClient
) -> None:
    signature = (
        "isAppAllowed((address,bytes32,address,bytes32,bytes32,bytes32,bytes32,string,string[]))"
    )
    assert function_signature_to_4byte_selector(signature) == IAPP_AUTH_INTERFACE_ID
    (entry,) = [e for e in load_artifact("IAppAuth").abi if e.get("name") == "isAppAllowed"]
    names = [c["name"] for c in entry["inputs"][0]["components"]]
    assert names == [
        "appId",
        "composeHash",
        "instanceId",
        "deviceId",
        "mrAggregated",
        "mrSystem",
        "osImageHash",
        "tcbStatus",
        "advisoryIds",
    ]
    assert app.supports_interface(IAPP_AUTH_INTERFACE_ID)
    assert app.supports_interface(bytes.fromhex("01ffc9a7"))
    assert not app.supports_interface(b"\xff\xff\xff\xff")
    governance_as_app = AppAuthClient(w3, governance.address)
    assert governance_as_app.supports_interface(IAPP_AUTH_INTERFACE_ID)


def test_factory_deploys_an_app_owned_by_the_caller_and_registers_it(
    governance: GovernanceClient,
    app: AppAuthClient,
    app_id: str,
    signers: list[Transactor],
    deployment: Deployment,
) -> None:
    assert app.get_owner() == signers[1].address
    assert governance.get_app_status(app_id) is AppStatus.REGISTERED
    assert governance.get_app_factory() == deployment.app_factory
    assert app.is_compose_hash_allowed(COMPOSE) and not app.is_compose_hash_allowed(OTHER_COMPOSE)
    assert app.is_device_allowed(DEVICE) and not app.get_allow_any_device()
    assert app.get_require_tcb_up_to_date()


def test_every_reason_an_app_is_refused(
    w3: Web3,
    governance: GovernanceClient,
    as_signer: AsSigner,
    app: AppAuthClient,
    app_id: str,
    deployment: Deployment,
) -> None:
    def reason(info: AppBootInfo) -> str:
        decision = governance.is_app_allowed(info)
        assert decision.allowed is (decision.reason == "")
        return decision.reason

    assert reason(boot(app_id)) == ""
    assert reason(boot("0x" + "ab" * 20)) == "App not registered"
    assert reason(boot(app_id, os_image_hash=b"\x1b" * 32)) == "OS image is not allowed"
    assert reason(boot(app_id, tcb_status="OutOfDate")) == "TCB status not allowed: OutOfDate"
    governance.send_block_advisory("INTEL-SA-00837")
    assert (
        reason(boot(app_id, advisory_ids=("INTEL-SA-00001", "INTEL-SA-00837")))
        == "Advisory blocked: INTEL-SA-00837"
    )
    assert reason(boot(app_id, compose_hash=OTHER_COMPOSE)) == "Compose hash not allowed"
    assert reason(boot(app_id, device_id=b"\xdf" * 32)) == "Device not allowed"
    governance.send_allow_tcb_status("SWHardeningNeeded")
    assert reason(boot(app_id, tcb_status="SWHardeningNeeded")) == "TCB status is not up to date"
    app.send_set_require_tcb_up_to_date(False)
    assert reason(boot(app_id, tcb_status="SWHardeningNeeded")) == ""
    app.send_set_allow_any_device(True)
    assert reason(boot(app_id, device_id=b"\xdf" * 32)) == ""
    # The controller answers only for itself (the governance always passes the same app_id).
    assert app.is_app_allowed(boot(deployment.app_factory)).reason == (
        "App id does not match this controller"
    )
    # A registered contract that is no IAppAuth: the call fails, the answer is a refusal.
    as_signer(9).send_register_app(deployment.app_factory)
    assert reason(boot(deployment.app_factory)) == "App controller call failed"
    governance.send_remove_app(app_id)
    assert reason(boot(app_id)) == "App removed by governance"


def test_revocation_takes_effect_in_the_next_block(
    governance: GovernanceClient, app: AppAuthClient, app_id: str
) -> None:
    revoked = app.send_remove_compose_hash(COMPOSE)
    assert governance.is_app_allowed(boot(app_id), block=revoked.block - 1).allowed is True
    assert governance.is_app_allowed(boot(app_id), block=revoked.block).reason == (
        "Compose hash not allowed"
    )
    removed = governance.send_remove_app(app_id)
    assert removed.block == revoked.block + 1
    assert governance.is_app_allowed(boot(app_id), block=removed.block).reason == (
        "App removed by governance"
    )


@pytest.mark.parametrize(
    ("method", "value"),
    [
        ("send_add_compose_hash", OTHER_COMPOSE),
        ("send_remove_compose_hash", COMPOSE),
        ("send_add_device", DEVICE),
        ("send_remove_device", DEVICE),
        ("send_set_allow_any_device", True),
        ("send_set_require_tcb_up_to_date", False),
        ("send_set_env_signer", "0x" + "01" * 20),
        ("send_set_env_version", 1),
        ("send_transfer_ownership", "0x" + "01" * 20),
        ("send_set_live_revocation_blocks", 4),
    ],
)
def test_only_the_app_owner_changes_the_app(
    w3: Web3, app_id: str, signers: list[Transactor], method: str, value: object
) -> None:
    stranger = AppAuthClient(w3, app_id, signers[0])  # even the governance owner
    with pytest.raises(TransactionFailed, match=f"NotOwner\\(caller={signers[0].address}\\)"):
        getattr(stranger, method)(value)


def test_app_registry_rules(
    w3: Web3,
    governance: GovernanceClient,
    as_signer: AsSigner,
    app_id: str,
    signers: list[Transactor],
    deployment: Deployment,
) -> None:
    with pytest.raises(TransactionFailed, match=f"NotAContract\\(appId={signers[5].address}\\)"):
        governance.send_register_app(signers[5].address)
    with pytest.raises(TransactionFailed, match="AppAlreadyRegistered"):
        as_signer(9).send_register_app(app_id)
    with pytest.raises(TransactionFailed, match="NotOwner"):
        as_signer(1).send_remove_app(app_id)
    governance.send_remove_app(app_id)
    with pytest.raises(TransactionFailed, match="AppNotRegistered"):
        governance.send_remove_app(app_id)
    with pytest.raises(TransactionFailed, match="AppRemovedByOwner"):
        as_signer(1).send_register_app(app_id)
    governance.send_register_app(app_id)  # only the owner brings it back
    assert governance.get_app_status(app_id) is AppStatus.REGISTERED
    with pytest.raises(TransactionFailed, match="NotOwner"):
        as_signer(1).send_set_app_factory(app_id)


def test_malformed_app_inputs_name_the_argument(w3: Web3, factory: AppFactoryClient) -> None:
    with pytest.raises(InvalidInput, match=r"compose_hashes\[1\]: expected 32 bytes, got 3"):
        factory.send_deploy_app(compose_hashes=[COMPOSE, b"abc"])
    with pytest.raises(InvalidInput, match="app_id: expected 20 bytes, got 19"):
        AppBootInfo(app_id="0x" + "ab" * 19, compose_hash=COMPOSE)
    with pytest.raises(InvalidInput, match="compose_hash: expected 32 bytes, got 0"):
        AppBootInfo(app_id="0x" + "ab" * 20, compose_hash=b"")
    with pytest.raises(InvalidInput, match="app_id: not hex"):
        AppAuthClient(w3, "0xzz" + "ab" * 19)


def test_env_signer_starts_as_the_owner_and_env_versions_only_grow(
    app: AppAuthClient, signers: list[Transactor]
) -> None:
    """The guest agent accepts an env signed by `envSigner` for exactly `envVersion`: a
    version that could go down would let an old env (revoked secrets) start the app again."""
    assert app.get_env_signer() == signers[1].address and app.get_env_version() == 0
    receipt = app.send_set_env_version(3)
    assert app.event_args(receipt, "EnvVersionSet") == [{"version": 3}]
    for stale in (3, 2):
        refused = f"EnvVersionNotIncreasing\\(current=3, proposed={stale}\\)"
        with pytest.raises(TransactionFailed, match=refused):
            app.send_set_env_version(stale)
    assert app.get_env_version() == 3
    receipt = app.send_set_env_signer(signers[4].address)
    assert app.event_args(receipt, "EnvSignerSet") == [{"signer": signers[4].address}]
    assert app.get_env_signer() == signers[4].address
    with pytest.raises(InvalidInput, match="version: must be 1..2\\*\\*64-1, got 0"):
        app.send_set_env_version(0)


def test_live_revocation_is_off_until_the_owner_opts_in(app: AppAuthClient) -> None:
    """Agents read `liveRevocationBlocks` to decide whether to re-derive while running."""
    assert app.get_live_revocation_blocks() == 0  # dstack's behaviour by default
    receipt = app.send_set_live_revocation_blocks(10)
    assert app.event_args(receipt, "LiveRevocationSet") == [{"blocks": 10}]
    assert app.get_live_revocation_blocks() == 10
    receipt = app.send_set_live_revocation_blocks(0)
    assert app.event_args(receipt, "LiveRevocationSet") == [{"blocks": 0}]
    assert app.get_live_revocation_blocks() == 0
    for bad in (-1, 2**64):
        with pytest.raises(InvalidInput, match="blocks: must be 0 \\(off\\) to 2\\*\\*64-1"):
            app.send_set_live_revocation_blocks(bad)


def test_dstack_kms_release_is_off_until_the_owner_opts_in(
    w3: Web3, app: AppAuthClient, app_id: str, signers: list[Transactor]
) -> None:
    """Only the app owner lets one KMS node assemble the app's keys (the dstack-compatible
    endpoint, docs/dstack-kms.md); opting out is the same single call, and both are events."""
    assert app.get_dstack_kms_release() is False
    stranger = AppAuthClient(w3, app_id, signers[2])
    with pytest.raises(TransactionFailed, match="NotOwner"):
        stranger.send_set_dstack_kms_release(True)
    assert app.get_dstack_kms_release() is False
    receipt = app.send_set_dstack_kms_release(True)
    assert app.event_args(receipt, "DstackKmsReleaseSet") == [{"allowed": True}]
    assert app.get_dstack_kms_release() is True
    receipt = app.send_set_dstack_kms_release(False)
    assert app.event_args(receipt, "DstackKmsReleaseSet") == [{"allowed": False}]
    assert app.get_dstack_kms_release() is False
