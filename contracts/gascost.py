"""What one epoch costs on chain: calldata bytes and gas per write, measured on anvil.

    python -m contracts.gascost                 # n = 16, 32, 64 with t = n/2 + 1
    python -m contracts.gascost --members 5 --threshold 3

Runs a fresh anvil (default hardfork: the latest, so EIP-7623's calldata floor applies),
deploys the governance, registers n nodes and runs one DKG epoch with real transaction shapes:
every member posts a member epoch key (1296 bytes), every dealer submits its commitments,
P, proof and its sealed shares to the n-1 other members (38 + 1 + 1137·(n-1) bytes), and t
members confirm. Keys and ciphertexts are random bytes of the real sizes: calldata gas depends
only on how many bytes are zero, and real ciphertexts look random too. Complaints (112 bytes)
and answers (32 bytes) happen only against a cheating party and are listed per call.

The table in docs/contracts.md comes from this command.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from eth_account import Account
from web3 import Web3

from contracts._anvil import Anvil
from contracts._deploy import deploy
from contracts._governance import GovernanceClient
from contracts._tx import Receipt, Transactor
from contracts._types import EpochKind

MEMBER_KEY = 48 + 64 + 1184
SEALED_SHARE = 1088 + 48
BUNDLE_HEADER = 2 + 32 + 2 + 2
#: EIP-7623: a transaction pays at least 21000 + 10 gas per calldata token (zero byte: 1
#: token, other byte: 4), i.e. 40 gas per non-zero byte when it does little else.
FLOOR_PER_TOKEN = 10


@dataclass(frozen=True)
class Cost:
    """Gas and calldata bytes of one kind of write, summed over `count` transactions."""

    name: str
    count: int
    calldata: int
    gas: int
    floor: int  # the EIP-7623 floor of these transactions (their gas if it binds)

    @property
    def per_call(self) -> tuple[int, int]:
        return self.calldata // self.count, self.gas // self.count


def bundle_size(n: int) -> int:
    """A DKG dealer's sealed shares: a slot per member, its own slot empty."""
    return BUNDLE_HEADER + 1 + SEALED_SHARE * (n - 1)


def _input_size(w3: Web3, receipt: Receipt) -> tuple[int, int]:
    """(bytes, EIP-7623 tokens) of the transaction's calldata."""
    data = bytes(w3.eth.get_transaction(receipt.tx_hash)["input"])  # type: ignore[arg-type]
    zeros = data.count(0)
    return len(data), zeros + 4 * (len(data) - zeros)


def measure(n: int, t: int) -> list[Cost]:
    """Run one DKG epoch of n members, threshold t on a fresh anvil; the cost of each step."""
    random = os.urandom
    with Anvil() as anvil:
        w3 = anvil.web3()
        from contracts._accounts import anvil_account

        owner = Transactor(w3, anvil_account(0))
        deployment = deploy(owner)
        governance = GovernanceClient(w3, deployment.governance, owner)
        nodes = []
        for _ in range(n):
            account = Account.create()
            w3.provider.make_request(
                "anvil_setBalance",  # type: ignore[arg-type]
                [account.address, hex(10**21)],
            )
            client = governance.with_transactor(Transactor(w3, account))
            governance.send_allow_node_registration(account.address)
            client.send_register_node(
                operator=account.address,
                endpoint="kms=127.0.0.1:1,peer=127.0.0.1:2",
                tls_key_hash=random(32),
                deal_key=random(1216),
                evidence_hash=random(32),
            )
            record = governance.get_node(account.address)
            governance.send_approve_node(account.address, record.registration_hash)
            nodes.append(client)
        # Every write is mined in a block of its own: a phase must hold n of them.
        phases = (n + 5, n + 5, 3, 3, n + 5)
        receipt, epoch = governance.send_propose_epoch(
            EpochKind.DKG, [c.sender for c in nodes], t, phases
        )
        costs = [_cost(w3, "proposeEpoch", [receipt])]
        keys = [c.send_post_epoch_key(epoch, random(MEMBER_KEY)) for c in nodes]
        costs.append(_cost(w3, "postEpochKey", keys))
        deals = [
            c.send_submit_deal(
                epoch,
                [random(48) for _ in range(t)],
                random(96),
                random(64),
                random(bundle_size(n)),
            )
            for c in nodes
        ]
        costs.append(_cost(w3, "submitDeal", deals))
        info = governance.get_epoch(epoch)
        w3.provider.make_request(
            "anvil_mine",  # type: ignore[arg-type]
            [hex(info.justify_deadline + 1 - w3.eth.block_number)],
        )
        digest, poly, pk2 = random(32), [random(48) for _ in range(t)], random(96)
        confirms = []
        for c in nodes[:t]:
            call = c.contract.functions.confirm(epoch, digest, b"".join(poly), pk2)
            assert c.transactor is not None
            confirms.append(c.transactor.send(call, gas=8_000_000))
        costs.append(_cost(w3, "confirm (t votes, the last activates)", confirms))
        return costs


def _cost(w3: Web3, name: str, receipts: Sequence[Receipt]) -> Cost:
    sizes = [_input_size(w3, r) for r in receipts]
    floor = sum(21_000 + FLOOR_PER_TOKEN * tokens for _, tokens in sizes)
    gas = sum(r.gas_used for r in receipts)
    return Cost(name, len(receipts), sum(size for size, _ in sizes), gas, floor)


def report(n: int, t: int, costs: list[Cost]) -> str:
    lines = [f"n = {n}, t = {t}"]
    total_bytes = sum(c.calldata for c in costs)
    total_gas = sum(c.gas for c in costs)
    for c in costs:
        per_bytes, per_gas = c.per_call
        floor = "  calldata floor binds" if c.gas <= c.floor else ""
        lines.append(
            f"  {c.name:40} x{c.count:<3} {c.calldata:>10,} B {c.gas:>13,} gas"
            f"   (per call {per_bytes:,} B, {per_gas:,} gas){floor}"
        )
    lines.append(f"  {'epoch total':40}      {total_bytes:>10,} B {total_gas:>13,} gas")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m contracts.gascost", description=__doc__)
    parser.add_argument("--members", type=int, action="append", help="n (repeatable)")
    parser.add_argument("--threshold", type=int, help="t (default n/2 + 1)")
    args = parser.parse_args(argv)
    for n in args.members or [16, 32, 64]:
        t = args.threshold or n // 2 + 1
        print(report(n, t, measure(n, t)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
