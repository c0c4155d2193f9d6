"""`tkms verify` refuses unusable input with exit 2 and a message naming what is wrong."""

from __future__ import annotations

import pytest

import tkms
from tests.verify.knot import free_udp_tcp_port

GOVERNANCE = "0x" + "11" * 20


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = tkms.main(["verify", *argv])
    return code, capsys.readouterr().err


def test_malformed_targets_are_refused_before_anything_is_asked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rpc = ["--rpc", "http://127.0.0.1:1", "--governance", GOVERNANCE]
    code, err = run(capsys, "app", "0x1234", "--endpoint", "localhost:443", *rpc)
    assert code == 2 and "APP_ID must be 20 bytes of hex, got 2" in err
    code, err = run(capsys, "domain", "app.example:http", *rpc)
    assert code == 2 and "is not NAME[:PORT]" in err
    code, err = run(capsys, "node", "0xnothex", *rpc)
    assert code == 2 and "ADDRESS" in err


def test_no_chain_at_the_rpc_is_unusable_input(capsys: pytest.CaptureFixture[str]) -> None:
    rpc = f"http://127.0.0.1:{free_udp_tcp_port()}"
    code, err = run(capsys, "domain", "app.example", "--rpc", rpc, "--governance", GOVERNANCE)
    assert code == 2 and "cannot read governance" in err
