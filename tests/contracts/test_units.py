"""Pure units: hex arguments, revert decoding, accounts, the anvil launcher, the public surface."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys

import pytest
from eth_abi.abi import encode
from eth_utils.abi import function_signature_to_4byte_selector
from hypothesis import given
from hypothesis import strategies as st

import contracts
from contracts import (
    Anvil,
    AnvilError,
    InvalidInput,
    TransactionFailed,
    anvil_account,
    decode_revert,
)
from contracts._hexargs import parse_address, parse_bytes32, parse_hex, parse_private_key
from contracts.cli import register


@pytest.mark.parametrize(
    ("value", "length", "message"),
    [
        ("0x123", None, r"--x: odd number of hex digits \(3\)"),
        ("0xgg", None, "--x: not hex: '0xgg'"),
        ("0x" + "00" * 31, 32, "--x: expected 32 bytes, got 31"),
    ],
)
def test_hex_errors_name_the_argument(value: str, length: int | None, message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as exc:
        parse_hex("--x", value, length)
    assert exc.value.argument == "--x"


def test_hex_accepts_bare_and_prefixed() -> None:
    assert parse_bytes32("h", "ab" * 32) == parse_bytes32("h", "0X" + "AB" * 32) == b"\xab" * 32


def test_addresses_are_checksummed_and_bad_checksums_refused() -> None:
    lower = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"
    assert parse_address("a", lower) == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
    with pytest.raises(InvalidInput, match="a: bad EIP-55 checksum"):
        parse_address("a", "0xF39fd6e51aad88F6F4ce6aB8827279cffFb92266")


@pytest.mark.parametrize("key", ["0x" + "1f" * 31 + "zz", "0x" + "1f" * 31 + "2"])
def test_a_malformed_private_key_is_never_echoed(key: str) -> None:
    with pytest.raises(InvalidInput, match="--private-key: (not hex|odd number)") as exc:
        parse_private_key("--private-key", key)
    assert "1f1f" not in str(exc.value)


def test_zero_private_key_is_refused() -> None:
    with pytest.raises(InvalidInput, match="--private-key: the zero key is not a private key"):
        parse_private_key("--private-key", "00" * 32)


def test_anvil_accounts_are_the_well_known_ones() -> None:
    assert anvil_account(0).address == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
    with pytest.raises(InvalidInput, match="anvil_account: must be 0..9, got 10"):
        anvil_account(10)


def test_custom_errors_string_errors_and_panics_decode() -> None:
    selector = function_signature_to_4byte_selector("NotOwner(address)")
    data = selector + encode(["address"], ["0x" + "11" * 20])
    revert = decode_revert("0x" + data.hex())
    assert revert is not None
    assert str(revert) == "NotOwner(caller=0x1111111111111111111111111111111111111111)"
    message = decode_revert(bytes.fromhex("08c379a0") + encode(["string"], ["nope"]))
    assert message is not None and str(message) == "nope"
    panic = decode_revert(bytes.fromhex("4e487b71") + encode(["uint256"], [0x11]))
    assert panic is not None and panic.args["meaning"] == "arithmetic overflow or underflow"
    unknown = decode_revert("0xdeadbeef")
    assert unknown is not None and str(unknown) == "unknown error 0xdeadbeef"
    assert decode_revert("0x") is None


def test_transaction_failed_carries_hash_and_error_name() -> None:
    selector = function_signature_to_4byte_selector("NotOwner(address)")
    revert = decode_revert(selector + encode(["address"], ["0x" + "11" * 20]))
    mined = TransactionFailed("addOsImage", revert, "0xabc")
    assert str(mined).startswith("addOsImage: transaction 0xabc reverted: NotOwner(")
    assert (mined.tx_hash, mined.error_name) == ("0xabc", "NotOwner")
    estimated = TransactionFailed("addOsImage", None, None)
    assert "reverted before sending: reverted without a reason" in str(estimated)
    assert "nothing changed" in estimated.diagnostics()


def test_anvil_starts_on_a_free_port_and_stops_cleanly() -> None:
    with Anvil() as chain:
        process = chain.process
        assert process is not None and chain.port > 0
        assert chain.web3().eth.chain_id == 31337
    assert process.poll() is not None
    with pytest.raises(AnvilError, match="anvil is not running"):
        _ = chain.rpc_url


def test_a_taken_port_is_reported() -> None:
    with (
        Anvil() as first,
        pytest.raises(AnvilError, match=f"port {first.port} on 127.0.0.1 is in use"),
    ):
        Anvil(port=first.port).start()


@given(st.binary(max_size=64))
def test_hex_round_trips(data: bytes) -> None:
    assert parse_hex("x", data.hex()) == parse_hex("x", "0x" + data.hex().upper()) == data


def test_a_missing_anvil_binary_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TKMS_ANVIL", "/nonexistent/anvil")
    with pytest.raises(AnvilError, match="TKMS_ANVIL=/nonexistent/anvil: no such file"):
        Anvil().start()


def test_register_refuses_unknown_command_names() -> None:
    parser = argparse.ArgumentParser()
    with pytest.raises(ValueError, match="registers 'chain', 'app' and 'keeper', not 'node'"):
        register(parser.add_subparsers(), "node", "help")


def test_public_surface_is_exactly_all_and_every_name_resolves() -> None:
    assert set(contracts._MODULES) == set(contracts.__all__)
    for name in contracts.__all__:
        assert getattr(contracts, name) is getattr(
            importlib.import_module(contracts._MODULES[name]), name
        )
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = contracts.nope


def test_building_the_cli_does_not_import_web3() -> None:
    code = (
        "import argparse, sys, contracts.cli as c\n"
        "sub = argparse.ArgumentParser().add_subparsers()\n"
        "c.register(sub, 'chain', ''); c.register(sub, 'app', '')\n"
        "print('web3' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("failure", "status", "message"),
    [
        (ConnectionError("connection refused"), 1, "error: JSON-RPC failure: connection refused"),
        (InvalidInput("--app-id", "expected 20 bytes, got 2"), 2, "error: --app-id: expected 20"),
        (TransactionFailed("f", None, "0xab"), 1, "error: f: transaction 0xab reverted"),
    ],
)
def test_command_errors_become_one_line_and_an_exit_status(
    capsys: pytest.CaptureFixture[str], failure: Exception, status: int, message: str
) -> None:
    from contracts._commands import guarded

    def handler(args: argparse.Namespace) -> int:
        raise failure

    assert guarded(handler)(argparse.Namespace()) == status
    assert capsys.readouterr().err.startswith(message)
