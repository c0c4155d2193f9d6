"""Domain separation tags, one per use (design §3), so no protocol is an oracle for another."""

from __future__ import annotations

from typing import Final

#: Hash-to-G1 for app key derivation (§3.4).
DST_KDF: Final = b"TKMS-V1-KDF-BLS12381G1_XMD:SHA-256_SSWU_RO_"
#: Hash-to-G1 of an app_id for identity-based encryption (§3.6).
DST_IBE: Final = b"TKMS-V1-IBE-BLS12381G1_XMD:SHA-256_SSWU_RO_"
#: Hash-to-G1 of the network's secp256k1 KMS root of a generation (design §3.5): its own tag,
#: so no app's derivation request can ever reach it.
DST_KMS_ROOT: Final = b"TKMS-V1-KMSROOT-BLS12381G1_XMD:SHA-256_SSWU_RO_"
#: Standard min-sig BLS (signature in G1, key in G2), so any standard verifier can check (§3.5).
DST_SIG: Final = b"BLS_SIG_BLS12381G1_XMD:SHA-256_SSWU_RO_NUL_"
#: hash_to_field for Fiat-Shamir challenges of every proof.
DST_CHALLENGE: Final = b"TKMS-V1-CHALLENGE"
#: Hedged nonce derivation of Schnorr proofs of possession (secret ‖ binding ‖ fresh randomness).
DST_SCHNORR_NONCE: Final = b"TKMS-V1-SCHNORR-NONCE"
