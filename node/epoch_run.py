"""One epoch's run, phase by phase: the `EpochDriver` that `node.epochs.EpochManager` calls.

The chain is the board and the phaser. At every new head the driver compares the head with
the running epoch's deadlines and feeds the `mpc` state machines what the chain shows:

    head <  deal deadline       deal: publish DealPublic, deliver encrypted shares to peers
    head >  deal deadline       on_deals(deals on chain, shares received) -> publish complaints
    head >  complaint deadline  on_complaints(complaints on chain) -> publish justifications
    head >  justify deadline    on_justifications(justified complaints) -> confirm the digest
    head >  confirm deadline    still running: time it out (anyone may)
    epoch Active on chain       store our new share (`settle`)

Rules (docs/node-epochs.md has the details):

* Every chain write and every received share is journaled (`node.journal`) before it counts,
  and nothing journaled is published again. A write is only sent while it can still be mined
  in its phase, and retried at each head until then; catching up after a restart replays the
  machines without publishing late.
* Our dealing polynomial is derived from a sealed per-epoch seed (`SeededRng`): a restarted
  node rebuilds the SAME deal, checks it against the journaled one, and re-sends the journaled
  ciphertexts to peers that have not acknowledged them.
* An epoch that failed, or that we cannot follow (missing share, data that does not match the
  chain), is abandoned with a logged reason; the process never restarts to change epochs.
* Faults recorded by the machines are logged (`dkg_fault`) and counted in metrics.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

from contracts import EpochStatus as ChainStatus
from contracts import GovernanceClient, Receipt, TransactionFailed
from mpc.dealing import Fault, Phase
from mpc.dkg import DkgFailure, DkgMember, DkgResult
from mpc.errors import MpcError
from mpc.group import Rng
from mpc.messages import EncryptedShare, Justification
from mpc.reshare import ReshareDealer, ReshareReceiver
from mpc.sharing import Share
from mpc.types import MemberIndex
from node.chainview import (
    RPC_ERRORS,
    Board,
    ChainView,
    NodeRecord,
    read_board,
    read_deals,
    read_setup,
    to_checksum,
)
from node.epoch_state import PeerTransport, Run, SeededRng, Stage, Write, blamed_peer
from node.errors import StorageError
from node.identity import NodeIdentity
from node.journal import Journal, Outcome, Published
from node.logs import get_logger
from node.metrics import NodeMetrics
from node.shares import ShareStore

_log = get_logger("tkms.epochs")
_CONFIRM_GAS = 3_000_000
#: Reverts that say our write was already mined (before a crash, say).
_ALREADY_DONE = frozenset(
    {"DealAlreadySubmitted", "ComplaintExists", "AlreadyJustified", "AlreadyConfirmed"}
)
#: Reverts that no retry can fix.
_REFUSED_FOR_GOOD = frozenset(
    {"EpochNotRunning", "NoSuchEpoch", "NotAMember", "NotADealer", "NoSuchComplaint"}
)


class EpochDriver:
    """Opens, advances and settles runs; keeps what the manager reports about ended epochs.

    `ignored` holds epochs that do not name us or that we gave up, `last` the (epoch,
    outcome, QUAL) of the last one we finished, `faults` the faults recorded since start.
    Activated shares are saved to `shares` and put in `cache`, which the manager shares.
    `tasks` is the manager's task group for deliveries (None outside `EpochManager.run`).
    """

    def __init__(
        self,
        *,
        identity: NodeIdentity,
        client: GovernanceClient,
        transport: PeerTransport,
        journal: Journal,
        shares: ShareStore,
        metrics: NodeMetrics,
        rng: Rng,
        cache: dict[tuple[int, int], Share],
        on_deal: Callable[[int, int, int, bytes], bool],
    ) -> None:
        self._identity, self._client, self._transport = identity, client, transport
        self._journal, self._shares, self._metrics, self._rng = journal, shares, metrics, rng
        self._cache, self._on_deal = cache, on_deal
        self._address = identity.eth_address
        self.tasks: asyncio.TaskGroup | None = None
        self.ignored: set[int] = set()
        self.last: tuple[int, str, tuple[int, ...]] = (0, "", ())
        self.faults = 0

    # Setting up an epoch
    async def open(self, epoch: int, view: ChainView) -> Run | None:
        """Read the epoch from chain and build our roles, or None if it does not concern us."""
        try:
            board = await asyncio.to_thread(read_setup, self._client, view, epoch)
        except RPC_ERRORS as exc:
            _log.warning("epoch_read_failed", epoch=epoch, error=str(exc))
            return None  # retried at the next head
        except MpcError as exc:
            self._give_up(epoch, f"cannot build the session from chain data: {exc}")
            return None
        me = to_checksum(self._address)
        member = board.info.member_index(me)
        dealer = board.dealer_index(me)
        if not member and not dealer:
            self.ignored.add(epoch)
            return None
        self._journal.begin_epoch(
            epoch, board.session_id, board.info.kind.name, board.info.generation
        )
        record = self._journal.epoch(epoch)
        if record is not None and record.outcome is not None:
            self.ignored.add(epoch)
            return None
        run = Run(board=board, member=member, dealer=dealer)
        seed = None
        if dealer and board.keys is not None:
            seed = self._journal.dealing_seed(epoch, create=view.head < board.info.deal_deadline)
        deal_rng: Rng = SeededRng(seed) if seed is not None else self._rng
        ctx, index = board.context, MemberIndex
        try:
            if board.fresh_key:
                if member:
                    run.dkg = DkgMember(ctx, index(member), self._identity.deal_key, deal_rng)
            else:
                if dealer and seed is not None:
                    run.old_dealer = self._old_dealer(board, dealer, deal_rng)
                if member:
                    run.receiver = ReshareReceiver(
                        ctx, index(member), self._identity.deal_key, self._rng
                    )
        except MpcError as exc:
            self._give_up(epoch, f"cannot take part: {exc}")
            return None
        if seed is None and dealer:
            _log.warning("epoch_not_dealing", epoch=epoch, dealer=dealer, reason=board.no_deal)
        _log.info(
            "epoch_joined",
            epoch=epoch,
            kind=board.info.kind.name,
            generation=board.info.generation,
            member=member,
            dealer=dealer,
        )
        return run

    def _old_dealer(self, board: Board, dealer: int, rng: Rng) -> ReshareDealer | None:
        previous = board.info.previous_epoch
        if (board.info.generation, previous) not in self._shares.list():
            _log.warning("epoch_no_old_share", epoch=board.info.epoch, previous=previous)
            return None
        try:
            share = self._shares.load(board.info.generation, previous)
        except StorageError as exc:  # a corrupt share must not stop the node: we just don't deal
            _log.error("epoch_old_share_unreadable", epoch=board.info.epoch, reason=str(exc))
            return None
        return ReshareDealer(board.context, MemberIndex(dealer), share, rng)

    def _give_up(self, epoch: int, reason: str) -> None:
        _log.error("epoch_abandoned", epoch=epoch, reason=reason)
        self.ignored.add(epoch)
        if self._journal.epoch(epoch) is not None:
            self._journal.finish(epoch, Outcome.ABANDONED, reason)
        self.last = (epoch, Outcome.ABANDONED.value, ())

    # Advancing through the phases
    async def advance(self, run: Run, view: ChainView) -> None:
        if run.abandoned:
            return
        try:
            await self._phases(run, view)
        except RPC_ERRORS as exc:  # the chain did not answer: the same step runs at the next head
            _log.warning("epoch_step_deferred", epoch=run.epoch, error=str(exc))
        except MpcError as exc:  # our own misuse of a machine: stop this epoch, keep the node
            _log.error("epoch_internal_error", epoch=run.epoch, error=repr(exc))
            self._give_up(run.epoch, f"internal error: {exc}")
            run.abandoned = True

    async def _phases(self, run: Run, view: ChainView) -> None:
        info, head = run.info, view.head
        await self._flush(run, view)
        if run.stage is Stage.DEAL:
            await self._deal(run, view)
            if head > info.deal_deadline:
                await self._judge_deals(run, view)
        if run.stage is Stage.COMPLAIN and head > info.complaint_deadline:
            await self._judge_complaints(run, view)
        if run.stage is Stage.JUSTIFY and head > info.justify_deadline:
            await self._judge_justifications(run)
        if run.stage is Stage.CONFIRM:
            await self._confirm(run, view)
        if head > info.confirm_deadline and view.running_epoch == run.epoch:
            await self._publish(
                run, Published.TIMEOUT, 0, b"", lambda: self._client.send_timeout_epoch(run.epoch)
            )

    async def _deal(self, run: Run, view: ChainView) -> None:
        """Build our deal once; publish it while the phase is open; deliver what is pending."""
        machine, keys = run.dealing, run.board.keys
        if run.abandoned or machine is None or keys is None:
            return
        published = self._journal.published(run.epoch, Published.DEAL)
        if run.deal is None:
            if published is None and view.head >= run.info.deal_deadline:
                return  # too late: a deal sent now would not be mined in the Deal phase
            run.deal = machine.deal(keys)
            if published is not None and published != run.deal.public.to_bytes():
                self._give_up(run.epoch, "the rebuilt deal differs from the journaled one")
                run.abandoned = True
                return
            shares = {int(s.recipient): s.ciphertext for s in run.deal.shares}
            self._journal.record_outgoing(run.epoch, shares)
        public = run.deal.public
        if published is None:
            if view.head >= run.info.deal_deadline:
                return
            commitments = [c.to_bytes() for c in public.commitments.commitments]
            sent = await self._publish(
                run,
                Published.DEAL,
                0,
                public.to_bytes(),
                lambda: self._client.send_submit_deal(
                    run.epoch, commitments, public.p.to_bytes(), public.proof.to_bytes()
                ),
            )
            if not sent:
                return  # tried again at the next head while the phase lasts
        if view.running_epoch == run.epoch:
            self._deliver_all(run, view)

    def _deliver_all(self, run: Run, view: ChainView) -> None:
        for recipient, ciphertext in self._journal.outgoing(
            run.epoch, undelivered_only=True
        ).items():
            if recipient in run.delivering:
                continue
            run.delivering.add(recipient)
            if recipient == run.member:  # our own new share in a reshare: no network needed
                self._on_deal(run.epoch, run.dealer, recipient, ciphertext)
                self._journal.mark_delivered(run.epoch, recipient)
                continue
            address = bytes.fromhex(run.board.member_address(recipient).removeprefix("0x"))
            peer = view.nodes.get(address)
            if peer is None or self.tasks is None:
                _log.warning("deal_undeliverable", epoch=run.epoch, recipient=recipient)
                continue
            self.tasks.create_task(self._deliver(run, recipient, peer, ciphertext))

    async def _deliver(self, run: Run, recipient: int, peer: NodeRecord, ciphertext: bytes) -> None:
        epoch = run.epoch
        try:
            await self._transport.deliver_deal(peer, epoch, run.dealer, recipient, ciphertext)
        except Exception as exc:  # any transport failure: the recipient complains, we justify
            _log.warning("deal_delivery_failed", epoch=epoch, recipient=recipient, error=str(exc))
            run.delivering.discard(recipient)  # tried again at the next head of the Deal phase
            return
        self._journal.mark_delivered(epoch, recipient)

    async def _judge_deals(self, run: Run, view: ChainView) -> None:
        judge = run.judge
        if judge is None or judge.phase not in (Phase.DEAL, Phase.DEALT):
            run.stage = Stage.COMPLAIN
            return
        deals = await asyncio.to_thread(read_deals, self._client, run.board)
        run.stage = Stage.COMPLAIN
        shares = [
            EncryptedShare(
                session_id=run.board.session_id,
                dealer=MemberIndex(d),
                recipient=MemberIndex(r),
                ciphertext=c,
            )
            for d, r, c in self._journal.received(run.epoch)
            if r == run.member
        ]
        complaints = judge.on_deals(deals, shares)
        self._report_faults(run)
        for c in complaints:
            accused = run.board.dealer_address(c.dealer)
            run.writes.append(
                Write(
                    kind=Published.COMPLAINT,
                    target=c.dealer,
                    payload=c.to_bytes(),
                    send=lambda a=accused: self._client.send_complain(run.epoch, a),  # type: ignore[misc]
                    last_head=run.info.complaint_deadline - 1,
                )
            )
        await self._flush(run, view)

    async def _judge_complaints(self, run: Run, view: ChainView) -> None:
        complaints, _ = await asyncio.to_thread(read_board, self._client, run.board)
        run.stage = Stage.JUSTIFY
        answers: list[Justification] = []
        if run.dkg is not None and run.dkg.phase is Phase.COMPLAIN:
            answers += run.dkg.on_complaints(complaints)
        if run.receiver is not None and run.receiver.phase is Phase.COMPLAIN:
            run.receiver.on_complaints(complaints)
        if run.old_dealer is not None and run.old_dealer.phase is Phase.DEALT:
            answers += run.old_dealer.on_complaints(complaints)
        for j in answers:
            accuser, share = run.board.member_address(j.accuser), j.share.to_bytes()
            run.writes.append(
                Write(
                    kind=Published.JUSTIFICATION,
                    target=j.accuser,
                    payload=j.to_bytes(),
                    send=lambda a=accuser, s=share: self._client.send_justify(run.epoch, a, s),  # type: ignore[misc]
                    last_head=run.info.justify_deadline - 1,
                )
            )
        await self._flush(run, view)

    async def _judge_justifications(self, run: Run) -> None:
        judge = run.judge
        if judge is None or judge.phase is not Phase.JUSTIFY:
            run.stage = Stage.CONFIRM
            if judge is not None and judge.outcome is not None:
                run.outcome = judge.outcome
            return
        _, justifications = await asyncio.to_thread(read_board, self._client, run.board)
        run.stage = Stage.CONFIRM
        run.outcome = judge.on_justifications(justifications)
        self._report_faults(run)
        if isinstance(run.outcome, DkgFailure):
            _log.warning("epoch_run_failed", epoch=run.epoch, reason=run.outcome.reason)
        else:
            _log.info("epoch_run_finished", epoch=run.epoch, qual=list(run.outcome.qual))

    async def _confirm(self, run: Run, view: ChainView) -> None:
        run.stage = Stage.CONFIRMED
        result = run.outcome
        if isinstance(result, DkgResult) and run.member:
            run.writes.append(
                Write(
                    kind=Published.CONFIRMATION,
                    target=0,
                    payload=result.digest,
                    send=lambda: self._send_confirm(run, result),
                    last_head=run.info.confirm_deadline - 1,
                )
            )
            await self._flush(run, view)

    def _send_confirm(self, run: Run, result: DkgResult) -> Receipt:
        """confirm(), with a gas limit that covers activation.

        Members confirm at about the same time, so each estimate is taken before the others'
        votes land; the vote that reaches t also activates the epoch (storing the polynomial),
        which costs far more than the estimate and would run out of gas.
        """
        c = self._client
        transactor = c.transactor
        assert transactor is not None, "the epoch manager's client must sign"
        public = result.public.to_bytes()
        call = c.contract.functions.confirm(run.epoch, result.digest, public, result.pk2.to_bytes())
        return transactor.send(call, gas=_CONFIRM_GAS)

    async def _flush(self, run: Run, view: ChainView) -> None:
        """Send the writes we owe whose phase is still open; keep those that failed."""
        if view.running_epoch != run.epoch:
            run.writes.clear()  # catching up on an ended epoch: nothing can be published
            return
        remaining = []
        for w in run.writes:
            if view.head > w.last_head:
                if self._journal.published(run.epoch, w.kind, w.target) is None:
                    _log.warning("publish_too_late", epoch=run.epoch, what=w.kind.value)
            elif not await self._publish(run, w.kind, w.target, w.payload, w.send):
                remaining.append(w)
        run.writes = remaining

    async def _publish(
        self, run: Run, kind: Published, target: int, payload: bytes, send: Callable[[], Receipt]
    ) -> bool:
        """Send one chain write unless the journal has it; journal it once mined.

        True when there is nothing more to do: mined, already on chain (a write mined before
        a crash, so journaled now), or refused for good. False to try again later.
        """
        if self._journal.published(run.epoch, kind, target) is not None:
            return True
        where = {"epoch": run.epoch, "what": kind.value, "target": target}
        try:
            receipt = await asyncio.to_thread(send)
        except TransactionFailed as exc:
            if exc.error_name in _ALREADY_DONE:
                self._journal.mark_published(run.epoch, kind, target, payload, "")
                _log.info("published_before", **where)
                return True
            if exc.error_name == "EpochNotRunning":  # others activated or timed it out first
                _log.info("publish_moot", reason=str(exc), **where)
                return True
            _log.warning("publish_failed", error=str(exc), **where)
            return exc.error_name in _REFUSED_FOR_GOOD
        except RPC_ERRORS as exc:
            _log.warning("publish_failed", error=str(exc), **where)
            return False
        self._journal.mark_published(run.epoch, kind, target, payload, receipt.tx_hash)
        _log.info("published", epoch=run.epoch, what=kind.value, target=target, block=receipt.block)
        return True

    def _report_faults(self, run: Run) -> None:
        judge = run.judge
        faults: tuple[Fault, ...] = judge.faults if judge is not None else ()
        for f in faults[run.faults_seen :]:
            peer = blamed_peer(run, f)
            _log.warning(
                "dkg_fault",
                epoch=run.epoch,
                member=f.member,
                peer=peer,
                kind=f.kind.name,
                detail=f.detail,
            )
            self._metrics.faults.labels(kind=f.kind.name, member=str(f.member)).inc()
            if peer:
                self._metrics.peer_faults.labels(peer=peer, kind=f.kind.name).inc()
            self.faults += 1
        run.faults_seen = len(faults)

    # Ending an epoch
    async def settle(self, run: Run, view: ChainView) -> bool:
        """The epoch left the Running state: keep our share if it activated, else give up.

        False if the chain could not be read (the caller tries again at the next head).
        """
        if run.abandoned:
            return True
        try:
            info = await asyncio.to_thread(self._client.get_epoch, run.epoch, block=view.head)
        except RPC_ERRORS as exc:
            _log.warning("epoch_read_failed", epoch=run.epoch, error=str(exc))
            return False
        if info.status is ChainStatus.RUNNING:
            return False
        if info.status is not ChainStatus.ACTIVE:
            self._journal.finish(run.epoch, Outcome.FAILED, info.status.name.lower())
            _log.warning("epoch_failed", epoch=run.epoch, status=info.status.name)
            self.last = (run.epoch, Outcome.FAILED.value, ())
            return True
        catch_up = dataclasses.replace(view, running_epoch=0)
        await self.advance(run, catch_up)
        result = run.outcome
        qual = tuple(result.qual) if result is not None else ()
        if run.member and isinstance(result, DkgResult):
            ours = [c.to_bytes() for c in result.public.commitments]
            if (tuple(ours), result.pk2.to_bytes()) != (info.public_polynomial, info.pk2):
                self._give_up(run.epoch, "our result differs from the activated epoch")
                return True
            if result.share is not None:
                self._shares.save(info.generation, run.epoch, result.share)
                self._cache[(info.generation, run.epoch)] = result.share
            else:
                _log.error("epoch_no_share", epoch=run.epoch, reason="a qualified share is missing")
        elif run.member:
            _log.error("epoch_no_share", epoch=run.epoch, reason="we did not finish the run")
        self._journal.finish(run.epoch, Outcome.ACTIVE)
        self.last = (run.epoch, Outcome.ACTIVE.value, qual)
        _log.info("epoch_activated", epoch=run.epoch, generation=info.generation, member=run.member)
        return True
