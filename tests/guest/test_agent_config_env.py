"""Agent configuration parsing and start-up errors (the env envelope: test_env_envelope.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from guest.agent import AgentStartError, vm_description
from guest.config import ConfigError, load_config
from guest.env import EnvError, parse_assignments
from guest.vmconfig import cloud_names
from mpc import Scalar
from node.tee import SIMULATED_OS_IMAGE
from tests.guest.agent_harness import APP_ID, boot, make_config

SECRET = Scalar.from_bytes((987654321).to_bytes(32, "big"), "test secret")
GOOD = """
rpc = "http://127.0.0.1:8545"
governance = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
app_id = "0x1111111111111111111111111111111111111111"
network_fingerprint = "f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0"
compose = "compose.json"
env_file = "env.enc"
env_out = "run/env.json"
generation = 2
"""


def test_config_resolves_paths_next_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "agent.toml").write_text(GOOD)
    config = load_config(tmp_path / "agent.toml")
    assert config.app_id == APP_ID and config.generation == 2 and config.tee == "simulator"
    assert config.compose == tmp_path / "compose.json"
    assert config.env_file == tmp_path / "env.enc" and config.instance_id is None
    assert config.env_out == tmp_path / "run" / "env.json"
    assert config.network_fingerprint == bytes.fromhex("f0" * 32)
    assert config.timeout == 10.0 and config.wait_for_network == 0.0


def test_a_relative_config_path_gives_absolute_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The testnet once wrote a relative socket into agent.toml and the agent resolved it
    # against the config's directory a second time: paths are made absolute once.
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "agent.toml").write_text(GOOD + 'socket = "dstack.sock"\n')
    monkeypatch.chdir(tmp_path)
    config = load_config(Path("app/agent.toml"))
    assert config.socket == tmp_path / "app" / "dstack.sock"
    assert config.compose.is_absolute() and config.compose == tmp_path / "app" / "compose.json"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ('app_id = "0x1111111111111111111111111111111111111111"', 'app_id = "0x11"'),
            "app_id must be 20 bytes, got 1",
        ),
        (
            ('app_id = "0x1111111111111111111111111111111111111111"', 'app_id = "zz"'),
            "app_id is not hex",
        ),
        (("generation = 2", "generation = -1"), "'generation' must be an integer >= 0"),
        (("generation = 2", 'tee = "sgx"'), "'tee' must be simulator or tdx"),
        (("generation = 2", "colour = 1"), "unknown keys colour"),
        (('compose = "compose.json"', ""), "'compose' is required"),
        (("rpc =", "rpc = = "), "not valid TOML"),
        (("generation = 2", "timeout = 0"), "'timeout' must be a positive number"),
        (("generation = 2", "timeout = nan"), "'timeout' must be a finite number"),
        (("generation = 2", "wait_for_network = -1"), "'wait_for_network' must be a finite"),
        (("generation = 2", "wait_for_network = inf"), "'wait_for_network' must be a finite"),
        (("generation = 2", "wait_for_network = true"), "'wait_for_network' must be a finite"),
        (('network_fingerprint = "f0', 'instance_id_x = "f0'), "unknown keys instance_id_x"),
        (('network_fingerprint = "f0f0', 'network_fingerprint = "f0'), "must be 32 bytes, got 31"),
        (('env_out = "run/env.json"', ""), "'env_out' is required with 'env_file'"),
        (
            ('env_out = "run/env.json"', 'env_out = "env.json"'),
            "'env_out' must not be in env_file's directory",
        ),
    ],
)
def test_bad_config_is_refused_with_the_key_named(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    (tmp_path / "agent.toml").write_text(GOOD.replace(*change))
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path / "agent.toml")


def test_parse_assignments() -> None:
    text = ["# comment", "", "A=1", "B = two=2", "export_ok=x"]
    assert parse_assignments(text) == {"A": "1", "B": " two=2", "export_ok": "x"}
    with pytest.raises(EnvError, match="entry 1 is not NAME=VALUE"):
        parse_assignments(["no equals sign"])


@pytest.mark.parametrize(
    "url",
    [
        "https://rpc.example/v3/key",
        "http://127.0.0.1:8545",
        "http://localhost:1",
        "http://[::1]:8545",
    ],
)
def test_https_or_loopback_rpc_is_accepted(tmp_path: Path, url: str) -> None:
    (tmp_path / "agent.toml").write_text(GOOD.replace("http://127.0.0.1:8545", url))
    assert load_config(tmp_path / "agent.toml").rpc == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://10.0.0.7:8545", "plain http:// to 10.0.0.7 can be read and rewritten"),
        ("http://rpc.example", "plain http:// to rpc.example"),
        ("ws://127.0.0.1:8545", "must be an https:// URL"),
        ("127.0.0.1:8545", "must be an https:// URL"),
    ],
)
def test_plain_http_rpc_across_a_network_is_refused(tmp_path: Path, url: str, message: str) -> None:
    """Security III G-01: whoever answers the agent's JSON-RPC chooses what it reads; over
    plain http anyone on the path can answer."""
    (tmp_path / "agent.toml").write_text(GOOD.replace("http://127.0.0.1:8545", url))
    with pytest.raises(ConfigError, match=f"config key 'rpc' {message}"):
        load_config(tmp_path / "agent.toml")


def test_missing_compose_file_is_named(tmp_path: Path) -> None:
    config = make_config(tmp_path, compose=tmp_path / "missing.json")
    with pytest.raises(AgentStartError, match="cannot read compose file .*missing.json"):
        boot(config, SECRET)


def test_cli_errors_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import tkms

    assert tkms.main(["guest", "agent", "--config", str(tmp_path / "none.toml")]) == 1
    assert "cannot read config" in capsys.readouterr().err
    (tmp_path / "agent.toml").write_text(GOOD)
    assert tkms.main(["guest", "agent", "--config", str(tmp_path / "agent.toml")]) == 1
    assert "no socket path" in capsys.readouterr().err
    args = ["guest", "encrypt-env", "--rpc", "http://127.0.0.1:1", "--governance", "0x" + "00" * 20]
    args += ["--compose-hash", "cc" * 32, "--anvil-account", "0"]
    assert tkms.main([*args, "--app-id", "0x12", "--env", "A=1", "--out", "x"]) == 1
    assert "--app-id must be 20 bytes" in capsys.readouterr().err
    assert tkms.main([*args, "--app-id", "11" * 20, "--out", "x"]) == 1
    assert "nothing to encrypt" in capsys.readouterr().err


def test_tdx_needs_the_os_image_hash(tmp_path: Path) -> None:
    (tmp_path / "agent.toml").write_text(GOOD + 'tee = "tdx"\n')
    with pytest.raises(
        ConfigError, match="'os_image_hash' .or a 'vm_config' that has it. is required"
    ):
        load_config(tmp_path / "agent.toml")
    (tmp_path / "agent.toml").write_text(
        GOOD + 'tee = "tdx"\nos_image_hash = "' + "ab" * 32 + '"\n'
    )
    assert load_config(tmp_path / "agent.toml").os_image_hash == bytes.fromhex("ab" * 32)


def test_configured_os_image_is_measured(tmp_path: Path) -> None:
    image = bytes.fromhex("cd" * 32)
    agent = boot(make_config(tmp_path, os_image_hash=image), SECRET)
    measured = [e for e in agent.provider.event_log() if e.event == "os-image-hash"]
    assert [e.event_payload for e in measured] == [image]


def test_agent_waits_for_a_committee_then_names_what_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import guest.cli
    import guest.committee
    import tkms

    asked: list[float] = []

    def no_committee(governance: object, generation: int, *, fingerprint: bytes) -> object:
        asked.append(time.monotonic())
        raise guest.committee.CommitteeError("no active generation")

    monkeypatch.setattr(guest.committee, "committee_from_chain", no_committee)
    monkeypatch.setattr(guest.cli, "governance_client", lambda rpc, address: object())
    (tmp_path / "agent.toml").write_text(
        GOOD + f'socket = "{tmp_path / "s.sock"}"\nwait_for_network = 0.6\n'
    )
    assert tkms.main(["guest", "agent", "--config", str(tmp_path / "agent.toml")]) == 1
    out = capsys.readouterr()
    assert "waiting for a KMS committee on chain (no active generation)" in out.out
    assert "no usable KMS committee on chain: no active generation" in out.err
    assert len(asked) >= 2 and asked[-1] - asked[0] >= 0.5


def test_vm_config_file_is_reported_verbatim_and_names_the_image(tmp_path: Path) -> None:
    image = "ef" * 32
    vm_config = '{"os_image_hash":"' + image + '","cpu_count":8,"memory_size":17179869184}'
    (tmp_path / "sys-config.json").write_text(json.dumps({"vm_config": vm_config, "pccs_url": ""}))
    agent = boot(make_config(tmp_path, vm_config=tmp_path / "sys-config.json"), SECRET)
    assert agent.vm_config == vm_config
    measured = [e for e in agent.provider.event_log() if e.event == "os-image-hash"]
    assert [e.event_payload for e in measured] == [bytes.fromhex(image)]
    (tmp_path / "vm.json").write_text(vm_config)
    again = boot(make_config(tmp_path, vm_config=tmp_path / "vm.json"), SECRET)
    assert again.vm_config == vm_config and again.os_image == bytes.fromhex(image)


@pytest.mark.parametrize(
    ("content", "extra", "message"),
    [
        ("[1]", {}, "must be a JSON object"),
        ("{nope", {}, "is not JSON"),
        ('{"os_image_hash": "abcd"}', {}, "os_image_hash must be 32 bytes of hex"),
        (
            '{"os_image_hash": "' + "ab" * 32 + '"}',
            {"os_image_hash": bytes.fromhex("cd" * 32)},
            "names OS image abab.*but os_image_hash is cdcd",
        ),
        ('{"cpu_count": 1}', {"tee": "tdx"}, "has no os_image_hash and the config sets none"),
    ],
)
def test_a_bad_vm_config_stops_the_agent_with_the_reason(
    tmp_path: Path, content: str, extra: dict[str, object], message: str
) -> None:
    (tmp_path / "vm.json").write_text(content)
    config = make_config(tmp_path, APP_ID, vm_config=tmp_path / "vm.json", **extra)
    with pytest.raises(AgentStartError, match=message):
        vm_description(config, bytes(32))


def test_simulated_vm_config_has_dstacks_fields(tmp_path: Path) -> None:
    agent = boot(make_config(tmp_path), SECRET)
    doc = json.loads(agent.vm_config)
    assert doc["os_image_hash"] == agent.os_image.hex() == SIMULATED_OS_IMAGE.hex()
    assert {"cpu_count", "memory_size", "num_gpus", "hotplug_off", "spec_version"} <= set(doc)
    assert agent.cloud == ("", "")


def test_cloud_names_come_from_dmi_on_a_real_td(tmp_path: Path) -> None:
    (tmp_path / "sys_vendor").write_text("Google\n")
    (tmp_path / "product_name").write_text("Google Compute Engine\n")
    assert cloud_names("tdx", tmp_path) == ("Google", "Google Compute Engine")
    assert cloud_names("simulator", tmp_path) == ("", "")
    assert cloud_names("tdx", tmp_path / "absent") == ("", "")
