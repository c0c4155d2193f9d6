"""The gateway's TOML configuration (`tkms gateway run --config FILE`), checked at load.

Every error names the file and the key; unknown keys are refused, so a typo never silently
falls back to a default. See docs/gateway.md for an example file.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.backends import IPNetwork, parse_networks
from gateway.dns01 import caa_value, in_zone
from gateway.dns_cloudflare import DEFAULT_API_URL
from gateway.dns_rfc2136 import ALGORITHMS, parse_server
from gateway.limits import ProxyLimits


class GatewayConfigError(ValueError):
    """The configuration file is missing, malformed, or has a bad value."""


_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def normalize_base_domain(name: str) -> str:
    """`name` lower-cased without a trailing dot, if it is a DNS name of two labels or more."""
    domain = name.lower().rstrip(".")
    labels = domain.split(".")
    if len(labels) < 2 or len(domain) > 200 or not all(_LABEL.match(lab) for lab in labels):
        raise ValueError(f"{name!r} is not a DNS name of at least two labels")
    return domain


#: `[acme]` keys that belong to one DNS provider (docs/gateway-certs.md).
_PROVIDER_KEYS = {
    "rfc2136": ("dns_server", "tsig_key_name", "tsig_key_file", "tsig_algorithm"),
    "cloudflare": ("cloudflare_token_file", "cloudflare_api_url"),
}


@dataclass(frozen=True)
class AcmeConfig:
    directory_url: str
    #: Who writes the DNS-01 and CAA records: "rfc2136" (dynamic updates signed with TSIG to
    #: the zone's primary server) or "cloudflare" (its v4 API).
    dns_provider: str
    dns_zone: str = ""  # the zone holding base_domain; empty = base_domain itself
    dns_server: str = ""  # rfc2136: host:port of the primary server
    tsig_key_name: str = ""
    #: rfc2136: file holding the key's base64 secret, mode 0600 (read at start, never logged).
    tsig_key_file: str = ""
    tsig_algorithm: str = "hmac-sha256"
    #: cloudflare: file holding the API token (Zone:DNS:Edit), mode 0600.
    cloudflare_token_file: str = ""
    cloudflare_api_url: str = DEFAULT_API_URL
    ca_bundle: str = ""  # trust for a private ACME server's HTTPS (Pebble); empty = system CAs
    contact: str = ""
    caa_issuer: str = "letsencrypt.org"
    renew_before_days: float = 30.0


@dataclass(frozen=True)
class GatewayConfig:
    base_domain: str
    data_dir: Path
    proxy: str  # host:port of the TLS front
    registration: str  # host:port of the Gateway gRPC service
    rpc_url: str
    governance: str
    agent_socket: str
    acme: AcmeConfig
    registration_ttl_seconds: float = 300.0
    registration_freshness_seconds: float = 120.0
    #: How far ahead of the gateway's clock a registration's issued_at may be.
    registration_max_skew_seconds: float = 10.0
    #: Register calls per second per peer address, and the burst allowed at once.
    registration_rate_per_second: float = 2.0
    registration_rate_burst: int = 20
    #: Non-public networks CVMs may register as backends (`gateway.backends`); none by default.
    allowed_backend_networks: tuple[IPNetwork, ...] = ()
    #: How often the chain head is read (revocations, the simulator flag), and how often every
    #: route's approval is asked again whatever the events say (`gateway.revocation`).
    chain_poll_seconds: float = 5.0
    approval_recheck_seconds: float = 60.0
    limits: ProxyLimits = field(default_factory=ProxyLimits)


_SCHEMA: dict[str, dict[str, type | tuple[type, ...]]] = {
    "": {"base_domain": str, "data_dir": str},
    "listen": {"proxy": str, "registration": str},
    "chain": {
        "rpc_url": str,
        "governance": str,
        "poll_seconds": (int, float),
        "recheck_seconds": (int, float),
    },
    "agent": {"socket": str},
    "acme": {
        "directory_url": str,
        "dns_provider": str,
        "dns_zone": str,
        "dns_server": str,
        "tsig_key_name": str,
        "tsig_key_file": str,
        "tsig_algorithm": str,
        "cloudflare_token_file": str,
        "cloudflare_api_url": str,
        "ca_bundle": str,
        "contact": str,
        "caa_issuer": str,
        "renew_before_days": (int, float),
    },
    "registration": {
        "ttl_seconds": (int, float),
        "freshness_seconds": (int, float),
        "max_clock_skew_seconds": (int, float),
        "rate_per_second": (int, float),
        "rate_burst": int,
        "allowed_backend_networks": list,
    },
    "limits": {
        "max_connections": int,
        "max_connections_per_client": int,
        "hello_timeout_seconds": (int, float),
        "handshake_timeout_seconds": (int, float),
        "connect_timeout_seconds": (int, float),
        "idle_timeout_seconds": (int, float),
        "max_lifetime_seconds": (int, float),
        "log_lines_per_second": (int, float),
        "log_burst": int,
    },
}
#: `[limits]` keys and the `ProxyLimits` fields they set.
_LIMITS = {
    "max_connections": "max_connections",
    "max_connections_per_client": "max_connections_per_client",
    "hello_timeout_seconds": "hello_timeout",
    "handshake_timeout_seconds": "handshake_timeout",
    "connect_timeout_seconds": "connect_timeout",
    "idle_timeout_seconds": "idle_timeout",
    "max_lifetime_seconds": "max_lifetime",
    "log_lines_per_second": "log_per_second",
    "log_burst": "log_burst",
}
_REQUIRED = {
    "": ("base_domain", "data_dir"),
    "listen": ("proxy", "registration"),
    "chain": ("rpc_url", "governance"),
    "agent": ("socket",),
    "acme": ("directory_url", "dns_provider"),
    "registration": (),
    "limits": (),
}


def _hostport(where: str, value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise GatewayConfigError(f"{where}: expected host:port, got {value!r}")
    return value


def _positive(path: Path, section: str, key: str, value: float) -> float:
    if not math.isfinite(value) or value <= 0:
        raise GatewayConfigError(f"{path}: [{section}] {key} must be a positive finite number")
    return float(value)


def _networks(path: Path, values: list[Any]) -> tuple[IPNetwork, ...]:
    where = f"{path}: [registration] allowed_backend_networks"
    if not all(isinstance(v, str) for v in values):
        raise GatewayConfigError(f"{where} must be a list of strings (CIDR networks)")
    try:
        return parse_networks(values)
    except ValueError as exc:
        raise GatewayConfigError(f"{where}: {exc}") from None


def _section(path: Path, data: dict[str, Any], name: str) -> dict[str, Any]:
    table = data if name == "" else data.get(name, {})
    where = f"{path}: [{name}]" if name else str(path)
    if not isinstance(table, dict):
        raise GatewayConfigError(f"{where} must be a table")
    schema = _SCHEMA[name]
    values: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict) and name == "":
            continue  # a section, checked on its own
        if key not in schema:
            raise GatewayConfigError(f"{where}: unknown key {key!r}")
        if not isinstance(value, schema[key]) or isinstance(value, bool):
            raise GatewayConfigError(f"{where}: {key} has the wrong type ({type(value).__name__})")
        if isinstance(value, str) and "\x00" in value:
            raise GatewayConfigError(f"{where}: {key} contains a NUL character")
        values[key] = value
    for key in _REQUIRED[name]:
        if key not in values or values[key] in ("", None):
            raise GatewayConfigError(f"{where}: {key} is required")
    return values


def load_gateway_config(path: Path) -> GatewayConfig:
    """Read and check `path`; relative paths in it are relative to its directory."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise GatewayConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise GatewayConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise GatewayConfigError(f"{path}: not valid TOML: {exc}") from None
    unknown = sorted(k for k, v in data.items() if isinstance(v, dict) and k not in _SCHEMA)
    if unknown:
        raise GatewayConfigError(f"{path}: unknown section [{unknown[0]}]")
    top, listen, chain, agent, acme, reg, limits = (
        _section(path, data, n)
        for n in ("", "listen", "chain", "agent", "acme", "registration", "limits")
    )
    try:
        base_domain = normalize_base_domain(top["base_domain"])
    except ValueError as exc:
        raise GatewayConfigError(f"{path}: base_domain: {exc}") from None
    here = Path(os.path.abspath(path)).parent
    acme_config = _acme(path, acme, base_domain, here)
    governance = chain["governance"]
    if not (governance.startswith("0x") and len(governance) == 42):
        raise GatewayConfigError(f"{path}: [chain] governance must be a 0x-prefixed address")
    ttl = _positive(path, "registration", "ttl_seconds", reg.get("ttl_seconds", 300.0))
    freshness = _positive(
        path, "registration", "freshness_seconds", reg.get("freshness_seconds", 120.0)
    )

    def positive(section: str, values: dict[str, Any], key: str, default: float) -> float:
        return _positive(path, section, key, values.get(key, default))

    networks = _networks(path, reg.get("allowed_backend_networks", []))
    return GatewayConfig(
        base_domain=base_domain,
        data_dir=(here / top["data_dir"]).resolve(),
        proxy=_hostport(f"{path}: [listen] proxy", listen["proxy"]),
        registration=_hostport(f"{path}: [listen] registration", listen["registration"]),
        rpc_url=chain["rpc_url"],
        governance=governance,
        agent_socket=str(here / agent["socket"]),
        acme=acme_config,
        registration_ttl_seconds=ttl,
        registration_freshness_seconds=freshness,
        registration_max_skew_seconds=positive("registration", reg, "max_clock_skew_seconds", 10),
        registration_rate_per_second=positive("registration", reg, "rate_per_second", 2),
        registration_rate_burst=int(positive("registration", reg, "rate_burst", 20)),
        allowed_backend_networks=networks,
        chain_poll_seconds=positive("chain", chain, "poll_seconds", 5),
        approval_recheck_seconds=positive("chain", chain, "recheck_seconds", 60),
        limits=_limits(path, limits),
    )


