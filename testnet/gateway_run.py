"""The testnet's gateway: Pebble (ACME) + the gateway's own guest agent + `tkms gateway run`.

The gateway is an attested app: its compose hash is registered on chain like the demo app's,
its guest agent gets keys from the network, and the gateway derives its sealing key there.
Certificates come from a local Pebble that validates DNS-01 against a real authoritative
DNS server, Knot DNS, serving the zone `BASE_DOMAIN`; the gateway writes the challenge TXT
records and pins the zone's CAA records itself, by RFC 2136 updates signed with the TSIG key
Knot was started with (a copy, mode 0600, in the gateway's directory). `status --json` says
where the server is (`dns`: address, zone, the names it holds), so anyone can query it.
The base domain is under `.localhost`, which curl and most resolvers send to 127.0.0.1, so
`https://<app_id>-<port>.<base>:<proxy port>/` works from the host with no DNS set-up.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from contracts._anvil import free_port
from gateway.knot import KnotServer
from gateway.pebble import PEBBLE_ENV, Pebble
from testnet.apps import AgentHandle
from testnet.cluster import Cluster

GATEWAY_COMPOSE = (
    b'{"name": "tkms-gateway", "services": {"gateway": {"image": "tkms@sha256:00"}}}\n'
)
BASE_DOMAIN = "tkms.localhost"
#: The CA name in the CAA records. Pebble checks no CAA; a real CA checks its own name here
#: (Let's Encrypt: "letsencrypt.org").
CAA_ISSUER = "pebble.letsencrypt.org"
TSIG_KEY_FILE = "tsig.key"


def _config(
    cluster: Cluster, pebble: Pebble, dns: dict[str, Any], socket: Path, proxy: int, reg: int
) -> str:
    assert cluster.deployment is not None
    return f"""# written by `tkms testnet up`
base_domain = "{BASE_DOMAIN}"
data_dir = "state"

[listen]
proxy = "127.0.0.1:{proxy}"
registration = "127.0.0.1:{reg}"

[chain]
rpc_url = "{cluster.rpc_url}"
governance = "{cluster.deployment.governance}"
poll_seconds = 2  # revocations reach the routes within a few seconds

[agent]
socket = "{socket}"

[acme]
directory_url = "{pebble.directory_url}"
dns_provider = "rfc2136"
dns_zone = "{dns["zone"]}"
dns_server = "{dns["address"]}"
tsig_key_name = "{dns["key_name"]}"
tsig_key_file = "{TSIG_KEY_FILE}"
ca_bundle = "{pebble.ca_bundle}"
caa_issuer = "{CAA_ISSUER}"

