"""The attested TLS gateway (design §8): CVM registration, SNI routing, certificates from ACME.

The gateway is an attested app itself: its keys come from the KMS network through its own
guest agent. Names are imported on first use (PEP 562).
"""

from __future__ import annotations

import importlib
from typing import Any

_MODULES: dict[str, str] = {
    "AcmeError": "gateway.acme_client",
    "AcmeIssuer": "gateway.acme_client",
    "BackendKeyMismatch": "gateway.backend_tls",
    "BackendPolicy": "gateway.backends",
    "BackendRefused": "gateway.backends",
    "CloudflareProvider": "gateway.dns_cloudflare",
    "DnsError": "gateway.dns01",
    "DnsProvider": "gateway.dns01",
    "KnotServer": "gateway.knot",
    "Rfc2136Provider": "gateway.dns_rfc2136",
    "open_dns_provider": "gateway.dns_providers",
    "IssuedCertificate": "gateway.acme_client",
    "PebbleError": "gateway.pebble",
    "SealedStoreError": "gateway.keystore",
    "caa_record": "gateway.acme_client",
    "CertificateManager": "gateway.certs",
    "ClientHello": "gateway.clienthello",
    "HelloError": "gateway.clienthello",
    "HelloReader": "gateway.clienthello",
    "MAX_HELLO_BYTES": "gateway.clienthello",
    "REFUSALS": "gateway.proxy",
    "RouteError": "gateway.names",
    "Gateway": "gateway.daemon",
    "GatewayClient": "gateway.client",
    "GatewayConfig": "gateway.config",
    "GovernanceView": "gateway.chain",
    "ChainGovernance": "gateway.chain",
    "ProxyLimits": "gateway.limits",
    "RevocationWatch": "gateway.revocation",
    "spki_sha256": "gateway.backend_tls",
    "GuestAgent": "gateway.agent",
    "Pebble": "gateway.pebble",
    "Proxy": "gateway.proxy",
    "Registrar": "gateway.registration",
    "Registration": "gateway.table",
    "Route": "gateway.names",
    "RouteTable": "gateway.table",
    "SealedStore": "gateway.keystore",
    "load_gateway_config": "gateway.config",
    "parse_client_hello": "gateway.clienthello",
    "instance_route_id": "gateway.names",
    "parse_server_name": "gateway.names",
}

__all__ = sorted(_MODULES)


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module 'gateway' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
