"""Regressions found by `python -m tests.fuzz` in the guest agent's config and HTTP API."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509

from guest.api import BadRequest, get_tls_key
from guest.config import ConfigError, load_config
from mpc import Scalar
from tests.guest.agent_harness import boot, make_config


def test_agent_config_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_bytes(b'rpc = "\xdb"\n')
    with pytest.raises(ConfigError, match=r"agent\.toml is not UTF-8 text \(byte offset 7\)"):
        load_config(path)


@pytest.mark.parametrize("field", ["not_before", "not_after"])
@pytest.mark.parametrize("value", [9223372036854775808, 2**70, 253402300800])
def test_tls_key_times_past_year_9999_are_bad_requests(
    tmp_path: Path, field: str, value: int
) -> None:
    agent = boot(make_config(tmp_path), Scalar(5))
    with pytest.raises(BadRequest, match=f"field '{field}' must be seconds since the epoch"):
        get_tls_key(agent, {field: value})


def test_tls_key_time_at_year_9999_is_accepted(tmp_path: Path) -> None:
    agent = boot(make_config(tmp_path), Scalar(5))
    reply = get_tls_key(agent, {"not_after": 253402300799})
    assert "BEGIN CERTIFICATE" in reply["certificate_chain"][0]


@pytest.mark.parametrize(
    "body",
    [
        {"not_before": 1_800_000_000, "not_after": 1_700_000_000},
        {"not_after": 1_000_000},  # before the default start (now - 5 minutes)
    ],
)
def test_tls_key_validity_ending_before_it_starts_is_a_bad_request(
    tmp_path: Path, body: dict[str, int]
) -> None:
    agent = boot(make_config(tmp_path), Scalar(5))
    with pytest.raises(BadRequest, match=r"field 'not_after' \(.*\) is before 'not_before'"):
        get_tls_key(agent, body)


def test_tls_key_starting_in_year_9999_ends_at_the_last_x509_instant(tmp_path: Path) -> None:
    agent = boot(make_config(tmp_path), Scalar(5))
    reply = get_tls_key(agent, {"not_before": 253402300000})
    cert = x509.load_pem_x509_certificate(reply["certificate_chain"][0].encode())
    assert cert.not_valid_after_utc.year == 9999
    assert cert.not_valid_after_utc.timestamp() == 253402300799


def test_tls_key_subject_longer_than_a_common_name_is_a_bad_request(tmp_path: Path) -> None:
    agent = boot(make_config(tmp_path), Scalar(5))
    with pytest.raises(BadRequest, match="field 'subject' is 65 characters, at most 64"):
        get_tls_key(agent, {"subject": "x" * 65})
    reply = get_tls_key(agent, {"subject": "x" * 64})
    cert = x509.load_pem_x509_certificate(reply["certificate_chain"][0].encode())
    assert cert.subject.rfc4514_string() == "CN=" + "x" * 64
