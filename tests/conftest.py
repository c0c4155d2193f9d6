"""Shared test configuration: hypothesis profiles and the location of ../shared test data."""

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


def shared_dir() -> Path | None:
    """The project's `../shared` folder (or $TKMS_SHARED), or None where it is absent."""
    candidate = Path(os.environ.get("TKMS_SHARED", REPO_ROOT.parent / "shared"))
    return candidate if candidate.is_dir() else None


@pytest.fixture(scope="session")
def attestation_data() -> Path:
    """`../shared/testdata/attestation`; tests that need it skip where it is absent."""
    base = shared_dir()
    if base is None or not (base / "testdata" / "attestation").is_dir():
        pytest.skip("../shared/testdata/attestation is absent (set TKMS_SHARED to its parent)")
    return base / "testdata" / "attestation"
