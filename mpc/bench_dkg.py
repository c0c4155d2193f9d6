"""Timings of a whole DKG and reshare, run in process with every member (for `mpc.bench`).

Each member is a real state machine and decodes every board message from bytes itself, as a
node reading the chain would, so the figure is the sum of all n members' work on one core:
deal, decode and judge n deals, open n shares, aggregate. Deal keys and, for the reshare, the
previous committee are set up before the clock starts (a trusted-dealer committee stands in
for a previous DKG, which would give the same shapes).
"""

from __future__ import annotations

import os
import time

from mpc.dealenc import DealKeyPair
from mpc.dkg import DkgMember, DkgResult
from mpc.group import G1, G2
from mpc.messages import Complaint, DealPublic, EncryptedShare, Justification
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


def bench_dkg(n: int, t: int) -> float:
    """Seconds for a full DKG with n members and threshold t (no faults)."""
    _warm_up()
    ctx = _context(n, t, SessionKind.DKG, None)
    keys = [DealKeyPair.generate() for _ in range(n)]
    public_keys = [k.public_key for k in keys]
    start = time.perf_counter()
    members = [DkgMember(ctx, MemberIndex(i), keys[i - 1]) for i in range(1, n + 1)]
    outputs = [m.deal(public_keys) for m in members]
    deal_bytes = [o.public.to_bytes() for o in outputs]
    share_bytes = [(s.recipient, s.to_bytes()) for o in outputs for s in o.shares]
    for i, m in enumerate(members, start=1):
        deals = [DealPublic.from_bytes(b) for b in deal_bytes]
        mine = [EncryptedShare.from_bytes(b) for r, b in share_bytes if r == i]
        m.on_deals(deals, mine)
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
    keys = [DealKeyPair.generate() for _ in range(n)]
    public_keys = [k.public_key for k in keys]
    old_shares = [secret_poly.share(MemberIndex(i)) for i in range(1, n + 1)]
    start = time.perf_counter()
    dealers = [ReshareDealer(ctx, s.member, s) for s in old_shares]
    receivers = [ReshareReceiver(ctx, MemberIndex(j), keys[j - 1]) for j in range(1, n + 1)]
    outputs = [d.deal(public_keys) for d in dealers]
    deal_bytes = [o.public.to_bytes() for o in outputs]
    share_bytes = [(s.recipient, s.to_bytes()) for o in outputs for s in o.shares]
    for j, receiver in enumerate(receivers, start=1):
        deals = [DealPublic.from_bytes(b) for b in deal_bytes]
        mine = [EncryptedShare.from_bytes(b) for r, b in share_bytes if r == j]
        receiver.on_deals(deals, mine)
    for d in dealers:
        d.on_complaints([])
    _finish(receivers)
    elapsed = time.perf_counter() - start
    _check(receivers)
    return elapsed
