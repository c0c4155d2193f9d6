"""Encrypting one share from dealer i to member j so that it can go on the public board.

Hybrid, with both halves from per-epoch keys (`mpc.epochkey`):

    ss_dh  = x_i·X_j = x_j·X_i                  (static-static DH in G1, 48 bytes compressed)
    ss_kem, ct_kem = ML-KEM-768.Encaps(ek_j)    (32-byte secret, 1088-byte ciphertext)
    key ‖ nonce = HKDF-SHA256(ikm = ss_dh ‖ ss_kem, salt = none,
                              info = frame("tkms-sharebox:v1", pair, X_i, X_j,
                                           SHA-256(ek_j), ct_kem)),  32 + 12 bytes
    box    = AES-256-GCM(key, nonce, the 32-byte share)             (48 bytes with the tag)

`pair` = frame(session id, u16 dealer, u16 recipient) binds chain, contract, epoch, committee
and the pair. A `SealedShare` is ct_kem ‖ box (1136 bytes). The key is used once, so the
nonce comes from the same HKDF. Reading the board alone, a classical adversary needs ss_dh
(CDH in G1) and a quantum one needs ss_kem (ML-KEM-768): the share stays secret while
either holds.

Complaints are publicly verifiable without anyone publishing an honest share:

* the accuser j reveals ss_dh with a DLEQ proof that log_G1(X_j) == log_{X_i}(ss_dh)
  (`reveal_dh`, `is_valid_reveal`); it never reveals its decapsulated ss_kem, which could be
  the secret of another pair if dealer i copied that pair's ct_kem;
* the accused dealer answers with the ss_kem it encapsulated (`Justification`); everyone then
  opens the box (`open_revealed`) and checks the share against the dealer's commitments.

ML-KEM's randomness comes from OpenSSL, not from `rng`, so a dealer that must rebuild the
same ciphertexts after a restart injects an `Encapsulate` that replays its recorded ones.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import mlkem
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from mpc.dleq import (
    COMPACT_PROOF_SIZE,
    CompactDleqProof,
    is_valid_compact_dleq,
    prove_compact_dleq,
)
from mpc.encoding import frame
from mpc.epochkey import EpochKeyPair, EpochPublicKey
from mpc.errors import DecryptionError, EncodingError, ProtocolMisuse
from mpc.group import G1, G1_SIZE, SCALAR_SIZE, Rng, Scalar

_KDF_LABEL: Final = b"tkms-sharebox:v1"
_REVEAL_LABEL: Final = b"tkms-dkg-complaint:v1"
_NONCE_LABEL: Final = b"tkms-dkg-complaint-nonce:v1"
KEM_CIPHERTEXT_SIZE: Final = 1088
KEM_SECRET_SIZE: Final = 32
BOX_SIZE: Final = SCALAR_SIZE + 16
SEALED_SHARE_SIZE: Final = KEM_CIPHERTEXT_SIZE + BOX_SIZE
REVEAL_SIZE: Final = G1_SIZE + COMPACT_PROOF_SIZE

#: (recipient index, its ML-KEM key) -> (shared secret, ciphertext).
Encapsulate = Callable[[int, mlkem.MLKEM768PublicKey], tuple[bytes, bytes]]


def mlkem_encapsulate(recipient: int, key: mlkem.MLKEM768PublicKey) -> tuple[bytes, bytes]:
    """ML-KEM-768 encapsulation with OpenSSL's randomness (the production `Encapsulate`)."""
    return key.encapsulate()


def pair_context(session_id: bytes, dealer: int, recipient: int) -> bytes:
    """frame(session id, u16 dealer, u16 recipient): what every pair's secrets are bound to."""
    for name, value in (("dealer", dealer), ("recipient", recipient)):
        if not 1 <= value < 1 << 16:
            raise ProtocolMisuse(f"{name} index must be in 1..65535, got {value}")
    return frame(session_id, dealer.to_bytes(2, "big"), recipient.to_bytes(2, "big"))


@dataclass(frozen=True, slots=True)
class SealedShare:
    """ct_kem (1088 bytes) ‖ box (48 bytes): one share for one member, public."""

    kem_ciphertext: bytes
    box: bytes

    def __post_init__(self) -> None:
        if len(self.kem_ciphertext) != KEM_CIPHERTEXT_SIZE or len(self.box) != BOX_SIZE:
            raise ProtocolMisuse(
                "a sealed share is a 1088-byte ML-KEM ciphertext and a 48-byte box"
            )

    def to_bytes(self) -> bytes:
        return self.kem_ciphertext + self.box

    @classmethod
    def from_bytes(cls, data: bytes, what: str = "sealed share") -> SealedShare:
        if len(data) != SEALED_SHARE_SIZE:
            raise EncodingError(what, f"expected {SEALED_SHARE_SIZE} bytes, got {len(data)}")
        data = bytes(data)
        return cls(data[:KEM_CIPHERTEXT_SIZE], data[KEM_CIPHERTEXT_SIZE:])

    def __repr__(self) -> str:
        return f"SealedShare({self.box[-8:].hex()}…)"


