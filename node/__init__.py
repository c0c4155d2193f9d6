"""The KMS node daemon: config, sealed storage, chain watcher, epochs, gRPC services (design §6).

Names are imported on first use (PEP 562), so `tkms node init` does not load grpc or web3.
"""

from __future__ import annotations

import importlib
from typing import Any

_MODULES = {
    "Authorizer": "node.authz",
    "ChainView": "node.chainview",
    "ChainWatcher": "node.chainview",
    "Committee": "node.chainview",
    "ConfigError": "node.errors",
    "EpochManager": "node.epochs",
    "EpochStatus": "node.epochs",
    "Health": "node.health",
    "InvalidRequest": "node.errors",
    "Journal": "node.journal",
    "KmsServicer": "node.kms_service",
    "Node": "node.daemon",
    "NodeConfig": "node.config",
    "NodeError": "node.errors",
    "NodeIdentity": "node.identity",
    "NodeRecord": "node.chainview",
    "NotReady": "node.errors",
    "PeerClient": "node.peer_client",
    "PeerServer": "node.peer_service",
    "PolicyDenied": "node.errors",
    "ShareStore": "node.shares",
    "StorageError": "node.errors",
    "load_config": "node.config",
    "make_node_certificate": "node.ratls",
    "run_node_blocking": "node.daemon",
    "verify_peer_certificate": "node.ratls",
}

__all__ = sorted(_MODULES)


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module 'node' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
