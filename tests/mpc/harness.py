"""Run whole DKG and reshare protocols in process, with hooks that drop or corrupt messages.

Modelled on kyber's `RunDKG`: every member is a real state machine; the "board" is a list of
messages that every member sees (each message goes through `to_bytes`/`from_bytes` once, as it
would on chain): the epoch keys of the Keys phase, the deals with their sealed-share bundles,
the complaints and the justifications. Nothing travels anywhere else. The `tamper_*` hooks
rewrite the messages of a phase before everyone reads them; `silent` members never deal;
`assert_consistent` checks the invariants (same public data everywhere, shares on it, any t
shares recover the key).
"""

from __future__ import annotations

import dataclasses
import itertools
import random
import secrets
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric import mlkem

from mpc.dealing import Phase
from mpc.dkg import DkgFailure, DkgMember, DkgResult
from mpc.epochkey import EpochKeyPair, EpochKeys
from mpc.group import G1, G2, Rng, Scalar, pairing_product_is_one
from mpc.messages import Complaint, DealPublic, Justification, ShareBundle
from mpc.reshare import ReshareDealer, ReshareReceiver
from mpc.schnorr import SchnorrProof
from mpc.session import PreviousCommittee, SessionContext, SessionKind
from mpc.sharebox import (
    Encapsulate,
    SealedShare,
    mlkem_encapsulate,
    open_share,
    pair_context,
    reveal_dh,
    seal_share,
)
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


def epoch_key(ctx: SessionContext, addr: bytes) -> EpochKeyPair:
    """The node's key for this run (members get an ML-KEM key, dealers only X), seeded."""
    seed = int.from_bytes(addr + ctx.session_id[:4], "big")
    return EpochKeyPair.generate(
        ctx.session_id, addr, member=addr in ctx.members, rng=seeded_rng(seed)
    )


def participants(ctx: SessionContext) -> tuple[bytes, ...]:
    dealers = ctx.previous.members if ctx.previous else ctx.members
    return tuple(dict.fromkeys((*dealers, *ctx.members)))


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
    keys: EpochKeys | None = None  # as on the board, after tampering
    deals: list[DealPublic] = field(default_factory=list)
    bundles: list[ShareBundle] = field(default_factory=list)
    complaints: list[Complaint] = field(default_factory=list)
    justifications: list[Justification] = field(default_factory=list)

    @property
    def results(self) -> dict[int, DkgResult]:
        return {i: o for i, o in self.outcomes.items() if isinstance(o, DkgResult)}

    @property
    def failures(self) -> dict[int, DkgFailure]:
        return {i: o for i, o in self.outcomes.items() if isinstance(o, DkgFailure)}


Posted = dict[bytes, bytes]  # the Keys phase: address -> the bytes it posted


@dataclass
class Hooks:
    tamper_keys: Callable[[Posted], Posted] = _identity  # type: ignore[assignment]
    tamper_deals: Tamper[DealPublic] = _identity
    tamper_bundles: Tamper[ShareBundle] = _identity
    tamper_complaints: Tamper[Complaint] = _identity
    tamper_justifications: Tamper[Justification] = _identity


def _board_keys(ctx: SessionContext, h: Hooks) -> tuple[dict[bytes, EpochKeyPair], EpochKeys]:
    """Every participant posts its key; everyone reads the (tampered) board."""
    pairs = {a: epoch_key(ctx, a) for a in participants(ctx)}
    posted = h.tamper_keys({a: k.public_key.to_bytes() for a, k in pairs.items()})
    return pairs, EpochKeys.from_posted(ctx, posted)


def run_dkg(
    n: int,
    t: int,
    rng_seed: int = 0,
    *,
    silent: Collection[int] = (),
    context: SessionContext | None = None,
    tamper_keys: Callable[[Posted], Posted] = _identity,  # type: ignore[assignment]
    tamper_deals: Tamper[DealPublic] = _identity,
    tamper_bundles: Tamper[ShareBundle] = _identity,
    tamper_complaints: Tamper[Complaint] = _identity,
    tamper_justifications: Tamper[Justification] = _identity,
) -> Run:
    """A full DKG with members 1..n; `silent` members never deal but take part otherwise.

    A member whose key the board does not hold (tampered) cannot deal either.
    """
    ctx = context or make_context(n, t)
    h = Hooks(tamper_keys, tamper_deals, tamper_bundles, tamper_complaints, tamper_justifications)
    pairs, keys = _board_keys(ctx, h)
    members = {
        i: DkgMember(
            ctx, MemberIndex(i), pairs[ctx.members[i - 1]], seeded_rng(rng_seed * 1000 + i)
        )
        for i in range(1, ctx.n + 1)
    }
    outputs = [
        m.deal(keys)
        for i, m in members.items()
        if i not in silent and keys.dealer(i) == pairs[ctx.members[i - 1]].public_key
    ]
    return _drive(
        ctx, h, keys, [o.public for o in outputs], [o.bundle for o in outputs], members, {}
    )


