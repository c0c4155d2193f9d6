"""Encrypted env vars (design §3.6, §7): confidential by IBE, authenticated by the app owner.

Anyone with the network's PK2 can encrypt to an app, so a ciphertext alone proves nothing
about who made it (the host delivers the file). An env is therefore a signed envelope:

    {"format": "tkms-env:v2", "app_id": "0x…", "compose_hash": "<hex>", "version": N,
     "ciphertext": "<hex>", "signature": "0x<65 bytes>"}

* ciphertext: `mpc.ibe` to the app id of a JSON object of names to values, with AAD
  frame("tkms-env:v2", app_id, compose_hash, version), so it opens only as this env;
* signature: the env signer's secp256k1 signature (EIP-191, as `eth_account` signs messages)
  over `env_digest`, SHA-256 of frame("tkms-env-signature:v1", chain id, governance, app_id,
  compose_hash, version, SHA-256(ciphertext)).

The agent accepts an envelope only for its own app id and measured compose hash, and only
when the network certifies (`tkms-app-env:v1`) that the app's AppAuth names the recovered
signer and exactly this version now; names must match `[A-Za-z_][A-Za-z0-9_]*` on both sides.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from mpc import G1, G2, ibe
from mpc.encoding import frame
from mpc.errors import DecryptionError

FORMAT: Final = "tkms-env:v2"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_KEYS: Final = frozenset({"format", "app_id", "compose_hash", "version", "ciphertext", "signature"})
MAX_VERSION: Final = 2**64 - 1


class EnvError(Exception):
    """Env vars are malformed, or their envelope does not verify or open for this app."""


@dataclass(frozen=True, slots=True)
class EnvEnvelope:
    """A signed, encrypted env as delivered to the agent."""

    app_id: bytes
    compose_hash: bytes
    version: int
    ciphertext: bytes
    signature: bytes

    def to_json(self) -> bytes:
        doc = {
            "format": FORMAT,
            "app_id": "0x" + self.app_id.hex(),
            "compose_hash": self.compose_hash.hex(),
            "version": self.version,
            "ciphertext": self.ciphertext.hex(),
            "signature": "0x" + self.signature.hex(),
        }
        return json.dumps(doc, indent=1).encode() + b"\n"

    def signer(self, chain_id: int, governance: bytes) -> bytes:
        """The 20-byte address whose key made `signature` (any signature names someone)."""
        digest = env_digest(
            chain_id, governance, self.app_id, self.compose_hash, self.version, self.ciphertext
        )
        try:
            address = Account.recover_message(
                encode_defunct(primitive=digest), signature=self.signature
            )
        except Exception:  # eth_keys raises several types for a malformed signature
            raise EnvError("env signature is malformed (not a 65-byte r‖s‖v signature)") from None
        return bytes.fromhex(str(address).removeprefix("0x"))


def check_names(names: Iterable[str]) -> None:
    for name in names:
        if not _NAME.match(name):
            raise EnvError(f"invalid env var name {name!r}")


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


def _aad(app_id: bytes, compose_hash: bytes, version: int) -> bytes:
    return frame(FORMAT.encode(), app_id, compose_hash, version.to_bytes(8, "big"))


def env_digest(
    chain_id: int,
    governance: bytes,
    app_id: bytes,
    compose_hash: bytes,
    version: int,
    ciphertext: bytes,
) -> bytes:
    """What the env signer signs (EIP-191 over these 32 bytes)."""
    return hashlib.sha256(
        frame(
            b"tkms-env-signature:v1",
            chain_id.to_bytes(32, "big"),
            governance,
            app_id,
            compose_hash,
            version.to_bytes(8, "big"),
            hashlib.sha256(ciphertext).digest(),
        )
    ).digest()


def _check_version(version: int) -> None:
    if not 1 <= version <= MAX_VERSION:
        raise EnvError(f"env version must be 1..2**64-1, got {version}")


def seal_env(
    group_key: G2,
    signer: LocalAccount,
    *,
    chain_id: int,
    governance: bytes,
    app_id: bytes,
    compose_hash: bytes,
    version: int,
    env: Mapping[str, str],
) -> EnvEnvelope:
    """Encrypt `env` to the app under `group_key` and sign it for `compose_hash` and `version`."""
    check_names(env)
    _check_version(version)
    if len(compose_hash) != 32:
        raise EnvError(f"compose hash must be 32 bytes, got {len(compose_hash)}")
    plaintext = json.dumps(dict(env), sort_keys=True).encode()
    ciphertext = ibe.encrypt(group_key, app_id, plaintext, aad=_aad(app_id, compose_hash, version))
    digest = env_digest(chain_id, governance, app_id, compose_hash, version, ciphertext)
    signature = bytes(signer.sign_message(encode_defunct(primitive=digest)).signature)
    return EnvEnvelope(app_id, compose_hash, version, ciphertext, signature)


def _hex_field(doc: dict[str, Any], name: str, size: int | None = None) -> bytes:
    value = doc[name]
    try:
        raw = bytes.fromhex(value.removeprefix("0x")) if isinstance(value, str) else None
    except ValueError:
        raw = None
    if raw is None or (size is not None and len(raw) != size):
        want = f"{size} bytes of hex" if size is not None else "hex"
        raise EnvError(f"env envelope field {name!r} must be {want}")
    return raw


def parse_envelope(blob: bytes) -> EnvEnvelope:
    """Strictly parse an envelope: exactly the documented fields, each of its type and size."""
    try:
        doc = json.loads(blob)
    except (UnicodeDecodeError, ValueError):
        raise EnvError(f"env file is not a {FORMAT} envelope (not JSON)") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise EnvError(f"env file is not a {FORMAT} envelope (format field)")
    if set(doc) != _KEYS:
        raise EnvError(f"env envelope must have exactly the fields {', '.join(sorted(_KEYS))}")
    version = doc["version"]
    if not isinstance(version, int) or isinstance(version, bool):
        raise EnvError("env envelope field 'version' must be an integer")
    _check_version(version)
    return EnvEnvelope(
        app_id=_hex_field(doc, "app_id", 20),
        compose_hash=_hex_field(doc, "compose_hash", 32),
        version=version,
        ciphertext=_hex_field(doc, "ciphertext"),
        signature=_hex_field(doc, "signature", 65),
    )


def open_env(identity_keys: G1 | Sequence[G1], envelope: EnvEnvelope) -> dict[str, str]:
    """Decrypt a verified envelope with the app's IBE identity key; names are checked.

    During a rotation the agent holds two generations' keys and tries each: the envelope
    does not say which generation's PK2 it was encrypted to."""
    aad = _aad(envelope.app_id, envelope.compose_hash, envelope.version)
    candidates = [identity_keys] if isinstance(identity_keys, G1) else list(identity_keys)
    failure: DecryptionError | None = None
    for identity_key in candidates:
        try:
            plaintext = ibe.decrypt(identity_key, envelope.app_id, envelope.ciphertext, aad=aad)
            break
        except DecryptionError as exc:
            failure = exc
    else:
        raise EnvError(
            f"encrypted env does not open for app 0x{envelope.app_id.hex()} "
            f"(tampered, or encrypted to another network): {failure}"
        ) from None
    try:
        doc = json.loads(plaintext)
    except (UnicodeDecodeError, ValueError):
        raise EnvError("decrypted env is not JSON") from None
    if not isinstance(doc, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in doc.items()
    ):
        raise EnvError("decrypted env is not an object of strings")
    check_names(doc)
    return doc


def write_env(path: Path, env: Mapping[str, str]) -> None:
    """Write `env` as JSON to `path`, readable by the owner only (a fresh file, then renamed)."""
    from node.sealing import write_atomic

    write_atomic(path, json.dumps(dict(env), sort_keys=True).encode(), mode=0o600)
