"""Regressions found by `python -m tests.fuzz --target config-node`."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.config import load_config
from node.errors import ConfigError


def test_config_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_bytes(b'data_dir = "d\xb0"\n')
    with pytest.raises(ConfigError, match=r"node\.toml: not UTF-8 text \(byte offset 13\)"):
        load_config(path, {})


def test_config_path_that_is_a_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read: Is a directory"):
        load_config(tmp_path, {})


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN"])
@pytest.mark.parametrize(
    "variable",
    [
        "TKMS_CHAIN_MAX_HEAD_AGE_SECONDS",
        "TKMS_CHAIN_POLL_INTERVAL_SECONDS",
        "TKMS_LIMITS_REQUESTS_PER_SECOND_PER_APP",
    ],
)
def test_non_finite_numbers_are_refused(tmp_path: Path, variable: str, value: str) -> None:
    # A NaN head-age bound compares false with every age: the node would never fail closed.
    environ = {
        "TKMS_DATA_DIR": str(tmp_path),
        "TKMS_CHAIN_RPC_URL": "http://127.0.0.1:8545",
        "TKMS_CHAIN_GOVERNANCE": "0x" + "42" * 20,
        variable: value,
    }
    with pytest.raises(ConfigError, match=f"must be a finite number, got '{value}'"):
        load_config(None, environ)
