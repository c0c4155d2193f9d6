"""The gateway configuration: a good file loads; every bad value is named with its file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import GatewayConfigError, load_gateway_config, normalize_base_domain

GOOD = """
base_domain = "Apps.Example.TEST."
data_dir = "state"

[listen]
proxy = "127.0.0.1:8443"
registration = "127.0.0.1:9443"

[chain]
rpc_url = "http://127.0.0.1:8545"
governance = "0x5FbDB2315678afecb367f032d93F642f64180aa3"

[agent]
socket = "agent/dstack.sock"

[acme]
directory_url = "https://127.0.0.1:14000/dir"
dns_provider = "rfc2136"
dns_zone = "example.test"
dns_server = "127.0.0.1:5353"
tsig_key_name = "tkms-gateway"
tsig_key_file = "secrets/tsig.key"
ca_bundle = "pebble-ca.pem"
caa_issuer = "pebble.letsencrypt.org"

[registration]
ttl_seconds = 90
allowed_backend_networks = ["127.0.0.0/8", "fd00::/8"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return path


def test_a_good_file_loads_with_paths_relative_to_it(tmp_path: Path) -> None:
    config = load_gateway_config(write(tmp_path, GOOD))
    assert config.base_domain == "apps.example.test"
    assert config.data_dir == (tmp_path / "state").resolve()
    assert config.agent_socket == str(tmp_path / "agent/dstack.sock")
    assert config.acme.ca_bundle == str(tmp_path / "pebble-ca.pem")
    assert config.acme.caa_issuer == "pebble.letsencrypt.org"
    assert config.acme.dns_provider == "rfc2136"
    assert config.acme.dns_zone == "example.test"
    assert config.acme.dns_server == "127.0.0.1:5353"
    assert config.acme.tsig_key_name == "tkms-gateway"
    assert config.acme.tsig_key_file == str(tmp_path / "secrets/tsig.key")
    assert config.acme.tsig_algorithm == "hmac-sha256"
    assert config.registration_ttl_seconds == 90.0
    assert config.registration_freshness_seconds == 120.0
    assert config.acme.renew_before_days == 30.0
    assert [str(n) for n in config.allowed_backend_networks] == ["127.0.0.0/8", "fd00::/8"]


def test_no_backend_network_is_allowed_by_default(tmp_path: Path) -> None:
    text = GOOD.replace('allowed_backend_networks = ["127.0.0.0/8", "fd00::/8"]\n', "")
    assert load_gateway_config(write(tmp_path, text)).allowed_backend_networks == ()


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            'base_domain = "Apps.Example.TEST."',
            'base_domain = "localhost"',
            "base_domain: 'localhost'",
        ),
        ('proxy = "127.0.0.1:8443"', 'proxy = "8443"', r"\[listen\] proxy: expected host:port"),
        ("ttl_seconds = 90", "ttl_seconds = -1", "ttl_seconds must be a positive finite"),
        ("ttl_seconds = 90", "ttl_seconds = nan", "ttl_seconds must be a positive finite"),
        (
            "ttl_seconds = 90",
            "ttl_seconds = 90\nfreshness_seconds = inf",
            r"\[registration\] freshness_seconds must be a positive finite",
        ),
        ("ttl_seconds = 90", 'ttl_seconds = "90"', "ttl_seconds has the wrong type"),
        ("ttl_seconds = 90", "ttl_second = 90", r"\[registration\]: unknown key 'ttl_second'"),
        ('dns_provider = "rfc2136"', 'dns_provider = "route53"', "'route53' is not supported"),
        (
            'dns_zone = "example.test"',
            'dns_zone = "other.test"',
            r"\[acme\] base_domain apps\.example\.test is not in dns_zone other\.test",
        ),
        (
            'tsig_key_file = "secrets/tsig.key"\n',
            "",
            r"\[acme\] tsig_key_file is required for dns_provider 'rfc2136'",
        ),
        (
            'dns_server = "127.0.0.1:5353"',
            'dns_server = "ns1"',
            r"\[acme\] dns_server: .*host:port",
        ),
        (
            'tsig_key_name = "tkms-gateway"',
            'tsig_key_name = "tkms-gateway"\ntsig_algorithm = "hmac-md5"',
            r"\[acme\] tsig_algorithm must be one of hmac-sha256",
        ),
        (
            'tsig_key_name = "tkms-gateway"',
            'tsig_key_name = "tkms-gateway"\ncloudflare_token_file = "cf.token"',
            r"\[acme\] cloudflare_token_file is for dns_provider 'cloudflare'",
        ),
        (
            'caa_issuer = "pebble.letsencrypt.org"',
            'caa_issuer = "evil.ca; accounturi=x"',
            r"\[acme\] caa_issuer: CAA issuer domain .* is not a domain name",
        ),
        (
            'governance = "0x5FbDB2315678afecb367f032d93F642f64180aa3"',
            'governance = "abc"',
            "0x-prefixed",
        ),
        ('socket = "agent/dstack.sock"', "", r"\[agent\]: socket is required"),
        ("[registration]", "[registrations]", r"unknown section \[registrations\]"),
        (
            'socket = "agent/dstack.sock"',
            'socket = "agent/\\u0000.sock"',
            r"\[agent\]: socket contains a NUL character",
        ),
        ("[listen]", "[listen]\n[listen.x]", r"\[listen\]: unknown key .x."),
        (
            '"127.0.0.0/8", "fd00::/8"',
            '"127.0.0.1/8"',
            r"\[registration\] allowed_backend_networks: '127.0.0.1/8' is not a network in CIDR "
            "form: 127.0.0.1/8 has host bits set",
        ),
        (
            '["127.0.0.0/8", "fd00::/8"]',
            '"127.0.0.0/8"',
            r"\[registration\]: allowed_backend_networks has the wrong type \(str\)",
        ),
        (
            '"127.0.0.0/8", "fd00::/8"',
            "8",
            r"allowed_backend_networks must be a list of strings \(CIDR networks\)",
        ),
    ],
)
def test_bad_values_are_named(tmp_path: Path, old: str, new: str, message: str) -> None:
    assert old in GOOD
    with pytest.raises(GatewayConfigError, match=message):
        load_gateway_config(write(tmp_path, GOOD.replace(old, new)))


