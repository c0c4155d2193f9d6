"""Which chains may accept simulated TEEs: development chains only.

Simulator evidence is signed by a root key anyone can derive, so a governance that sets
`simulatorAllowed` lets anyone impersonate any app. Tools refuse to set it on a chain whose id
is not a local development chain (anvil's and Ganache's 31337, geth --dev's 1337); nodes refuse
simulator evidence there whatever the flag says.
"""

from __future__ import annotations

from typing import Final

from contracts.errors import InvalidInput

#: anvil / Hardhat (31337) and geth --dev / Ganache (1337).
DEV_CHAIN_IDS: Final = frozenset({31337, 1337})


def require_dev_chain(chain_id: int, argument: str) -> None:
    """Raise `InvalidInput` naming `argument` unless `chain_id` is a development chain."""
    if chain_id not in DEV_CHAIN_IDS:
        allowed = ", ".join(str(c) for c in sorted(DEV_CHAIN_IDS))
        raise InvalidInput(
            argument,
            f"refusing to allow simulated TEEs on chain {chain_id}: simulator quotes are "
            f"forgeable by anyone, so only development chains ({allowed}) may accept them",
        )


def pin_chain_id(
    actual: int, expected: int | None, *, development_key: bool, argument: str = "--chain-id"
) -> int:
    """The chain id to sign for: `expected` if the RPC reports it (`actual`), refused otherwise.

    Without `expected` only a development chain, or a development key (anvil's accounts, public
    anyway), is accepted: a signature is bound to its chain id, so an RPC that lies about the
    chain would otherwise get an owner's transaction for another chain holding the same
    contracts.
    """
    if expected is not None:
        if actual != expected:
            raise InvalidInput(
                argument,
                f"the RPC serves chain {actual}, not {expected}: nothing was signed",
            )
        return expected
    if actual not in DEV_CHAIN_IDS and not development_key:
        raise InvalidInput(
            argument,
            f"required: the RPC serves chain {actual}, which is not a development chain; "
            f"pass --chain-id with the id of the chain you mean to sign for",
        )
    return actual
