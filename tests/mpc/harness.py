"""Run whole DKG and reshare protocols in process, with hooks that drop or corrupt messages.

Modelled on kyber's `RunDKG`: every member is a real state machine; the "board" is a list of
messages that every member sees (each message goes through `to_bytes`/`from_bytes` once, as it
would on chain); encrypted shares reach only their recipient. The `tamper_*` hooks rewrite the
messages of a phase before delivery; `silent` members never deal; `assert_consistent` checks
the invariants (same public data everywhere, shares on it, any t shares recover the key).
"""

from __future__ import annotations

import dataclasses
import itertools
import random
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from mpc.dealenc import DealKeyPair, encrypt_share
from mpc.dealing import Phase, deal_info
from mpc.dkg import DkgFailure, DkgMember, DkgResult
from mpc.group import G1, G2, Rng, Scalar, pairing_product_is_one
from mpc.messages import Complaint, DealPublic, EncryptedShare, Justification
from mpc.reshare import ReshareDealer, ReshareReceiver
from mpc.schnorr import SchnorrProof
from mpc.session import PreviousCommittee, SessionContext, SessionKind
from mpc.sharing import PublicPolynomial, Share, recover_secret
from mpc.types import Epoch, Generation, MemberIndex

CHAIN_ID = 31337
CONTRACT = bytes.fromhex("5fbdb2315678afecb367f032d93f642f64180aa3")

M = TypeVar("M")
Tamper = Callable[[list[M]], list[M]]


def seeded_rng(seed: int) -> Rng:
    r = random.Random(seed)
    return r.randbytes


def address(k: int) -> bytes:
    """A stable fake node address; the same k is the same node in every committee."""
    return bytes([0xA0]) + k.to_bytes(19, "big")


_KEYS: dict[bytes, DealKeyPair] = {}


def deal_key(addr: bytes) -> DealKeyPair:
    """The node's deal key pair, derived from its address (cached: tests reuse nodes)."""
    if addr not in _KEYS:
        _KEYS[addr] = DealKeyPair.generate(seeded_rng(int.from_bytes(addr, "big")))
    return _KEYS[addr]


def make_context(
    n: int,
    t: int,
    *,
    epoch: int = 1,
    kind: SessionKind = SessionKind.DKG,
    members: Sequence[bytes] | None = None,
    previous: PreviousCommittee | None = None,
) -> SessionContext:
    return SessionContext(
        chain_id=CHAIN_ID,
        contract=CONTRACT,
        epoch=Epoch(epoch),
        kind=kind,
        generation=Generation(1),
        threshold=t,
        members=tuple(members)
        if members is not None
        else tuple(address(k) for k in range(1, n + 1)),
        previous=previous,
    )


def _wire(messages: Sequence[M]) -> list[M]:
    """Send every message through its canonical encoding once, as the chain would."""
    return [type(m).from_bytes(m.to_bytes()) for m in messages]  # type: ignore[attr-defined]


def _identity(messages: list[M]) -> list[M]:
    return messages


@dataclass
class Run:
    """One run: the context and every member's outcome (by index in the new committee)."""

    context: SessionContext
    outcomes: dict[int, DkgResult | DkgFailure] = field(default_factory=dict)
    deals: list[DealPublic] = field(default_factory=list)  # as delivered, after tampering
    complaints: list[Complaint] = field(default_factory=list)
    justifications: list[Justification] = field(default_factory=list)

    @property
    def results(self) -> dict[int, DkgResult]:
        return {i: o for i, o in self.outcomes.items() if isinstance(o, DkgResult)}

    @property
    def failures(self) -> dict[int, DkgFailure]:
        return {i: o for i, o in self.outcomes.items() if isinstance(o, DkgFailure)}


@dataclass
class Hooks:
    tamper_deals: Tamper[DealPublic] = _identity
    tamper_shares: Tamper[EncryptedShare] = _identity
    tamper_complaints: Tamper[Complaint] = _identity
    tamper_justifications: Tamper[Justification] = _identity


