"""The guest agent's TOML configuration (`tkms guest agent --config FILE`).

rpc = "https://..."                   # chain RPC: https, or http to a loopback address
governance = "0x..."                  # KmsGovernance address
network_fingerprint = "..."           # 32-byte hex: the network to trust (`tkms guest fingerprint`)
app_id = "0x..."                      # 20-byte app id (hex)
compose = "app-compose.json"          # compose file; relative to the config file
tee = "simulator"                     # simulator | tdx
instance_id = "..."                   # 20-byte hex; random per start if absent
generation = 0                        # key generation, 0 = latest
socket = "/var/run/dstack.sock"       # overridden by --socket
tappd_socket = "/var/run/tappd.sock"  # optional: dstack's legacy Tappd API; --tappd-socket
vm_config = "vm-config.json"          # optional: the VM config JSON (or dstack's sys-config.json)
env_file = "env.enc"                  # optional: signed, encrypted env (tkms app encrypt-env)
env_out = "/run/app/env.json"         # with env_file: where the env is written (mode 0600),
                                      # not in env_file's directory (the host writes there)
gpu_evidence = "gpu-evidence.json"    # optional: NVIDIA GPU evidence (docs/attest-gpu.md), verified
                                      # at start, measured (gpu-attestation), served by GpuInfo
timeout = 10.0                        # seconds per KMS request
wait_for_network = 0.0                # seconds to wait for a committee on chain (0: fail at once)
chain_poll_seconds = 1.0              # how often the chain watch reads the chain
chain_stale_seconds = 60.0            # no new block for this long: the view is stale
relay = "http://HOST:PORT"            # optional: a `tkms relay`; the committee from the RPC must
                                      # be the one the network signed (docs/relay.md); needs
                                      # generation = 0
relay_wait = 2.0                      # seconds to wait for the relay to deliver the RPC's epoch
"""

from __future__ import annotations

import ipaddress
import math
import os
import tomllib
import urllib.parse
from dataclasses import dataclass
from pathlib import Path


class ConfigError(Exception):
    """The configuration file is missing, not TOML, or has a bad value (named)."""


@dataclass(frozen=True, slots=True)
class AgentConfig:
    rpc: str
    governance: str
    network_fingerprint: bytes
    app_id: bytes
    compose: Path
    tee: str = "simulator"
    instance_id: bytes | None = None
    generation: int = 0
    socket: Path | None = None
    tappd_socket: Path | None = None
    vm_config: Path | None = None
    env_file: Path | None = None
    env_out: Path | None = None
    timeout: float = 10.0
    wait_for_network: float = 0.0
    os_image_hash: bytes | None = None
    gpu_evidence: Path | None = None
    chain_poll_seconds: float = 1.0
    chain_stale_seconds: float = 60.0
    relay: str | None = None
    relay_wait: float = 2.0


