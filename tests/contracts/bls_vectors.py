"""Writes tests/data/bls/vectors.json: BLS signatures for the on-chain verifier (BlsVerifier).

    .venv/bin/python -m tests.contracts.bls_vectors          # rewrite the file
    .venv/bin/python -m tests.contracts.bls_vectors --check  # exit 1 if it differs

Everything is seeded, so the file is reproducible (`test_bls_vectors_are_reproducible`).
Valid vectors are the network's own signatures: a 3-of-5 key dealt from a seed, three members
sign partials (`mpc.tsig.sign_partial`, each checked with its DLEQ proof), `combine_signatures`
gives the standard signature, over the statements tkms signs (an app's key, a generation link,
a KMS root certificate). Two more are drand's quicknet beacons (League of Entropy mainnet, the
same ciphersuite: min-sig, G1 signatures, `BLS_SIG_BLS12381G1_XMD:SHA-256_SSWU_RO_NUL_`), real
signatures from another threshold network. Forged vectors change one thing each and say what
the contract must answer: false for a well-formed signature that does not verify, a named
revert for a malformed point.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from pathlib import Path
from typing import Any, Final

from py_ecc.bls.hash_to_curve import map_to_curve_G1, map_to_curve_G2
from py_ecc.fields import optimized_bls12_381_FQ as FQ
from py_ecc.fields import optimized_bls12_381_FQ2 as FQ2
from py_ecc.optimized_bls12_381 import normalize

from mpc.anchor import generation_statement
from mpc.dst import DST_SIG
from mpc.group import G1, G2, P
from mpc.k256 import public_key
from mpc.kmsroot import kms_root_statement
from mpc.tsig import (
    app_pubkey_statement,
    combine_signatures,
    sign_partial,
    verify_partial_signature,
    verify_signature,
)
from tests.mpc.dealer import deal, seeded_rng

VECTOR_FILE: Final = Path(__file__).resolve().parents[1] / "data" / "bls" / "vectors.json"
SEED: Final = 19
CHAIN_ID: Final = 31337
#: A fixed governance address: the verifier stores whatever its deployer names.
GOVERNANCE: Final = bytes.fromhex("5fbdb2315678afecb367f032d93f642f64180aa3")
APP_ID: Final = bytes.fromhex("a1b2c3d4e5f60718293a4b5c6d7e8f9001122334")
OTHER_APP_ID: Final = bytes.fromhex("00000000000000000000000000000000000000aa")
SIGNERS: Final = (1, 3, 5)

#: drand quicknet, https://api.drand.sh/52db9ba70e0cc0f6eaf7803dd07447a1f5477735fd3f661792ba94600c84e971/info
DRAND_CHAIN: Final = "52db9ba70e0cc0f6eaf7803dd07447a1f5477735fd3f661792ba94600c84e971"
DRAND_PUBLIC_KEY: Final = (
    "83cf0f2896adee7eb8b5f01fcad3912212c437e0073e911fb90022d3e760183c8c4b450b6a0a6c3ac6a5776a2"
    "d1064510d1fec758c921cc22b0e17e63aaf4bcb5ed66304de9cf809bd274ca73bab4af5a6e9c76a4bc09e76ea"
    "e8991ef5ece45a"
)
#: Rounds 2 and 3 as the drand API serves them (`/public/<round>`).
DRAND_BEACONS: Final = {
    2: "b6b6a585449b66eb12e875b64fcbab3799861a00e4dbf092"
    "d99e969a5eac57dd3f798acf61e705fe4f093db926626807",
    3: "b3fab6df720b68cc47175f2c777e86d84187caab5770906f"
    "515ff1099cb01e4deaa027075d860823e49477b93c72bd64",
}


def drand_message(round_number: int) -> bytes:
    """An unchained drand beacon signs SHA-256 of its round number (8 bytes, big-endian)."""
    return hashlib.sha256(round_number.to_bytes(8, "big")).digest()


def _threshold_sign(message: bytes, seed: int) -> tuple[G2, bytes]:
    """PK2 and the combined signature of `message` by members SIGNERS of a dealt 3-of-5 key."""
    keys = deal(5, 3, seed=seed)
    rng = seeded_rng(seed + 1)
    partials = []
    for member in SIGNERS:
        share = keys.shares[member - 1]
        vk = keys.public.verification_key(share.member)
        partial = sign_partial(share, message, rng=rng, verification_key=vk)
        verify_partial_signature(partial, message, vk)
        partials.append(partial)
    signature = combine_signatures(partials, keys.threshold)
    assert verify_signature(keys.group_key_g2, message, signature)
    return keys.group_key_g2, signature


def _pad(element: int) -> bytes:
    return element.to_bytes(64, "big")


def off_subgroup_g1(rng: random.Random) -> bytes:
    """A point on E(Fp) outside G1: SSWU of a random element without clearing the cofactor."""
    x, y = normalize(map_to_curve_G1(FQ(rng.randrange(P))))
    encoded = _pad(int(x)) + _pad(int(y))
    assert not _in_subgroup(G1, encoded)
    return encoded


def off_subgroup_g2(rng: random.Random) -> bytes:
    """A point on E'(Fp2) outside G2 (SSWU of a random element, cofactor not cleared)."""
    u = FQ2([rng.randrange(P), rng.randrange(P)])
    x, y = normalize(map_to_curve_G2(u))
    coords = (x.coeffs[0], x.coeffs[1], y.coeffs[0], y.coeffs[1])
    encoded = b"".join(_pad(int(c)) for c in coords)
    assert not _in_subgroup(G2, encoded)
    return encoded


