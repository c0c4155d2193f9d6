"""Linking a rotated key generation to the network's fingerprint (design §7).

After a rotation activates generation g (a fresh PK2_g), apps that trust the network by its
fingerprint accept PK2_g only with generation g-1's threshold signature over g's
`tkms-generation:v1` statement, stored in governance (`generationLink(g)`). `link_generation`
asks g-1's committee (each node signs only the PK2_g its own chain view shows), checks the
combined signature under PK2_{g-1}, publishes it (governance owner), and checks that the chain
now links g to the fingerprint. `tkms chain link-generation` and `tkms testnet rotate` run it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable

from contracts import GovernanceClient
from guest.committee import (
    CommitteeError,
    UntrustedNetwork,
    chain_fingerprint,
    committee_from_chain,
)
from guest.kms_client import DerivationError, KmsClient
from mpc import G2, MpcError


def _no_evidence(report_data: bytes) -> tuple[bytes, str]:
    raise RuntimeError("a generation link is public chain data: no evidence is ever asked for")


async def _sign(governance: GovernanceClient, generation: int, timeout: float) -> bytes:
    fingerprint = chain_fingerprint(governance)
    previous = committee_from_chain(governance, generation - 1, fingerprint=fingerprint)
    key = G2.from_bytes(
        governance.get_generation(generation).pk2, f"PK2 of generation {generation}"
    )
    client = KmsClient(previous, _no_evidence, timeout=timeout)
    try:
        signed = await client.sign_generation(generation, key)
    finally:
        await client.close()
    return signed.signature


def link_generation(
    governance: GovernanceClient, generation: int, *, timeout: float = 10.0
) -> bytes:
    """Publish generation `generation`'s link (owner transactor); returns the signature.

    The fingerprint is the one this RPC shows: the owner trusts its own chain. Earlier
    generations must already be linked (links are checked from generation 1 on).
    """
    if generation < 2:
        raise ValueError(f"only generations >= 2 are linked, got {generation}")
    signature = asyncio.run(_sign(governance, generation, timeout))
    governance.send_set_generation_link(generation, signature)
    committee_from_chain(governance, generation, fingerprint=chain_fingerprint(governance))
    return signature


Handler = Callable[[argparse.Namespace], int]


def owner_command(name: str, act: Callable[[GovernanceClient, argparse.Namespace], str]) -> Handler:
    """A `tkms chain <name>` handler: `act` with the owner's governance client; its message on
    stdout, or the error on stderr and status 1."""

    def handler(args: argparse.Namespace) -> int:
        from contracts import ContractsError
        from contracts.cliargs import connect, signing_transactor

        try:
            w3 = connect(args.rpc)
            governance = GovernanceClient(w3, args.governance, signing_transactor(w3, args))
            print(act(governance, args))
        except (
            ContractsError,
            CommitteeError,
            UntrustedNetwork,
            DerivationError,
            MpcError,
            ValueError,
        ) as exc:
            print(f"tkms chain {name}: {exc}", file=sys.stderr)
            return 1
        return 0

    return handler


def add_owner_arguments(parser: argparse.ArgumentParser, *, lowest: int, handler: Handler) -> None:
    """RPC, governance, the owner's key, `--generation G` (>= `lowest`) and `--timeout`."""
    from contracts.cliargs import add_rpc_argument, add_signer_arguments

    add_rpc_argument(parser)
    parser.add_argument("--governance", required=True, metavar="ADDR", help="KmsGovernance")
    add_signer_arguments(parser, "the governance owner")
    parser.add_argument("--generation", required=True, type=int, metavar="G", help=f"g >= {lowest}")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per node request")
    parser.set_defaults(handler=handler)


def _link(governance: GovernanceClient, args: argparse.Namespace) -> str:
    signature = link_generation(governance, args.generation, timeout=args.timeout)
    g = args.generation
    return f"generation {g} linked to generation {g - 1}: 0x{signature.hex()}"


link_generation_command = owner_command("link-generation", _link)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_owner_arguments(parser, lowest=2, handler=link_generation_command)
