"""NVIDIA's public H100 sample evidence (tests/data/attestation/nvtrust/) as test inputs."""

from __future__ import annotations

import base64
import json

from tests.conftest import ATTESTATION_DATA

D = ATTESTATION_DATA / "nvtrust"
REPORT = bytes.fromhex((D / "hopperAttestationReport.txt").read_text().strip())
CHAIN = (D / "hopperCertChain.txt").read_bytes()
#: The nonce nvtrust's own tests request (LocalGPUTest.py: client.set_nonce(...)).
NONCE = bytes.fromhex("931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb")
#: A time inside every certificate of the chain (the latest starts 2022-03-01).
NOW = 1796532548


def evidence_text(
    report: bytes = REPORT, chain: bytes = CHAIN, nonce: bytes = NONCE, gpus: int = 1
) -> str:
    """NVIDIA's evidence document (the attestation SDK's remote-verifier payload shape)."""
    item = {
        "evidence": base64.b64encode(report).decode(),
        "certificate": base64.b64encode(chain).decode(),
    }
    doc = {"nonce": nonce.hex(), "arch": "HOPPER", "evidence_list": [item] * gpus}
    return json.dumps(doc, indent=2) + "\n"
