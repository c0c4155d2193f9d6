"""Signed env envelopes (Security III G-03, G-10): what the agent accepts, and what it refuses.

The network is `FakeKms` (one secret; it certifies the env signer and version the app's AppAuth
names, as the nodes do from their chain view). Every refusal here is an env the host could
deliver before: one it made itself, an older one, one for another compose, odd names.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

import guest.agent
from guest.env import (
    FORMAT,
    EnvEnvelope,
    EnvError,
    env_digest,
    open_env,
    parse_envelope,
    seal_env,
)
from guest.measure import compose_hash
from mpc import G2, KeyRequest, Scalar, ibe
from mpc.encoding import frame
from tests.guest.agent_harness import APP_ID, COMPOSE, boot, make_config
from tests.guest.fake_kms import CONTRACT

SECRET = Scalar.from_bytes((987654321).to_bytes(32, "big"), "test secret")
OWNER: LocalAccount = Account.from_key(b"\x01" * 32)
HOST: LocalAccount = Account.from_key(b"\x02" * 32)
SIGNER = bytes.fromhex(OWNER.address[2:])
HASH = compose_hash(COMPOSE)


@pytest.fixture(autouse=True)
def no_retry_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(guest.agent, "ENV_RETRY_SECONDS", 0.0)


def seal(
    env: dict[str, str],
    *,
    signer: LocalAccount = OWNER,
    version: int = 2,
    composed: bytes = HASH,
    app_id: bytes = APP_ID,
    secret: Scalar = SECRET,
) -> EnvEnvelope:
    return seal_env(
        G2.base_mul(secret),
        signer,
        chain_id=31337,
        governance=CONTRACT,
        app_id=app_id,
        compose_hash=composed,
        version=version,
        env=env,
    )


def start(tmp_path: Path, envelope: EnvEnvelope | bytes, policy: tuple[bytes, int]) -> Path:
    """Boot an agent with the envelope; returns where the env went."""
    delivered = tmp_path / "host-share"
    delivered.mkdir(exist_ok=True)
    blob = envelope if isinstance(envelope, bytes) else envelope.to_json()
    (delivered / "env.enc").write_bytes(blob)
    out = tmp_path / "run" / "env.json"
    out.parent.mkdir(exist_ok=True)
    config = make_config(tmp_path, env_file=delivered / "env.enc", env_out=out)
    boot(config, SECRET, env_policy=policy)
    return out


def test_an_env_signed_by_the_apps_env_signer_for_its_version_is_written_owner_only(
    tmp_path: Path,
) -> None:
    out = start(tmp_path, seal({"DB_PASSWORD": "hunter2", "EMPTY": ""}), (SIGNER, 2))
    assert json.loads(out.read_text()) == {"DB_PASSWORD": "hunter2", "EMPTY": ""}
    assert out.stat().st_mode & 0o777 == 0o600


def test_an_env_the_host_made_is_refused(tmp_path: Path) -> None:
    """G-03 (1): anyone can encrypt to the app with PK2; the host signs with its own key."""
    with pytest.raises(EnvError, match=f"signed by {HOST.address.lower()} as the app's current"):
        start(tmp_path, seal({"ADMIN_PASSWORD": "chosen-by-host"}, signer=HOST), (SIGNER, 2))
    assert not (tmp_path / "run" / "env.json").exists()


def test_an_older_env_is_refused_after_a_new_version_is_published(tmp_path: Path) -> None:
    """G-03 (2): rollback to revoked secrets. The nodes certify the version AppAuth names now;
    a node that lags is asked again (ENV_TRIES) before the agent gives up."""
    old = seal({"API_KEY": "v1-revoked-leaked"}, version=1)
    with pytest.raises(EnvError, match="names env signer .* and envVersion 2, not .* and 1"):
        start(tmp_path, old, (SIGNER, 2))


def test_an_env_for_another_compose_is_refused(tmp_path: Path) -> None:
    """G-03 (3): an env made for another compose of the same app."""
    other = seal({"A": "1"}, composed=b"\x33" * 32)
    with pytest.raises(EnvError, match=f"not this app's measured {HASH.hex()}"):
        start(tmp_path, other, (SIGNER, 2))


def test_an_env_for_another_app_is_refused(tmp_path: Path) -> None:
    with pytest.raises(EnvError, match=f"the env is for app 0x{'22' * 20}, not 0x{APP_ID.hex()}"):
        start(tmp_path, seal({"A": "1"}, app_id=b"\x22" * 20), (SIGNER, 2))


def test_a_tampered_ciphertext_is_refused(tmp_path: Path) -> None:
    good = seal({"A": "1"})
    flipped = bytearray(good.ciphertext)
    flipped[-1] ^= 1
    tampered = EnvEnvelope(
        good.app_id, good.compose_hash, good.version, bytes(flipped), good.signature
    )
    # The signature covers the ciphertext: it now names someone else, whom AppAuth never named.
    with pytest.raises(EnvError, match="does not confirm env version 2 signed by"):
        start(tmp_path, tampered, (SIGNER, 2))


def test_signed_names_that_encryption_would_refuse_are_refused(tmp_path: Path) -> None:
    """G-03: `LD_PRELOAD` is a valid name, but `A=B\\nX` or an empty name never are, even
    when the app's own env signer signed them."""
    plaintext = json.dumps({"": "x", "A=B\nLD_PRELOAD": "/tmp/evil.so"}).encode()
    aad = frame(FORMAT.encode(), APP_ID, HASH, (2).to_bytes(8, "big"))
    ciphertext = ibe.encrypt(G2.base_mul(SECRET), APP_ID, plaintext, aad=aad)
    digest = env_digest(31337, CONTRACT, APP_ID, HASH, 2, ciphertext)
    signature = bytes(OWNER.sign_message(encode_defunct(primitive=digest)).signature)
    crafted = EnvEnvelope(APP_ID, HASH, 2, ciphertext, signature)
    with pytest.raises(EnvError, match="invalid env var name ''"):
        start(tmp_path, crafted, (SIGNER, 2))
    with pytest.raises(EnvError, match="invalid env var name '1X'"):
        seal({"1X": "v"})


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"\x00\x01 raw IBE ciphertext", "not a tkms-env:v2 envelope \\(not JSON\\)"),
        (b'{"format": "tkms-env:v1"}', "not a tkms-env:v2 envelope \\(format field\\)"),
        (b'{"format": "tkms-env:v2"}', "must have exactly the fields"),
    ],
)
def test_an_unsigned_or_malformed_env_file_is_refused_before_any_network_call(
    tmp_path: Path, blob: bytes, message: str
) -> None:
    with pytest.raises(EnvError, match=message):
        start(tmp_path, blob, (SIGNER, 2))


