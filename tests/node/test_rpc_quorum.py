"""A node that reads the chain through a quorum of RPC endpoints, one of them a lying or stale
anvil fork (tests/contracts/lying_chain.py): with 2 of 2 it releases no keys and says why in
its health; with 2 of 3 it follows the honest chain and names the liar (log, health, metric).
In-process (watcher and authorizer as the daemon wires them) and as a real `tkms node run`."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from contracts import Divergence, GovernanceClient, free_port
from node.authz import Authorizer
from node.chain_rpc import quorum_web3
from node.chainview import ChainWatcher
from node.errors import NotReady
from node.metrics import NodeMetrics
from node.ratelimit import RateLimiter
from tests.contracts.lying_chain import COMPOSE, Honest


def wired(
    honest: Honest, urls: list[str], k: int
) -> tuple[ChainWatcher, Authorizer, GovernanceClient, list[Divergence]]:
    """The watcher and authorizer over a quorum client, wired as `node.daemon` wires them."""
    reports: list[Divergence] = []
    w3, _ = quorum_web3(urls, k, on_divergence=reports.append)
    client = GovernanceClient(w3, honest.governance)
    watcher = ChainWatcher(client, poll_interval=0.1)
    authorizer = Authorizer(
        view=lambda: watcher.view,
        approve=lambda info, block: client.is_app_allowed(info, block=block),
        max_head_age=3600,
        limiter=RateLimiter(100, 100),
        metrics=NodeMetrics(),
        accept_simulator=True,
        chain_problem=lambda: None if watcher.disagreement is None else "endpoints disagree",
    )
    return watcher, authorizer, client, reports


def test_two_of_two_with_a_lying_fork_release_nothing(honest: Honest) -> None:
    with honest.approving_fork() as fork:
        watcher, authorizer, _, reports = wired(honest, [honest.anvil.rpc_url, fork.rpc_url], 2)
        with capture_logs() as logs:
            assert asyncio.run(watcher.poll_once()) is None
        assert watcher.disagreement is not None and fork.rpc_url in watcher.disagreement
        assert [e["event"] for e in logs] == ["chain_no_quorum"]
        with pytest.raises(NotReady, match="endpoints disagree; refusing to release keys"):
            authorizer.fresh_view()
        assert fork.rpc_url in {r.endpoint for r in reports}


def test_two_of_three_with_a_stale_fork_follow_the_honest_chain(honest: Honest) -> None:
    with honest.stale_fork(behind=6) as fork:
        urls = [honest.anvil.rpc_url, honest.second_url, fork.rpc_url]
        watcher, authorizer, client, reports = wired(honest, urls, 2)
        view = asyncio.run(watcher.poll_once())
        assert view is not None and view.head == honest.w3.eth.block_number
        assert watcher.disagreement is None and authorizer.fresh_view() is view
        # The revoked compose hash the stale fork still allows is refused at the view's head.
        assert not client.is_app_allowed(honest.info(COMPOSE), block=view.head).allowed
        time.sleep(0.5)
        assert [r.endpoint for r in reports] == [fork.rpc_url]
        assert reports[0].detail.startswith(f"stale: its head is {view.head - 6}")


def test_a_node_process_refuses_a_lying_quorum_and_names_a_lone_liar(
    honest: Honest, tmp_path: Path
) -> None:
    data = tmp_path / "node"
    init = [sys.executable, "-m", "tkms", "node", "init", "--dir", str(data), "--tee", "simulator"]
    subprocess.run(init, capture_output=True, check=True, timeout=60)
    with honest.approving_fork() as fork:
        # 2 of 2: DOWN, the disagreement in the health reason, both endpoints named.
        with running_node(tmp_path, data, honest, [honest.anvil.rpc_url, fork.rpc_url]) as node:
            health = node.wait_for(lambda h, _: "no quorum" in h["reason"])[0]
            assert health["health"] == "DOWN"
            assert fork.rpc_url in health["reason"] and honest.anvil.rpc_url in health["reason"]
        assert "chain_no_quorum" in node.events()
        # 2 of 3: the liar alone is named in the log and the metric; the head is the honest one.
        urls = [honest.anvil.rpc_url, honest.second_url, fork.rpc_url]
        with running_node(tmp_path, data, honest, urls) as node:
            head = honest.w3.eth.block_number
            _, metrics = node.wait_for(
                lambda _, m: (
                    f"tkms_chain_head {float(head)}" in m and "tkms_rpc_diverged_total" in m
                )
            )
            diverged = [line for line in metrics.splitlines() if "tkms_rpc_diverged_total{" in line]
            (line,) = diverged  # the liar alone
            prefix = f'tkms_rpc_diverged_total{{endpoint="{fork.rpc_url}"}} '
            assert line.startswith(prefix) and float(line.removeprefix(prefix)) >= 1
        logged = node.events()
        assert {e["endpoint"] for e in logged.get("rpc_diverged", [])} == {fork.rpc_url}
        assert "chain_no_quorum" not in logged


class NodeProcess:
    def __init__(self, process: subprocess.Popen[bytes], log: Path, metrics_port: int) -> None:
        self.process, self.log, self.port = process, log, metrics_port

    def get(self, path: str) -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as r:
                return str(r.read().decode())
        except urllib.error.HTTPError as exc:  # 503 while DOWN still carries the report
            return str(exc.read().decode())

    def wait_for(
        self, ready: Callable[[dict[str, str], str], bool], timeout: float = 60.0
    ) -> tuple[dict[str, str], str]:
        deadline = time.monotonic() + timeout
        last: tuple[dict[str, str], str] = ({}, "")
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            try:
                last = (json.loads(self.get("/health")), self.get("/metrics"))
            except OSError:
                time.sleep(0.2)
                continue
            if ready(*last):
                return last
            time.sleep(0.2)
        raise AssertionError(f"not reached within {timeout} s: {last[0]}\n{self.log.read_text()}")

    def events(self) -> dict[str, list[dict[str, str]]]:
        events: dict[str, list[dict[str, str]]] = {}
        for line in self.log.read_text().splitlines():
            if line.startswith("{"):
                event = json.loads(line)
                events.setdefault(event["event"], []).append(event)
        return events


@contextmanager
def running_node(
    tmp_path: Path, data: Path, honest: Honest, urls: list[str]
) -> Iterator[NodeProcess]:
    metrics_port = free_port()
    config = tmp_path / "node.toml"
    config.write_text(
        f'data_dir = "{data}"\ntee = "simulator"\nsealing = "file"\nlog_format = "json"\n\n'
        f"[chain]\nrpc_urls = {json.dumps(urls)}\nrpc_quorum = 2\n"
        f'governance = "{honest.governance}"\npoll_interval_seconds = 0.2\n\n'
        '[listen]\npublic = "127.0.0.1:0"\npeer = "127.0.0.1:0"\n'
        f'metrics = "127.0.0.1:{metrics_port}"\n'
    )
    log = tmp_path / f"node-{metrics_port}.log"
    with log.open("wb") as out:
        run = [sys.executable, "-m", "tkms", "node", "run", "--config", str(config)]
        process = subprocess.Popen(run, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield NodeProcess(process, log, metrics_port)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
