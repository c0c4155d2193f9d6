"""Signing accounts: from a private key, or one of anvil's well-known development accounts."""

from __future__ import annotations

from eth_account import Account
from eth_account.signers.local import LocalAccount

from contracts._hexargs import parse_private_key
from contracts.errors import InvalidInput

# anvil's default mnemonic: its accounts are public knowledge, for local chains only.
ANVIL_MNEMONIC = "test test test test test test test test test test test junk"
ANVIL_ACCOUNT_COUNT = 10


def account_from_key(key: str, argument: str = "private_key") -> LocalAccount:
    account: LocalAccount = Account.from_key(parse_private_key(argument, key))
    return account


def anvil_account(index: int, argument: str = "anvil_account") -> LocalAccount:
    """Account `index` (0-9) of anvil's default mnemonic."""
    if not 0 <= index < ANVIL_ACCOUNT_COUNT:
        raise InvalidInput(argument, f"must be 0..{ANVIL_ACCOUNT_COUNT - 1}, got {index}")
    Account.enable_unaudited_hdwallet_features()
    account: LocalAccount = Account.from_mnemonic(
        ANVIL_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}"
    )
    return account