def run_dkg(
    n: int,
    t: int,
    rng_seed: int = 0,
    *,
    silent: Collection[int] = (),
    context: SessionContext | None = None,
    tamper_deals: Tamper[DealPublic] = _identity,
    tamper_shares: Tamper[EncryptedShare] = _identity,
    tamper_complaints: Tamper[Complaint] = _identity,
    tamper_justifications: Tamper[Justification] = _identity,
) -> Run:
    """A full DKG with members 1..n; `silent` members never deal but take part otherwise."""
    ctx = context or make_context(n, t)
    h = Hooks(tamper_deals, tamper_shares, tamper_complaints, tamper_justifications)
    members = {
        i: DkgMember(
            ctx, MemberIndex(i), deal_key(ctx.members[i - 1]), seeded_rng(rng_seed * 1000 + i)
        )
        for i in range(1, ctx.n + 1)
    }
    keys = [deal_key(a).public_key for a in ctx.members]
    outputs = [m.deal(keys) for i, m in members.items() if i not in silent]
    return _drive(
        ctx, h, [o.public for o in outputs], [s for o in outputs for s in o.shares], members, {}
    )


def _drive(
    ctx: SessionContext,
    h: Hooks,
    deals: list[DealPublic],
    shares: list[EncryptedShare],
    receivers: Mapping[int, DkgMember | ReshareReceiver],
    dealers: Mapping[int, ReshareDealer],
) -> Run:
    run = Run(ctx)
    deals = _wire(h.tamper_deals(deals))
    shares = _wire(h.tamper_shares(shares))
    complaints: list[Complaint] = []
    for i, m in receivers.items():
        complaints += m.on_deals(deals, [s for s in shares if s.recipient == i])
    complaints = _wire(h.tamper_complaints(complaints))
    justifications: list[Justification] = []
    roles: list[DkgMember | ReshareReceiver | ReshareDealer] = [*receivers.values()]
    roles += dealers.values()
    for role in roles:
        if role.phase is not Phase.FAILED:
            justifications += role.on_complaints(complaints) or ()
    justifications = _wire(h.tamper_justifications(justifications))
    for i, m in receivers.items():
        if m.phase is Phase.JUSTIFY:
            m.on_justifications(justifications)
        assert m.outcome is not None
        run.outcomes[i] = m.outcome
    run.deals, run.complaints, run.justifications = deals, complaints, justifications
    return run


def previous_committee(run: Run) -> tuple[PreviousCommittee, dict[int, Share]]:
    """The committee a finished run leaves on chain, and its members' shares."""
    results = run.results
    first = next(iter(results.values()))
    prev = PreviousCommittee(
        members=run.context.members, threshold=first.threshold, public=first.public, pk2=first.pk2
    )
    return prev, {i: r.share for i, r in results.items() if r.share is not None}


def run_reshare(
    before: Run,
    new_n: int,
    new_t: int,
    rng_seed: int = 0,
    *,
    kind: SessionKind = SessionKind.RESHARE,
    members: Sequence[bytes] | None = None,
    silent: Collection[int] = (),
    context: SessionContext | None = None,
    tamper_deals: Tamper[DealPublic] = _identity,
    tamper_shares: Tamper[EncryptedShare] = _identity,
    tamper_complaints: Tamper[Complaint] = _identity,
    tamper_justifications: Tamper[Justification] = _identity,
) -> Run:
    """Reshare the key of `before` to members 1..new_n (`silent` old members do not deal)."""
    prev, old_shares = previous_committee(before)
    ctx = context or make_context(
        new_n, new_t, epoch=before.context.epoch + 1, kind=kind, members=members, previous=prev
    )
    h = Hooks(tamper_deals, tamper_shares, tamper_complaints, tamper_justifications)
    dealers = {
        i: ReshareDealer(ctx, MemberIndex(i), s, seeded_rng(rng_seed * 1000 + i))
        for i, s in old_shares.items()
        if i not in silent
    }
    receivers = {
        j: ReshareReceiver(
            ctx, MemberIndex(j), deal_key(ctx.members[j - 1]), seeded_rng(rng_seed * 1000 + 500 + j)
        )
        for j in range(1, ctx.n + 1)
    }
    keys = [deal_key(a).public_key for a in ctx.members]
    outputs = [d.deal(keys) for d in dealers.values()]
    return _drive(
        ctx,
        h,
        [o.public for o in outputs],
        [s for o in outputs for s in o.shares],
        receivers,
        dealers,
    )


