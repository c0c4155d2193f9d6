"""App side of a derivation: turn t members' encrypted partials into keys, naming any liar.

`Combiner.check` is what an app runs once it holds answers from t members:

1. Optimistic: `combine_unchecked` decrypts and combines each key's partials in one
   multi-scalar multiplication, and all keys are checked at once against PK2 with one
   pairing equation. Honest answers pass, and that is the whole cost. (`propose` and
   `settle` split this step so a client can check several derivations in one equation.)
2. Only when that fails: the answers not yet verified are decrypted and their DLEQ proofs
   checked against the members' V_i, each member's proofs (one per key) in one batch
   (`mpc.dleq.verify_dleq_batch`, a random linear combination: a wrong proof passes with
   probability below 2^-127). Those that fail are returned, so the caller drops them,
   records whom, and asks another member; those that pass are kept as verified.
   Once a derivation has seen a wrong answer, later answers are checked by proof directly:
   all of them in one batch first, then member by member only if that fails.
3. Keys combined from individually verified partials are checked against PK2 once more:
   verified partials that PK2 does not confirm mean the committee data (V_i, PK2) disagree,
   which no member can be blamed for; that raises InvalidProof.

Why nothing wrong is ever returned: step 1 returns sigma_k only if e(sigma_k, G2) ==
e(H_k, PK2) (all keys in one equation with random weights the nodes cannot predict); every
point was decoded with the subgroup check, so sigma_k lies in G1's prime-order subgroup, and
the pairing is non-degenerate there, so sigma_k == x·H_k: the right key whatever the members
sent. A wrong partial from one member fails step 1 (its error is multiplied by a non-zero
Lagrange coefficient; with several keys, unless the random weights cancel it, probability
below 2^-127), so it is found and named in step 2. Only wrong partials from several colluding
members whose errors cancel exactly can pass step 1 unnamed, and then the key is still the
right one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from mpc.derive import (
    BAD_PARTIAL_PROOF,
    EncryptedPartial,
    EphemeralKey,
    KeyRequest,
    NetworkContext,
    VerifiedPartial,
    are_consistent_with_group_key,
    combine_partials,
    combine_unchecked,
    decrypt_partial,
)
from mpc.dleq import DleqStatement, verify_dleq_batch
from mpc.errors import InvalidPartial, InvalidProof, ProtocolMisuse
from mpc.group import G1, G2, Rng


class Combiner:
    """Combines one derivation's answers (one partial per request from each member)."""

    def __init__(
        self,
        requests: Sequence[KeyRequest],
        *,
        ephemeral: EphemeralKey,
        network: NetworkContext,
        group_key: G2,
        threshold: int,
        verification_keys: Mapping[int, G1],
        rng: Rng = os.urandom,
    ) -> None:
        if not requests:
            raise ProtocolMisuse("a derivation needs at least one key request")
        self._requests = list(requests)
        self._ephemeral = ephemeral
        self._network = network
        self._group_key = group_key
        self._threshold = threshold
        self._keys = verification_keys
        self._rng = rng
        self._verified: dict[int, list[VerifiedPartial]] = {}
        self._suspicious = False
        self._sigmas: list[G1] | None = None
        self._proposal: list[G1] | None = None

    @property
    def sigmas(self) -> list[G1]:
        """sigma_k = x·H_k for each request, once t answers were accepted."""
        if self._sigmas is None:
            raise ProtocolMisuse("no answers have been accepted yet")
        return self._sigmas

    @property
    def optimistic(self) -> bool:
        """True until this derivation has seen a wrong answer (then proofs are checked)."""
        return not self._suspicious

    def check(self, answers: Mapping[int, Sequence[EncryptedPartial]]) -> dict[int, InvalidPartial]:
        """Check exactly t members' answers; return the wrong ones, or {} with `sigmas` set."""
        if not self._suspicious:
            try:
                proposal = self.propose(answers)
            except InvalidPartial as exc:  # malformed: wrong shape, member or epoch
                return {exc.member: exc}
            holds = are_consistent_with_group_key(
                proposal, self._requests, self._group_key, rng=self._rng
            )
            return self.settle(answers, proposal_holds=holds)
        return self.settle(answers, proposal_holds=False)

    def propose(self, answers: Mapping[int, Sequence[EncryptedPartial]]) -> list[G1]:
        """Step 1 up to its pairing check, for a caller that batches the pairing checks.

        Returns the UNVERIFIED combination; the caller checks it with
        `are_consistent_with_group_key` and passes the outcome to `settle`.
        """
        self._expect(answers)
        self._proposal = combine_unchecked(
            answers, self._requests, ephemeral=self._ephemeral, network=self._network
        )
        return self._proposal

    def settle(
        self, answers: Mapping[int, Sequence[EncryptedPartial]], *, proposal_holds: bool
    ) -> dict[int, InvalidPartial]:
        """Finish: keep the proposal if its pairing check held, otherwise steps 2 and 3."""
        self._expect(answers)
        proposal, self._proposal = self._proposal, None
        if proposal_holds:
            if proposal is None:
                raise ProtocolMisuse("settle(proposal_holds=True) without a proposal")
            self._sigmas = proposal
            return {}
        self._suspicious = True
        wrong: dict[int, InvalidPartial] = {}
        pending: dict[int, list[tuple[VerifiedPartial, DleqStatement]]] = {}
        for member, partials in answers.items():
            if member in self._verified:
                continue
            try:
                pending[member] = self._decrypt(member, partials)
            except InvalidPartial as exc:
                wrong[member] = exc
        for member in self._failing(pending, known_wrong=proposal is not None):
            wrong[member] = InvalidPartial(member, BAD_PARTIAL_PROOF)
        for member, opened in pending.items():
            if member not in wrong:
                self._verified[member] = [p for p, _ in opened]
        if wrong:
            return wrong
        sigmas = [
            combine_partials([self._verified[m][k] for m in answers], self._threshold)
            for k in range(len(self._requests))
        ]
        if not are_consistent_with_group_key(
            sigmas, self._requests, self._group_key, rng=self._rng
        ):
            raise InvalidProof(
                "the partials verify against their members' keys but combine to keys the "
                "group key does not confirm: the committee's V_i and PK2 disagree"
            )
        self._sigmas = sigmas
        return {}

    def _expect(self, answers: Mapping[int, Sequence[EncryptedPartial]]) -> None:
        if len(answers) != self._threshold:
            raise ProtocolMisuse(f"check takes {self._threshold} answers, got {len(answers)}")

    def _failing(
        self,
        pending: Mapping[int, Sequence[tuple[VerifiedPartial, DleqStatement]]],
        *,
        known_wrong: bool,
    ) -> list[int]:
        """The members among `pending` with a proof that does not verify.

        Each member's proofs are checked in one batch (naming the member is all that is
        needed). Unless this derivation's pairing check just failed (`known_wrong`: some
        partial is wrong, so a batch over everyone would fail too), all members' proofs are
        first checked in one batch, which the replacements of a liar normally pass.
        """
        if not pending:
            return []
        if not known_wrong and verify_dleq_batch(
            [s for opened in pending.values() for _, s in opened], self._rng
        ):
            return []
        return [
            member
            for member, opened in pending.items()
            if not verify_dleq_batch([s for _, s in opened], self._rng)
        ]

    def _decrypt(
        self, member: int, partials: Sequence[EncryptedPartial]
    ) -> list[tuple[VerifiedPartial, DleqStatement]]:
        if len(partials) != len(self._requests):
            raise InvalidPartial(member, f"{len(partials)} partials for {len(self._requests)} keys")
        key = self._keys.get(member)
        if key is None:
            raise InvalidPartial(member, "not a member of this committee")
        out = []
        for partial, request in zip(partials, self._requests, strict=True):
            if partial.member != member:
                raise InvalidPartial(member, f"answered as member {partial.member}")
            out.append(
                decrypt_partial(
                    partial,
                    request,
                    ephemeral=self._ephemeral,
                    verification_key=key,
                    network=self._network,
                )
            )
        return out
