"""TEE providers behind one interface (design §4.6): `tdx` for hardware, `simulator` otherwise;
and the INSECURE SEV-SNP simulator (`SnpSimulator`) for dev chains."""

from attest.providers._base import ProviderError, TeeProvider
from attest.providers._simulator import SimulatorConfig, SimulatorProvider
from attest.providers._simulator_ca import simulator_root_ca, simulator_root_public_key_der
from attest.providers._simulator_verify import (
    SimulatorAllowed,
    policy_allows_simulator,
    verify_simulator_quote,
)
from attest.providers._snp_simulator import (
    SIMULATED_SNP_MEASUREMENT,
    SIMULATED_SNP_POLICY,
    SnpSimulator,
    is_simulator_snp_chain,
    verify_simulator_snp_report,
)
from attest.providers._tdx import ConfigfsKernel, TdxProvider

__all__ = [
    "SIMULATED_SNP_MEASUREMENT",
    "SIMULATED_SNP_POLICY",
    "SnpSimulator",
    "is_simulator_snp_chain",
    "verify_simulator_snp_report",
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
