"""The board of one epoch: what the chain holds for it, as `mpc` messages (blocking reads).

Every read is pinned to one block, the one the caller judges at (its view's head minus the
confirmation depth, docs/node-epochs.md), so every honest node that judges a phase reads the
same, settled data. Rules:

* Bytes the contract only hashed (epoch keys, sealed shares) come from the transactions that
  posted them (`contracts` checks them against the stored hash). A post whose bytes cannot be
  recovered, or that does not decode, is left out: every honest node sees the same
  transaction and leaves it out alike, so they still agree on QUAL (the poster loses its
  key or its deal; nobody else does).
* An RPC failure raises (`node.chainview.RPC_ERRORS`): the caller tries again at the next
  head, it never judges on partial data.
* The registry is not read here: a node re-registering during an epoch changes nothing of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from contracts import PHASE_NAMES, EpochInfo, EpochKind, GovernanceClient
from mpc.epochkey import EpochKeys
from mpc.errors import EncodingError, MpcError
from mpc.group import G1, G2
from mpc.messages import Complaint, DealPublic, Justification, ShareBundle
from mpc.schnorr import SchnorrProof
from mpc.session import PreviousCommittee, SessionContext, SessionKind
from mpc.sharebox import DhReveal
from mpc.sharing import PublicPolynomial
from mpc.types import Epoch, Generation, MemberIndex
from node.chainview import ChainView, decode_public, to_address_bytes
from node.logs import get_logger

_log = get_logger("tkms.chain")

_SESSION_KINDS: Final = {
    EpochKind.DKG: SessionKind.DKG,
    EpochKind.ROTATE: SessionKind.DKG,
    EpochKind.RESHARE: SessionKind.RESHARE,
    EpochKind.REFRESH: SessionKind.REFRESH,
}


@dataclass(frozen=True, slots=True)
class Board:
    """A running epoch as read from chain, and the session every message of it is bound to."""

    info: EpochInfo
    context: SessionContext
    session_id: bytes

    @property
    def fresh_key(self) -> bool:
        """DKG or ROTATE: every member deals a fresh secret."""
        return self.context.kind is SessionKind.DKG

    def dealer_index(self, address: str) -> int:
        lowered = [d.lower() for d in self.info.dealers]
        return lowered.index(address.lower()) + 1 if address.lower() in lowered else 0

    def member_address(self, index: int) -> str:
        return self.info.members[index - 1]

    def dealer_address(self, index: int) -> str:
        return self.info.dealers[index - 1]

    @property
    def participants(self) -> tuple[str, ...]:
        """Every address that posts an epoch key: the members, then dealers that are not."""
        members = {m.lower() for m in self.info.members}
        return self.info.members + tuple(d for d in self.info.dealers if d.lower() not in members)


def read_setup(client: GovernanceClient, view: ChainView, epoch: int) -> Board:
    """Everything needed to take part in `epoch` (raises MpcError if chain data is malformed)."""
    info = client.get_epoch(epoch, block=view.head)
    previous = None
    if info.kind in (EpochKind.RESHARE, EpochKind.REFRESH):
        old = client.get_epoch(info.previous_epoch, block=view.head)
        public, pk2 = decode_public(old.public_polynomial, old.threshold, old.pk2)
        previous = PreviousCommittee(
            members=tuple(to_address_bytes(m) for m in old.members),
            threshold=old.threshold,
            public=public,
            pk2=pk2,
        )
    context = SessionContext(
        chain_id=view.chain_id,
        contract=view.governance,
        epoch=Epoch(epoch),
        kind=_SESSION_KINDS[info.kind],
        generation=Generation(info.generation),
        threshold=info.threshold,
        members=tuple(to_address_bytes(m) for m in info.members),
        previous=previous,
    )
    return Board(info=info, context=context, session_id=context.session_id)


def phase_lengths(info: EpochInfo) -> dict[str, int]:
    """Blocks in each phase of `info`, by name (keys, deal, complain, justify, confirm)."""
    ends = (
        info.proposed_at,
        info.keys_deadline,
        info.deal_deadline,
        info.complaint_deadline,
        info.justify_deadline,
        info.confirm_deadline,
    )
    return {name: ends[k + 1] - ends[k] for k, name in enumerate(PHASE_NAMES)}


def keys_final(client: GovernanceClient, board: Board, block: int) -> bool:
    """Whether no more keys can be posted as of `block`: its deadline passed, or all are in."""
    if block < board.info.proposed_at:
        return False  # not even the proposal is settled yet
    if block >= board.info.keys_deadline:
        return True
    info = client.get_epoch(board.info.epoch, block=block)
    return info.keys_posted >= info.participants


def read_keys(client: GovernanceClient, board: Board, block: int) -> EpochKeys:
    """The epoch keys posted as of `block`, decoded and checked (`mpc.epochkey.EpochKeys`)."""
    posted: dict[bytes, bytes] = {}
    for address in board.participants:
        raw = client.fetch_epoch_key(
            board.info.epoch, address, block=block, since=board.info.proposed_at
        )
        if raw is not None:
            posted[to_address_bytes(address)] = raw
    keys = EpochKeys.from_posted(board.context, posted)
    for problem in keys.problems:
        _log.warning("epoch_key_unusable", epoch=board.info.epoch, reason=problem)
    return keys


def read_deals(
    client: GovernanceClient, board: Board, block: int
) -> tuple[list[DealPublic], list[ShareBundle]]:
    """The deals on chain and their sealed shares; what does not decode is left out."""
    deals, bundles = [], []
    for k, dealer in enumerate(board.info.dealers, start=1):
        deal = client.get_deal(board.info.epoch, dealer, block=block)
        if deal.submitted_at == 0:
            continue
        raw = client.fetch_deal_shares(board.info.epoch, dealer, deal=deal)
        try:
            commitments = tuple(
                G1.from_bytes(c, f"deal of dealer {k}: C_{j}")
                for j, c in enumerate(deal.commitments)
            )
            deals.append(
                DealPublic(
                    session_id=board.session_id,
                    dealer=MemberIndex(k),
                    commitments=PublicPolynomial(commitments),
                    p=G2.from_bytes(deal.pk2_part, f"deal of dealer {k}: P"),
                    proof=SchnorrProof.from_bytes(deal.proof, f"deal of dealer {k}: proof"),
                )
            )
            if raw is None:
                raise EncodingError(f"sealed shares of dealer {k}", "not readable from its call")
            bundle = ShareBundle.from_bytes(raw)
            if (bundle.session_id, bundle.dealer) != (board.session_id, k):
                raise EncodingError(f"sealed shares of dealer {k}", "for another session or dealer")
            bundles.append(bundle)
        except MpcError as exc:
            _log.warning("deal_undecodable", epoch=board.info.epoch, dealer=k, reason=str(exc))
    return deals, bundles


def read_disputes(
    client: GovernanceClient, board: Board, block: int
) -> tuple[list[Complaint], list[Justification]]:
    """The complaints on chain with their reveals, and the answers to them."""
    members = [m.lower() for m in board.info.members]
    dealers = [d.lower() for d in board.info.dealers]
    complaints, justifications = [], []
    for c in client.get_complaints(board.info.epoch, block=block):
        # The contract only accepts complaints from members against dealers.
        accuser = MemberIndex(members.index(c.accuser.lower()) + 1)
        dealer = MemberIndex(dealers.index(c.accused.lower()) + 1)
        try:
            reveal = DhReveal.from_bytes(c.reveal, f"complaint of {accuser} against {dealer}")
        except EncodingError as exc:
            _log.warning("complaint_undecodable", epoch=board.info.epoch, reason=str(exc))
            continue
        complaints.append(
            Complaint(session_id=board.session_id, accuser=accuser, dealer=dealer, reveal=reveal)
        )
        if c.justified:
            justifications.append(
                Justification(
                    session_id=board.session_id,
                    dealer=dealer,
                    accuser=accuser,
                    kem_secret=c.answer,
                )
            )
    return complaints, justifications
