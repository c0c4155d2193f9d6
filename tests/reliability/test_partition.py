"""F-01 of security review II, on real processes: cutting the network to members exposes nothing.

anvil, the contracts and 6 `tkms node run`. Members 4, 5 and 6 are registered with a peer
endpoint that is a `TcpProxy` in front of their real peer port. A 3-of-6 DKG runs with every
link up; then the proxies cut every connection to members 4, 5 and 6 for a whole REFRESH.

Before the fix, shares travelled peer to peer only: the cut members complained that their
shares were missing, every honest dealer answered by publishing the share in the clear, and
anyone could rebuild their new shares, and with t of them the master secret, from
`getComplaints`. Now every sealed share is on chain with its deal: the refresh activates,
every member holds its share, nobody complains, and no share can be computed from the board.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from contracts import EpochKind, GovernanceClient
from contracts._anvil import free_port
from mpc.group import G1, Scalar
from mpc.sharing import PublicPolynomial, lagrange_coefficients_at_zero
from testnet.cluster import Cluster, NodeProcess
from tests.reliability.tcpproxy import TcpProxy

pytestmark = pytest.mark.timeout(600)

CUT = (3, 4, 5)  # positions of members 4, 5 and 6


def behind_proxy(node: NodeProcess) -> TcpProxy:
    """Serve the node's peer port on another port; the registered one becomes a proxy."""
    registered = int(node.endpoints.peer.rpartition(":")[2])
    real = free_port()
    text = node.config_path.read_text()
    node.config_path.write_text(
        re.sub(r'peer = "127\.0\.0\.1:\d+"', f'peer = "127.0.0.1:{real}"', text)
    )
    return TcpProxy(("127.0.0.1", real), port=registered).start()


def opened_from_board(governance: GovernanceClient, epoch: int) -> dict[tuple[int, int], Scalar]:
    """Every (dealer, member) share anyone can compute from the chain, as the review did."""
    info = governance.get_epoch(epoch)
    found: dict[tuple[int, int], Scalar] = {}
    for c in governance.get_complaints(epoch):
        if not c.justified:
            continue
        dealer = info.dealers.index(c.accused) + 1
        member = info.members.index(c.accuser) + 1
        clear = getattr(c, "share", None)
        if clear is not None:  # the old protocol: the dealer published the share itself
            found[(dealer, member)] = Scalar.from_bytes(clear)
            continue
        from mpc.epochkey import EpochPublicKey
        from mpc.errors import DecryptionError
        from mpc.messages import ShareBundle
        from mpc.sharebox import DhReveal, open_revealed, pair_context

        raw = governance.fetch_deal_shares(
            epoch, c.accused, deal=governance.get_deal(epoch, c.accused)
        )
        dealer_key = governance.fetch_epoch_key(epoch, c.accused)
        member_key = governance.fetch_epoch_key(epoch, c.accuser)
        if raw is None or dealer_key is None or member_key is None:
            continue
        bundle = ShareBundle.from_bytes(raw)
        sealed = bundle.entry(member)
        if sealed is None:
            continue
        try:
            found[(dealer, member)] = open_revealed(
                sealed,
                ss_dh=DhReveal.from_bytes(c.reveal).shared,
                kem_secret=c.answer,
                dealer=EpochPublicKey.from_bytes(dealer_key),
                recipient=EpochPublicKey.from_bytes(member_key),
                pair=pair_context(bundle.session_id, dealer, member),
            )
        except DecryptionError:
            continue
    return found


def rebuildable(governance: GovernanceClient, epoch: int) -> list[int]:
    """Members whose new share is computable from board data alone (checked against V_j)."""
    info = governance.get_epoch(epoch)
    old_t = governance.get_epoch(info.previous_epoch).threshold
    dealt = [
        k
        for k, d in enumerate(info.dealers, start=1)
        if governance.get_deal(epoch, d).submitted_at != 0
    ]
    chosen = dealt[:old_t]  # the λ set: the first t_old qualified dealers
    lambdas = lagrange_coefficients_at_zero(chosen)
    public = PublicPolynomial.from_bytes(b"".join(info.public_polynomial), info.threshold)
    opened = opened_from_board(governance, epoch)
    exposed = []
    for j in range(1, len(info.members) + 1):
        if all((i, j) in opened for i in chosen):
            share = sum((lambdas[i] * opened[(i, j)] for i in chosen), Scalar(0))
            if G1.base_mul(share) == public.evaluate(j):
                exposed.append(j)
    return exposed


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, list[TcpProxy]]]:
    root = tmp_path_factory.mktemp("partition")
    with Cluster(root) as c:
        c.start_chain()
        nodes = c.create_nodes(6)
        proxies = [behind_proxy(nodes[k]) for k in CUT]
        try:
            for node in nodes:
                c.start_node(node)
            c.wait_healthy(nodes, timeout=120, accept=("DOWN", "DEGRADED", "NORMAL"))
            yield c, proxies
        finally:
            for proxy in proxies:
                proxy.stop()


def test_members_cut_off_during_a_refresh_get_their_shares_and_nothing_is_exposed(
    cluster: tuple[Cluster, list[TcpProxy]],
) -> None:
    c, proxies = cluster
    nodes = c.nodes
    dkg = c.propose(EpochKind.DKG, nodes, 3)
    c.wait_epoch(dkg, timeout=180)
    c.wait_healthy(nodes, timeout=90, accept=("DEGRADED", "NORMAL"), epoch=dkg)
    for proxy in proxies:  # members 4, 5, 6: unreachable from every peer for the whole refresh
        proxy.cut()
    refresh = c.propose(EpochKind.REFRESH, nodes, 3)
    c.wait_epoch(refresh, timeout=180)
    c.wait_healthy(nodes, timeout=90, accept=("DEGRADED", "NORMAL"), epoch=refresh)
    governance = c.governance()
    complaints = governance.get_complaints(refresh)
    exposed = rebuildable(governance, refresh)
    assert exposed == [], f"shares of members {exposed} can be computed from the chain"
    assert complaints == [], f"{len(complaints)} complaints in a refresh without any fault"
    for k in CUT:  # the cut ones serve the refreshed epoch: they hold their new share
        health = nodes[k].health()
        assert health is not None and health["epoch"] == refresh, (k + 1, health)
    cut_seen = [
        json.loads(line)
        for node in nodes[:3]
        for line in Path(node.log_path).read_text().splitlines()
        if '"peer_unreachable"' in line
    ]
    assert cut_seen, "no node noticed that members 4-6 were cut off"
