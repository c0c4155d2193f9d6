"""Threshold BLS signatures, min-sig: signatures in G1, the group key PK2 in G2 (design §3.5).

Member i signs with its share: sigma_i = x_i·H(m) with H the standard
`BLS_SIG_BLS12381G1_XMD:SHA-256_SSWU_RO_NUL_` hash, plus a DLEQ proof against V_i, so a
wrong partial is caught and names its member. Any t valid partials combine by Lagrange
interpolation into the ordinary BLS signature x·H(m), which any standard min-sig verifier
(and EIP-2537 on chain) checks with PK2: e(sig, G2) == e(H(m), PK2).

`app_pubkey_statement` builds the statement the network signs about an app's key,
`app_env_statement` the one about the env signer and version its AppAuth names (design §7).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mpc.derive import VerifiedPartial, combine_partials
from mpc.dleq import DleqProof, is_valid_dleq, prove_dleq
from mpc.dst import DST_SIG
from mpc.encoding import frame
from mpc.errors import EncodingError, InvalidPartial, ProtocolMisuse
from mpc.group import G1, G2, Rng, hash_to_g1_point, pairing_product_is_one
from mpc.sharing import Share
from mpc.types import MemberIndex

_LABEL = b"tkms-sign-partial:v1"


def message_point(message: bytes) -> G1:
    return hash_to_g1_point(message, DST_SIG)


def app_pubkey_statement(chain_id: int, contract: bytes, app_id: bytes, public_key: bytes) -> bytes:
    """`tkms-app-pubkey:v1` ‖ chain id ‖ contract ‖ app_id ‖ key, each framed with its length."""
    if len(contract) != 20:
        raise ProtocolMisuse(f"contract address must be 20 bytes, got {len(contract)}")
    return frame(b"tkms-app-pubkey:v1", chain_id.to_bytes(32, "big"), contract, app_id, public_key)


def app_env_statement(
    chain_id: int, contract: bytes, app_id: bytes, signer: bytes, version: int, nonce: bytes
) -> bytes:
    """`tkms-app-env:v1` ‖ chain id ‖ contract ‖ app_id ‖ env signer ‖ env version ‖ nonce.

    The network signs it only when the app's AppAuth names exactly that signer and version at
    the node's chain head; the app's fresh nonce makes an old statement useless to a replayer.
    """
    if len(contract) != 20 or len(signer) != 20:
        raise ProtocolMisuse("contract and signer must be 20-byte addresses")
    return frame(
        b"tkms-app-env:v1",
        chain_id.to_bytes(32, "big"),
        contract,
        app_id,
        signer,
        version.to_bytes(8, "big"),
        nonce,
    )


def app_env_binding(signer: bytes, version: int, nonce: bytes) -> bytes:
    """What the app's evidence binds (`tkms-sign:v1`) when it asks for an env statement."""
    return frame(b"tkms-app-env:v1", signer, version.to_bytes(8, "big"), nonce)


def _context(member: int, message: bytes) -> bytes:
    return frame(_LABEL, member.to_bytes(4, "big"), message)


@dataclass(frozen=True, slots=True)
class SignaturePartial:
    member: MemberIndex
    sigma: G1
    proof: DleqProof


def sign_partial(
    share: Share, message: bytes, *, rng: Rng, verification_key: G1 | None = None
) -> SignaturePartial:
    h = message_point(message)
    sigma = h * share.value
    vk = verification_key if verification_key is not None else G1.base_mul(share.value)
    proof = prove_dleq(
        share.value, h, vk=vk, sigma=sigma, context=_context(share.member, message), rng=rng
    )
    return SignaturePartial(member=share.member, sigma=sigma, proof=proof)


def verify_partial_signature(
    partial: SignaturePartial, message: bytes, verification_key: G1
) -> None:
    """Raise InvalidPartial (naming the member) unless the partial is x_i·H(m) for V_i."""
    if not is_valid_dleq(
        partial.proof,
        message_point(message),
        vk=verification_key,
        sigma=partial.sigma,
        context=_context(partial.member, message),
    ):
        raise InvalidPartial(partial.member, "signature share proof does not verify")


def combine_signatures(partials: Sequence[SignaturePartial], threshold: int) -> bytes:
    """The standard 48-byte BLS signature from `threshold` verified partials."""
    combined = combine_partials(
        [VerifiedPartial(member=p.member, sigma=p.sigma) for p in partials], threshold
    )
    return combined.to_bytes()


def verify_signature(group_key: G2, message: bytes, signature: bytes) -> bool:
    """Standard min-sig BLS verification (CoreVerify with the signature in G1)."""
    try:
        sig = G1.from_bytes(signature, "signature")
    except EncodingError:
        return False
    if group_key.is_identity():
        return False
    return pairing_product_is_one([(sig, G2.generator()), (-message_point(message), group_key)])
