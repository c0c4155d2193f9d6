"""The node's chain RPC client gives up on a hung RPC within its timeout, retries only a
connection that failed, and the watcher logs a stalled chain (anvil stopped with SIGSTOP)
within seconds and its return at once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests
from structlog.testing import capture_logs

from contracts import Anvil, GovernanceClient, Transactor, anvil_account, deploy
from node.chain_rpc import RPC_TIMEOUT, chain_web3
from node.chainview import ChainWatcher


class Listener:
    """127.0.0.1 listener that accepts connections and then never answers (or, with
    `hang_up`, closes each at once); counts the connections it accepted."""

    def __init__(self, *, hang_up: bool = False) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted = 0
        self._hang_up = hang_up
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            if self._hang_up:
                conn.close()
            else:
                self._held.append(conn)

    @contextlib.contextmanager
    def running(self) -> Iterator[Listener]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(timeout=2)
            for conn in self._held:
                conn.close()
            self.sock.close()


def test_a_hung_rpc_is_given_up_after_the_timeout_and_not_retried() -> None:
    with Listener().running() as hung:
        w3 = chain_web3(hung.url, timeout=0.5)
        began = time.monotonic()
        with pytest.raises(requests.Timeout):
            w3.eth.block_number  # noqa: B018 (the read is the point)
        took = time.monotonic() - began
    assert took < 1.5, took  # web3's default: 5 attempts of its timeout each
    assert hung.accepted == 1


def test_a_connection_that_fails_is_tried_once_more() -> None:
    with Listener(hang_up=True).running() as closing:
        w3 = chain_web3(closing.url)
        with pytest.raises(requests.ConnectionError):
            w3.eth.block_number  # noqa: B018
    assert closing.accepted == 2


def test_a_stalled_chain_is_logged_within_seconds_and_its_return_at_once() -> None:
    with Anvil(block_time=0.5) as chain:
        owner = Transactor(chain.web3(), anvil_account(0))
        governance = deploy(owner).governance
        client = GovernanceClient(chain_web3(chain.rpc_url), governance)
        watcher = ChainWatcher(client, poll_interval=0.5)
        assert chain.process is not None
        pid = chain.process.pid

        async def outage() -> tuple[float, float]:
            with capture_logs() as logs:
                task = asyncio.create_task(watcher.run())
                while watcher.view is None:
                    await asyncio.sleep(0.05)
                os.kill(pid, signal.SIGSTOP)
                stopped = time.monotonic()
                try:
                    while not any(e["event"] == "chain_unreachable" for e in logs):
                        await asyncio.sleep(0.05)
                        assert time.monotonic() - stopped < 10, "no chain_unreachable"
                    unreachable = time.monotonic() - stopped
                finally:
                    os.kill(pid, signal.SIGCONT)
                resumed = time.monotonic()
                while not any(e["event"] == "chain_reachable" for e in logs):
                    await asyncio.sleep(0.05)
                    assert time.monotonic() - resumed < 10, "no chain_reachable"
                reachable = time.monotonic() - resumed
                await asyncio.sleep(1.0)
                task.cancel()
            events = [e["event"] for e in logs]
            assert events == ["chain_unreachable", "chain_reachable"], events  # once each
            return unreachable, reachable

        unreachable, reachable = asyncio.run(outage())
    print(f"chain_unreachable {unreachable:.2f} s after SIGSTOP, reachable {reachable:.2f} s")
    # one RPC timeout, plus a poll interval and the machine's slack
    assert unreachable < RPC_TIMEOUT + 1.5
    assert reachable < 2.0
