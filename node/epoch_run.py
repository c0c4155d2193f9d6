"""One epoch's run, phase by phase: the `EpochDriver` that `node.epochs.EpochManager` calls.

The chain is the board and the phaser. At every new head the driver looks at the settled
block (the view's head minus the confirmation depth) and feeds the `mpc` state machines what
the chain shows there:

    keys phase open              post our per-epoch key (sealed first)
    keys final at settled        read every posted key (all in, or the Keys deadline passed)
    head < deal deadline         deal: publish DealPublic with our sealed shares, in one write
    settled >= deal deadline     on_deals(keys, deals and sealed shares) -> publish complaints
    settled >= complaint dl.     on_complaints(complaints) -> publish our answers
    settled >= justify dl.       on_justifications(answers) -> confirm the digest
    head > confirm deadline      still running: time it out (anyone may)
    epoch Active on chain        store our new share (`settle`), erase the epoch's secrets

Rules (docs/node-epochs.md has the details):

* Every chain write is journaled (`node.journal`) once mined and never sent again. A write is
  only sent while it can still be mined in its phase, and retried at each head until then;
  catching up after a restart replays the machines without publishing late.
* Board reads are pinned to the settled block, and a phase is judged only once that block is
  past its deadline: a reorg shallower than the depth cannot give honest nodes different
  QUALs.
* Our per-epoch key, dealing seed and ML-KEM encapsulations are sealed before anything
  derived from them is published (`node.epoch_secrets`): a restarted node rebuilds the SAME
  deal, byte for byte, checks it against the journaled one, and answers complaints with the
  same secrets. They are erased when the epoch's outcome is recorded.
* An epoch that failed, or that we cannot follow (data that does not match the chain), is
  abandoned with a logged reason; the process never restarts to change epochs.
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
from mpc.epochkey import EpochKeyPair
from mpc.errors import MpcError
from mpc.group import Rng
from mpc.messages import Justification
from mpc.reshare import ReshareDealer, ReshareReceiver
from mpc.sharing import Share
from mpc.types import MemberIndex
from node.board import (
    Board,
    keys_final,
    phase_lengths,
    read_deals,
    read_disputes,
    read_keys,
    read_setup,
)
from node.chainview import RPC_ERRORS, ChainView, to_checksum
from node.epoch_secrets import RecordingKem, recording_kem
from node.epoch_state import Run, SeededRng, Stage, Write, blamed_peer
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
    {
        "EpochKeyAlreadyPosted",
        "DealAlreadySubmitted",
        "ComplaintExists",
        "AlreadyJustified",
        "AlreadyConfirmed",
    }
)
#: Reverts that no retry can fix.
_REFUSED_FOR_GOOD = frozenset(
    {
        "EpochNotRunning",
        "NoSuchEpoch",
        "NotAMember",
        "NotADealer",
        "NotAParticipant",
        "NoSuchComplaint",
    }
)


class EpochDriver:
    """Opens, advances and settles runs; keeps what the manager reports about ended epochs.

    `ignored` holds epochs that do not name us or that we gave up, `last` the (epoch,
    outcome, QUAL) of the last one we finished, `faults` the faults recorded since start.
    Activated shares are saved to `shares` and put in `cache`, which the manager shares.
    `confirmations` is the depth below the head at which the board counts as settled.
    """

    def __init__(
        self,
        *,
        identity: NodeIdentity,
        client: GovernanceClient,
        journal: Journal,
        shares: ShareStore,
        metrics: NodeMetrics,
        rng: Rng,
        cache: dict[tuple[int, int], Share],
        confirmations: int,
    ) -> None:
        self._identity, self._client = identity, client
        self._journal, self._shares, self._metrics, self._rng = journal, shares, metrics, rng
        self._cache, self._depth = cache, confirmations
        self._address = identity.eth_address
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
        self._warn_short_phases(board)
        run = Run(board=board, member=member, dealer=dealer)
        run.epoch_key = self._epoch_key(board, view, member=bool(member))
        secrets = self._journal.secrets
        seed = None
        if dealer and run.epoch_key is not None:
            seed = secrets.dealing_seed(epoch, create=view.head < board.info.deal_deadline)
        deal_rng: Rng = SeededRng(seed) if seed is not None else self._rng
        kem = run.kem = recording_kem(secrets, epoch)
        # Without a key of ours on the board we still follow the run (and confirm its public
        # outcome) with a key nobody ever saw: we just cannot get a share.
        key = run.epoch_key or EpochKeyPair.generate(
            board.session_id, self._address, member=True, rng=self._rng
        )
        ctx, index = board.context, MemberIndex
        try:
            if board.fresh_key:
                if member:
                    run.dkg = DkgMember(ctx, index(member), key, deal_rng, kem)
            else:
                if dealer and seed is not None:
                    run.old_dealer = self._old_dealer(board, dealer, key, deal_rng, kem)
                if member:
                    run.receiver = ReshareReceiver(ctx, index(member), key, self._rng)
        except MpcError as exc:
            self._give_up(epoch, f"cannot take part: {exc}")
            return None
        if run.epoch_key is None:
            _log.warning("epoch_no_key", epoch=epoch, reason="joined after the Keys phase")
        _log.info(
            "epoch_joined",
            epoch=epoch,
            kind=board.info.kind.name,
            generation=board.info.generation,
            member=member,
            dealer=dealer,
        )
        return run

    def _epoch_key(self, board: Board, view: ChainView, *, member: bool) -> EpochKeyPair | None:
        """Our sealed key for this epoch; a fresh one (sealed first) while we can still post."""
        return self._journal.secrets.epoch_key(
            board.info.epoch,
            session_id=board.session_id,
            address=self._address,
            member=member,
            create=view.head < board.info.keys_deadline,
        )

    def _warn_short_phases(self, board: Board) -> None:
        """F-10: a phase shorter than our depth + 2 blocks leaves no block to act in."""
        minimum = self._depth + 2
        short = {k: v for k, v in phase_lengths(board.info).items() if v < minimum}
        if short:
            _log.warning(
                "epoch_phases_short",
                epoch=board.info.epoch,
                phases=short,
                confirmations=self._depth,
                minimum=minimum,
            )

    def _old_dealer(
        self, board: Board, dealer: int, key: EpochKeyPair, rng: Rng, kem: RecordingKem
    ) -> ReshareDealer | None:
        previous = board.info.previous_epoch
        if (board.info.generation, previous) not in self._shares.list():
            _log.warning("epoch_no_old_share", epoch=board.info.epoch, previous=previous)
            return None
        try:
            share = self._shares.load(board.info.generation, previous)
        except StorageError as exc:  # a corrupt share must not stop the node: we just don't deal
            _log.error("epoch_old_share_unreadable", epoch=board.info.epoch, reason=str(exc))
            return None
        return ReshareDealer(board.context, MemberIndex(dealer), share, key, rng, kem)

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
        settled = head - self._depth
        await self._flush(run, view)
        if run.stage is Stage.KEYS:
            await self._post_key(run, view)
            if await asyncio.to_thread(keys_final, self._client, run.board, settled):
                run.keys = await asyncio.to_thread(read_keys, self._client, run.board, settled)
                run.stage = Stage.DEAL
        if run.stage is Stage.DEAL:
            await self._deal(run, view)
            if settled >= info.deal_deadline:
                await self._judge_deals(run, view, settled)
        if run.stage is Stage.COMPLAIN and settled >= info.complaint_deadline:
            await self._judge_complaints(run, view, settled)
        if run.stage is Stage.JUSTIFY and settled >= info.justify_deadline:
            await self._judge_justifications(run, settled)
        if run.stage is Stage.CONFIRM:
            await self._confirm(run, view)
        if head > info.confirm_deadline and view.running_epoch == run.epoch:
            await self._publish(
                run, Published.TIMEOUT, 0, b"", lambda: self._client.send_timeout_epoch(run.epoch)
            )

    async def _post_key(self, run: Run, view: ChainView) -> None:
        """Post our per-epoch key while the Keys phase is open (it was sealed when made)."""
        key = run.epoch_key
        if key is None or view.head >= run.info.keys_deadline or view.running_epoch != run.epoch:
            return
        payload = key.public_key.to_bytes()
        await self._publish(
            run,
            Published.EPOCH_KEY,
            0,
            payload,
            lambda: self._client.send_post_epoch_key(run.epoch, payload),
        )

    async def _deal(self, run: Run, view: ChainView) -> None:
        """Build our deal once the keys are final; publish it while the phase is open."""
        machine, keys, key = run.dealing, run.keys, run.epoch_key
        if run.abandoned or machine is None or keys is None or key is None or run.kem is None:
            return
        if keys.dealer(run.dealer) != key.public_key:
            if run.deal is None and not run.no_deal:
                run.no_deal = True
                _log.warning("epoch_not_dealing", epoch=run.epoch, reason="our key is not on chain")
            return
        published = self._journal.published(run.epoch, Published.DEAL)
        if run.deal is None:
            if published is None and view.head >= run.info.deal_deadline:
                return  # too late: a deal sent now would not be mined in the Deal phase
            run.deal = machine.deal(keys)
            # Sealed before the deal can be published: a restart must rebuild the same bytes.
            self._journal.secrets.save_encapsulations(run.epoch, run.kem.made)
            if published is not None and published != _deal_payload(run):
                self._give_up(run.epoch, "the rebuilt deal differs from the journaled one")
                run.abandoned = True
                return
        late = view.head >= run.info.deal_deadline or view.running_epoch != run.epoch
        if published is not None or late:
            return
        public, bundle = run.deal.public, run.deal.bundle
        commitments = [c.to_bytes() for c in public.commitments.commitments]
        await self._publish(
            run,
            Published.DEAL,
            0,
            _deal_payload(run),
            lambda: self._client.send_submit_deal(
                run.epoch,
                commitments,
                public.p.to_bytes(),
                public.proof.to_bytes(),
                bundle.to_bytes(),
            ),
        )

    async def _judge_deals(self, run: Run, view: ChainView, settled: int) -> None:
        judge = run.judge
        if judge is None or judge.phase not in (Phase.DEAL, Phase.DEALT) or run.keys is None:
            run.stage = Stage.COMPLAIN
            return
        deals, bundles = await asyncio.to_thread(read_deals, self._client, run.board, settled)
        run.stage = Stage.COMPLAIN
        complaints = judge.on_deals(run.keys, deals, bundles)
        self._report_faults(run)
        for c in complaints:
            accused, reveal = run.board.dealer_address(c.dealer), c.reveal.to_bytes()
            run.writes.append(
                Write(
                    kind=Published.COMPLAINT,
                    target=c.dealer,
                    payload=c.to_bytes(),
                    send=lambda a=accused, r=reveal: self._client.send_complain(run.epoch, a, r),  # type: ignore[misc]
                    last_head=run.info.complaint_deadline - 1,
                )
            )
        await self._flush(run, view)

    async def _judge_complaints(self, run: Run, view: ChainView, settled: int) -> None:
        complaints, _ = await asyncio.to_thread(read_disputes, self._client, run.board, settled)
        run.stage = Stage.JUSTIFY
        answers: list[Justification] = []
        if run.dkg is not None and run.dkg.phase is Phase.COMPLAIN:
            answers += run.dkg.on_complaints(complaints)
        if run.receiver is not None and run.receiver.phase is Phase.COMPLAIN:
            run.receiver.on_complaints(complaints)
        if run.old_dealer is not None and run.old_dealer.phase is Phase.DEALT:
            answers += run.old_dealer.on_complaints(complaints)
        self._report_faults(run)
        for j in answers:
            accuser, answer = run.board.member_address(j.accuser), j.kem_secret
            run.writes.append(
                Write(
                    kind=Published.JUSTIFICATION,
                    target=j.accuser,
                    payload=j.to_bytes(),
                    send=lambda a=accuser, s=answer: self._client.send_justify(run.epoch, a, s),  # type: ignore[misc]
                    last_head=run.info.justify_deadline - 1,
                )
            )
        await self._flush(run, view)

    async def _judge_justifications(self, run: Run, settled: int) -> None:
        judge = run.judge
        if judge is None or judge.phase is not Phase.JUSTIFY:
            run.stage = Stage.CONFIRM
            if judge is not None and judge.outcome is not None:
                run.outcome = judge.outcome
            return
        _, answers = await asyncio.to_thread(read_disputes, self._client, run.board, settled)
        run.stage = Stage.CONFIRM
        run.outcome = judge.on_justifications(answers)
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
        if info.status is ChainStatus.ACTIVE and view.head - self._depth < info.justify_deadline:
            return False  # the board is not settled yet: judge it at a later head
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


def _deal_payload(run: Run) -> bytes:
    """What the journal keeps of our deal: the public part and the sealed shares."""
    assert run.deal is not None
    return run.deal.public.to_bytes() + run.deal.bundle.to_bytes()
