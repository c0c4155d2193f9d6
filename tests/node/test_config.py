"""Node configuration: TOML, environment overrides, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.config import load_config
from node.errors import ConfigError

GOOD = """
data_dir = "/var/lib/tkms"
tee = "simulator"

[chain]
rpc_url = "http://127.0.0.1:8545"
governance = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
max_head_age_seconds = 30

[listen]
public = "127.0.0.1:7000"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(text)
    return path


def test_file_values_and_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD), environ={})
    assert cfg.data_dir == Path("/var/lib/tkms")
    assert cfg.chain.max_head_age_seconds == 30.0
    assert cfg.chain.poll_interval_seconds == 0.5
    assert cfg.chain.confirmations == 2
    assert cfg.listen.public == "127.0.0.1:7000"
    assert cfg.sealing == "file"
    assert cfg.admin_socket == Path("/var/lib/tkms/admin.sock")


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    env = {"TKMS_CHAIN_RPC_URL": "http://10.0.0.1:8545", "TKMS_LIMITS_BURST_PER_APP": "7"}
    cfg = load_config(write(tmp_path, GOOD), environ=env)
    assert cfg.chain.rpc_url == "http://10.0.0.1:8545"
    assert cfg.limits.burst_per_app == 7


def test_relative_paths_are_relative_to_the_file_and_stored_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_dir = tmp_path / "etc"
    config_dir.mkdir()
    text = GOOD.replace('"/var/lib/tkms"', '"state"') + 'admin_socket = "run/admin.sock"\n'
    (config_dir / "node.toml").write_text(text)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(Path("../etc/node.toml"), environ={})
    assert cfg.data_dir == config_dir / "state"
    assert cfg.admin_socket == config_dir / "run" / "admin.sock"
    # From the environment, a relative data_dir is relative to the working directory.
    env = {"TKMS_DATA_DIR": "here"}
    assert load_config(Path("../etc/node.toml"), environ=env).data_dir == elsewhere / "here"


def test_environment_only(tmp_path: Path) -> None:
    env = {
        "TKMS_DATA_DIR": str(tmp_path),
        "TKMS_CHAIN_RPC_URL": "http://127.0.0.1:1",
        "TKMS_CHAIN_GOVERNANCE": "0x" + "ab" * 20,
    }
    assert load_config(None, environ=env).data_dir == tmp_path


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        (
            GOOD.replace('tee = "simulator"', 'tee = "sgx"'),
            {},
            "config tee: must be one of simulator, tdx",
        ),
        (
            GOOD.replace("max_head_age_seconds = 30", "max_head_age_seconds = -1"),
            {},
            "chain.max_head_age_seconds: must be greater than zero",
        ),
        (
            GOOD.replace('"0x5FbDB2315678afecb367f032d93F642f64180aa3"', '"0x1234"'),
            {},
            "chain.governance: must be a 0x-prefixed 20-byte hex address, got '0x1234'",
        ),
        (
            GOOD.replace('rpc_url = "http://127.0.0.1:8545"', ""),
            {},
            r"chain.rpc_url: required \(set it in the file or TKMS_CHAIN_RPC_URL\)",
        ),
        (GOOD + "\n[chain2]\nx = 1\n", {}, "config chain2: unknown section"),
        (GOOD.replace("[listen]", '[listen]\npublick = "x"'), {}, "listen.publick: unknown key"),
        (
            GOOD,
            {"TKMS_LISTEN_PUBLIC": "nohost"},
            "listen.public: must be host:port, got 'nohost' "
            "\\(from environment variable TKMS_LISTEN_PUBLIC\\)",
        ),
        (
            GOOD,
            {"TKMS_LIMITS_BURST_PER_APP": "lots"},
            "limits.burst_per_app: must be a whole number",
        ),
        ("data_dir = [", {}, "not valid TOML"),
    ],
)
def test_errors_name_the_key_and_source(
    tmp_path: Path, text: str, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text), environ=env)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "absent.toml", environ={})


def test_endpoint_string_round_trip_and_errors() -> None:
    from node.endpoints import Endpoints
    from node.errors import InvalidRequest

    e = Endpoints.parse("kms=127.0.0.1:7001,peer=127.0.0.1:7002")
    assert (e.kms, e.peer) == ("127.0.0.1:7001", "127.0.0.1:7002")
    assert Endpoints.parse(str(e)) == e
    for bad, message in [
        ("kms=127.0.0.1:7001", "missing peer"),
        ("kms=a:1,peer=b:2,kms=c:3", "kms given twice"),
        ("kms=a:1,web=b:2", "unknown part 'web=b:2'"),
        ("kms=a:0,peer=b:2", "port in 1..65535"),
        ("kms=a:1,peer=b", "expected HOST:PORT"),
        ("", "1..256 bytes"),
    ]:
        with pytest.raises(InvalidRequest, match=message):
            Endpoints.parse(bad)


