"""Test configuration: hypothesis profiles and the location of the vendored attestation data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

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
