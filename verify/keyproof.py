"""Does a key the running app got from the network verify to the network's key on chain?

An app that offers it serves `GET /.tkms/key-proof?nonce=HEX` (the testnet's demo app does):
its guest agent signs `KEY_PROOF_LABEL ‖ nonce` with the app's signing key (`/Sign`,
secp256k1 over SHA-256) and answers with the signature, the public key and the key's
signature chain (docs/guest.md, Signature chain). The verifier's nonce makes the answer fresh;
then the chain is followed to the network:

1. the signature over our nonce verifies under the public key (the app holds it now);
2. chain[0] recovers the app's root key over `"signing:" ‖ hex(public key)`;
3. chain[1] is the network's threshold BLS signature over
   `tkms-app-pubkey:v1 ‖ chain id ‖ governance ‖ app id ‖ root key` (design §3.5) under PK2 of a
   generation whose key chains to the fingerprint the app measured (`guest.committee`).

No operator's word enters: PK2 comes from chain and is checked against the fingerprint.
"""

from __future__ import annotations

import os
import ssl

from contracts import GovernanceClient
from guest.keys import KeyRequestError, recover_root
from guest.keys import verify as verify_signature_of
from mpc import G2
from mpc.tsig import app_pubkey_statement, verify_signature
from verify.chain import ChainView
from verify.fetch import FetchError, Target, get_json
from verify.report import Check, failed, judged

KEY_PROOF_PATH = "/.tkms/key-proof"
KEY_PROOF_LABEL = b"tkms-key-proof:v1:"
NAME = "a key the app got verifies to the network's key on chain"


def _generation_keys(governance: GovernanceClient, head: int) -> list[tuple[int, G2]]:
    """PK2 of every generation up to the latest (the caller checked the chain of links)."""
    latest = governance.get_latest_generation(block=head)
    keys = []
    for generation in range(latest, 0, -1):
        raw = governance.get_generation(generation, block=head).pk2
        try:
            keys.append((generation, G2.from_bytes(raw, f"PK2 of generation {generation}")))
        except ValueError:
            continue
    return keys


def key_proof_check(
    target: Target, context: ssl.SSLContext, view: ChainView, app_id: bytes
) -> Check:
    """Ask the app at `target` for a fresh key proof and follow it to PK2 (module steps).
    The caller has checked that the chain's network is the one the app measured."""
    nonce = os.urandom(32)
    try:
        proof, _ = get_json(target, f"{KEY_PROOF_PATH}?nonce={nonce.hex()}", context)
        public_key = bytes.fromhex(proof["public_key"])
        signature = bytes.fromhex(proof["signature"])
        chain = [bytes.fromhex(link) for link in proof["signature_chain"]]
    except FetchError as exc:
        return failed(NAME, f"no key proof from the app: {exc}")
    except (KeyError, TypeError, ValueError) as exc:
        return failed(NAME, f"the app's key proof is malformed: {exc}")
    if len(chain) != 2:
        return failed(NAME, f"the signature chain has {len(chain)} elements, expected 2")
    try:
        fresh = verify_signature_of("secp256k1", KEY_PROOF_LABEL + nonce, signature, public_key)
        root = recover_root("signing", public_key, chain[0])
    except KeyRequestError as exc:
        return failed(NAME, f"the app's key proof does not verify: {exc}")
    if not fresh:
        return failed(NAME, "the signature is not over our nonce under the app's key (replayed?)")
    statement = app_pubkey_statement(
        view.chain_id, bytes.fromhex(view.governance_address[2:]), app_id, root
    )
    for generation, pk2 in _generation_keys(view.governance, view.head):
        if verify_signature(pk2, statement, chain[1]):
            return judged(
                NAME,
                True,
                f"signing key {public_key.hex()[:16]}… signed our nonce; its root key "
                f"{root.hex()[:16]}… is certified for app 0x{app_id.hex()} by the network's "
                f"threshold signature under PK2 of generation {generation}",
                proof=proof,
                nonce=nonce.hex(),
            )
    return failed(
        NAME,
        f"the network signature does not verify under any generation's PK2 for app "
        f"0x{app_id.hex()} and root key {root.hex()}",
        proof=proof,
    )
