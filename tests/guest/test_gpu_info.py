"""GPU evidence in the guest agent: verified at start, measured as dstack's `gpu-attestation`
RTMR3 event, served by GpuInfo, and bound back to the quote by `attest.verify_gpu_info`.

The evidence is NVIDIA's public H100 sample (tests/data/attestation/nvtrust) in NVIDIA's own
evidence document; the agent, its HTTP server and the TDX simulator are the real ones.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest

from attest import (
    EventLogEntry,
    GpuEvidenceError,
    SimulatorAllowed,
    make_quote_verifier,
    verify_evidence,
    verify_gpu_info,
)
from attest.providers import SimulatorProvider
from guest.agent import Agent, AgentStartError
from guest.config import load_config
from mpc import Scalar
from tests.attest.gpu_data import NONCE, NOW, REPORT, evidence_text
from tests.guest.agent_harness import boot, make_config, serving

SECRET = Scalar.from_bytes((987654321).to_bytes(32, "big"), "test secret")
TEXT = evidence_text()


def gpu_info(socket: Path) -> str:
    transport = httpx.HTTPTransport(uds=str(socket))
    with httpx.Client(transport=transport, base_url="http://x") as c:
        reply = c.post("/GpuInfo", content=b"{}", headers={"Content-Type": "application/json"})
    assert reply.status_code == 200
    value = reply.json()["attestation"]
    assert isinstance(value, str)
    return value


def replayed_log(agent: Agent) -> Sequence[EventLogEntry]:
    """What a relying party has after verifying the agent's quote and replaying its log."""
    quote, log = agent.evidence(os.urandom(64))
    verify = make_quote_verifier(now=NOW, policy=SimulatorAllowed())
    verify_evidence(quote, log, verify_quote=verify, binding=None)
    return agent.provider.event_log()


@pytest.fixture(scope="module")
def gpu_agent(tmp_path_factory: pytest.TempPathFactory) -> Agent:
    tmp = tmp_path_factory.mktemp("gpu")
    (tmp / "gpu-evidence.json").write_text(TEXT)
    return boot(make_config(tmp, gpu_evidence=tmp / "gpu-evidence.json"), SECRET)


def test_gpu_info_returns_the_measured_evidence(gpu_agent: Agent, tmp_path: Path) -> None:
    with serving(gpu_agent, tmp_path / "dstack.sock"):
        served = gpu_info(tmp_path / "dstack.sock")
    assert served == TEXT  # byte for byte: the hash is over these exact bytes
    events = [e for e in gpu_agent.provider.event_log() if e.is_runtime_event]
    names = [e.event for e in events]
    # dstack's order: after compose-hash, before instance-id, before system-ready
    assert names.index("compose-hash") < names.index("gpu-attestation") < names.index("instance-id")
    payload = json.loads(events[names.index("gpu-attestation")].event_payload)
    assert payload["evidence_sha256"] == hashlib.sha256(TEXT.encode()).hexdigest()
    assert payload["devices"] == 1 and payload["nonce"] == NONCE.hex()
    verified = verify_gpu_info(served, replayed_log(gpu_agent), now=NOW)
    assert verified is not None and verified.devices[0].driver_version == "550.90.07"


def test_a_relying_party_refuses_evidence_the_quote_does_not_bind(gpu_agent: Agent) -> None:
    entries = replayed_log(gpu_agent)
    with pytest.raises(GpuEvidenceError, match="hashes to .*the measured gpu-attestation event"):
        verify_gpu_info(TEXT.rstrip("\n"), entries, now=NOW)  # one byte less
    with pytest.raises(GpuEvidenceError, match="hashes to"):
        verify_gpu_info("", entries, now=NOW)  # the GPU evidence withheld
    with pytest.raises(GpuEvidenceError, match=r"for nonce 931d8dd0.*not 0101"):
        verify_gpu_info(TEXT, entries, now=NOW, expected_nonce=b"\x01" * 32)


