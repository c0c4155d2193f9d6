"""Does a key the running app got from the network verify to the network's key on chain?

An app that offers it serves `GET /.tkms/key-proof?nonce=HEX` (the testnet's demo app does):
its guest agent signs `KEY_PROOF_LABEL ‖ nonce` with the app's signing key (`/Sign`,
secp256k1 over SHA-256) and answers with the Sign reply: the signature, the public key, the
chain [signature, app signature, KMS signature] and the `tkms` certificates (docs/guest.md,
Signature chain). The verifier's nonce makes the answer fresh; then the chain is followed to
the network, both ways `guest.verify` knows:

1. the signature over our nonce verifies under the public key (the app holds it now), with
   low S, as dstack's verifiers require;
2. tkms's way: the app key and the KMS root are certified by the network's threshold BLS
   signature under PK2 of the generation the reply names, whose key chains to the fingerprint
   the app measured (`guest.committee`), and chain[1..2] recover to exactly those keys;
3. dstack's way: chain[2] recovers to the KMS root governance stores for that generation
   (`kmsRoot(g)`, itself certified under PK2), the anchor a dstack verifier compares with.

No operator's word enters: PK2 comes from chain and is checked against the fingerprint.
"""

from __future__ import annotations

import os
import ssl

from guest.verify import (
    Certificates,
    ChainError,
    verify_sign_chain,
    verify_tkms_sign_chain,
)
from mpc import G2
from verify.chain import ChainView
from verify.fetch import FetchError, Target, get_json
from verify.report import Check, failed, judged

KEY_PROOF_PATH = "/.tkms/key-proof"
KEY_PROOF_LABEL = b"tkms-key-proof:v1:"
NAME = "a key the app got verifies to the network's key on chain"


def key_proof_check(
    target: Target, context: ssl.SSLContext, view: ChainView, app_id: bytes
) -> Check:
    """Ask the app at `target` for a fresh key proof and follow it to PK2 (module steps).
    The caller has checked that the chain's network is the one the app measured."""
    nonce = os.urandom(32)
    try:
        proof, _ = get_json(target, f"{KEY_PROOF_PATH}?nonce={nonce.hex()}", context)
        public_key = bytes.fromhex(proof["public_key"])
        chain = [bytes.fromhex(link) for link in proof["signature_chain"]]
        certificates = Certificates.from_json(proof["tkms"])
    except FetchError as exc:
        return failed(NAME, f"no key proof from the app: {exc}")
    except (KeyError, TypeError, ValueError) as exc:
        return failed(NAME, f"the app's key proof is malformed: {exc}")
    governance = view.governance
    generation = certificates.generation
    contract = bytes.fromhex(view.governance_address[2:])
    try:
        group_key = G2.from_bytes(
            governance.get_generation(generation, block=view.head).pk2,
            f"PK2 of generation {generation}",
        )
        data = KEY_PROOF_LABEL + nonce
        app_key = verify_tkms_sign_chain(
            "secp256k1",
            data,
            public_key,
            chain,
            certificates,
            app_id=app_id,
            chain_id=view.chain_id,
            governance=contract,
            group_key=group_key,
        )
        anchor, _ = governance.get_kms_root(generation, block=view.head)
        if not anchor:
            raise ChainError(f"generation {generation} has no KMS root on chain")
        verify_sign_chain("secp256k1", data, public_key, chain, app_id=app_id, kms_root=anchor)
    except (ChainError, ValueError) as exc:
        return failed(NAME, f"the app's key proof does not verify: {exc}", proof=proof)
    return judged(
        NAME,
        True,
        f"signing key {public_key.hex()[:16]}… signed our nonce; its app key "
        f"{app_key.hex()[:16]}… is certified for app 0x{app_id.hex()} by the network's threshold "
        f"signature under PK2 of generation {generation}, and its chain recovers to the KMS "
        f"root {anchor.hex()[:16]}… that governance stores (dstack's check)",
        proof=proof,
        nonce=nonce.hex(),
    )
