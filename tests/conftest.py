"""Test configuration: hypothesis profiles, the location of the vendored attestation data, and
the honest chain of the RPC quorum tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, settings

if TYPE_CHECKING:
    from tests.contracts.lying_chain import Honest

settings.register_profile(
    "ci",
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
settings.register_profile("dev", max_examples=25, deadline=None)
settings.register_profile("long", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

REPO_ROOT = Path(__file__).resolve().parent.parent


#: Real TDX quotes, collateral and event logs, vendored with their provenance (see its README).
ATTESTATION_DATA = REPO_ROOT / "tests" / "data" / "attestation"


@pytest.fixture(scope="session")
def attestation_data() -> Path:
    """`tests/data/attestation`: part of the checkout, so tests that use it never skip."""
    assert ATTESTATION_DATA.is_dir(), f"vendored test data missing: {ATTESTATION_DATA}"
    return ATTESTATION_DATA


@pytest.fixture(scope="module")
def honest_base() -> Iterator[Honest]:
    """An anvil with governance and one app, for RPC quorum tests (tests/contracts/lying_chain)."""
    from tests.contracts.lying_chain import honest_chain

    with honest_chain() as chain:
        yield chain


@pytest.fixture
def honest(honest_base: Honest) -> Iterator[Honest]:
    """`honest_base` between a snapshot and its revert: each test sees the chain unchanged."""
    with honest_base.snapshot() as chain:
        yield chain
