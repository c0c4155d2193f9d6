"""Quick probes of a testnet's chain and nodes, with the standard library only.

`tkms testnet status` starts them before it imports anything heavy (web3 alone costs about a
second of CPU), so the chain's and the nodes' answers, or their timeouts, overlap the imports:
status answers in about that second whatever the chain does, and a chain that does not answer
is never asked again through web3.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

#: The network's state file in its directory (see testnet.cluster).
STATE_FILE = "state.json"


def _chain_answers(rpc_url: str, timeout: float) -> bool:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []})
    request = urllib.request.Request(rpc_url, body.encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return "result" in json.loads(reply.read())
    except (OSError, ValueError):
        return False


def node_health(status_port: int, timeout: float) -> dict[str, Any] | None:
    """A node's `/health` document (also when it answers 503), or None if it does not answer."""
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{status_port}/health", timeout=timeout
        ) as reply:
            return dict(json.loads(reply.read()))
    except urllib.error.HTTPError as exc:
        try:
            return dict(json.loads(exc.read() or b"{}"))
        except ValueError:
            return None
    except (OSError, ValueError):
        return None


class Probes:
    """The chain's and each node's answers, asked at once in background threads."""

    def __init__(self, rpc_url: str, status_ports: dict[int, int], timeout: float) -> None:
        self._chain: bool | None = None
        self._health: dict[int, dict[str, Any] | None] = {}
        self._threads = [threading.Thread(target=self._ask_chain, args=(rpc_url, timeout))]
        self._threads += [
            threading.Thread(target=self._ask_node, args=(index, port, timeout))
            for index, port in status_ports.items()
        ]
        for thread in self._threads:
            thread.daemon = True
            thread.start()

    @classmethod
    def from_state(cls, root: Path, timeout: float) -> Probes | None:
        """Probes of the network in `root`, from its state file alone; None without one."""
        try:
            state = json.loads((root / STATE_FILE).read_text())
            ports = {int(n["index"]): int(n["status_port"]) for n in state["nodes"]}
            return cls(str(state["rpc_url"]), ports, timeout)
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _ask_chain(self, rpc_url: str, timeout: float) -> None:
        self._chain = _chain_answers(rpc_url, timeout)

    def _ask_node(self, index: int, port: int, timeout: float) -> None:
        self._health[index] = node_health(port, timeout)

    def wait(self) -> None:
        for thread in self._threads:
            thread.join()

    def chain_answers(self) -> bool:
        self.wait()
        return bool(self._chain)

    def health(self, index: int) -> dict[str, Any] | None:
        self.wait()
        return self._health.get(index)
