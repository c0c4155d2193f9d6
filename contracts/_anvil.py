"""The local chain: anvil from the npm package `@foundry-rs/anvil`, on 127.0.0.1.

    with Anvil() as chain:           # free port, waits until it answers JSON-RPC
        w3 = chain.web3()
    # stopped (SIGTERM, then SIGKILL after a grace period)

Picking a free port then starting anvil on it leaves a short race with other processes; a start
that fails because the port was taken is retried on another port.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO

from web3 import HTTPProvider, Web3

from contracts._artifacts import PACKAGE_DIR
from contracts.errors import AnvilError

REPO_ROOT = PACKAGE_DIR.parent
_CANDIDATES = (
    REPO_ROOT / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil",
    REPO_ROOT / "node_modules" / ".bin" / "anvil",
)
DEFAULT_CHAIN_ID = 31337


def find_anvil() -> Path:
    """$TKMS_ANVIL, else the binary `make install` put in node_modules, else anvil on PATH."""
    override = os.environ.get("TKMS_ANVIL")
    if override:
        if not Path(override).is_file():
            raise AnvilError(f"TKMS_ANVIL={override}: no such file")
        return Path(override)
    for candidate in _CANDIDATES:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("anvil")
    if found is None:
        raise AnvilError(
            "anvil not found: run `make install` (npm @foundry-rs/anvil) or set TKMS_ANVIL"
        )
    return Path(found)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def anvil_command(
    port: int,
    *,
    block_time: float | None = None,
    chain_id: int = DEFAULT_CHAIN_ID,
    state_file: Path | None = None,
    hardfork: str | None = None,
    fork_url: str | None = None,
    host: str = "127.0.0.1",
) -> list[str]:
    command = [str(find_anvil()), "--host", host, "--port", str(port)]
    command += ["--chain-id", str(chain_id)]
    if hardfork is not None:
        command += ["--hardfork", hardfork]
    if fork_url is not None:
        # State and blocks up to the fork's head come from `fork_url`; every later block is
        # this chain's own (a chain that diverges from the one it copies: tests of RPC quorums).
        command += ["--fork-url", fork_url]
    if block_time is not None:
        command += ["--block-time", str(block_time)]
    if state_file is not None:
        # Loaded at start when present, dumped every second and on exit: a chain killed with
        # SIGKILL comes back with its blocks, contracts and history, less its last second.
        command += ["--state", str(state_file), "--state-interval", "1"]
    return command


def is_ready(rpc_url: str, timeout: float = 0.5) -> bool:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}).encode()
    request = urllib.request.Request(rpc_url, body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return "result" in json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return False


class Anvil:
    """One anvil process. `port=None` picks a free port; `block_time=None` mines per transaction;
    `hardfork=None` is anvil's default (its latest); `fork_url` starts from another chain's
    state (anvil `--fork-url`); `host` is the address it listens on (tests of separate hosts
    use a bridge's)."""

    def __init__(
        self,
        port: int | None = None,
        *,
        block_time: float | None = None,
        chain_id: int = DEFAULT_CHAIN_ID,
        startup_timeout: float = 15.0,
        log: IO[bytes] | None = None,
        detach: bool = False,
        state_file: Path | None = None,
        hardfork: str | None = None,
        fork_url: str | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.host = host
        self.requested_port = port
        self.hardfork = hardfork
        self.fork_url = fork_url
        #: Where the chain's state is kept across restarts (see `anvil_command`), if anywhere.
        self.state_file = state_file
        self.block_time = block_time
        self.chain_id = chain_id
        self.startup_timeout = startup_timeout
        self.log = log
        #: Start anvil in its own session, so it outlives the starting process (testnet up).
        self.detach = detach
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def rpc_url(self) -> str:
        if self.process is None:
            raise AnvilError("anvil is not running")
        return f"http://{self.host}:{self.port}"

    def web3(self) -> Web3:
        return Web3(HTTPProvider(self.rpc_url, request_kwargs={"timeout": 30}))

    def start(self) -> Anvil:
        attempts = 1 if self.requested_port else 3
        failure = ""
        for _ in range(attempts):
            port = self.requested_port or free_port(self.host)
            failure = self._try_start(port)
            if not failure:
                return self
        raise AnvilError(f"anvil did not start: {failure}")

    def _try_start(self, port: int) -> str:
        # Another server on the port would answer the readiness probe in our anvil's place.
        if not port_is_free(port, self.host):
            return f"port {port} on {self.host} is in use"
        command = anvil_command(
            port,
            block_time=self.block_time,
            chain_id=self.chain_id,
            state_file=self.state_file,
            hardfork=self.hardfork,
            fork_url=self.fork_url,
            host=self.host,
        )
        output = self.log if self.log is not None else subprocess.DEVNULL
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, start_new_session=self.detach
        )
        url = f"http://{self.host}:{port}"
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return f"exited with status {process.returncode} on port {port}"
            if is_ready(url) and process.poll() is None:
                self.process, self.port = process, port
                return ""
            time.sleep(0.05)
        _terminate(process)
        return f"no answer on {url} within {self.startup_timeout} s"

    def stop(self) -> None:
        if self.process is not None:
            _terminate(self.process)
            self.process = None

    def __enter__(self) -> Anvil:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _terminate(process: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
