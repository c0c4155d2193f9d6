"""Timings of a whole DKG and reshare, run in process with every member (for `mpc.bench`).

Each member is a real state machine and decodes every board message from bytes itself, as a
node reading the chain would, so the figure is the sum of all n members' work on one core:
decode the posted epoch keys, deal (seal n shares), decode and judge n deals with their
sealed-share bundles, open n shares, aggregate. Epoch keys and, for the reshare, the previous
committee are set up before the clock starts (a trusted-dealer committee stands in for a
previous DKG, which would give the same shapes).
"""

from __future__ import annotations

import os
import time
from typing import Any

from mpc.dkg import DkgMember, DkgResult
from mpc.epochkey import EpochKeyPair, EpochKeys
from mpc.group import G1, G2
from mpc.messages import Complaint, DealPublic, Justification, ShareBundle
from mpc.reshare import ReshareDealer, ReshareReceiver
from mpc.session import PreviousCommittee, SessionContext, SessionKind
from mpc.sharing import Polynomial
from mpc.types import Epoch, Generation, MemberIndex

_CONTRACT = bytes(19) + b"\x01"


def _context(
    n: int, t: int, kind: SessionKind, previous: PreviousCommittee | None
) -> SessionContext:
    return SessionContext(
        chain_id=1,
        contract=_CONTRACT,
        epoch=Epoch(1),
        kind=kind,
        generation=Generation(1),
        threshold=t,
        members=tuple(k.to_bytes(20, "big") for k in range(1, n + 1)),
        previous=previous,
    )


def _warm_up() -> None:
    # Builds the fixed-base tables once (~30 ms) so they are not charged to the first run.
    G1.base_mul(1)
    G2.base_mul(1)


def _keys(ctx: SessionContext) -> tuple[list[EpochKeyPair], dict[bytes, bytes]]:
    pairs = [
        EpochKeyPair.generate(ctx.session_id, a, member=True, rng=os.urandom) for a in ctx.members
    ]
    return pairs, {a: k.public_key.to_bytes() for a, k in zip(ctx.members, pairs, strict=True)}


def _board(outputs: list[Any]) -> tuple[list[bytes], list[bytes]]:
    return [o.public.to_bytes() for o in outputs], [o.bundle.to_bytes() for o in outputs]


def bench_dkg(n: int, t: int) -> float:
    """Seconds for a full DKG with n members and threshold t (no faults)."""
    _warm_up()
    ctx = _context(n, t, SessionKind.DKG, None)
    pairs, posted = _keys(ctx)
    start = time.perf_counter()
    keys = EpochKeys.from_posted(ctx, posted)
    members = [DkgMember(ctx, MemberIndex(i), pairs[i - 1]) for i in range(1, n + 1)]
    deal_bytes, bundle_bytes = _board([m.deal(keys) for m in members])
    for m in members:
        deals = [DealPublic.from_bytes(b) for b in deal_bytes]
        bundles = [ShareBundle.from_bytes(b) for b in bundle_bytes]
        m.on_deals(EpochKeys.from_posted(ctx, posted), deals, bundles)
    _finish(members)
    elapsed = time.perf_counter() - start
    _check(members)
    return elapsed


def _finish(members: list[DkgMember] | list[ReshareReceiver]) -> None:
    no_complaints: list[Complaint] = []
    no_justifications: list[Justification] = []
    for m in members:
        m.on_complaints(no_complaints)
    for m in members:
        m.on_justifications(no_justifications)


def _check(members: list[DkgMember] | list[ReshareReceiver]) -> None:
    digests = {m.outcome.digest for m in members if isinstance(m.outcome, DkgResult)}
    if len(digests) != 1 or not all(isinstance(m.outcome, DkgResult) for m in members):
        raise RuntimeError("benchmark run did not finish consistently")


def bench_reshare(n: int, t: int | None = None) -> float:
    """Seconds to reshare an n-member committee (threshold t, default 2n/3+1) to itself."""
    _warm_up()
    t = t if t is not None else 2 * n // 3 + 1
    secret_poly = Polynomial.random(t - 1, os.urandom)
    members = tuple(k.to_bytes(20, "big") for k in range(1, n + 1))
    previous = PreviousCommittee(
        members=members,
        threshold=t,
        public=secret_poly.commitments(),
        pk2=G2.base_mul(secret_poly.secret),
    )
    ctx = _context(n, t, SessionKind.RESHARE, previous)
    pairs, posted = _keys(ctx)
    old_shares = [secret_poly.share(MemberIndex(i)) for i in range(1, n + 1)]
    start = time.perf_counter()
    keys = EpochKeys.from_posted(ctx, posted)
    dealers = [ReshareDealer(ctx, s.member, s, pairs[s.member - 1]) for s in old_shares]
    receivers = [ReshareReceiver(ctx, MemberIndex(j), pairs[j - 1]) for j in range(1, n + 1)]
    deal_bytes, bundle_bytes = _board([d.deal(keys) for d in dealers])
    for receiver in receivers:
        deals = [DealPublic.from_bytes(b) for b in deal_bytes]
        bundles = [ShareBundle.from_bytes(b) for b in bundle_bytes]
        receiver.on_deals(EpochKeys.from_posted(ctx, posted), deals, bundles)
    for d in dealers:
        d.on_complaints([])
    _finish(receivers)
    elapsed = time.perf_counter() - start
    _check(receivers)
    return elapsed
