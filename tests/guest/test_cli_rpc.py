"""`tkms guest encrypt-env --rpc`: credentials in the URL are never printed, plain http to
another host is refused (the RPC chooses the network secrets are encrypted to)."""

from __future__ import annotations

from pathlib import Path

import pytest

import tkms
from contracts import free_port


def encrypt_env(rpc: str, out: Path) -> list[str]:
    return ["guest", "encrypt-env", "--app-id", "0x" + "aa" * 20, "--rpc", rpc, "--governance",
            "0x" + "bb" * 20, "--compose-hash", "0x" + "cc" * 32, "--env", "A=1",
            "--out", str(out)]  # fmt: skip


def test_rpc_credentials_are_not_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    url = f"http://apiuser:SECRET-TOKEN@127.0.0.1:{port}/v3/KEY123"
    assert tkms.main(encrypt_env(url, tmp_path / "env.enc")) == 1
    assert capsys.readouterr().err == (
        f"tkms encrypt-env: --rpc: no Ethereum JSON-RPC answer at http://***@127.0.0.1:{port}/***\n"
    )
    assert not (tmp_path / "env.enc").exists()


def test_plain_http_to_another_host_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()  # 0.0.0.0 is not loopback; the connection is refused at once
    assert tkms.main(encrypt_env(f"http://0.0.0.0:{port}", tmp_path / "env.enc")) == 1
    error = capsys.readouterr().err
    assert "--rpc plain http:// to 0.0.0.0 can be read and rewritten on the way" in error
    assert not (tmp_path / "env.enc").exists()
