"""Governance contracts: Solidity sources, compiled artifacts, typed chain client (design §5).

    w3 = Web3(HTTPProvider(url))
    owner = Transactor(w3, account_from_key(key))
    deployment = deploy(owner, allow_simulator=True)
    governance = GovernanceClient(w3, deployment.governance, owner)
    decision = governance.is_app_allowed(AppBootInfo(app_id=..., compose_hash=...), block=n)

Reads are `get_*`/`is_*` with `block=`; writes are `send_*` and raise TransactionFailed with
the transaction hash and the decoded custom error.
Names load on first use (PEP 562), so `tkms attest ...`, which builds every package's parser,
never pays for importing web3.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from contracts._accounts import ANVIL_MNEMONIC, account_from_key, anvil_account
    from contracts._anvil import Anvil, find_anvil, free_port
    from contracts._app import IAPP_AUTH_INTERFACE_ID, AppAuthClient, AppFactoryClient
    from contracts._artifacts import ARTIFACT_DIR, SOURCE_DIR, Artifact, load_artifact
    from contracts._audit import AuditEvent, AuditReader, read_history
    from contracts._bls import BlsVerifierClient, deploy_bls_verifier
    from contracts._codecheck import is_deployed, predict_app_id, runtime_matches
    from contracts._deploy import DEFAULT_RETIREMENT_WINDOW, Deployment, deploy
    from contracts._devchain import DEV_CHAIN_IDS, pin_chain_id, require_dev_chain
    from contracts._epoch_calls import MIN_PHASE_BLOCKS, PHASE_NAMES
    from contracts._events import ChainEvent, fetch_events
    from contracts._governance import GovernanceClient
    from contracts._preflight import EpochPlan, parse_phases, plan_epoch
    from contracts._quorum import Divergence, QuorumProvider
    from contracts._register import RegisteredApp, predicted_app_id, register_app
    from contracts._rpcurl import insecure_rpc_warning, redact_in, redact_url
    from contracts._state import GovernanceState, describe_epoch, read_state
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
        RefreshSchedule,
        node_registration_hash,
    )
    from contracts.errors import (
        AnvilError,
        ArtifactError,
        CallReverted,
        ChainError,
        CompileError,
        ContractsError,
        InvalidInput,
        NoQuorum,
        Refused,
        Revert,
        TransactionFailed,
        UnexpectedContract,
    )

_MODULES: dict[str, str] = {
    "EpochPlan": "contracts._preflight",
    "parse_phases": "contracts._preflight",
    "plan_epoch": "contracts._preflight",
    "GovernanceState": "contracts._state",
    "describe_epoch": "contracts._state",
    "read_state": "contracts._state",
    "ANVIL_MNEMONIC": "contracts._accounts",
    "ARTIFACT_DIR": "contracts._artifacts",
    "Anvil": "contracts._anvil",
    "AnvilError": "contracts.errors",
    "AppAuthClient": "contracts._app",
    "AppBootInfo": "contracts._types",
    "AppFactoryClient": "contracts._app",
    "AppStatus": "contracts._types",
    "Artifact": "contracts._artifacts",
    "ArtifactError": "contracts.errors",
    "AuditEvent": "contracts._audit",
    "AuditReader": "contracts._audit",
    "AuthDecision": "contracts._types",
    "BlockRef": "contracts._types",
    "BlsVerifierClient": "contracts._bls",
    "CallReverted": "contracts.errors",
    "ChainEvent": "contracts._events",
    "ChainError": "contracts.errors",
    "CompileError": "contracts.errors",
    "ComplaintInfo": "contracts._types",
    "ContractsError": "contracts.errors",
    "DEFAULT_RETIREMENT_WINDOW": "contracts._deploy",
    "DEV_CHAIN_IDS": "contracts._devchain",
    "DealInfo": "contracts._types",
    "Divergence": "contracts._quorum",
    "Deployment": "contracts._deploy",
    "EpochInfo": "contracts._types",
    "MIN_PHASE_BLOCKS": "contracts._epoch_calls",
    "PHASE_NAMES": "contracts._epoch_calls",
    "EpochKind": "contracts._types",
    "EpochStatus": "contracts._types",
    "FailReason": "contracts._types",
    "GenerationInfo": "contracts._types",
    "GenerationStatus": "contracts._types",
    "GovernanceClient": "contracts._governance",
    "IAPP_AUTH_INTERFACE_ID": "contracts._app",
    "InvalidInput": "contracts.errors",
    "NoQuorum": "contracts.errors",
    "NodeInfo": "contracts._types",
    "NodeStatus": "contracts._types",
    "Phase": "contracts._types",
    "QuorumProvider": "contracts._quorum",
    "Receipt": "contracts._tx",
    "Refused": "contracts.errors",
    "RefreshSchedule": "contracts._types",
    "RegisteredApp": "contracts._register",
    "Revert": "contracts.errors",
    "SOURCE_DIR": "contracts._artifacts",
    "TransactionFailed": "contracts.errors",
    "Transactor": "contracts._tx",
    "UnexpectedContract": "contracts.errors",
    "account_from_key": "contracts._accounts",
    "anvil_account": "contracts._accounts",
    "decode_revert": "contracts._tx",
    "deploy": "contracts._deploy",
    "deploy_bls_verifier": "contracts._bls",
    "fetch_events": "contracts._events",
    "find_anvil": "contracts._anvil",
    "free_port": "contracts._anvil",
    "insecure_rpc_warning": "contracts._rpcurl",
    "is_deployed": "contracts._codecheck",
    "load_artifact": "contracts._artifacts",
    "node_registration_hash": "contracts._types",
    "pin_chain_id": "contracts._devchain",
    "predict_app_id": "contracts._codecheck",
    "predicted_app_id": "contracts._register",
    "read_history": "contracts._audit",
    "redact_in": "contracts._rpcurl",
    "redact_url": "contracts._rpcurl",
    "register_app": "contracts._register",
    "require_dev_chain": "contracts._devchain",
    "runtime_matches": "contracts._codecheck",
}

__all__ = [
    "EpochPlan",
    "parse_phases",
    "plan_epoch",
    "GovernanceState",
    "describe_epoch",
    "read_state",
    "ANVIL_MNEMONIC",
    "ARTIFACT_DIR",
    "DEFAULT_RETIREMENT_WINDOW",
    "DEV_CHAIN_IDS",
    "IAPP_AUTH_INTERFACE_ID",
    "MIN_PHASE_BLOCKS",
    "PHASE_NAMES",
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
    "BlsVerifierClient",
    "CallReverted",
    "ChainEvent",
    "ChainError",
    "CompileError",
    "ComplaintInfo",
    "ContractsError",
    "DealInfo",
    "Deployment",
    "Divergence",
    "EpochInfo",
    "EpochKind",
    "EpochStatus",
    "FailReason",
    "GenerationInfo",
    "GenerationStatus",
    "GovernanceClient",
    "InvalidInput",
    "NoQuorum",
    "NodeInfo",
    "NodeStatus",
    "Phase",
    "QuorumProvider",
    "Receipt",
    "RefreshSchedule",
    "Refused",
    "RegisteredApp",
    "Revert",
    "TransactionFailed",
    "Transactor",
    "UnexpectedContract",
    "account_from_key",
    "anvil_account",
    "decode_revert",
    "deploy",
    "deploy_bls_verifier",
    "fetch_events",
    "find_anvil",
    "free_port",
    "insecure_rpc_warning",
    "is_deployed",
    "load_artifact",
    "node_registration_hash",
    "pin_chain_id",
    "predict_app_id",
    "predicted_app_id",
    "read_history",
    "redact_in",
    "redact_url",
    "register_app",
    "require_dev_chain",
    "runtime_matches",
]


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module 'contracts' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