def assert_consistent(run: Run, expect_members: Collection[int] | None = None) -> DkgResult:
    """kyber's testResults: one public polynomial, PK2 and digest; shares on it; t recover PK1."""
    results = run.results
    assert results, f"no member finished: {run.failures}"
    if expect_members is not None:
        assert set(results) >= set(expect_members), (
            f"unfinished: {set(expect_members) - set(results)}"
        )
    first = next(iter(results.values()))
    for i, r in results.items():
        assert r.qual == first.qual, (
            f"member {i} has QUAL {r.qual}, member {first.member} {first.qual}"
        )
        assert r.public == first.public, f"member {i} has another public polynomial"
        assert r.pk2 == first.pk2, f"member {i} has another PK2"
        assert r.digest == first.digest, f"member {i} has another confirmation digest"
    t = first.threshold
    assert len(first.qual) >= (run.context.previous.threshold if run.context.previous else t)
    assert pairing_product_is_one(
        [(first.public.public_key, G2.generator()), (-G1.generator(), first.pk2)]
    )
    shares = [r.share for r in results.values() if r.share is not None]
    for s in shares:
        assert first.public.is_valid_share(s), f"share of member {s.member} is not on A"
        assert first.verification_key(s.member) == G1.base_mul(s.value)
    subsets = list(itertools.islice(itertools.combinations(shares, t), 40))
    assert subsets, f"fewer than t={t} shares"
    for subset in subsets:
        assert G1.base_mul(recover_secret(list(subset), t)) == first.public.public_key
    if t > 1 and len(shares) >= t - 1:
        assert G1.base_mul(recover_secret(shares[: t - 1], t - 1)) != first.public.public_key
    return first


# --- tamper helpers: each returns a hook for one phase -------------------------------------


def corrupt_ciphertext(dealer: int, holder: int) -> Tamper[EncryptedShare]:
    """Flip a byte of dealer's ciphertext to holder: it no longer decrypts."""

    def hook(shares: list[EncryptedShare]) -> list[EncryptedShare]:
        out = []
        for s in shares:
            if (s.dealer, s.recipient) == (dealer, holder):
                ct = bytearray(s.ciphertext)
                ct[-1] ^= 1
                s = dataclasses.replace(s, ciphertext=bytes(ct))
            out.append(s)
        return out

    return hook


def wrong_share(ctx: SessionContext, dealer: int, holder: int) -> Tamper[EncryptedShare]:
    """Replace dealer's share for holder by a well-encrypted wrong value."""

    def hook(shares: list[EncryptedShare]) -> list[EncryptedShare]:
        out = []
        for s in shares:
            if (s.dealer, s.recipient) == (dealer, holder):
                key = deal_key(ctx.members[holder - 1]).public_key
                ct = encrypt_share(Scalar(12345), key, info=deal_info(ctx, dealer, holder))
                s = dataclasses.replace(s, ciphertext=ct)
            out.append(s)
        return out

    return hook


def drop_from(dealers: Collection[int]) -> Callable[[list[M]], list[M]]:
    """Drop every message whose `dealer` is in `dealers` (shares, deals or justifications)."""
    return lambda msgs: [m for m in msgs if getattr(m, "dealer") not in dealers]  # noqa: B009


def rewrite_deal(dealer: int, **changes: Any) -> Tamper[DealPublic]:
    return lambda deals: [
        dataclasses.replace(d, **changes) if d.dealer == dealer else d for d in deals
    ]


def bad_proof(dealer: int) -> Tamper[DealPublic]:
    return rewrite_deal(dealer, proof=SchnorrProof(c=Scalar(1), z=Scalar(2)))


def inconsistent_p(dealer: int) -> Tamper[DealPublic]:
    return rewrite_deal(dealer, p=G2.base_mul(7))


def extra_commitment(dealer: int) -> Tamper[DealPublic]:
    def hook(deals: list[DealPublic]) -> list[DealPublic]:
        return [
            dataclasses.replace(
                d, commitments=PublicPolynomial((*d.commitments.commitments, G1.generator()))
            )
            if d.dealer == dealer
            else d
            for d in deals
        ]

    return hook


def equivocate(dealer: int) -> Tamper[DealPublic]:
    """The dealer also publishes a second, different deal."""

    def hook(deals: list[DealPublic]) -> list[DealPublic]:
        twins = [
            dataclasses.replace(d, p=d.p + G2.generator()) for d in deals if d.dealer == dealer
        ]
        return deals + twins

    return hook


def add_complaint(session_id: bytes, accuser: int, dealer: int) -> Tamper[Complaint]:
    extra = Complaint(
        session_id=session_id, accuser=MemberIndex(accuser), dealer=MemberIndex(dealer)
    )
    return lambda complaints: [*complaints, extra]


def corrupt_justification(dealer: int) -> Tamper[Justification]:
    return lambda js: [
        dataclasses.replace(j, share=j.share + 1) if j.dealer == dealer else j for j in js
    ]


def compose(*hooks: Callable[[list[M]], list[M]]) -> Callable[[list[M]], list[M]]:
    def hook(msgs: list[M]) -> list[M]:
        for h in hooks:
            msgs = h(msgs)
        return msgs

    return hook
