"""The CVM side: the KMS client (fan-out, verify, combine) and the dstack-compatible guest agent.

Names are imported on first use (PEP 562), so `tkms guest ...` loads only what it runs.
"""

from __future__ import annotations

import importlib
from typing import Any

_MODULES = {
    "Agent": "guest.agent",
    "AgentConfig": "guest.config",
    "AgentServer": "guest.agent_server",
    "AppKeyRequest": "guest.kms_client",
    "Committee": "guest.kms_client",
    "CommitteeError": "guest.committee",
    "EnvEnvelope": "guest.env",
    "UntrustedNetwork": "guest.committee",
    "chain_fingerprint": "guest.committee",
    "link_generation": "guest.links",
    "publish_kms_root": "guest.kms_root",
    "IssuedAppKey": "guest.kms_client",
    "DerivationError": "guest.kms_client",
    "KmsClient": "guest.kms_client",
    "SignedStatement": "guest.kms_client",
    "committee_from_chain": "guest.committee",
    "open_env": "guest.env",
    "parse_envelope": "guest.env",
    "seal_env": "guest.env",
    "load_config": "guest.config",
    "measure_app_boot": "guest.measure",
    "start_agent": "guest.agent",
}

__all__ = sorted(_MODULES)


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module 'guest' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