def test_the_confirmation_depth_is_a_small_whole_number(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    assert load_config(path, environ={"TKMS_CHAIN_CONFIRMATIONS": "0"}).chain.confirmations == 0
    assert load_config(path, environ={"TKMS_CHAIN_CONFIRMATIONS": "12"}).chain.confirmations == 12
    for bad in ("-1", "65", "2.5", "two"):
        with pytest.raises(ConfigError, match=r"chain.confirmations: must be a whole number"):
            load_config(path, environ={"TKMS_CHAIN_CONFIRMATIONS": bad})


SEVERAL = GOOD.replace(
    'rpc_url = "http://127.0.0.1:8545"',
    'rpc_urls = ["http://127.0.0.1:8545", "https://eth.example/v3/KEY", "http://10.0.0.3:8545"]',
)
SEVERAL_ENV = "http://127.0.0.1:8545,http://10.0.0.2:8545,http://10.0.0.3:8545"


def test_one_rpc_url_is_one_endpoint_trusted_alone(tmp_path: Path) -> None:
    chain = load_config(write(tmp_path, GOOD), environ={}).chain
    assert chain.endpoints == ("http://127.0.0.1:8545",) and chain.quorum == 1


def test_several_rpc_urls_need_a_majority_or_the_quorum_given(tmp_path: Path) -> None:
    chain = load_config(write(tmp_path, SEVERAL), environ={}).chain
    assert len(chain.endpoints) == 3 and chain.quorum == 2
    all_three = SEVERAL.replace(
        "max_head_age_seconds = 30", "max_head_age_seconds = 30\nrpc_quorum = 3"
    )
    assert load_config(write(tmp_path, all_three), environ={}).chain.quorum == 3
    assert load_config(write(tmp_path, SEVERAL), environ={}).chain.rpc_max_lag_blocks == 2
    lag = {"TKMS_CHAIN_RPC_MAX_LAG_BLOCKS": "10"}
    assert load_config(write(tmp_path, SEVERAL), environ=lag).chain.rpc_max_lag_blocks == 10
    env = {"TKMS_CHAIN_RPC_URLS": "http://a.example:1, http://b.example:2"}
    from_env = load_config(write(tmp_path, SEVERAL), environ=env).chain
    assert from_env.endpoints == ("http://a.example:1", "http://b.example:2")
    assert from_env.quorum == 2  # 2 of 2: a majority of two is both
    # The rpc_url `tkms node join` wrote may stay, as one of the list.
    joined = load_config(write(tmp_path, GOOD), environ={"TKMS_CHAIN_RPC_URLS": SEVERAL_ENV})
    assert joined.chain.endpoints == tuple(SEVERAL_ENV.split(",")) and joined.chain.quorum == 2


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        (
            SEVERAL.replace("max_head_age", 'rpc_url = "https://x.example/KEY"\nmax_head_age'),
            {},
            r"chain.rpc_url: https://x.example/\*\*\* is not one of chain.rpc_urls: give "
            "rpc_urls alone",
        ),
        (
            SEVERAL.replace("max_head_age", "rpc_quorum = 1\nmax_head_age"),
            {},
            "chain.rpc_quorum: must be more than half of the 3 rpc_urls and at most all of "
            "them, got 1",
        ),
        (
            SEVERAL.replace("max_head_age", "rpc_quorum = 4\nmax_head_age"),
            {},
            "chain.rpc_quorum: must be more than half of the 3 rpc_urls",
        ),
        (
            GOOD.replace("max_head_age", "rpc_quorum = 1\nmax_head_age"),
            {},
            "chain.rpc_quorum: needs chain.rpc_urls",
        ),
        (GOOD, {"TKMS_CHAIN_RPC_MAX_LAG_BLOCKS": "3"}, "chain.rpc_max_lag_blocks: needs chain"),
        (SEVERAL, {"TKMS_CHAIN_RPC_MAX_LAG_BLOCKS": "-1"}, "chain.rpc_max_lag_blocks: must be"),
        (
            SEVERAL,
            {"TKMS_CHAIN_RPC_URLS": "http://a.example:1,http://a.example:1"},
            "chain.rpc_urls: lists an endpoint twice",
        ),
        (
            SEVERAL.replace('"http://10.0.0.3:8545"', '"ftp://10.0.0.3"'),
            {},
            "chain.rpc_urls: ",
        ),
        (SEVERAL.replace("rpc_urls = [", "rpc_urls = [] #"), {}, "chain.rpc_urls: must be a "),
    ],
)
def test_bad_rpc_endpoints_are_refused_by_name(
    tmp_path: Path, text: str, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text), environ=env)