[registration]
ttl_seconds = 60
allowed_backend_networks = ["127.0.0.0/8"]  # every testnet process runs on loopback
"""


def start_pebble(cluster: Cluster) -> Pebble:
    """Start the DNS server (Knot, serving BASE_DOMAIN) and Pebble validating against it, for
    the testnet; both are recorded for `down`, resume and restart (DNS first)."""
    dns = KnotServer.start(cluster.root / "dns", [BASE_DOMAIN], detach=True)
    [(pid, argv, log)] = dns.commands()
    cluster.record("dns", pid)
    cluster.remember("dns", argv, log)
    cluster.extra["dns"] = dns_record(dns)
    pebble = Pebble.start(cluster.root / "pebble", dns.address, detach=True)
    [(pid, argv, log)] = pebble.commands()
    cluster.record("pebble", pid)
    cluster.remember("pebble", argv, log, PEBBLE_ENV)
    cluster.extra["pebble"] = pebble.to_dict()
    return pebble


def dns_record(dns: KnotServer) -> dict[str, Any]:
    """What `status --json` says of the DNS server: where to ask, and what it holds."""
    return {
        "server": "knot",
        "address": dns.address,
        "zone": BASE_DOMAIN,
        "caa_name": BASE_DOMAIN,  # CAA issue/issuewild pinned to the gateway's account
        "challenge_name": f"_acme-challenge.{BASE_DOMAIN}",  # TXT, only during validation
        "key_name": dns.key_name,
        "log": str(dns.log),
    }


def launch_gateway(
    cluster: Cluster, pebble: Pebble, agent: AgentHandle
) -> Callable[[float], dict[str, Any]]:
    """Start the gateway beside its guest `agent` (an app registered with GATEWAY_COMPOSE);
    returns the call that waits (up to its argument, in seconds) until it serves, records it
    in `extra["gateway"]` and returns that record.

    The gateway waits for its agent itself (the agent serves once it has fetched the app's
    keys from the network), so the start-ups of both overlap whatever runs before the wait.
    """
    gw_dir = agent.dir
    (gw_dir / "pebble-root.pem").write_bytes(pebble.roots_pem())
    (gw_dir / "state").mkdir(exist_ok=True)
    dns = cluster.extra["dns"]
    # The gateway's own copy of the TSIG secret, readable by its user only.
    secret = (cluster.root / "dns" / TSIG_KEY_FILE).read_bytes()
    fd = os.open(gw_dir / TSIG_KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(secret)
    proxy, registration = free_port(), free_port()
    config = gw_dir / "gateway.toml"
    config.write_text(_config(cluster, pebble, dns, agent.socket, proxy, registration))
    ready = gw_dir / "state" / "gateway.json"
    ready.unlink(missing_ok=True)
    log = gw_dir / "gateway.log"
    process = cluster.spawn(
        "gateway", ["-m", "tkms", "gateway", "run", "--config", str(config)], log
    )
    return lambda timeout: _wait_gateway(cluster, agent, process, log, timeout)


def _wait_gateway(
    cluster: Cluster,
    agent: AgentHandle,
    process: subprocess.Popen[bytes],
    log: Path,
    timeout: float,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    gw_dir = agent.dir
    ready = gw_dir / "state" / "gateway.json"
    while not ready.exists():
        if agent.process.poll() is not None:
            raise RuntimeError(f"the gateway's guest agent exited; see {agent.dir / 'agent.log'}")
        if process.poll() is not None:
            raise RuntimeError(f"the gateway exited ({process.returncode}); see {log}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the gateway is not ready after {timeout:.0f}s; see {log}")
        time.sleep(0.2)
    running = json.loads(ready.read_text())
    gateway = {
        "proxy": running["proxy"],
        "registration": running["registration"],
        "base_domain": BASE_DOMAIN,
        "app_id": running["app_id"],
        "account_uri": running["account_uri"],
        "caa_records": running["caa_records"],
        "evidence_name": running["evidence_name"],
        "acme_root": str(gw_dir / "pebble-root.pem"),
        "pid": process.pid,
        "log": str(log),
    }
    cluster.extra["gateway"] = gateway
    cluster.progress(f"gateway on {gateway['proxy']} for *.{BASE_DOMAIN}")
    return gateway


def fetch_through_gateway(
    proxy: str, server_name: str, context: ssl.SSLContext, timeout: float = 5.0
) -> tuple[int, bytes, bytes]:
    """GET / through the gateway at `proxy` with SNI `server_name`: (status, body, cert DER)."""
    host, _, port = proxy.rpartition(":")
    with (
        socket.create_connection((host, int(port)), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        der = tls.getpeercert(binary_form=True) or b""
        tls.sendall(f"GET / HTTP/1.0\r\nHost: {server_name}\r\n\r\n".encode())
        chunks = []
        while chunk := tls.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    return status, body, der


def wait_routed(gateway: dict[str, Any], app_id: str, port: int, timeout: float = 30.0) -> str:
    """Until the gateway serves `https://<app>-<port>.<base>/` (terminated, Pebble-verified;
    `port` is the app's TLS port, which the gateway reaches over TLS to the app's key)."""
    name = f"{app_id.lower().removeprefix('0x')}-{port}.{gateway['base_domain']}"
    context = ssl.create_default_context(cafile=gateway["acme_root"])
    deadline = time.monotonic() + timeout
    last = "no attempt"
    while time.monotonic() < deadline:
        try:
            status, _, _ = fetch_through_gateway(gateway["proxy"], name, context)
            if status == 200:
                return name
            last = f"HTTP {status}"
        except (OSError, ssl.SSLError) as exc:
            last = str(exc) or type(exc).__name__
        time.sleep(0.3)
    raise TimeoutError(
        f"the gateway does not route {name} after {timeout:.0f}s ({last}); see {gateway['log']}"
    )
