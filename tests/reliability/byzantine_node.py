"""A Byzantine test build of the node: the real daemon with chosen behaviours patched in.

    python -m tests.reliability.byzantine_node --config node.toml --behaviour bad-deals ...

Test-only (nothing in `node/` knows about it). Behaviours, any combination:

* `bad-deals`: every sealed share this node puts on chain is corrupted (no member can open
  it: the effect of sealing shares that are not on the commitments), and it never answers a
  complaint against it. Honest members complain BAD_SHARE, then find the complaint
  unanswered and leave it out of QUAL.
* `wrong-partials`: every partial it returns is shifted by G1 (its DLEQ proof then fails).
* `slow-partials`: every DerivePartial answer is delayed by `--delay` seconds.
* `late-deals`: its deal waits `--delay` seconds before it is sent (past a short Deal phase
  the chain refuses it: the others record MISSING_DEAL and nobody reveals anything).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

BEHAVIOURS = ("bad-deals", "wrong-partials", "slow-partials", "late-deals")


def _bad_deals() -> None:
    from contracts import GovernanceClient
    from mpc.dkg import DkgMember
    from mpc.messages import ShareBundle
    from mpc.reshare import ReshareDealer
    from mpc.sharebox import SealedShare

    submit = GovernanceClient.send_submit_deal

    def corrupt(
        self: GovernanceClient,
        epoch: int,
        commitments: Any,
        pk2_part: bytes,
        proof: bytes,
        shares: bytes,
    ) -> Any:
        bundle = ShareBundle.from_bytes(shares)
        bent = tuple(
            None
            if e is None
            else SealedShare(e.kem_ciphertext, e.box[:-1] + bytes([e.box[-1] ^ 1]))
            for e in bundle.entries
        )
        bad = dataclasses.replace(bundle, entries=bent).to_bytes()
        return submit(self, epoch, commitments, pk2_part, proof, bad)

    GovernanceClient.send_submit_deal = corrupt  # type: ignore[method-assign, assignment]
    for machine in (DkgMember, ReshareDealer):
        answer = machine.on_complaints

        def silent(self: Any, complaints: Any, _answer: Callable[..., Any] = answer) -> list[Any]:
            _answer(self, complaints)  # the machine moves on; the justifications are dropped
            return []

        machine.on_complaints = silent  # type: ignore[method-assign, assignment]


def _late_deals(delay: float) -> None:
    import time

    from contracts import GovernanceClient

    submit = GovernanceClient.send_submit_deal

    def late(self: GovernanceClient, *args: Any) -> Any:
        time.sleep(delay)  # sends run in a worker thread: this holds only our deal
        return submit(self, *args)

    GovernanceClient.send_submit_deal = late  # type: ignore[method-assign, assignment]


def _wrong_partials() -> None:
    import node.kms_service as kms
    from mpc import G1

    derive = kms.derive_partial  # type: ignore[attr-defined]

    def shifted(*args: Any, **kwargs: Any) -> Any:
        p = derive(*args, **kwargs)
        return dataclasses.replace(p, z=p.z + G1.generator())

    kms.derive_partial = shifted  # type: ignore[attr-defined]


def _slow_partials(delay: float) -> None:
    from node.kms_service import KmsServicer

    serve = KmsServicer.DerivePartial

    async def slow(self: KmsServicer, request: Any, context: Any) -> Any:
        await asyncio.sleep(delay)
        return await serve(self, request, context)

    KmsServicer.DerivePartial = slow  # type: ignore[method-assign]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="byzantine_node", description=__doc__)
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--behaviour", action="append", choices=BEHAVIOURS, default=[])
    parser.add_argument("--delay", type=float, default=2.0)
    args = parser.parse_args(argv)
    for behaviour in args.behaviour:
        if behaviour == "bad-deals":
            _bad_deals()
        elif behaviour == "late-deals":
            _late_deals(args.delay)
        elif behaviour == "wrong-partials":
            _wrong_partials()
        elif behaviour == "slow-partials":
            _slow_partials(args.delay)
    from node.config import load_config
    from node.daemon import run_node_blocking
    from node.logs import get_logger

    get_logger("tkms.byzantine").warning("byzantine_build", behaviours=args.behaviour)
    return run_node_blocking(load_config(args.config))


if __name__ == "__main__":
    sys.exit(main())
