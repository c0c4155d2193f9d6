"""Every fuzz target by name, and the hook that adds one.

Adding a target (e.g. the gateway's ClientHello parser) is one `Target` in a module of this
package plus one `register_target` call; see `targets_gateway.py`.
"""

from __future__ import annotations

from tests.fuzz import (
    targets_attest,
    targets_config,
    targets_gateway,
    targets_gpu,
    targets_grpc,
    targets_guest,
    targets_mpc,
    targets_snp,
)
from tests.fuzz.runner import Target

TARGETS: dict[str, Target] = {}


def register_target(target: Target) -> Target:
    """Add `target` to `TARGETS`; a second target with the same name is a bug."""
    if target.name in TARGETS:
        raise ValueError(f"fuzz target {target.name!r} is registered twice")
    TARGETS[target.name] = target
    return target


for _module in (
    targets_attest,
    targets_mpc,
    targets_grpc,
    targets_guest,
    targets_config,
    targets_gateway,
    targets_snp,
    targets_gpu,
):
    for _target in _module.TARGETS:
        register_target(_target)
