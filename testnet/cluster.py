"""A local network of real processes: anvil, the governance contracts, and N `tkms node run`.

Used by the testnet commands and by the integration tests. Everything binds 127.0.0.1 on free
ports; every process it starts is stopped by `down()` (and by the context manager).

Steps of `up()`: start anvil with interval mining (phase deadlines are block numbers, so the
chain must move on its own) -> deploy with simulators allowed -> for each node: create its
identity and evidence, fund it, register it, approve it, allow its KMS measurement -> start
the node processes -> propose the DKG epoch -> wait until it is active and every node healthy.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from web3 import HTTPProvider, Web3

from contracts import (
    AppAuthClient,
    EpochKind,
    EpochStatus,
    GovernanceClient,
    Transactor,
    anvil_account,
    register_app,
)
from contracts._anvil import Anvil, free_port
from contracts._deploy import Deployment, deploy
from node.cli import fund_from_anvil, init_node_dir
from node.endpoints import Endpoints
from node.registration import (
    REGISTRATION_FILE,
    approve_registration,
    registered_document,
    write_registration,
)
from node.sealing import write_atomic
from node.tee import SIMULATED_OS_IMAGE
from testnet.probes import STATE_FILE, node_health
from testnet.processes import argv_of, running, start_ticks, stop_groups

if TYPE_CHECKING:
    from guest.kms_types import Committee

OWNER_ACCOUNT = 0
FUNDER_ACCOUNT = 1
DEFAULT_PHASES = (3, 5, 5, 5, 8)  # Keys, Deal, Complain, Justify, Confirm

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass
class NodeProcess:
    index: int
    dir: Path
    address: str
    endpoints: Endpoints
    status_port: int
    config_path: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    #: The pid of a node started by an earlier command (state file), when `process` is None.
    detached_pid: int | None = None
    #: The start time (clock ticks) of the recorded pid, to tell a reused pid apart.
    start: int | None = None
    #: host:port of the node's dstack-compatible KMS endpoint, "" when it serves none.
    dstack_kms: str = ""

    @property
    def pid(self) -> int | None:
        if self.process is not None:
            return self.process.pid if self.process.poll() is None else None
        if self.detached_pid is not None and running(self.detached_pid):
            return self.detached_pid
        return None

    @property
    def tls_key_hash(self) -> bytes:
        """The TLS key hash the node registered: what its Kms and peer channels pin."""
        registration = json.loads((self.dir / REGISTRATION_FILE).read_text())
        return bytes.fromhex(registration["tls_key_hash"])

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "dir": str(self.dir),
            "address": self.address,
            "kms": self.endpoints.kms,
            "peer": self.endpoints.peer,
            "status_port": self.status_port,
            "config": str(self.config_path),
            "log": str(self.log_path),
            "pid": self.pid,
            "start": self.start if self.pid else None,
            "dstack_kms": self.dstack_kms,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NodeProcess:
        return cls(
            index=int(data["index"]),
            dir=Path(data["dir"]),
            address=str(data["address"]),
            endpoints=Endpoints(kms=data["kms"], peer=data["peer"]),
            status_port=int(data["status_port"]),
            config_path=Path(data["config"]),
            log_path=Path(data["log"]),
            detached_pid=data.get("pid"),
            start=data.get("start"),
            dstack_kms=str(data.get("dstack_kms", "")),
        )

    def health(self, timeout: float = 2.0) -> dict[str, Any] | None:
        return node_health(self.status_port, timeout)


#: anvil's own state dump (blocks, contracts, history), kept across chain restarts.
ANVIL_STATE = "anvil-state.json"


@dataclass
class Cluster:
    root: Path
    block_time: float = 1.0
    phases: tuple[int, int, int, int, int] = DEFAULT_PHASES
    progress: Progress = _quiet
    anvil: Anvil | None = None
    deployment: Deployment | None = None
    #: Set when attached to a chain started by an earlier command (see `load`).
    attached_rpc: str | None = None
    attached_anvil_pid: int | None = None
    anvil_start: int | None = None
    #: Start anvil and the nodes in their own sessions so they outlive this process.
    detach: bool = False
    nodes: list[NodeProcess] = field(default_factory=list)
    max_head_age: float = 30.0
    #: Per-app key requests per second each node allows (the node default is 100).
    app_rate_limit: float = 100.0
    #: Nodes created from now on also serve dstack's KMS (`listen.dstack_kms`).
    dstack_kms: bool = False
    #: Anything else a command wants persisted with the network (demo app, gateway, ...).
    extra: dict[str, Any] = field(default_factory=dict)
    _owner: Transactor | None = field(default=None, repr=False)

    # -- chain ------------------------------------------------------------------------

    def start_chain(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        log = (self.root / "anvil.log").open("ab")
        # A detached chain keeps its state on disk, so a network whose anvil died can resume.
        state = self.root / ANVIL_STATE if self.detach else None
        self.anvil = Anvil(
            block_time=self.block_time, log=log, detach=self.detach, state_file=state
        ).start()
        assert self.anvil.process is not None
        self.anvil_start = start_ticks(self.anvil.process.pid)
        self.remember("anvil", argv_of(self.anvil.process), self.root / "anvil.log")
        self.progress(f"anvil up at {self.anvil.rpc_url}")
        self.deployment = deploy(self.owner_transactor(), allow_simulator=True)
        # the image nodes recompute from a simulated TD's MRTD and RTMR0-2 (docs/security.md)
        self.governance().send_add_os_image(SIMULATED_OS_IMAGE)
        self.progress(f"governance deployed at {self.deployment.governance}")

    @property
    def rpc_url(self) -> str:
        if self.attached_rpc is not None:
            return self.attached_rpc
        assert self.anvil is not None, "chain not started"
        return self.anvil.rpc_url

    @property
    def anvil_pid(self) -> int | None:
        if self.anvil is not None and self.anvil.process is not None:
            return self.anvil.process.pid
        return self.attached_anvil_pid

    def w3(self, timeout: float = 30.0, retries: bool = True) -> Web3:
        """A client of the chain; `retries=False` gives up after one `timeout` (status)."""
        if retries:
            return Web3(HTTPProvider(self.rpc_url, request_kwargs={"timeout": timeout}))
        return Web3(
            HTTPProvider(
                self.rpc_url,
                request_kwargs={"timeout": timeout},
                exception_retry_configuration=None,
            )
        )

    # -- persistence ------------------------------------------------------------------

    def save(self) -> None:
        assert self.deployment is not None
        state = {
            "version": 1,
            "rpc_url": self.rpc_url,
            "anvil_pid": self.anvil_pid,
            "anvil_start": self.anvil_start,
            "block_time": self.block_time,
            "phases": list(self.phases),
            "governance": self.deployment.governance,
            "app_factory": self.deployment.app_factory,
            "deployed_block": self.deployment.block,
            "owner": self.deployment.owner,
            "nodes": [n.to_json() for n in self.nodes],
            "extra": self.extra,
        }
        write_atomic(self.root / STATE_FILE, json.dumps(state, indent=2).encode(), mode=0o644)

    @classmethod
    def load(cls, root: Path, progress: Progress = _quiet) -> Cluster:
        """Attach to the network an earlier command started in `root` (its state file)."""
        state = json.loads((root / STATE_FILE).read_text())
        return cls(
            root=root,
            block_time=float(state["block_time"]),
            phases=tuple(state["phases"]),
            progress=progress,
            deployment=Deployment(
                governance=state["governance"],
                app_factory=state["app_factory"],
                block=int(state["deployed_block"]),
                owner=state["owner"],
            ),
            attached_rpc=state["rpc_url"],
            attached_anvil_pid=state.get("anvil_pid"),
            anvil_start=state.get("anvil_start"),
            nodes=[NodeProcess.from_json(n) for n in state["nodes"]],
            extra=dict(state.get("extra", {})),
            detach=True,
        )

    def owner_transactor(self) -> Transactor:
        # One transactor for the owner: it serializes sends, so nonces never collide.
        if self._owner is None:
            self._owner = Transactor(self.w3(), anvil_account(OWNER_ACCOUNT))
        return self._owner

    def governance(self, transactor: Transactor | None = None) -> GovernanceClient:
        assert self.deployment is not None
        return GovernanceClient(
            self.w3(), self.deployment.governance, transactor or self.owner_transactor()
        )

    def network_fingerprint(self) -> bytes:
        """What agents pin (`network_fingerprint`): the testnet trusts its own chain."""
        from guest.committee import chain_fingerprint

        return chain_fingerprint(self.governance())

    def committee(self, generation: int = 0) -> Committee:
        """The active committee of `generation` (0 = latest), checked against the fingerprint."""
        from guest.committee import committee_from_chain

        fingerprint = self.network_fingerprint()
        return committee_from_chain(self.governance(), generation, fingerprint=fingerprint)

    # -- nodes ------------------------------------------------------------------------

    def create_node(self, *, tee: str = "simulator") -> NodeProcess:
        """Identity, evidence, funding, registration, approval and config of a new node."""
        return self.create_nodes(1, tee=tee)[0]

    def create_nodes(
        self, count: int, *, tee: str = "simulator", start: bool = False
    ) -> list[NodeProcess]:
        """`count` new nodes, enrolled one after another (one owner account sends).

        With `start`, each node process starts as soon as it is enrolled, so node start-up
        overlaps the remaining registrations.
        """
        first = len(self.nodes) + 1
        nodes = []
        with self.fast_blocks():
            for i in range(first, first + count):
                nodes.append(self._enroll(i, self._init_node_dir(i, tee), tee))
                if start:
                    self.start_node(nodes[-1])
        return nodes

    @contextlib.contextmanager
    def fast_blocks(self, every: float = 0.05) -> Iterator[None]:
        """Mine a block every `every` seconds while inside, so that a burst of transactions that
        each wait for their receipt (funding, registration, approval) is not paced by the
        block time. Only outside epochs: phase deadlines are block numbers."""
        stop = threading.Event()
        w3 = self.w3()

        def mine() -> None:
            while not stop.wait(every):
                with contextlib.suppress(Exception):
                    w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]

        miner = threading.Thread(target=mine, name="fast-blocks", daemon=True)
        miner.start()
        try:
            yield
        finally:
            stop.set()
            miner.join()

    def _init_node_dir(self, index: int, tee: str) -> Path:
        node_dir = self.root / f"node{index}"
        init_node_dir(node_dir, tee=tee, sealing="file")
        return node_dir

    def _enroll(self, index: int, node_dir: Path, tee: str) -> NodeProcess:
        assert self.deployment is not None
        registration = json.loads((node_dir / REGISTRATION_FILE).read_text())
        endpoints = Endpoints(kms=f"127.0.0.1:{free_port()}", peer=f"127.0.0.1:{free_port()}")
        status_port = free_port()
        dstack_kms = f"127.0.0.1:{free_port()}" if self.dstack_kms else ""
        self._fund(registration["address"])
        self.governance().send_allow_node_registration(registration["address"])
        registration = self._register(node_dir, registration, endpoints)
        # The owner's review, as `tkms node approve --registration` does it.
        approve_registration(self.governance(), registration, now=int(time.time()))
        config = node_dir / "node.toml"
        config.write_text(
            f'data_dir = "{node_dir}"\ntee = "{tee}"\nsealing = "file"\nlog_format = "json"\n\n'
            f'[chain]\nrpc_url = "{self.rpc_url}"\ngovernance = "{self.deployment.governance}"\n'
            f"max_head_age_seconds = {self.max_head_age}\npoll_interval_seconds = 0.5\n\n"
            f'[listen]\npublic = "{endpoints.kms}"\npeer = "{endpoints.peer}"\n'
            f'metrics = "127.0.0.1:{status_port}"\n'
            f'dstack_kms = "{dstack_kms}"\n\n'
            f"[limits]\nrequests_per_second_per_app = {self.app_rate_limit}\n"
            f"burst_per_app = {max(1, int(self.app_rate_limit * 2))}\n"
        )
        record = NodeProcess(
            index=index,
            dir=node_dir,
            address=registration["address"],
            endpoints=endpoints,
            status_port=status_port,
            config_path=config,
            log_path=node_dir / "node.log",
            dstack_kms=dstack_kms,
        )
        self.nodes.append(record)
        self.progress(f"node {index} registered as {record.address}")
        return record

    def _fund(self, address: str) -> None:
        fund_from_anvil(self.w3(), address, FUNDER_ACCOUNT)

    def _register(
        self, node_dir: Path, registration: dict[str, Any], endpoints: Endpoints
    ) -> dict[str, Any]:
        """Register from the node's own key; returns the registration document it wrote."""
        from node.identity import load_identity
        from node.sealing import open_sealer

        identity = load_identity(node_dir, open_sealer("file", node_dir))
        operator = identity.eth_account.address
        recorded = registered_document(registration, operator=operator, endpoint=str(endpoints))
        own = self.governance(Transactor(self.w3(), identity.eth_account))
        own.send_register_node(
            operator=operator,
            endpoint=str(endpoints),
            tls_key_hash=identity.tls_key_hash,
            deal_key=identity.deal_public_key,
            evidence_hash=bytes.fromhex(registration["evidence_hash"]),
        )
        write_registration(node_dir, recorded)
        return recorded

    def start_node(self, node: NodeProcess) -> None:
        if node.pid is not None:
            return
        log = node.log_path.open("ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        argv = [sys.executable, "-m", "tkms", "node", "run", "--config", str(node.config_path)]
        node.process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        node.start = start_ticks(node.process.pid)
        self.remember(f"node{node.index}", argv, node.log_path)

    def stop_node(self, node: NodeProcess, *, kill: bool = False, timeout: float = 10.0) -> None:
        """SIGTERM (or, with `kill`, SIGKILL: a crash) to the node's process group; waits."""
        pid = node.process.pid if node.process is not None else node.detached_pid
        if pid is None or (node.process is not None and node.process.poll() is not None):
            return
        first = signal.SIGKILL if kill else signal.SIGTERM
        stop_groups({pid: node.start}, grace=timeout, first=first)
        if node.process is not None:
            node.process.wait(timeout=timeout)

    # -- epochs -----------------------------------------------------------------------

    def propose(self, kind: EpochKind, members: Sequence[NodeProcess], threshold: int) -> int:
        _, epoch = self.governance().send_propose_epoch(
            kind, [m.address for m in members], threshold, self.phases
        )
        self.progress(
            f"epoch {epoch} ({kind.name}) proposed: {len(members)} members, threshold {threshold}"
        )
        return epoch

    def wait_epoch(self, epoch: int, timeout: float = 120.0) -> None:
        governance = self.governance()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = governance.get_epoch(epoch)
            if info.status is EpochStatus.ACTIVE:
                self.progress(f"epoch {epoch} active")
                return
            if info.status is EpochStatus.FAILED:
                raise RuntimeError(f"epoch {epoch} failed; see the node logs under {self.root}")
            time.sleep(0.5)
        raise TimeoutError(
            f"epoch {epoch} not active after {timeout:.0f}s; see the node logs under {self.root}"
        )

    def wait_healthy(
        self,
        nodes: Sequence[NodeProcess],
        timeout: float = 60.0,
        accept: tuple[str, ...] = ("NORMAL",),
        epoch: int | None = None,
    ) -> None:
        """Until every node reports one of `accept` (and, if given, serves `epoch`)."""
        deadline = time.monotonic() + timeout
        waiting = list(nodes)
        while waiting and time.monotonic() < deadline:
            for node in list(waiting):
                if node.process is not None and node.process.poll() is not None:
                    code = node.process.returncode
                    raise RuntimeError(f"node {node.index} exited with {code}; see {node.log_path}")
                health = node.health()
                if (
                    health is not None
                    and health.get("health") in accept
                    and (epoch is None or health.get("epoch") == epoch)
                ):
                    waiting.remove(node)
            time.sleep(0.3)
        if waiting:
            names = ", ".join(f"node {n.index} ({n.log_path})" for n in waiting)
            raise TimeoutError(f"not healthy after {timeout:.0f}s: {names}")

    # -- apps -------------------------------------------------------------------------

    def register_app(
        self,
        compose_hashes: Sequence[bytes],
        *,
        any_device: bool = True,
        wait_seen: bool = True,
        salt: bytes | None = None,
    ) -> str:
        """Deploy an AppAuth allowing `compose_hashes` through the governance's factory, checked
        as `tkms app register` checks it; returns its app id (bound to the owner and `salt`,
        random if None). With `wait_seen`, returns once every node's chain view holds it."""
        assert self.deployment is not None
        owner = GovernanceClient(self.w3(), self.deployment.governance, self.owner_transactor())
        app = register_app(
            owner,
            salt=salt,
            compose_hashes=compose_hashes,
            allow_any_device=any_device,
            require_tcb_up_to_date=False,
        )
        if wait_seen:
            self.wait_seen(app.receipt.block)
        return app.app_id

    def wait_seen(self, block: int) -> None:
        """Until every node's chain view can include `block` (nodes judge at their view's head)."""
        w3 = self.w3()
        while w3.eth.block_number <= block:
            time.sleep(self.block_time / 4)
        time.sleep(1.0)  # one node poll interval (0.5 s) with margin

    def app(self, app_id: str) -> AppAuthClient:
        return AppAuthClient(self.w3(), app_id, self.owner_transactor())

    def spawn(self, name: str, args: list[str], log: Path) -> subprocess.Popen[bytes]:
        """Start `python args...` in its own session, output to `log`, recorded as `name` for
        `down()`."""
        argv = [sys.executable, *args]
        process = subprocess.Popen(
            argv,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.record(name, process.pid)
        self.remember(name, argv, log)
        return process

    def record(self, name: str, pid: int) -> None:
        """Remember a process (its own process group) that `down()` must stop."""
        self.extra.setdefault("pids", {})[name] = pid
        self.extra.setdefault("starts", {})[name] = start_ticks(pid)

    def remember(
        self, name: str, argv: list[str], log: Path, env: dict[str, str] | None = None
    ) -> None:
        """Remember how `name` was started (in start order), so it can be started again."""
        self.extra.setdefault("commands", {})[name] = {
            "argv": argv,
            "log": str(log),
            "env": env or {},
        }

    def process_groups(self) -> dict[int, int | None]:
        """Every process this network started: {pid (its process group): start ticks}."""
        starts = self.extra.get("starts", {})
        groups: dict[int, int | None] = {
            pid: starts.get(name)
            for name, pid in self.extra.get("pids", {}).items()
            if isinstance(pid, int)
        }
        for node in self.nodes:
            pid = node.process.pid if node.process is not None else node.detached_pid
            if pid is not None:
                groups[pid] = node.start
        if self.anvil_pid is not None:
            groups[self.anvil_pid] = self.anvil_start
        return groups

    # -- all --------------------------------------------------------------------------

    def down(self) -> None:
        """Stop every process of the network, crashed or not, and wait until none runs."""
        left = stop_groups(self.process_groups())
        for node in self.nodes:
            if node.process is not None:
                node.process.wait(timeout=10)
        if self.anvil is not None and self.anvil.process is not None:
            self.anvil.process.wait(timeout=10)
        self.anvil = None
        self.attached_anvil_pid = None
        if left:
            raise RuntimeError(f"still running after SIGKILL: pids {left}")

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()
