"""The app's client of the KMS network: ask every member, verify, combine t partials (design §7).

The client knows the committee (index, endpoint, registered TLS key hash, verification key
V_i), the threshold, the network context and PK2 — from chain. It talks to each member over
TLS pinned to that member's registered key (`guest.kms_channel`), so what a member answers
cannot be changed on the way and a wrong answer is the member's own. It sends the request to
t members and hedges: one more member is asked whenever a member fails, and whenever no answer
came within the hedge delay (`HedgeDelay`: about twice the typical answer time, adapted as
answers arrive), so a member that stops answering without closing its connections (a stopped
process, a lost route) costs a request that delay, not the timeout. It returns as soon as t
answers combine into keys that PK2 confirms (one pairing check, shared by concurrent
derivations; each partial's proof is checked only when that fails, see docs/mpc.md); nodes
that fail, time out or lie are named in the result and in the error when fewer than t answer.

Evidence comes from a callable, so the app decides how to obtain a quote binding its
ephemeral key E (report_data = SHA-512("tkms-kdf:v1:" ‖ E)).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import grpc

from attest import BindingLabel, compute_report_data
from guest.derive_batch import MAX_KEYS, DeriveBatcher
from guest.evidence_source import EvidenceSource, evidence_message
from guest.hedge import HedgeDelay
from guest.kms_channel import (
    CHANNEL_OPTIONS,
    FETCH_TIMEOUT,
    ChannelOption,
    ChannelRefused,
    KmsChannels,
)
from guest.kms_types import (
    AppKeyRequest,
    Committee,
    DerivationError,
    DerivationResult,
    IssuedAppKey,
    Member,
    SignedStatement,
)
from guest.pairing import PairingBatch
from mpc import (
    G1,
    G2,
    EncryptedPartial,
    EphemeralKey,
    InvalidPartial,
    InvalidProof,
    KeyKind,
    MpcError,
)
from mpc._combiner import Combiner
from mpc.anchor import generation_statement
from mpc.dleq import DleqProof, EncodedDleqProof
from mpc.tsig import (
    SignaturePartial,
    app_env_binding,
    app_env_statement,
    combine_signatures,
    verify_partial_signature,
    verify_signature,
)
from mpc.types import Epoch, Generation, MemberIndex
from protos.tkms.v1 import common_pb2, kms_pb2, kms_pb2_grpc

__all__ = [
    "AppKeyRequest",
    "Committee",
    "DerivationError",
    "DerivationResult",
    "HedgeDelay",
    "IssuedAppKey",
    "KmsClient",
    "Member",
    "SignedStatement",
]

Reply = TypeVar("Reply")
Accepted = TypeVar("Accepted")

_TRANSIENT = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)
_MAX_TRIES = 3
#: Statuses that say the member or the way to it failed, whatever was asked.
_MEMBER_FAULTS = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}
)
#: Seconds a member that did not answer within the hedge delay, or failed, is asked last.
AVOID_SECONDS = 10.0


def _member_fault(exc: Exception) -> bool:
    """Whether a DerivePartial failed because of the member, not the keys it carried."""
    if isinstance(exc, grpc.aio.AioRpcError):
        return exc.code() in _MEMBER_FAULTS
    return isinstance(exc, ChannelRefused | OSError)


class KmsClient:
    """The network's client for one app (module docstring).

    `hedge_delay`: None (the default) adapts it (`HedgeDelay`); a number > 0 fixes it; 0
    asks every member at once (n partials computed per request instead of t).
    """

    def __init__(
        self,
        committee: Committee,
        evidence: EvidenceSource,
        *,
        timeout: float = 10.0,
        hedge_delay: float | None = None,
        channel_options: Sequence[ChannelOption] = CHANNEL_OPTIONS,
        fetch_timeout: float = FETCH_TIMEOUT,
    ) -> None:
        self.committee = committee
        self._evidence = evidence
        self._timeout = timeout
        self._hedge = HedgeDelay() if hedge_delay is None else None
        self._fixed_hedge = hedge_delay or 0.0
        self._rotation = 0
        self._derivations = 0
        #: member index -> loop time until which it is asked last (silent or failing lately)
        self._avoid: dict[int, float] = {}
        self._channels = KmsChannels(
            options=channel_options, fetch_timeout=fetch_timeout, grace=timeout
        )
        self._ephemeral: EphemeralKey | None = None
        self._quote: common_pb2.Evidence | None = None
        self._pairings = PairingBatch(committee.group_key)
        self._members = {m.index: m for m in committee.members}
        self.batches = DeriveBatcher(self._send_keys, _member_fault)

    async def rpc(
        self, member: Member, method: Callable[[kms_pb2_grpc.KmsStub], Awaitable[Reply]]
    ) -> Reply:
        """`method` on the member's pinned channel; UNAVAILABLE retires that channel, so the
        next attempt reads and pins the member's certificate again (a restarted node)."""
        pinned = await self._channels.get(member.endpoint, member.tls_key_hash)
        try:
            return await method(pinned.stub)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                self._channels.retire(pinned)
            raise

    @property
    def timeout(self) -> float:
        """Seconds per request to one member."""
        return self._timeout

    async def close(self) -> None:
        await self._channels.close()

    def attested(self, binding: bytes) -> common_pb2.Evidence:
        """Evidence whose report_data binds `binding` for a signature request
        (SHA-512("tkms-sign:v1:" ‖ binding))."""
        return evidence_message(self._evidence(compute_report_data(BindingLabel.SIGN_V1, binding)))

    def members_in_turn(self) -> list[Member]:
        """Every member, starting with the next in rotation (spreads one-node requests)."""
        self._rotation += 1
        return self._rotated(self._rotation - 1)

    def _derivation_order(self) -> list[Member]:
        """Every member, the same order for `MAX_KEYS` derivations in a row, then the next.

        Derivations that overlap ask the same t members, so `DeriveBatcher` can put their keys
        in the same requests; the load still moves round the committee every few dozen
        derivations.
        """
        self._derivations += 1
        return self._rotated((self._derivations - 1) // MAX_KEYS)

    def _rotated(self, turn: int) -> list[Member]:
        """Every member, starting with member number `turn` (mod n)."""
        members = list(self.committee.members)
        shift = turn % len(members) if members else 0
        return members[shift:] + members[:shift]

    async def issue_app_key(self, app_id: bytes, public_key: bytes) -> IssuedAppKey:
        """dstack's KMS signature over the app's secp256k1 key, and the network's certificate
        of the root that made it (`guest.kms_root.issue_app_key`)."""
        from guest.kms_root import issue_app_key

        return await issue_app_key(self, app_id, public_key)

    def _session(self) -> tuple[EphemeralKey, common_pb2.Evidence]:
        """One ephemeral key and quote per client, so nodes can cache the verified evidence."""
        if self._ephemeral is None or self._quote is None:
            self._ephemeral = EphemeralKey.generate(os.urandom)
            report_data = compute_report_data(
                BindingLabel.KDF_V1, self._ephemeral.public.to_bytes()
            )
            self._quote = evidence_message(self._evidence(report_data))
        return self._ephemeral, self._quote

    async def _collect(
        self,
        call: Callable[[Member], Awaitable[Reply]],
        accept: Callable[[Member, Reply], Accepted],
        confirm: Callable[[dict[int, Accepted]], Awaitable[dict[int, str]]] | None = None,
        order: list[Member] | None = None,
    ) -> tuple[dict[int, Accepted], dict[int, str]]:
        """Ask t members, more as needed; return the first t accepted (and confirmed) answers.

        t members are asked first (rotating, to spread load), and one more on each failure
        and each time the hedge delay passes without an answer (a slow or silent member then
        costs the delay); with `hedge_delay=0` every member is asked at once. A member whose
        call fails with a transient status (UNAVAILABLE,
        DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED), or that cannot be reached, is asked again
        after a short backoff while time remains; a member whose answer does not verify, or
        whose endpoint does not prove the member's registered TLS key ("unauthenticated": a
        channel failure, not a wrong answer of the member), is not asked again. `accept`
        checks one answer as it arrives; `confirm`, given t accepted answers, returns the
        members among them whose answers are wrong (and why), which are then treated like any
        other failure. Returns the answers and the failures on the way;
        DerivationError names every failure when fewer than t answers are good.
        """
        need = self.committee.threshold
        good: dict[int, Accepted] = {}
        failures: dict[int, str] = {}
        attempts: dict[int, int] = {}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        # t members first (rotating, to spread load): a healthy network does t members'
        # work per request (design §7); the others are the hedge. Members that were silent
        # or failed lately come last, so one stopped member costs the delay once, not on
        # every request it would have been among the first t.
        now = loop.time()
        members = sorted(
            self.members_in_turn() if order is None else order,
            key=lambda m: self._avoid.get(m.index, 0.0) > now,
        )
        hedging = self._hedge is not None or self._fixed_hedge > 0
        first = need if hedging else len(members)
        reserve = members[first:]
        delay = self._hedge.current() if self._hedge is not None else self._fixed_hedge
        next_hedge = loop.time() + delay

        async def attempt(member: Member) -> Reply:
            tries = attempts[member.index] = attempts.get(member.index, 0) + 1
            if tries > 1:
                await asyncio.sleep(min(0.05 * 2**tries, 1.0))
            asked = loop.time()
            reply = await call(member)
            if self._hedge is not None:
                self._hedge.observe(loop.time() - asked)
            return reply

        tasks: dict[asyncio.Future[Reply], Member] = {}
        pending: set[asyncio.Future[Reply]] = set()

        def ask(member: Member) -> None:
            task = asyncio.ensure_future(attempt(member))
            tasks[task] = member
            pending.add(task)

        def hedge() -> None:
            nonlocal next_hedge
            if reserve:
                ask(reserve.pop(0))
                next_hedge = loop.time() + delay

        def ask_again(member: Member) -> None:
            """After a transient failure: once more, while tries and time remain."""
            if attempts[member.index] < _MAX_TRIES and loop.time() < deadline - 0.2:
                ask(member)

        for member in members[:first]:
            ask(member)

        try:
            while True:
                if len(good) >= need:
                    chosen = {i: good[i] for i in sorted(good)[:need]}
                    wrong = await confirm(chosen) if confirm is not None else {}
                    if not wrong:
                        return chosen, failures
                    for index, why in wrong.items():
                        del good[index]
                        failures[index] = why
                        self._avoid[index] = loop.time() + AVOID_SECONDS
                        hedge()
                    continue
                if not pending and not reserve:
                    break
                if not pending:
                    hedge()
                    continue
                wait = max(0.0, next_hedge - loop.time()) if reserve else None
                done, pending = await asyncio.wait(
                    pending, timeout=wait, return_when=asyncio.FIRST_COMPLETED
                )
                if not done:
                    for task in pending:  # no answer within the delay: one more member
                        self._avoid[tasks[task].index] = loop.time() + AVOID_SECONDS
                    hedge()
                    continue
                for task in done:
                    member = tasks.pop(task)
                    try:
                        good[member.index] = accept(member, task.result())
                        failures.pop(member.index, None)
                        self._avoid.pop(member.index, None)
                    except grpc.aio.AioRpcError as exc:
                        failures[member.index] = f"{exc.code().name.lower()}: {exc.details()}"
                        self._avoid[member.index] = loop.time() + AVOID_SECONDS
                        hedge()
                        if exc.code() in _TRANSIENT:
                            ask_again(member)
                    except ChannelRefused as exc:
                        failures[member.index] = str(exc)
                        self._avoid[member.index] = loop.time() + AVOID_SECONDS
                        hedge()
                        if exc.transient:
                            ask_again(member)
                    except (InvalidPartial, MpcError) as exc:
                        failures[member.index] = f"proof invalid: {exc}"
                        self._avoid[member.index] = loop.time() + AVOID_SECONDS
                        hedge()
        finally:
            for task in pending:
                task.cancel()
        endpoints = {m.index: m.endpoint for m in self.committee.members}
        raise DerivationError(len(good), need, failures, endpoints)

    async def derive(self, keys: Sequence[AppKeyRequest]) -> DerivationResult:
        """sigma = x·H for each key, from the first t members whose partials all verify."""
        if not keys:
            raise ValueError("derive needs at least one key")
        net = self.committee.network
        requests = [k.to_request() for k in keys]
        wire = [
            kms_pb2.KeyRequest(
                kind=kms_pb2.KeyRequest.KIND_IBE
                if r.kind is KeyKind.IBE
                else kms_pb2.KeyRequest.KIND_KDF,
                app_id=k.app_id,
                purpose=k.purpose,
            )
            for k, r in zip(keys, requests, strict=True)
        ]
        eph, _ = self._session()
        need = self.committee.threshold

        async def call(member: Member) -> list[kms_pb2.Partial]:
            return await self.batches.partials(member.index, wire)

        combiner = Combiner(
            requests,
            ephemeral=eph,
            network=net,
            group_key=self.committee.group_key,
            threshold=need,
            verification_keys={m.index: m.verification_key for m in self.committee.members},
        )

        def accept(member: Member, reply: list[kms_pb2.Partial]) -> list[EncryptedPartial]:
            partials = self._decode(member, reply, len(requests))
            for request in requests:
                request.point()  # hash to G1 while the other members are still working
            return partials

        async def confirm(answers: dict[int, list[EncryptedPartial]]) -> dict[int, str]:
            try:
                holds = False
                if combiner.optimistic:
                    proposal = combiner.propose(answers)
                    holds = await self._pairings.holds(proposal, requests)
                wrong = combiner.settle(answers, proposal_holds=holds)
            except InvalidPartial as exc:  # malformed: wrong shape, member or epoch
                wrong = {exc.member: exc}
            except InvalidProof as exc:  # the committee data disagree: nobody to blame
                raise DerivationError(0, need, {0: str(exc)}, {0: "committee"}) from None
            return {i: f"proof invalid: {exc}" for i, exc in wrong.items()}

        self._pairings.running += 1
        try:
            answers, failures = await self._collect(
                call, accept, confirm, order=self._derivation_order()
            )
        finally:
            self._pairings.running -= 1
        return DerivationResult(sigmas=combiner.sigmas, answered=list(answers), failures=failures)

    async def sign_public_key(self, public_key: bytes, statement: bytes) -> SignedStatement:
        """Have the network certify that this app holds `public_key` (design §3.5).

        The evidence binds the key (report_data = SHA-512("tkms-sign:v1:" ‖ key)); every node
        builds the statement from the app_id it verified, so an app can only get statements
        about itself. The caller passes the `statement` it expects (it knows its app_id): a
        member that signed anything else, or whose partial does not verify against V_i, is
        named and replaced by another member, like a wrong derivation partial; the result is
        checked against PK2.
        """
        message = kms_pb2.SignPartialRequest(
            evidence=self.attested(public_key),
            public_key=public_key,
            generation=self.committee.network.generation,
        )
        return await self.sign_expected(message, statement)

    async def sign_env_policy(self, app_id: bytes, signer: bytes, version: int) -> SignedStatement:
        """Have the network certify that the app's AppAuth names `signer` and `version` now.

        A fresh nonce goes into the statement (`tkms-app-env:v1`), so an answer recorded
        earlier (an older version) cannot be replayed; a node whose chain view says otherwise
        refuses and says what it sees.
        """
        nonce = os.urandom(32)
        net = self.committee.network
        message = kms_pb2.SignPartialRequest(
            kind=kms_pb2.SignPartialRequest.KIND_APP_ENV,
            evidence=self.attested(app_env_binding(signer, version, nonce)),
            generation=net.generation,
            env_signer=signer,
            env_version=version,
            nonce=nonce,
        )
        expected = app_env_statement(net.chain_id, net.contract, app_id, signer, version, nonce)
        return await self.sign_expected(message, expected)

    async def sign_generation(self, generation: int, key: G2) -> SignedStatement:
        """The link of `generation` (this client's committee must be generation - 1's): its
        signature over the `tkms-generation:v1` statement of `key`, PK2 of `generation`."""
        net = self.committee.network
        if net.generation != generation - 1:
            raise ValueError(
                f"generation {generation} is linked by generation {generation - 1}'s committee, "
                f"not generation {net.generation}'s"
            )
        message = kms_pb2.SignPartialRequest(
            kind=kms_pb2.SignPartialRequest.KIND_GENERATION, generation=generation
        )
        expected = generation_statement(net.chain_id, net.contract, generation, key)
        return await self.sign_expected(message, expected)

    async def sign_expected(
        self, message: kms_pb2.SignPartialRequest, expected: bytes
    ) -> SignedStatement:
        """A threshold signature over exactly `expected`; a member that signs anything else,
        or whose partial does not verify against V_i, is named and replaced by another member,
        like a wrong derivation partial; the result is checked against PK2."""
        need = self.committee.threshold

        async def call(member: Member) -> kms_pb2.SignPartialResponse:
            return await self.rpc(
                member, lambda stub: stub.SignPartial(message, timeout=self._timeout)
            )

        def accept(member: Member, reply: kms_pb2.SignPartialResponse) -> SignaturePartial:
            if reply.member != member.index:
                raise InvalidPartial(member.index, f"answered as member {reply.member}")
            if reply.statement != expected:
                raise InvalidPartial(member.index, "signed another statement than the one asked")
            partial = SignaturePartial(
                member=MemberIndex(reply.member),
                sigma=G1.from_bytes(reply.sigma, "signature share"),
                proof=DleqProof.from_bytes(reply.proof),
            )
            verify_partial_signature(partial, expected, member.verification_key)
            return partial

        answers, failures = await self._collect(call, accept)
        signature = combine_signatures(list(answers.values()), need)
        if not verify_signature(self.committee.group_key, expected, signature):
            # t partials that each verify against V_i combine to a signature under PK2 unless
            # the committee's own data (V_i, PK2) disagree: nobody to blame.
            raise DerivationError(
                0, need, {0: "combined signature does not verify under PK2"}, {0: "committee"}
            )
        return SignedStatement(
            statement=expected, signature=signature, signers=tuple(answers), failures=failures
        )

    async def _send_keys(
        self, index: int, keys: list[kms_pb2.KeyRequest]
    ) -> kms_pb2.DerivePartialResponse:
        """One DerivePartial to member `index` for `keys` (of one or more derivations)."""
        eph, evidence = self._session()
        message = kms_pb2.DerivePartialRequest(
            evidence=evidence,
            requester_key=eph.public.to_bytes(),
            generation=self.committee.network.generation,
            keys=keys,
        )
        return await self.rpc(
            self._members[index], lambda stub: stub.DerivePartial(message, timeout=self._timeout)
        )

    def _decode(
        self, member: Member, partials: Sequence[kms_pb2.Partial], keys: int
    ) -> list[EncryptedPartial]:
        """Strictly decode one member's answer; its proofs are checked only if needed."""
        if len(partials) != keys:
            raise InvalidPartial(member.index, f"{len(partials)} partials for {keys} keys")
        out = []
        for p in partials:
            if p.member != member.index:
                raise InvalidPartial(member.index, f"answered as member {p.member}")
            out.append(
                EncryptedPartial(
                    generation=Generation(p.generation),
                    epoch=Epoch(p.epoch),
                    member=MemberIndex(p.member),
                    y=G1.from_bytes(p.y, "partial Y"),
                    z=G1.from_bytes(p.z, "partial Z"),
                    # Its points are decoded only if the combined key fails its check.
                    proof=EncodedDleqProof.from_bytes(p.proof),
                )
            )
        return out