@dataclass(frozen=True, slots=True)
class DhReveal:
    """An accuser's ss_dh for one pair and its DLEQ proof (112 bytes); public in a complaint."""

    shared: G1
    proof: CompactDleqProof

    def to_bytes(self) -> bytes:
        return self.shared.to_bytes() + self.proof.to_bytes()

    @classmethod
    def from_bytes(cls, data: bytes, what: str = "DH reveal") -> DhReveal:
        if len(data) != REVEAL_SIZE:
            raise EncodingError(what, f"expected {REVEAL_SIZE} bytes, got {len(data)}")
        shared = G1.from_bytes(bytes(data[:G1_SIZE]), f"{what}: shared secret")
        return cls(shared, CompactDleqProof.from_bytes(bytes(data[G1_SIZE:]), f"{what}: proof"))


def _key_and_nonce(
    ss_dh: G1,
    ss_kem: bytes,
    pair: bytes,
    dealer: EpochPublicKey,
    recipient: EpochPublicKey,
    kem_ciphertext: bytes,
) -> tuple[bytes, bytes]:
    info = frame(
        _KDF_LABEL,
        pair,
        dealer.dh.to_bytes(),
        recipient.dh.to_bytes(),
        hashlib.sha256(recipient.kem_bytes).digest(),
        kem_ciphertext,
    )
    okm = HKDF(algorithm=hashes.SHA256(), length=44, salt=None, info=info).derive(
        ss_dh.to_bytes() + ss_kem
    )
    return okm[:32], okm[32:]


def _open(key: bytes, nonce: bytes, box: bytes) -> Scalar:
    try:
        return Scalar.from_bytes(AESGCM(key).decrypt(nonce, box, None), "share")
    except (InvalidTag, EncodingError):
        raise DecryptionError("sealed share does not open") from None


def seal_share(
    share: Scalar,
    *,
    dealer: EpochKeyPair,
    recipient: EpochPublicKey,
    recipient_index: int,
    pair: bytes,
    encapsulate: Encapsulate = mlkem_encapsulate,
) -> tuple[SealedShare, bytes]:
    """Encrypt `share` to `recipient`; returns the sealed share and ss_kem (secret: the dealer
    keeps it to answer a complaint)."""
    if recipient.kem is None:
        raise ProtocolMisuse("the recipient's epoch key has no ML-KEM part")
    ss_dh = recipient.dh * dealer.secret
    ss_kem, ct = encapsulate(recipient_index, recipient.kem)
    if len(ss_kem) != KEM_SECRET_SIZE or len(ct) != KEM_CIPHERTEXT_SIZE:
        raise ProtocolMisuse("encapsulation returned a secret or ciphertext of the wrong size")
    key, nonce = _key_and_nonce(ss_dh, ss_kem, pair, dealer.public_key, recipient, ct)
    box = AESGCM(key).encrypt(nonce, share.to_bytes(), None)
    return SealedShare(ct, box), ss_kem


def open_share(
    sealed: SealedShare, *, me: EpochKeyPair, dealer: EpochPublicKey, pair: bytes
) -> Scalar:
    """Open a share sealed to us; DecryptionError for anything that does not open to a scalar."""
    if me.kem is None:
        raise ProtocolMisuse("our epoch key has no ML-KEM part")
    ss_dh = dealer.dh * me.secret
    ss_kem = me.kem.decapsulate(sealed.kem_ciphertext)
    key, nonce = _key_and_nonce(ss_dh, ss_kem, pair, dealer, me.public_key, sealed.kem_ciphertext)
    return _open(key, nonce, sealed.box)


def _reveal_context(pair: bytes) -> bytes:
    return frame(_REVEAL_LABEL, pair)


def reveal_dh(me: EpochKeyPair, dealer: EpochPublicKey, *, pair: bytes, rng: Rng) -> DhReveal:
    """ss_dh of the pair and a proof that it is x_j·X_i, for a complaint.

    The proof's nonce is hedged (secret, statement and fresh bytes hashed together): the
    node's dealing rng is replayed after a restart, and a nonce repeated for two different
    statements would give x_j away.
    """
    shared = dealer.dh * me.secret
    context = _reveal_context(pair)
    seed = frame(_NONCE_LABEL, me.secret.to_bytes(), context, dealer.dh.to_bytes(), rng(32))

    def hedged(n: int) -> bytes:
        return hashlib.shake_256(seed).digest(n)

    proof = prove_compact_dleq(
        me.secret, dealer.dh, vk=me.public_key.dh, sigma=shared, context=context, rng=hedged
    )
    return DhReveal(shared, proof)


def is_valid_reveal(
    reveal: DhReveal, *, dealer: EpochPublicKey, accuser: EpochPublicKey, pair: bytes
) -> bool:
    """Whether `reveal` is the accuser's x_j·X_i for this pair."""
    return is_valid_compact_dleq(
        reveal.proof,
        dealer.dh,
        vk=accuser.dh,
        sigma=reveal.shared,
        context=_reveal_context(pair),
    )


def open_revealed(
    sealed: SealedShare,
    *,
    ss_dh: G1,
    kem_secret: bytes,
    dealer: EpochPublicKey,
    recipient: EpochPublicKey,
    pair: bytes,
) -> Scalar:
    """Open a disputed share from the accuser's ss_dh and the dealer's revealed ss_kem."""
    if len(kem_secret) != KEM_SECRET_SIZE:
        raise DecryptionError("sealed share does not open")
    key, nonce = _key_and_nonce(ss_dh, kem_secret, pair, dealer, recipient, sealed.kem_ciphertext)
    return _open(key, nonce, sealed.box)
