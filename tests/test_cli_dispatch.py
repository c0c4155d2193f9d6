"""The `tkms` entry point only dispatches: no command prints help and exits 2."""

from __future__ import annotations

from pathlib import Path

import pytest

import tkms


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert tkms.main([]) == 2
    assert "usage: tkms" in capsys.readouterr().out


def test_unknown_command_is_an_argparse_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        tkms.main(["no-such-command"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_app_encrypt_env_is_the_guest_command() -> None:
    from guest.env_cli import encrypt_env_command

    args = tkms.build_parser("app").parse_args(
        [
            "app",
            "encrypt-env",
            "--app-id",
            "0x" + "aa" * 20,
            "--rpc",
            "http://127.0.0.1:1",
            "--governance",
            "0x" + "bb" * 20,
            "--compose-hash",
            "cc" * 32,
            "--anvil-account",
            "0",
            "--env",
            "A=1",
            "--out",
            "env.enc",
        ]
    )
    assert args.handler is encrypt_env_command
    assert args.env == ["A=1"] and args.out == Path.cwd() / "env.enc"  # made absolute once


def test_chain_link_generation_is_the_guest_command() -> None:
    from guest.links import link_generation_command

    args = tkms.build_parser("chain").parse_args(
        [
            "chain",
            "link-generation",
            "--rpc",
            "http://127.0.0.1:1",
            "--governance",
            "0x" + "bb" * 20,
            "--anvil-account",
            "0",
            "--generation",
            "2",
        ]
    )
    assert args.handler is link_generation_command and args.generation == 2


def test_chain_publish_kms_root_is_the_guest_command() -> None:
    from guest.kms_root import publish_kms_root_command

    args = tkms.build_parser("chain").parse_args(
        [
            "chain",
            "publish-kms-root",
            "--rpc",
            "http://127.0.0.1:1",
            "--governance",
            "0x" + "bb" * 20,
            "--anvil-account",
            "0",
            "--generation",
            "1",
        ]
    )
    assert args.handler is publish_kms_root_command and args.generation == 1