def rpc_url_problem(url: str) -> str | None:
    """Why `url` may not be the agent's JSON-RPC, or None: plain http only to this machine."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme == "https" and parsed.hostname:
        return None
    if parsed.scheme != "http" or not parsed.hostname:
        return "must be an https:// URL (or http:// to a loopback address)"
    host = parsed.hostname
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        return (
            f"plain http:// to {host} can be read and rewritten on the way: use https:// "
            "(http:// is allowed only to a loopback address, for development)"
        )
    return None


def parse_hex(name: str, value: object, size: int) -> bytes:
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a hex string, got {type(value).__name__}")
    try:
        raw = bytes.fromhex(value.removeprefix("0x"))
    except ValueError:
        raise ConfigError(f"{name} is not hex: {value!r}") from None
    if len(raw) != size:
        raise ConfigError(f"{name} must be {size} bytes, got {len(raw)}")
    return raw


def _str(doc: dict[str, object], name: str, default: str | None = None) -> str:
    value = doc.get(name, default)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"config key {name!r} must be a non-empty string")
    return value


def _seconds(doc: dict[str, object], name: str, default: float) -> float:
    value = doc.get(name, default)
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ConfigError(f"config key {name!r} must be a finite number of seconds >= 0")
    return float(value)


def _path(base: Path, doc: dict[str, object], name: str) -> Path | None:
    if name not in doc:
        return None
    return base / _str(doc, name)


def _relay_url(doc: dict[str, object], generation: int) -> str | None:
    """The relay to cross-check the committee with. Plain http is fine to any host: nothing
    it says is believed unless it verifies against the fingerprint."""
    if "relay" not in doc:
        return None
    url = _str(doc, "relay")
    parsed = urllib.parse.urlsplit(url)
    try:
        port = parsed.port
    except ValueError:
        port = None
    if parsed.scheme not in ("http", "https") or not parsed.hostname or port is None:
        raise ConfigError(f"config key 'relay' must be http://HOST:PORT, got {url!r}")
    if generation != 0:
        raise ConfigError(
            "config key 'relay' needs generation = 0: relays carry the latest generation's "
            "manifest only"
        )
    return url


def load_config(path: Path) -> AgentConfig:
    """Parse and check `path`; relative names are relative to its directory, stored absolute."""
    try:
        doc: dict[str, object] = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config {path} is not UTF-8 text (byte offset {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path} is not valid TOML: {exc}") from None
    known = set(AgentConfig.__dataclass_fields__)
    unknown = sorted(set(doc) - known)
    if unknown:
        raise ConfigError(f"config {path}: unknown keys {', '.join(unknown)}")
    base = Path(os.path.abspath(path)).parent
    tee = _str(doc, "tee", "simulator")
    if tee not in ("simulator", "tdx"):
        raise ConfigError(f"config key 'tee' must be simulator or tdx, got {tee!r}")
    generation = doc.get("generation", 0)
    if not isinstance(generation, int) or isinstance(generation, bool) or generation < 0:
        raise ConfigError("config key 'generation' must be an integer >= 0")
    timeout = _seconds(doc, "timeout", 10.0)
    if timeout <= 0:
        raise ConfigError("config key 'timeout' must be a positive number of seconds")
    wait_for_network = _seconds(doc, "wait_for_network", 0.0)
    poll = _seconds(doc, "chain_poll_seconds", 1.0)
    stale = _seconds(doc, "chain_stale_seconds", 60.0)
    if not 0.05 <= poll <= 60:
        raise ConfigError("config key 'chain_poll_seconds' must be between 0.05 and 60 seconds")
    if stale < 2 * poll:
        raise ConfigError(
            f"config key 'chain_stale_seconds' must be at least twice chain_poll_seconds "
            f"({2 * poll:g} s), or every reading would find the view stale"
        )
    instance = doc.get("instance_id")
    compose = _path(base, doc, "compose")
    if compose is None:
        raise ConfigError("config key 'compose' is required")
    image = doc.get("os_image_hash")
    vm_config = _path(base, doc, "vm_config")
    if image is None and vm_config is None and tee == "tdx":
        raise ConfigError(
            "config key 'os_image_hash' (or a 'vm_config' that has it) is required with "
            'tee = "tdx"'
        )
    rpc = _str(doc, "rpc")
    problem = rpc_url_problem(rpc)
    if problem is not None:
        raise ConfigError(f"config key 'rpc' {problem}")
    if "network_fingerprint" not in doc:
        raise ConfigError(
            "config key 'network_fingerprint' is required: the network the agent may take "
            "keys from (print it with `tkms guest fingerprint`, compare it with the operator's)"
        )
    relay = _relay_url(doc, generation)
    env_file, env_out = _path(base, doc, "env_file"), _path(base, doc, "env_out")
    if env_file is not None:
        if env_out is None:
            raise ConfigError("config key 'env_out' is required with 'env_file'")
        if env_out.parent == env_file.parent:
            raise ConfigError(
                "config key 'env_out' must not be in env_file's directory: whoever delivers "
                "the encrypted env can write there"
            )
    return AgentConfig(
        rpc=rpc,
        governance=_str(doc, "governance"),
        network_fingerprint=parse_hex("network_fingerprint", doc.get("network_fingerprint"), 32),
        app_id=parse_hex("app_id", doc.get("app_id"), 20),
        compose=compose,
        tee=tee,
        instance_id=None if instance is None else parse_hex("instance_id", instance, 20),
        generation=generation,
        socket=_path(base, doc, "socket"),
        tappd_socket=_path(base, doc, "tappd_socket"),
        vm_config=vm_config,
        env_file=env_file,
        env_out=env_out,
        timeout=timeout,
        wait_for_network=wait_for_network,
        os_image_hash=None if image is None else parse_hex("os_image_hash", image, 32),
        gpu_evidence=_path(base, doc, "gpu_evidence"),
        chain_poll_seconds=poll,
        chain_stale_seconds=stale,
        relay=relay,
        relay_wait=_seconds(doc, "relay_wait", 2.0),
    )


def random_instance_id() -> bytes:
    return os.urandom(20)
