"""Environment variables encrypted to an app with IBE (design §3.6), before it ever runs.

Anyone with the chain's PK2 can encrypt; only an agent that the network accepts as the app
(its IBE identity key comes from a threshold derivation) can decrypt. The plaintext is a JSON
object of string names to string values; the AAD binds the purpose, so a ciphertext made for
something else of the same app does not open as env vars.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from mpc import G1, G2, ibe
from mpc.errors import DecryptionError

ENV_AAD = b"tkms-env:v1"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class EnvError(Exception):
    """Env vars are malformed, or their ciphertext does not open for this app."""


def parse_assignments(items: Iterable[str]) -> dict[str, str]:
    """`KEY=VALUE` strings (or dotenv lines; blanks and `#` comments skipped) into a dict."""
    out: dict[str, str] = {}
    for number, raw in enumerate(items, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not _NAME.match(name):
            raise EnvError(f"env entry {number} is not NAME=VALUE: {name or line[:20]!r}")
        out[name] = value
    return out


def encrypt_env(group_key: G2, app_id: bytes, env: Mapping[str, str]) -> bytes:
    for name in env:
        if not _NAME.match(name):
            raise EnvError(f"invalid env var name {name!r}")
    plaintext = json.dumps(dict(env), sort_keys=True).encode()
    return ibe.encrypt(group_key, app_id, plaintext, aad=ENV_AAD)


def decrypt_env(identity_key: G1, app_id: bytes, ciphertext: bytes) -> dict[str, str]:
    try:
        plaintext = ibe.decrypt(identity_key, app_id, ciphertext, aad=ENV_AAD)
    except DecryptionError as exc:
        raise EnvError(
            f"encrypted env does not open for app 0x{app_id.hex()} "
            f"(tampered, or encrypted to another app or network): {exc}"
        ) from None
    doc = json.loads(plaintext)
    if not isinstance(doc, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in doc.items()
    ):
        raise EnvError("decrypted env is not an object of strings")
    return doc


def write_env(path: Path, env: Mapping[str, str]) -> None:
    """Write `env` as JSON to `path`, readable by the owner only (created 0600, replaced)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(dict(env), f, sort_keys=True)
    os.replace(tmp, path)
