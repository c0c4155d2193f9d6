"""`tkms node join`: one command takes a node on a new host from nothing to serving keys.

1. identity: the node's TLS, deal and Ethereum keys, created and sealed in the data directory
   (`tkms node init`), or the ones already there;
2. `registration.json` with the evidence binding those keys and, already, the endpoint and
   operator the node will register: the file the governance owner reviews (`tkms node
   admit`), so the review does not wait for the node;
3. `node.toml`, written once (an existing one is kept, and refused if it names another
   governance); `TKMS_*` variables override it as for `tkms node run`;
4. on chain, waiting where it must and saying once what it waits for: gas for the node's
   address, the owner's `allowNodeRegistration`, then `registerNode` from the node's own key,
   then the owner's approval of exactly that registration;
5. `tkms node run`: the node follows the chain and takes part in the next epoch whose
   committee includes it (the owner's `tkms chain propose-epoch`, or `tkms node admit
   --reshare`).

Run again on the same directory (a restart, a container's entrypoint), it reuses the identity
and skips what the chain already holds: an approved node goes straight to step 5. A changed
endpoint is registered again, which returns the node to Pending until the owner approves it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eth_utils.address import to_checksum_address

from node.config import load_config
from node.endpoints import Endpoints
from node.errors import ConfigError, NodeError
from node.identity import IDENTITY_FILE, load_identity
from node.registration import REGISTRATION_FILE, registered_document, write_registration
from node.sealing import open_sealer, write_atomic

if TYPE_CHECKING:
    from contracts import GovernanceClient, NodeInfo

Say = Callable[[str], None]
CONFIG_FILE = "node.toml"


@dataclass(frozen=True, kw_only=True)
class JoinSettings:
    data_dir: Path
    rpc_url: str
    governance: str
    chain_id: int | None
    endpoints: Endpoints
    listen_host: str = "0.0.0.0"
    metrics: str = "127.0.0.1:9101"
    tee: str = "simulator"
    sealing: str = "file"
    operator: str | None = None
    fund_from_anvil_account: int | None = None
    poll_seconds: float = 2.0
    timeout_seconds: float | None = None  # None: wait as long as it takes
    log_format: str = "json"


@dataclass(frozen=True, kw_only=True)
class Prepared:
    address: str
    registration: dict[str, Any]
    config_path: Path

    @property
    def registration_hash(self) -> bytes:
        return bytes.fromhex(self.registration["registration_hash"])


def prepare(settings: JoinSettings, say: Say) -> Prepared:
    """Steps 1-3: identity, registration document, configuration (no chain access)."""
    from node.cli import init_node_dir

    data_dir = settings.data_dir
    if (data_dir / IDENTITY_FILE).exists():
        document = json.loads((data_dir / REGISTRATION_FILE).read_text())
        if document.get("tee") != settings.tee or document.get("sealing") != settings.sealing:
            raise NodeError(
                f"{data_dir} holds a node identity made with tee={document.get('tee')}, "
                f"sealing={document.get('sealing')}, not tee={settings.tee}, "
                f"sealing={settings.sealing}: use the same options, or another --dir"
            )
        say(f"node identity found in {data_dir}: {document['address']}")
    else:
        document = init_node_dir(data_dir, tee=settings.tee, sealing=settings.sealing)
        say(f"node identity created in {data_dir}: {document['address']}")
    address = str(document["address"])
    operator = settings.operator or document.get("operator") or address
    recorded = registered_document(document, operator=operator, endpoint=str(settings.endpoints))
    write_registration(data_dir, recorded)
    config_path = data_dir / CONFIG_FILE
    if config_path.exists():
        config = load_config(config_path)
        if config.chain.governance.lower() != settings.governance.lower():
            raise ConfigError(
                "chain.governance",
                f"{config_path} names {config.chain.governance}, not --governance "
                f"{settings.governance}: one data directory serves one network",
            )
    else:
        write_atomic(config_path, _config_text(settings).encode(), mode=0o644)
        say(f"configuration written: {config_path} (TKMS_* variables override it)")
    return Prepared(address=address, registration=recorded, config_path=config_path)


def _config_text(settings: JoinSettings) -> str:
    kms_port = settings.endpoints.kms.rpartition(":")[2]
    peer_port = settings.endpoints.peer.rpartition(":")[2]
    return (
        f"# written by `tkms node join`; edit freely, `tkms node join` keeps it\n"
        f'data_dir = "{settings.data_dir}"\ntee = "{settings.tee}"\n'
        f'sealing = "{settings.sealing}"\nlog_format = "{settings.log_format}"\n\n'
        f'[chain]\nrpc_url = "{settings.rpc_url}"\ngovernance = "{settings.governance}"\n\n'
        f'[listen]\npublic = "{settings.listen_host}:{kms_port}"\n'
        f'peer = "{settings.listen_host}:{peer_port}"\nmetrics = "{settings.metrics}"\n'
    )


def owner_instructions(prepared: Prepared, settings: JoinSettings, chain_id: int) -> str:
    """What the governance owner runs, printed once by `join`."""
    return (
        f"registration: {settings.data_dir / REGISTRATION_FILE} (registration hash "
        f"0x{prepared.registration['registration_hash']})\n"
        "send it to the governance owner, who reviews it and admits the node with one command:\n"
        f"  tkms node admit --rpc <owner's RPC URL> --chain-id {chain_id} "
        f"--governance {settings.governance} \\\n"
        f"      --registration registration.json --private-key-file owner.key [--reshare]\n"
        "(--reshare also proposes the reshare that makes this node a committee member)"
    )


def governance_for_node(settings: JoinSettings) -> GovernanceClient:
    """The governance client signing with the node's own Ethereum key."""
    from contracts import GovernanceClient, InvalidInput, Transactor
    from contracts.cliargs import connect, pinned_chain_id

    w3 = connect(settings.rpc_url, "--chain")
    if not w3.eth.get_code(to_checksum_address(settings.governance)):
        raise InvalidInput("--governance", f"no contract at {settings.governance} on this chain")
    chain = pinned_chain_id(w3, settings.chain_id, development_key=False)
    identity = load_identity(settings.data_dir, open_sealer(settings.sealing, settings.data_dir))
    return GovernanceClient(
        w3, settings.governance, Transactor(w3, identity.eth_account, chain_id=chain)
    )