def test_cloudflare_takes_its_token_file_and_api_url(tmp_path: Path) -> None:
    rfc2136 = (
        'dns_server = "127.0.0.1:5353"\ntsig_key_name = "tkms-gateway"\n'
        'tsig_key_file = "secrets/tsig.key"\n'
    )
    assert rfc2136 in GOOD
    token = 'cloudflare_token_file = "cf.token"\n'
    cloudflare = GOOD.replace('"rfc2136"', '"cloudflare"').replace(rfc2136, token)
    config = load_gateway_config(write(tmp_path, cloudflare)).acme
    assert config.cloudflare_token_file == str(tmp_path / "cf.token")
    assert config.cloudflare_api_url == "https://api.cloudflare.com/client/v4"
    with pytest.raises(GatewayConfigError, match=r"\[acme\] dns_server is for .*'rfc2136'"):
        stray = 'cloudflare_token_file = "cf.token"\ndns_server = "127.0.0.1:53"\n'
        load_gateway_config(write(tmp_path, cloudflare.replace(token, stray)))
    missing = cloudflare.replace(token, "")
    with pytest.raises(GatewayConfigError, match="cloudflare_token_file is required"):
        load_gateway_config(write(tmp_path, missing))


def test_the_zone_defaults_to_the_base_domain(tmp_path: Path) -> None:
    config = load_gateway_config(write(tmp_path, GOOD.replace('dns_zone = "example.test"\n', "")))
    assert config.acme.dns_zone == "apps.example.test"


def test_unreadable_and_malformed_files_say_so(tmp_path: Path) -> None:
    (tmp_path / "latin1.toml").write_bytes(GOOD.encode() + b'\ncontact = "\xe9"\n')
    with pytest.raises(GatewayConfigError, match=r"not UTF-8 text \(byte \d+\)"):
        load_gateway_config(tmp_path / "latin1.toml")
    with pytest.raises(GatewayConfigError, match="cannot read"):
        load_gateway_config(tmp_path / "missing.toml")
    with pytest.raises(GatewayConfigError, match="not valid TOML"):
        load_gateway_config(write(tmp_path, "base_domain = "))


def test_base_domains_are_dns_names() -> None:
    assert normalize_base_domain("GW.Test.") == "gw.test"
    for bad in ("test", "a..b", "-a.b", "a_b.c", "x" * 64 + ".com"):
        with pytest.raises(ValueError, match="not a DNS name"):
            normalize_base_domain(bad)