def test_without_gpu_evidence_gpu_info_is_empty_and_binds_nothing(tmp_path: Path) -> None:
    agent = boot(make_config(tmp_path), SECRET)
    with serving(agent, tmp_path / "dstack.sock"):
        assert gpu_info(tmp_path / "dstack.sock") == ""
    entries = replayed_log(agent)
    assert verify_gpu_info("", entries, now=NOW) is None
    with pytest.raises(GpuEvidenceError, match="no gpu-attestation event before system-ready"):
        verify_gpu_info(TEXT, entries, now=NOW)  # evidence shown beside a GPU-less quote


def test_event_log_shapes_a_relying_party_refuses() -> None:
    provider = SimulatorProvider()
    text_hash = hashlib.sha256(TEXT.encode()).hexdigest()
    payload = {"devices": 1, "evidence_sha256": text_hash, "nonce": NONCE.hex()}
    provider.extend_rtmr(3, "gpu-attestation", json.dumps(payload).encode())
    provider.extend_rtmr(3, "gpu-attestation", json.dumps(payload).encode())
    with pytest.raises(GpuEvidenceError, match="2 gpu-attestation events before system-ready"):
        verify_gpu_info(TEXT, provider.event_log(), now=NOW)
    provider = SimulatorProvider()
    provider.extend_rtmr(3, "gpu-attestation", json.dumps({**payload, "devices": 2}).encode())
    with pytest.raises(GpuEvidenceError, match="the event says 2 devices, the evidence has 1"):
        verify_gpu_info(TEXT, provider.event_log(), now=NOW)
    provider = SimulatorProvider()
    provider.extend_rtmr(3, "gpu-attestation", b"not json")
    with pytest.raises(GpuEvidenceError, match="no hex evidence_sha256 and nonce"):
        verify_gpu_info(TEXT, provider.event_log(), now=NOW)
    provider = SimulatorProvider()  # an app may emit one after system-ready: it counts for nothing
    provider.extend_rtmr(3, "system-ready", b"")
    provider.extend_rtmr(3, "gpu-attestation", json.dumps(payload).encode())
    with pytest.raises(GpuEvidenceError, match="no gpu-attestation event before system-ready"):
        verify_gpu_info(TEXT, provider.event_log(), now=NOW)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (evidence_text(report=REPORT[:-1] + bytes([REPORT[-1] ^ 1])).encode(), "signature"),
        (evidence_text(nonce=bytes(32)).encode(), r"answers nonce 931d8dd0"),
        (b'{"nonce": "00"}', r"must be 32 bytes as hex \(nonce\)"),
        (b"\xff\xfe", "is not UTF-8 \\(byte offset 0\\)"),
    ],
    ids=["tampered", "other-nonce", "malformed", "not-utf8"],
)
def test_the_agent_refuses_to_start_with_bad_gpu_evidence(
    tmp_path: Path, content: bytes, match: str
) -> None:
    path = tmp_path / "gpu-evidence.json"
    path.write_bytes(content)
    with pytest.raises(AgentStartError, match=rf"gpu_evidence {path}.*{match}"):
        boot(make_config(tmp_path, gpu_evidence=path), SECRET)
    with pytest.raises(AgentStartError, match="cannot read gpu_evidence"):
        boot(make_config(tmp_path, gpu_evidence=tmp_path / "missing.json"), SECRET)


def test_the_config_key_names_a_file_beside_the_config(tmp_path: Path) -> None:
    (tmp_path / "app-compose.json").write_text("{}")
    config = tmp_path / "agent.toml"
    config.write_text(
        'rpc = "http://127.0.0.1:8545"\ngovernance = "0x' + "22" * 20 + '"\n'
        'network_fingerprint = "' + "f0" * 32 + '"\napp_id = "' + "11" * 20 + '"\n'
        'compose = "app-compose.json"\ngpu_evidence = "gpu/evidence.json"\n'
    )
    assert load_config(config).gpu_evidence == tmp_path / "gpu" / "evidence.json"
