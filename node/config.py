"""Node configuration: a TOML file, overridable by environment variables.

Every key is `section.key` in the file and `TKMS_<SECTION>_<KEY>` in the environment (upper
case), e.g. `chain.rpc_url` / `TKMS_CHAIN_RPC_URL`. The environment wins. A problem is a
`ConfigError` naming the key, the source (file or variable) and what is wrong with it; an
unknown key is an error too, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from contracts import redact_url
from node.errors import ConfigError

TEE_PROVIDERS: Final = ("simulator", "tdx")
SEALING_PROVIDERS: Final = ("file", "dstack")
LOG_FORMATS: Final = ("console", "json")


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainConfig:
    governance: str
    #: One endpoint (trusted alone), or several with a quorum (`contracts._quorum`): exactly
    #: one of the two forms is set.
    rpc_url: str = ""
    rpc_urls: tuple[str, ...] = ()
    #: How many of `rpc_urls` must agree on the head and on every read (default: a majority).
    rpc_quorum: int = 0
    #: Blocks an endpoint may be behind the quorum's head before it counts as stale.
    rpc_max_lag_blocks: int = 2
    max_head_age_seconds: float = 60.0
    poll_interval_seconds: float = 0.5
    #: Blocks below the head at which the epoch board counts as settled (docs/node-epochs.md).
    confirmations: int = 2

    @property
    def endpoints(self) -> tuple[str, ...]:
        return self.rpc_urls or (self.rpc_url,)

    @property
    def quorum(self) -> int:
        """k: 1 for a single endpoint."""
        return self.rpc_quorum or len(self.endpoints) // 2 + 1


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenConfig:
    public: str = "127.0.0.1:0"
    peer: str = "127.0.0.1:0"
    metrics: str = "127.0.0.1:0"
    admin_socket: str = ""  # default: <data_dir>/admin.sock


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitsConfig:
    # Both apply per (app_id, requester key), see node/ratelimit.py; the names are kept so
    # existing configuration files keep working.
    requests_per_second_per_app: float = 100.0
    burst_per_app: int = 200
    max_keys_per_request: int = 16


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeConfig:
    data_dir: Path
    chain: ChainConfig
    listen: ListenConfig
    limits: LimitsConfig
    tee: str = "simulator"
    sealing: str = "file"
    log_format: str = "console"
    log_level: str = "info"

    @property
    def admin_socket(self) -> Path:
        return (
            Path(self.listen.admin_socket)
            if self.listen.admin_socket
            else self.data_dir / "admin.sock"
        )


# (section, key) -> (parser, required); section "" holds the top-level keys.
def _text(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("must be a non-empty string")
    return value


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("must be a number")
    number = float(value)
    # NaN compares false with everything: a NaN head-age bound would never find the chain stale.
    if not math.isfinite(number):
        raise ValueError("must be a finite number")
    if number <= 0:
        raise ValueError("must be greater than zero")
    return number


def _count(value: object) -> int:
    if isinstance(value, bool):
        raise ValueError("must be a whole number")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value)
    else:
        raise ValueError("must be a whole number")
    if number <= 0:
        raise ValueError("must be greater than zero")
    return number


def _depth(value: object) -> int:
    """A confirmation depth: a whole number of blocks, 0 (instant finality) to 64."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("must be a whole number of blocks")
    text = str(value).strip()
    if not text.isdigit() or not 0 <= int(text) <= 64:
        raise ValueError("must be a whole number of blocks from 0 to 64")
    return int(text)


def _choice(options: tuple[str, ...]) -> Callable[[object], str]:
    def parse(value: object) -> str:
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return str(value)

    return parse


def _url(value: object) -> str:
    text = _text(value)
    if not text.startswith(("http://", "https://", "ws://", "wss://")):
        raise ValueError("must be an http(s) or ws(s) URL")
    return text


