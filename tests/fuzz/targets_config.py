"""Fuzz targets for the config loaders: the node's TOML + `TKMS_*` environment, the agent's TOML.

A case is a config file's bytes (a valid config with keys retyped, dropped, added or given
odd values, or its text edited as bytes, invalid UTF-8 included) and, for the node, a set of
`TKMS_*` variables. Documented errors: `node.errors.ConfigError` naming the key and source;
`guest.config.ConfigError`. A loaded config must carry the values it was given.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from guest.config import ConfigError as GuestConfigError
from guest.config import load_config as load_guest_config
from node.config import SCHEMA
from node.config import load_config as load_node_config
from node.errors import ConfigError as NodeConfigError
from tests.fuzz.mutate import random_edits, random_json, seeded
from tests.fuzz.runner import Prepared, Target

NODE_GOOD: dict[str, dict[str, Any]] = {
    "": {"data_dir": "data", "tee": "simulator", "log_level": "info"},
    "chain": {
        "rpc_url": "http://127.0.0.1:8545",
        "governance": "0x" + "42" * 20,
        "max_head_age_seconds": 60,
    },
    "listen": {"public": "127.0.0.1:0", "peer": "0.0.0.0:7001", "admin_socket": "a.sock"},
    "limits": {"requests_per_second_per_app": 10.5, "burst_per_app": 20},
}
GUEST_GOOD: dict[str, Any] = {
    "rpc": "http://127.0.0.1:8545",
    "governance": "0x" + "22" * 20,
    "network_fingerprint": "f0" * 32,
    "app_id": "0x" + "11" * 20,
    "compose": "app-compose.json",
    "tee": "simulator",
    "instance_id": "ab" * 20,
    "generation": 0,
    "timeout": 5.0,
    "os_image_hash": "00" * 32,
}
ODD_VALUES: tuple[Any, ...] = (
    "",
    " ",
    "0",
    "-1",
    "1e999",
    "nan",
    "inf",
    "0x",
    "0x" + "4" * 39,
    "http://",
    "ftp://x",
    "host:",
    ":1",
    "[::1]:70000",
    "127.0.0.1:99999",
    "a" * 5000,
    "\u0000",
    "é",
    0,
    -1,
    2**63 - 1,
    -(2**63),
    1.5,
    float("inf"),
    float("-inf"),
    True,
    False,
    [],
    [1],
    {},
    {"x": 1},
)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return {float("inf"): "inf", float("-inf"): "-inf"}.get(value, repr(value))
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return (
            "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
        )
    return json.dumps(str(value))


def to_toml(top: dict[str, Any], sections: dict[str, dict[str, Any]]) -> bytes:
    lines = [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in top.items()]
    for name, body in sections.items():
        lines.append(f"[{json.dumps(name)}]")
        lines.extend(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in body.items())
    return "\n".join(lines).encode()


def _odd(rng: random.Random) -> Any:
    return rng.choice(ODD_VALUES) if rng.random() < 0.6 else random_json(rng, 1)


def _node_case(rng: random.Random) -> tuple[bytes, dict[str, str]]:
    doc = {section: dict(keys) for section, keys in NODE_GOOD.items()}
    for _ in range(rng.randint(0, 3)):
        section = rng.choice(list(SCHEMA))
        key = rng.choice([*SCHEMA[section], "typo"])
        action = rng.random()
        if action < 0.6:
            doc.setdefault(section, {})[key] = _odd(rng)
        elif action < 0.9:
            doc.get(section, {}).pop(key, None)
        else:
            doc[rng.choice(("unknown", "chain", ""))] = {"k": _odd(rng)}
    top = doc.pop("", {})
    text = to_toml(top, doc)
    if rng.random() < 0.2:
        text = random_edits(rng, text, max_edits=3)
    env: dict[str, str] = {}
    for _ in range(rng.choice((0, 0, 1, 2))):
        section = rng.choice(list(SCHEMA))
        key = rng.choice(list(SCHEMA[section]))
        name = "_".join(p for p in ("TKMS", section.upper(), key.upper()) if p)
        env[name] = str(_odd(rng))
    return text, env


def _guest_case(rng: random.Random) -> bytes:
    doc = dict(GUEST_GOOD)
    for _ in range(rng.randint(0, 3)):
        key = rng.choice([*GUEST_GOOD, "socket", "env_file", "env_out", "typo"])
        if rng.random() < 0.7:
            doc[key] = _odd(rng)
        else:
            doc.pop(key, None)
    text = to_toml(doc, {})
    return random_edits(rng, text, max_edits=3) if rng.random() < 0.2 else text


def _with_file(
    load: Callable[[Path, Any], None],
    allowed: tuple[type[BaseException], ...],
    strategy: Any,
    rich: Any,
    describe: Callable[[Any], str],
) -> Prepared:
    workdir = Path(tempfile.mkdtemp(prefix="tkms-fuzz-config-"))
    (workdir / "app-compose.json").write_text("{}")
    path = workdir / "config.toml"

    def check(case: Any) -> None:
        data = case[0] if isinstance(case, tuple) else case
        path.write_bytes(data)
        load(path, case)

    return Prepared(
        strategy=strategy,
        rich=rich,
        check=check,
        allowed=allowed,
        describe=describe,
        close=lambda: shutil.rmtree(workdir, ignore_errors=True),
    )


def _node() -> Prepared:
    def load(path: Path, case: tuple[bytes, dict[str, str]]) -> None:
        config = load_node_config(path, case[1])
        if config.chain.max_head_age_seconds != config.chain.max_head_age_seconds:
            raise AssertionError("max_head_age_seconds loaded as NaN")

    env = st.dictionaries(
        st.sampled_from(
            [
                "TKMS_DATA_DIR",
                "TKMS_CHAIN_RPC_URL",
                "TKMS_LIMITS_BURST_PER_APP",
                "TKMS_LISTEN_PEER",
                "TKMS_CHAIN_MAX_HEAD_AGE_SECONDS",
                "TKMS_TEE",
            ]
        ),
        st.text(max_size=20),
        max_size=3,
    )
    return _with_file(
        load,
        (NodeConfigError,),
        seeded(_node_case),
        st.tuples(st.binary(max_size=400), env),
        lambda c: f"{c[0].hex()} env={c[1]!r}",
    )


def _load_guest(path: Path) -> None:
    config = load_guest_config(path)
    if (
        config.tee not in ("simulator", "tdx")
        or len(config.app_id) != 20
        or len(config.network_fingerprint) != 32
    ):
        raise AssertionError(f"loaded a config the loader should refuse: {config}")


def _guest() -> Prepared:
    return _with_file(
        lambda path, case: _load_guest(path),
        (GuestConfigError,),
        seeded(_guest_case),
        st.binary(max_size=400),
        lambda c: c.hex(),
    )


TARGETS = (
    Target("config-node", "node.config.load_config: TOML file + TKMS_* environment", _node),
    Target("config-guest", "guest.config.load_config: the agent's TOML", _guest),
)
