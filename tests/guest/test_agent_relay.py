"""The agent's cross-check with a relay (config `relay`, guest/relay_check.py): it refuses to
start with a committee the network did not sign, and fails closed when the relay cannot
deliver. The relay here is a plain HTTP server in the test (it is never trusted: what it
serves must verify); the relay network itself: tests/relay/."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import tkms
from contracts import GenerationStatus
from guest.config import ConfigError, load_config
from guest.serving import ChainReading, GenerationState
from mpc.group import Scalar
from mpc.revocation import NODE_REMOVED, RevocationNotice, notice_envelope
from tests.guest.test_agent_config_env import GOOD
from tests.relay.signing import FORGER, NETWORK, sign
from tests.relay.test_check import _committee

MANIFEST = NETWORK.manifest(6)
CONFIG = GOOD.replace("generation = 2", "generation = 0").replace(
    'network_fingerprint = "' + "f0" * 32, 'network_fingerprint = "' + NETWORK.fingerprint.hex()
)


#: What the fake relay serves for /v1/revocations (envelopes), per test.
NOTICES: list[bytes] = []
#: The retiring generation 1's manifest the fake relay serves for `generation=1`, per test.
RETIRING = NETWORK.manifest(4, generation=1)


@pytest.fixture
def relay() -> Iterator[tuple[str, list[bytes]]]:
    served = [NETWORK.envelope(MANIFEST)]
    NOTICES.clear()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = served[0]
            if "generation=1" in self.path:
                body = NETWORK.envelope(RETIRING)
            if self.path.startswith("/v1/revocations"):
                notices = [{"envelope": n.hex()} for n in NOTICES]
                body = json.dumps({"epoch": MANIFEST.epoch, "notices": notices}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", served
    server.shutdown()
    server.server_close()


def _run(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    committee: Any,
    url: str,
    *,
    retiring: Any = None,
) -> int:
    """Start the agent against an RPC showing `committee` (and `retiring`, the committee of the
    previous generation, inside its rotation window)."""
    import guest.agent
    import guest.cli
    import guest.committee
    import guest.watch

    def stop(*args: object, **kwargs: object) -> object:
        raise guest.agent.AgentStartError("stopped after the committee check")

    def shown(governance: object, generation: int = 0, **kwargs: object) -> Any:
        return retiring if retiring is not None and generation == 1 else committee

    monkeypatch.setattr(guest.committee, "committee_from_chain", shown)
    monkeypatch.setattr(guest.cli, "governance_client", lambda rpc, address: object())
    monkeypatch.setattr(guest.agent, "start_agent", stop)
    # The chain watch's first reading: one generation, no rotation, no live revocation.
    # With `retiring`: generation 1 is retiring, its window open.
    window = {1: GenerationState(GenerationStatus.RETIRING, 100)} if retiring is not None else {}
    reading = ChainReading(1, committee.network.generation, 0, window)

    class FirstReading:
        def __init__(self, *args: object) -> None:
            pass

        def read(self, watched: object) -> ChainReading:
            return reading

    monkeypatch.setattr(guest.watch, "RpcChain", FirstReading)
    (tmp_path / "agent.toml").write_text(
        CONFIG + f'socket = "{tmp_path / "s.sock"}"\nrelay = "{url}"\nrelay_wait = 0.5\n'
    )
    return tkms.main(["guest", "agent", "--config", str(tmp_path / "agent.toml")])


def test_the_signed_committee_passes_the_check(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    relay: tuple[str, list[bytes]],
) -> None:
    assert _run(tmp_path, monkeypatch, _committee(MANIFEST), relay[0]) == 1
    out = capsys.readouterr()
    assert "committee of epoch 6 matches the network-signed manifest" in out.out
    assert "stopped after the committee check" in out.err


def test_a_committee_from_a_lying_rpc_stops_the_agent(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    relay: tuple[str, list[bytes]],
) -> None:
    honest = _committee(MANIFEST)
    evil = dataclasses.replace(honest.members[0], endpoint="6.6.6.6:443")
    lying = dataclasses.replace(honest, members=(evil, *honest.members[1:]))
    assert _run(tmp_path, monkeypatch, lying, relay[0]) == 1
    err = capsys.readouterr().err
    assert "refusing the committee from http://127.0.0.1:8545" in err
    assert "member 1: " in err and "6.6.6.6:443" in err and "RPC is lying" in err
    assert "stopped after the committee check" not in err


def test_a_relay_that_forges_or_is_down_stops_the_agent(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    relay: tuple[str, list[bytes]],
) -> None:
    url, served = relay
    served[0] = NETWORK.envelope(MANIFEST, signer=FORGER)
    assert _run(tmp_path, monkeypatch, _committee(MANIFEST), url) == 1
    err = capsys.readouterr().err
    assert "cannot cross-check the committee with the relay" in err and "does not verify" in err
    assert _run(tmp_path, monkeypatch, _committee(MANIFEST), "http://127.0.0.1:1") == 1
    assert "cannot cross-check the committee with the relay" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('relay = "ftp://x:1"', "must be http://HOST:PORT"),
        ('relay = "http://relay.example"', "must be http://HOST:PORT"),
        ('relay = "http://r:1"\ngeneration = 2', "needs generation = 0"),
    ],
)
def test_bad_relay_settings_are_refused(tmp_path: Path, line: str, message: str) -> None:
    config = CONFIG.replace("generation = 0\n", "") if "generation = 2" in line else CONFIG
    (tmp_path / "agent.toml").write_text(config + line + "\n")
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path / "agent.toml")


def test_a_relay_setting_is_read(tmp_path: Path) -> None:
    (tmp_path / "agent.toml").write_text(CONFIG + 'relay = "http://10.0.0.9:8080"\n')
    config = load_config(tmp_path / "agent.toml")
    assert config.relay == "http://10.0.0.9:8080" and config.relay_wait == 2.0


def _revoke(member: int, signer: Scalar | None = None) -> bytes:
    notice = RevocationNotice(
        chain_id=MANIFEST.chain_id,
        governance=MANIFEST.governance,
        generation=MANIFEST.generation,
        epoch=MANIFEST.epoch,
        kind=NODE_REMOVED,
        subject=MANIFEST.members[member - 1].address,
    )
    secret = NETWORK.secrets[1] if signer is None else signer
    return notice_envelope(notice, sign(secret, notice.encode()))


def test_revoked_members_are_not_used_and_forged_revocations_are_not_believed(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    relay: tuple[str, list[bytes]],
) -> None:
    NOTICES.extend([_revoke(3), _revoke(1, FORGER)])
    assert _run(tmp_path, monkeypatch, _committee(MANIFEST), relay[0]) == 1
    out = capsys.readouterr()
    assert "not using revoked members [3]" in out.out
    NOTICES.append(_revoke(2))  # t = 2 of 3: one member left is not enough
    assert _run(tmp_path, monkeypatch, _committee(MANIFEST), relay[0]) == 1
    err = capsys.readouterr().err
    assert "revoked members [2, 3] of epoch 6: 1 left, fewer than the threshold 2" in err


def test_the_retiring_generation_is_checked_too(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    relay: tuple[str, list[bytes]],
) -> None:
    # Relays keep each unretired generation's newest manifest: an agent starting in a rotation
    # window checks generation 1's committee against generation 1's manifest and starts ...
    retiring = _committee(RETIRING)
    assert _run(tmp_path, monkeypatch, _committee(MANIFEST), relay[0], retiring=retiring) == 1
    out = capsys.readouterr()
    assert "generation 1's committee of epoch 4 matches the network-signed manifest" in out.out
    assert "generation 2's committee of epoch 6 matches the network-signed manifest" in out.out
    assert "stopped after the committee check" in out.err
    # ... but not when the RPC lies about the retiring generation's committee.
    evil = dataclasses.replace(retiring.members[1], endpoint="6.6.6.6:443")
    lying = dataclasses.replace(retiring, members=(retiring.members[0], evil, retiring.members[2]))
    assert _run(tmp_path, monkeypatch, _committee(MANIFEST), relay[0], retiring=lying) == 1
    err = capsys.readouterr().err
    assert "refusing the retiring generation's committee: epoch 4's committee from the RPC" in err
    assert "member 2: " in err and "6.6.6.6:443" in err and "RPC is lying" in err
    assert "stopped after the committee check" not in err