def _urls(value: object) -> tuple[str, ...]:
    """A list of URLs (TOML array), or one string of comma-separated URLs (environment)."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not items:
        raise ValueError("must be a non-empty list of http(s) or ws(s) URLs")
    urls = tuple(_url(item.strip() if isinstance(item, str) else item) for item in items)
    if len(set(urls)) != len(urls):
        raise ValueError("lists an endpoint twice (it would vote twice)")
    return urls


def _address(value: object) -> str:
    text = _text(value)
    body = text[2:] if text.startswith("0x") else ""
    if len(body) != 40 or any(c not in "0123456789abcdefABCDEF" for c in body):
        raise ValueError("must be a 0x-prefixed 20-byte hex address")
    return text


def _hostport(value: object) -> str:
    text = _text(value)
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("must be host:port")
    return text


def _any_text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    return value


SCHEMA: Final[Mapping[str, Mapping[str, tuple[Callable[[object], Any], bool]]]] = {
    "": {
        "data_dir": (_text, True),
        "tee": (_choice(TEE_PROVIDERS), False),
        "sealing": (_choice(SEALING_PROVIDERS), False),
        "log_format": (_choice(LOG_FORMATS), False),
        "log_level": (_choice(("debug", "info", "warning", "error")), False),
    },
    "chain": {
        # Required unless rpc_urls is given (checked in `load_config`).
        "rpc_url": (_url, False),
        "rpc_urls": (_urls, False),
        "rpc_quorum": (_count, False),
        "rpc_max_lag_blocks": (_depth, False),
        "governance": (_address, True),
        "max_head_age_seconds": (_number, False),
        "poll_interval_seconds": (_number, False),
        "confirmations": (_depth, False),
    },
    "listen": {
        "public": (_hostport, False),
        "peer": (_hostport, False),
        "metrics": (_hostport, False),
        "admin_socket": (_any_text, False),
    },
    "limits": {
        "requests_per_second_per_app": (_number, False),
        "burst_per_app": (_count, False),
        "max_keys_per_request": (_count, False),
    },
}


def _check_endpoints(chain: dict[str, Any]) -> None:
    """rpc_url or rpc_urls (rpc_url may stay beside rpc_urls only as one of them: `tkms node
    join` writes rpc_url, `TKMS_CHAIN_RPC_URLS` then adds the others); a quorum only with
    rpc_urls, and a majority."""
    urls = chain.get("rpc_urls")
    if urls is not None and chain.get("rpc_url", urls[0]) not in urls:
        raise ConfigError(
            "chain.rpc_url",
            f"{redact_url(chain['rpc_url'])} is not one of chain.rpc_urls: give rpc_urls alone "
            "(every endpoint, a quorum of which must agree), or list it there too",
        )
    if urls is None:
        if "rpc_url" not in chain:
            raise ConfigError(
                "chain.rpc_url",
                "required (set it in the file or TKMS_CHAIN_RPC_URL), or chain.rpc_urls with "
                "chain.rpc_quorum for several endpoints",
            )
        for key in ("rpc_quorum", "rpc_max_lag_blocks"):
            if key in chain:
                raise ConfigError(f"chain.{key}", "needs chain.rpc_urls (several endpoints)")
        return
    quorum = chain.get("rpc_quorum", len(urls) // 2 + 1)
    if not len(urls) // 2 < quorum <= len(urls):
        raise ConfigError(
            "chain.rpc_quorum",
            f"must be more than half of the {len(urls)} rpc_urls and at most all of them, "
            f"got {quorum} (two groups of {quorum} could otherwise both agree)",
        )


def _env_name(section: str, key: str) -> str:
    return "_".join(p for p in ("TKMS", section.upper(), key.upper()) if p)


def load_config(path: Path | None, environ: Mapping[str, str] | None = None) -> NodeConfig:
    """Read `path` (may be None: environment only) and apply `TKMS_*` overrides."""
    env = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(str(path), "file not found") from None
        except OSError as exc:
            raise ConfigError(str(path), f"cannot read: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(str(path), f"not UTF-8 text (byte offset {exc.start})") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(str(path), f"not valid TOML: {exc}") from None
    source = str(path) if path is not None else "environment"

    values: dict[str, dict[str, Any]] = {section: {} for section in SCHEMA}
    for name, value in raw.items():
        if isinstance(value, dict):
            if name not in SCHEMA or not name:
                raise ConfigError(name, f"unknown section in {source}")
            for key, item in value.items():
                if key not in SCHEMA[name]:
                    raise ConfigError(f"{name}.{key}", f"unknown key in {source}")
                values[name][key] = (item, source)
        elif name in SCHEMA[""]:
            values[""][name] = (value, source)
        else:
            raise ConfigError(name, f"unknown key in {source}")

    for section, keys in SCHEMA.items():
        for key in keys:
            variable = _env_name(section, key)
            if variable in env:
                values[section][key] = (env[variable], f"environment variable {variable}")

    parsed: dict[str, dict[str, Any]] = {section: {} for section in SCHEMA}
    for section, keys in SCHEMA.items():
        for key, (parse, required) in keys.items():
            dotted = f"{section}.{key}" if section else key
            if key not in values[section]:
                if required:
                    raise ConfigError(
                        dotted, f"required (set it in the file or {_env_name(section, key)})"
                    )
                continue
            value, origin = values[section][key]
            try:
                parsed[section][key] = parse(value)
            except ValueError as exc:
                raise ConfigError(dotted, f"{exc}, got {value!r} (from {origin})") from None

    def absolute(section: str, key: str, value: str) -> Path:
        # Relative paths in a file are relative to that file; from the environment, to the
        # working directory. Either way they are stored absolute.
        from_file = path is not None and values[section][key][1] == source
        base = os.path.dirname(os.path.abspath(path)) if from_file and path else os.getcwd()
        return Path(os.path.abspath(os.path.join(base, os.path.expanduser(value))))

    _check_endpoints(parsed["chain"])
    top = parsed[""]
    listen = parsed["listen"]
    if listen.get("admin_socket"):
        listen["admin_socket"] = str(absolute("listen", "admin_socket", listen["admin_socket"]))
    return NodeConfig(
        data_dir=absolute("", "data_dir", top.pop("data_dir")),
        chain=ChainConfig(**parsed["chain"]),
        listen=ListenConfig(**parsed["listen"]),
        limits=LimitsConfig(**parsed["limits"]),
        **top,
    )
