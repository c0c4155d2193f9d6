"""Governance contracts: Solidity sources, compiled artifacts, typed chain client (DESIGN §5).

    w3 = Web3(HTTPProvider(url))
    owner = Transactor(w3, account_from_key(key))
    deployment = deploy(owner, allow_simulator=True)
    governance = GovernanceClient(w3, deployment.governance, owner)
    decision = governance.is_app_allowed(AppBootInfo(app_id=..., compose_hash=...), block=n)

Reads are `get_*`/`is_*` with `block=`; writes are `send_*` and raise TransactionFailed with
the transaction hash and the decoded custom error.
"""

from contracts._accounts import ANVIL_MNEMONIC, account_from_key, anvil_account
from contracts._anvil import Anvil, find_anvil, free_port
from contracts._app import IAPP_AUTH_INTERFACE_ID, AppAuthClient, AppFactoryClient
from contracts._artifacts import ARTIFACT_DIR, SOURCE_DIR, Artifact, load_artifact
from contracts._audit import AuditEvent, AuditReader, read_history
from contracts._deploy import DEFAULT_RETIREMENT_WINDOW, Deployment, deploy
from contracts._governance import GovernanceClient
from contracts._tx import Receipt, Transactor, decode_revert
from contracts._types import (
    AppBootInfo,
    AppStatus,
    AuthDecision,
    BlockRef,
    ComplaintInfo,
    DealInfo,
    EpochInfo,
    EpochKind,
    EpochStatus,
    FailReason,
    GenerationInfo,
    GenerationStatus,
    NodeInfo,
    NodeStatus,
    Phase,
)
from contracts.errors import (
    AnvilError,
    ArtifactError,
    CallReverted,
    ChainError,
    CompileError,
    ContractsError,
    InvalidInput,
    Revert,
    TransactionFailed,
)

__all__ = [
    "ANVIL_MNEMONIC",
    "ARTIFACT_DIR",
    "DEFAULT_RETIREMENT_WINDOW",
    "IAPP_AUTH_INTERFACE_ID",
    "SOURCE_DIR",
    "Anvil",
    "AnvilError",
    "AppAuthClient",
    "AppBootInfo",
    "AppFactoryClient",
    "AppStatus",
    "Artifact",
    "ArtifactError",
    "AuditEvent",
    "AuditReader",
    "AuthDecision",
    "BlockRef",
    "CallReverted",
    "ChainError",
    "CompileError",
    "ComplaintInfo",
    "ContractsError",
    "DealInfo",
    "Deployment",
    "EpochInfo",
    "EpochKind",
    "EpochStatus",
    "FailReason",
    "GenerationInfo",
    "GenerationStatus",
    "GovernanceClient",
    "InvalidInput",
    "NodeInfo",
    "NodeStatus",
    "Phase",
    "Receipt",
    "Revert",
    "TransactionFailed",
    "Transactor",
    "account_from_key",
    "anvil_account",
    "decode_revert",
    "deploy",
    "find_anvil",
    "free_port",
    "load_artifact",
    "read_history",
]