def _drive(
    ctx: SessionContext,
    h: Hooks,
    keys: EpochKeys,
    deals: list[DealPublic],
    bundles: list[ShareBundle],
    receivers: Mapping[int, DkgMember | ReshareReceiver],
    dealers: Mapping[int, ReshareDealer],
) -> Run:
    run = Run(ctx)
    deals = _wire(h.tamper_deals(deals))
    bundles = _wire(h.tamper_bundles(bundles))
    complaints: list[Complaint] = []
    for m in receivers.values():
        complaints += m.on_deals(keys, deals, bundles)
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
    run.keys, run.deals, run.bundles = keys, deals, bundles
    run.complaints, run.justifications = complaints, justifications
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
    tamper_keys: Callable[[Posted], Posted] = _identity,  # type: ignore[assignment]
    tamper_deals: Tamper[DealPublic] = _identity,
    tamper_bundles: Tamper[ShareBundle] = _identity,
    tamper_complaints: Tamper[Complaint] = _identity,
    tamper_justifications: Tamper[Justification] = _identity,
) -> Run:
    """Reshare the key of `before` to members 1..new_n (`silent` old members do not deal)."""
    prev, old_shares = previous_committee(before)
    ctx = context or make_context(
        new_n, new_t, epoch=before.context.epoch + 1, kind=kind, members=members, previous=prev
    )
    h = Hooks(tamper_keys, tamper_deals, tamper_bundles, tamper_complaints, tamper_justifications)
    pairs, keys = _board_keys(ctx, h)
    dealers = {
        i: ReshareDealer(
            ctx, MemberIndex(i), s, pairs[prev.members[i - 1]], seeded_rng(rng_seed * 1000 + i)
        )
        for i, s in old_shares.items()
        if i not in silent and keys.dealer(i) == pairs[prev.members[i - 1]].public_key
    }
    receivers = {
        j: ReshareReceiver(
            ctx, MemberIndex(j), pairs[ctx.members[j - 1]], seeded_rng(rng_seed * 1000 + 500 + j)
        )
        for j in range(1, ctx.n + 1)
    }
    outputs = [d.deal(keys) for d in dealers.values()]
    return _drive(
        ctx,
        h,
        keys,
        [o.public for o in outputs],
        [o.bundle for o in outputs],
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


def replace_entry(
    bundles: list[ShareBundle], dealer: int, holder: int, entry: SealedShare | None
) -> list[ShareBundle]:
    out = []
    for b in bundles:
        if b.dealer == dealer:
            entries = list(b.entries)
            entries[holder - 1] = entry
            b = dataclasses.replace(b, entries=tuple(entries))
        out.append(b)
    return out


def corrupt_ciphertext(dealer: int, holder: int) -> Tamper[ShareBundle]:
    """Flip a byte of the box dealer sealed to holder: it no longer opens."""

    def hook(bundles: list[ShareBundle]) -> list[ShareBundle]:
        sealed = next(b for b in bundles if b.dealer == dealer).entry(holder)
        assert sealed is not None
        box = bytearray(sealed.box)
        box[-1] ^= 1
        return replace_entry(
            bundles, dealer, holder, SealedShare(sealed.kem_ciphertext, bytes(box))
        )

    return hook


def wrong_share(ctx: SessionContext, dealer: int, holder: int) -> Tamper[ShareBundle]:
    """Replace dealer's share for holder by a well-sealed wrong value (the dealer's ss_kem for
    it is what the harness's `honest_answer` hook then reveals)."""

    def hook(bundles: list[ShareBundle]) -> list[ShareBundle]:
        sealed, secret = seal_wrong(ctx, dealer, holder, Scalar(12345))
        WRONG_SECRETS[(ctx.session_id, dealer, holder)] = secret
        return replace_entry(bundles, dealer, holder, sealed)

    return hook


def bogus_kem(ctx: SessionContext, dealer: int, holder: int) -> Tamper[ShareBundle]:
    """The dealer seals holder's true share under an ML-KEM secret that its ct_kem does not
    encapsulate: holder cannot open it, but the dealer can answer with that secret."""

    def hook(bundles: list[ShareBundle]) -> list[ShareBundle]:
        sealed = next(b for b in bundles if b.dealer == dealer).entry(holder)
        assert sealed is not None
        pair = pair_context(ctx.session_id, dealer, holder)
        value = open_share(
            sealed,
            me=epoch_key(ctx, ctx.members[holder - 1]),
            dealer=epoch_key(ctx, dealer_address(ctx, dealer)).public_key,
            pair=pair,
        )
        other = secrets.token_bytes(32)

        def mismatched(j: int, key: mlkem.MLKEM768PublicKey) -> tuple[bytes, bytes]:
            return other, key.encapsulate()[1]

        bad, secret = seal_wrong(ctx, dealer, holder, value, mismatched)
        WRONG_SECRETS[(ctx.session_id, dealer, holder)] = secret
        return replace_entry(bundles, dealer, holder, bad)

    return hook


#: ss_kem of the shares `wrong_share` and `bogus_kem` sealed, so the dealer can answer with it.
WRONG_SECRETS: dict[tuple[bytes, int, int], bytes] = {}


def dealer_address(ctx: SessionContext, dealer: int) -> bytes:
    return (ctx.previous.members if ctx.previous else ctx.members)[dealer - 1]


def seal_wrong(
    ctx: SessionContext,
    dealer: int,
    holder: int,
    value: Scalar,
    encapsulate: Encapsulate = mlkem_encapsulate,
) -> tuple[SealedShare, bytes]:
    recipient = epoch_key(ctx, ctx.members[holder - 1]).public_key
    return seal_share(
        value,
        dealer=epoch_key(ctx, dealer_address(ctx, dealer)),
        recipient=recipient,
        recipient_index=holder,
        pair=pair_context(ctx.session_id, dealer, holder),
        encapsulate=encapsulate,
    )


def answer_with(ctx: SessionContext, dealer: int, holder: int) -> Tamper[Justification]:
    """The dealer answers holder's complaint with the secret of the share `wrong_share` sealed
    (a dealer that cheated but stands by its ciphertext)."""

    def hook(js: list[Justification]) -> list[Justification]:
        secret = WRONG_SECRETS[(ctx.session_id, dealer, holder)]
        return [
            dataclasses.replace(j, kem_secret=secret)
            if (j.dealer, j.accuser) == (dealer, holder)
            else j
            for j in js
        ]

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


def false_complaint(ctx: SessionContext, accuser: int, dealer: int) -> Tamper[Complaint]:
    """`accuser` complains about `dealer` with a valid reveal, although its share was fine."""
    reveal = reveal_dh(
        epoch_key(ctx, ctx.members[accuser - 1]),
        epoch_key(ctx, dealer_address(ctx, dealer)).public_key,
        pair=pair_context(ctx.session_id, dealer, accuser),
        rng=seeded_rng(accuser),
    )
    extra = Complaint(
        session_id=ctx.session_id,
        accuser=MemberIndex(accuser),
        dealer=MemberIndex(dealer),
        reveal=reveal,
    )
    return lambda complaints: [*complaints, extra]


def stray_complaint(
    ctx: SessionContext, session_id: bytes, accuser: int, dealer: int
) -> Tamper[Complaint]:
    """A complaint with a reveal that proves nothing (another pair's, or another session's)."""
    real = false_complaint(ctx, 1 if accuser != 1 else 2, dealer)([])[0]
    extra = dataclasses.replace(real, session_id=session_id, accuser=MemberIndex(accuser))
    return lambda complaints: [*complaints, extra]


def corrupt_justification(dealer: int) -> Tamper[Justification]:
    """The dealer answers with a wrong ML-KEM secret: the share does not open."""
    return lambda js: [
        dataclasses.replace(j, kem_secret=bytes(32)) if j.dealer == dealer else j for j in js
    ]


def compose(*hooks: Callable[[list[M]], list[M]]) -> Callable[[list[M]], list[M]]:
    def hook(msgs: list[M]) -> list[M]:
        for h in hooks:
            msgs = h(msgs)
        return msgs

    return hook
