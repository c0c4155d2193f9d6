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