def _in_subgroup(group: type[G1] | type[G2], encoded: bytes) -> bool:
    try:
        group.from_eip2537(encoded)
    except Exception:
        return False
    return True


def _valid(name: str, pk: G2, message: bytes, signature: bytes, **extra: Any) -> dict[str, Any]:
    sig = G1.from_bytes(signature)
    return {
        "name": name,
        "public_key": pk.to_bytes().hex(),
        "public_key_eip2537": pk.to_eip2537().hex(),
        "message": message.hex(),
        "signature": signature.hex(),
        "signature_eip2537": sig.to_eip2537().hex(),
        "result": True,
        **extra,
    }


def _forged(
    name: str, base: dict[str, Any], result: bool | str, *, generic: bool = False, **changes: str
) -> dict[str, Any]:
    """`base` with `changes`; `result` is False or the revert `Error(input)` expected. A
    `generic` forgery is of the message alone, so it keeps no app id and key."""
    dropped = ("public_key", "signature", "source") + (("app_id", "key") if generic else ())
    vector = {k: v for k, v in base.items() if k not in dropped}
    vector.update(changes, name=name, result=result)
    return vector


def build() -> dict[str, Any]:
    rng = random.Random(SEED)
    app_key = public_key(hashlib.sha256(b"tkms bls vectors: app key").digest())
    statement = app_pubkey_statement(CHAIN_ID, GOVERNANCE, APP_ID, app_key)
    pk2, app_sig = _threshold_sign(statement, SEED)
    app = _valid(
        "app key certificate", pk2, statement, app_sig, app_id=APP_ID.hex(), key=app_key.hex()
    )

    next_pk2, _ = _threshold_sign(b"next generation", SEED + 100)
    link_statement = generation_statement(CHAIN_ID, GOVERNANCE, 2, next_pk2)
    _, link_sig = _threshold_sign(link_statement, SEED)
    root_key = public_key(hashlib.sha256(b"tkms bls vectors: kms root").digest())
    root_statement = kms_root_statement(CHAIN_ID, GOVERNANCE, 1, root_key)
    _, root_sig = _threshold_sign(root_statement, SEED)

    drand_pk = G2.from_bytes(bytes.fromhex(DRAND_PUBLIC_KEY))
    drand = [
        _valid(
            f"drand quicknet round {r}",
            drand_pk,
            drand_message(r),
            bytes.fromhex(sig),
            source=f"https://api.drand.sh/{DRAND_CHAIN}/public/{r}",
        )
        for r, sig in DRAND_BEACONS.items()
    ]
    valid = [
        app,
        _valid("generation link (tkms-generation:v1)", pk2, link_statement, link_sig),
        _valid("KMS root certificate (tkms-k256-root:v1)", pk2, root_statement, root_sig),
        *drand,
    ]

    other_pk2, _ = _threshold_sign(b"another network", SEED + 200)
    sig_hex = app["signature_eip2537"]
    pk_hex = app["public_key_eip2537"]
    negated = (-G1.from_bytes(app_sig)).to_eip2537().hex()
    one_one = (_pad(1) + _pad(1)).hex()
    p_coordinate = (_pad(P) + bytes.fromhex(sig_hex)[64:]).hex()
    dirty_padding = "01" + sig_hex[2:]
    forged = [
        _forged("another message", app, False, generic=True, message=(statement + b"x").hex()),
        _forged(
            "another app's statement",
            app,
            False,
            message=app_pubkey_statement(CHAIN_ID, GOVERNANCE, OTHER_APP_ID, app_key).hex(),
            app_id=OTHER_APP_ID.hex(),
        ),
        _forged("another key signed", app, False, public_key_eip2537=other_pk2.to_eip2537().hex()),
        _forged("signature negated", app, False, signature_eip2537=negated),
        _forged(
            "drand beacon under the app's key",
            drand[0],
            False,
            public_key_eip2537=pk_hex,
        ),
        _forged(
            "signature not in the subgroup",
            app,
            "NotInSubgroup(signature)",
            signature_eip2537=off_subgroup_g1(rng).hex(),
        ),
        _forged(
            "public key not in the subgroup",
            app,
            "NotInSubgroup(public key)",
            public_key_eip2537=off_subgroup_g2(rng).hex(),
        ),
        _forged("signature off the curve", app, "NotOnCurve(signature)", signature_eip2537=one_one),
        _forged(
            "public key off the curve",
            app,
            "NotOnCurve(public key)",
            public_key_eip2537=(bytes.fromhex(one_one) * 2).hex(),
        ),
        _forged(
            "signature is the identity",
            app,
            "IdentityPoint(signature)",
            signature_eip2537="00" * 128,
        ),
        _forged(
            "public key is the identity",
            app,
            "IdentityPoint(public key)",
            public_key_eip2537="00" * 256,
        ),
        _forged(
            "signature coordinate equal to p",
            app,
            "NotCanonical(signature)",
            signature_eip2537=p_coordinate,
        ),
        _forged(
            "signature padding not zero",
            app,
            "NotCanonical(signature)",
            signature_eip2537=dirty_padding,
        ),
        _forged(
            "signature compressed (48 bytes)",
            app,
            "InvalidLength(signature)",
            signature_eip2537=app["signature"],
        ),
        _forged(
            "signature one byte short",
            app,
            "InvalidLength(signature)",
            signature_eip2537=sig_hex[:-2],
        ),
        _forged(
            "public key compressed (96 bytes)",
            app,
            "InvalidLength(public key)",
            public_key_eip2537=app["public_key"],
        ),
    ]
    return {
        "source": "tests/contracts/bls_vectors.py (seeded; `--check` regenerates and compares)",
        "ciphersuite": DST_SIG.decode(),
        "chain_id": CHAIN_ID,
        "governance": "0x" + GOVERNANCE.hex(),
        "drand_chain": DRAND_CHAIN,
        "vectors": valid + forged,
    }


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=1) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.contracts.bls_vectors")
    parser.add_argument("--check", action="store_true", help="exit 1 if the file differs")
    args = parser.parse_args(argv)
    text = render(build())
    if args.check:
        if VECTOR_FILE.read_text() != text:
            print(f"{VECTOR_FILE} differs from a fresh build", file=sys.stderr)
            return 1
        print(f"{VECTOR_FILE} is up to date")
        return 0
    VECTOR_FILE.parent.mkdir(parents=True, exist_ok=True)
    VECTOR_FILE.write_text(text)
    print(f"wrote {VECTOR_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