def wait_for_approval(
    client: GovernanceClient,
    prepared: Prepared,
    settings: JoinSettings,
    say: Say,
    *,
    instructions: str = "",
    sleep: Callable[[float], None] = time.sleep,
) -> NodeInfo:
    """Step 4: fund (dev chains), wait to be allowed, register, wait for the approval of exactly
    this registration; `instructions` (what the owner runs) are said once, if it must wait.
    Returns the approved record."""
    from contracts import NodeStatus

    address = prepared.address
    ours = prepared.registration_hash
    deadline = (
        None if settings.timeout_seconds is None else time.monotonic() + settings.timeout_seconds
    )
    said: set[str] = set()

    def once(key: str, message: str) -> None:
        if key not in said:
            said.add(key)
            say(message)

    while True:
        info = client.get_node(address)
        if info.registration_hash == ours and info.status is NodeStatus.APPROVED:
            return info
        if info.registration_hash == ours and info.status is NodeStatus.REMOVED:
            raise NodeError(
                f"the governance owner removed {address} (its registration 0x{ours.hex()}): "
                "nothing to join; the owner must allow and approve it again"
            )
        if instructions:
            once("instructions", instructions)
        if info.registration_hash == ours and info.status is NodeStatus.PENDING:
            once("approval", f"registered; waiting for the governance owner to approve {address}")
        elif _ready_to_register(client, settings, address, once):
            receipt = client.send_register_node(
                operator=prepared.registration["operator"],
                endpoint=prepared.registration["endpoint"],
                tls_key_hash=bytes.fromhex(prepared.registration["tls_key_hash"]),
                deal_key=bytes.fromhex(prepared.registration["deal_public_key"]),
                evidence_hash=bytes.fromhex(prepared.registration["evidence_hash"]),
            )
            if info.status is not NodeStatus.NONE:
                say("registered again (endpoint or keys changed): pending until approved")
            say(f"registerNode sent from {address} in block {receipt.block}")
            continue
        if deadline is not None and time.monotonic() > deadline:
            raise NodeError(
                f"not approved after {settings.timeout_seconds:.0f} s (status {info.status.name})"
            )
        sleep(settings.poll_seconds)


def _ready_to_register(
    client: GovernanceClient, settings: JoinSettings, address: str, once: Callable[[str, str], None]
) -> bool:
    w3 = client.w3
    if int(w3.eth.get_balance(to_checksum_address(address))) == 0:
        if settings.fund_from_anvil_account is not None:
            from node.cli import fund_from_anvil

            fund_from_anvil(w3, address, settings.fund_from_anvil_account)
            once(
                "funded", f"funded {address} from anvil account {settings.fund_from_anvil_account}"
            )
        else:
            once("fund", f"waiting for gas: send some ETH to {address} (it pays its own writes)")
            return False
    if not client.is_node_registration_allowed(address):
        once("allow", f"waiting for the governance owner to allow {address} to register")
        return False
    return True
