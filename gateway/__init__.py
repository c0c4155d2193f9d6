"""The attested TLS gateway (DESIGN §8): CVM registration, SNI routing, certificates from ACME.

The gateway is an attested app itself: its keys come from the KMS network through its own
guest agent. Names are imported on first use (PEP 562).
"""

from __future__ import annotations

import importlib
from typing import Any

_MODULES: dict[str, str] = {}

__all__ = sorted(_MODULES)


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module 'gateway' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
