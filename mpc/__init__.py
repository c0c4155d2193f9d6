"""Threshold cryptography over BLS12-381, pure and sans-I/O (design §3).

No sockets, files or clocks: randomness is injected (`rng`), and protocol state machines are
fed with messages and return messages. `mpc.group` is the only module that touches the
arkworks backend.
"""

from mpc.dealenc import DealKeyPair, DealPublicKey
from mpc.dealing import DealOutput, Fault, FaultKind, Phase
from mpc.derive import (
    EncryptedPartial,
    EphemeralKey,
    KeyKind,
    KeyRequest,
    NetworkContext,
    VerifiedPartial,
    combine_partials,
    derive_partial,
    is_consistent_with_group_key,
    kdf_message,
    open_partial,
)
from mpc.dkg import DkgFailure, DkgMember, DkgResult, compute_digest
from mpc.dleq import (
    CompactDleqProof,
    DleqProof,
    DleqStatement,
    invalid_dleqs,
    prove_dleq,
    verify_dleq,
    verify_dleq_batch,
)
from mpc.dst import DST_CHALLENGE, DST_IBE, DST_KDF, DST_KMS_ROOT, DST_SIG
from mpc.epochkey import EpochKeyPair, EpochKeys, EpochPublicKey
from mpc.errors import (
    DecryptionError,
    EncodingError,
    InvalidPartial,
    InvalidProof,
    InvalidSignature,
    MpcError,
    NotEnoughShares,
    PhaseError,
    ProtocolMisuse,
)
from mpc.group import G1, G2, GT, Scalar, hash_to_g1, hash_to_g1_point, pairing
from mpc.keyschedule import derive_app_seed, derive_child_key
from mpc.messages import Complaint, Confirmation, DealPublic, Justification, ShareBundle
from mpc.reshare import ReshareDealer, ReshareReceiver
from mpc.schnorr import SchnorrProof
from mpc.session import PreviousCommittee, SessionContext, SessionKind
from mpc.sharebox import DhReveal, SealedShare
from mpc.sharing import Polynomial, PublicPolynomial, Share, recover_secret
from mpc.types import Epoch, Generation, MemberIndex

__all__ = [
    "Complaint",
    "Confirmation",
    "DealKeyPair",
    "DealOutput",
    "DealPublic",
    "DealPublicKey",
    "DkgFailure",
    "DkgMember",
    "DkgResult",
    "DhReveal",
    "EpochKeyPair",
    "EpochKeys",
    "EpochPublicKey",
    "Fault",
    "FaultKind",
    "Justification",
    "Phase",
    "PreviousCommittee",
    "ReshareDealer",
    "ReshareReceiver",
    "SchnorrProof",
    "SealedShare",
    "ShareBundle",
    "SessionContext",
    "SessionKind",
    "compute_digest",
    "DST_CHALLENGE",
    "DST_IBE",
    "DST_KDF",
    "DST_KMS_ROOT",
    "DST_SIG",
    "G1",
    "G2",
    "GT",
    "DecryptionError",
    "CompactDleqProof",
    "DleqProof",
    "DleqStatement",
    "EncodingError",
    "EncryptedPartial",
    "EphemeralKey",
    "Epoch",
    "Generation",
    "InvalidPartial",
    "InvalidProof",
    "InvalidSignature",
    "KeyKind",
    "KeyRequest",
    "MemberIndex",
    "MpcError",
    "NetworkContext",
    "NotEnoughShares",
    "PhaseError",
    "Polynomial",
    "ProtocolMisuse",
    "PublicPolynomial",
    "Scalar",
    "Share",
    "VerifiedPartial",
    "combine_partials",
    "derive_app_seed",
    "derive_child_key",
    "derive_partial",
    "hash_to_g1",
    "hash_to_g1_point",
    "is_consistent_with_group_key",
    "kdf_message",
    "open_partial",
    "pairing",
    "invalid_dleqs",
    "prove_dleq",
    "recover_secret",
    "verify_dleq",
    "verify_dleq_batch",
]