def _acme(path: Path, acme: dict[str, Any], base_domain: str, here: Path) -> AcmeConfig:
    """The `[acme]` section: the provider's own keys are required, the other's refused."""
    where = f"{path}: [acme]"
    provider = acme["dns_provider"]
    if provider not in _PROVIDER_KEYS:
        raise GatewayConfigError(
            f"{where} dns_provider {provider!r} is not supported "
            f"(built in: {', '.join(repr(p) for p in _PROVIDER_KEYS)})"
        )
    for other, keys in _PROVIDER_KEYS.items():
        stray = [key for key in keys if key in acme and other != provider]
        if stray:
            raise GatewayConfigError(f"{where} {stray[0]} is for dns_provider {other!r}")
    try:
        zone = normalize_base_domain(acme.get("dns_zone") or base_domain)
    except ValueError as exc:
        raise GatewayConfigError(f"{where} dns_zone: {exc}") from None
    if not in_zone(base_domain, zone):
        raise GatewayConfigError(f"{where} base_domain {base_domain} is not in dns_zone {zone}")
    required = {"rfc2136": ("dns_server", "tsig_key_name", "tsig_key_file")}
    for key in required.get(provider, ("cloudflare_token_file",)):
        if not acme.get(key):
            raise GatewayConfigError(f"{where} {key} is required for dns_provider {provider!r}")
    if provider == "rfc2136":
        try:
            parse_server(acme["dns_server"])
        except ValueError as exc:
            raise GatewayConfigError(f"{where} dns_server: {exc}") from None
        if acme.get("tsig_algorithm", "hmac-sha256") not in ALGORITHMS:
            raise GatewayConfigError(
                f"{where} tsig_algorithm must be one of {', '.join(sorted(ALGORITHMS))}"
            )
    try:
        caa_value(acme.get("caa_issuer", "letsencrypt.org"), "https://ca.example/acct/1")
    except ValueError as exc:
        raise GatewayConfigError(f"{where} caa_issuer: {exc}") from None
    api_url = acme.get("cloudflare_api_url", DEFAULT_API_URL)
    if not api_url.startswith(("https://", "http://")):
        raise GatewayConfigError(f"{where} cloudflare_api_url must be an http(s) URL")

    def file(key: str) -> str:
        return str(here / acme[key]) if acme.get(key) else ""

    return AcmeConfig(
        directory_url=acme["directory_url"],
        dns_provider=provider,
        dns_zone=zone,
        dns_server=acme.get("dns_server", ""),
        tsig_key_name=acme.get("tsig_key_name", ""),
        tsig_key_file=file("tsig_key_file"),
        tsig_algorithm=acme.get("tsig_algorithm", "hmac-sha256"),
        cloudflare_token_file=file("cloudflare_token_file"),
        cloudflare_api_url=api_url,
        ca_bundle=file("ca_bundle"),
        contact=acme.get("contact", ""),
        caa_issuer=acme.get("caa_issuer", "letsencrypt.org"),
        renew_before_days=_positive(
            path, "acme", "renew_before_days", acme.get("renew_before_days", 30.0)
        ),
    )


def _limits(path: Path, values: dict[str, Any]) -> ProxyLimits:
    for key, value in values.items():
        _positive(path, "limits", key, value)
    return ProxyLimits(**{_LIMITS[key]: value for key, value in values.items()})
