"""TEE providers behind one interface (design §4.6): `tdx` for hardware, `simulator` otherwise."""

from attest.providers._base import ProviderError, TeeProvider
from attest.providers._simulator import SimulatorConfig, SimulatorProvider
from attest.providers._simulator_ca import simulator_root_ca, simulator_root_public_key_der
from attest.providers._simulator_verify import (
    SimulatorAllowed,
    policy_allows_simulator,
    verify_simulator_quote,
)
from attest.providers._tdx import ConfigfsKernel, TdxProvider

__all__ = [
    "ConfigfsKernel",
    "ProviderError",
    "SimulatorAllowed",
    "SimulatorConfig",
    "SimulatorProvider",
    "TdxProvider",
    "TeeProvider",
    "policy_allows_simulator",
    "simulator_root_ca",
    "simulator_root_public_key_der",
    "verify_simulator_quote",
]