def test_envelope_fields_are_parsed_strictly() -> None:
    good = json.loads(seal({"A": "1"}).to_json())
    assert parse_envelope(json.dumps(good).encode()).version == 2
    for name, value, message in [
        ("version", 0, "env version must be 1..2\\*\\*64-1, got 0"),
        ("version", True, "'version' must be an integer"),
        ("version", "2", "'version' must be an integer"),
        ("app_id", "0x11", "'app_id' must be 20 bytes of hex"),
        ("signature", "zz", "'signature' must be 65 bytes of hex"),
        ("compose_hash", 5, "'compose_hash' must be 32 bytes of hex"),
    ]:
        with pytest.raises(EnvError, match=message):
            parse_envelope(json.dumps({**good, name: value}).encode())


def test_open_env_needs_the_network_key() -> None:
    envelope = seal({"A": "1"})
    identity = KeyRequest.ibe_key(APP_ID).point() * SECRET
    assert open_env(identity, envelope) == {"A": "1"}
    other = seal({"A": "1"}, secret=Scalar.from_bytes((5).to_bytes(32, "big"), "s"))
    with pytest.raises(EnvError, match="does not open for app"):
        open_env(identity, other)


def test_the_decrypted_env_never_goes_through_a_prepared_tmp_file_or_symlink(
    tmp_path: Path,
) -> None:
    """G-10: `<env_out>.tmp` was opened without O_EXCL: a prepared 0644 file kept its mode,
    a symlink was followed and the plaintext landed at its target."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "env.json.tmp").write_text("")
    (run / "env.json.tmp").chmod(0o644)
    (run / ".env.json.tmp").symlink_to(tmp_path / "leak.txt")
    out = start(tmp_path, seal({"DB_PASSWORD": "hunter2"}), (SIGNER, 2))
    assert out.stat().st_mode & 0o777 == 0o600 and not out.is_symlink()
    assert not (tmp_path / "leak.txt").exists()
    assert (run / "env.json.tmp").read_text() == ""
