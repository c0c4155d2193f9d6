"""A trusted-dealer key set for tests of derivation, signing and IBE (the DKG has its own)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from mpc.group import G2, Rng
from mpc.sharing import Polynomial, PublicPolynomial, Share
from mpc.types import MemberIndex


def seeded_rng(seed: int) -> Rng:
    r = random.Random(seed)
    return r.randbytes


@dataclass(frozen=True)
class DealtKeys:
    secret_poly: Polynomial
    public: PublicPolynomial
    group_key_g2: G2
    shares: list[Share]
    threshold: int


def deal(n: int, t: int, seed: int = 0) -> DealtKeys:
    f = Polynomial.random(t - 1, seeded_rng(seed))
    return DealtKeys(
        secret_poly=f,
        public=f.commitments(),
        group_key_g2=G2.base_mul(f.secret),
        shares=[f.share(MemberIndex(i)) for i in range(1, n + 1)],
        threshold=t,
    )
