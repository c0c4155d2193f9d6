"""`tkms testnet ...`: a complete local network in one command (design §9).

    tkms testnet up [--nodes 5] [--threshold 3] [--dir .tkms-testnet] [--fresh] [--json]
    tkms testnet status [--json]          tkms testnet logs [NODE]       tkms testnet down
    tkms testnet restart [--node N]       tkms testnet destroy
    tkms testnet join [--json]            tkms testnet leave --node N
    tkms testnet refresh                  tkms testnet rotate
    tkms testnet bench [--duration S] [--concurrency C ...] [--json]

The network's processes (anvil, the nodes, the DNS server, Pebble, the gateway and the demo app
with their guest agents) run in their own sessions and outlive the command; `<dir>/state.json`
records them and how each was started; logs are in `<dir>/anvil.log`, `<dir>/node<i>/node.log`,
`<dir>/gateway/*.log`, `<dir>/demo-app/*.log`, `<dir>/dns/knot.log` and `<dir>/pebble/`.

`up` never destroys a network: on a running one it prints its status, on one with stopped
processes (after `down`, a crash, a reboot) it starts exactly those again and keeps every
share, so the group key and every app key stay the same. Only `up --fresh` and `destroy`
delete a network, and they name what they delete.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Only the standard library at import time: the parser is built for every `tkms testnet`
# command, and `status` must answer fast (web3 alone is about a second of CPU). Each command
# imports what it uses.
from testnet.probes import STATE_FILE, Probes

if TYPE_CHECKING:
    from testnet.cluster import Cluster

DEFAULT_DIR = ".tkms-testnet"
DEMO_COMPOSE = b'{"name": "tkms-demo", "services": {"web": {"image": "tkms-demo@sha256:00"}}}\n'


class _Progress:
    def __init__(self, quiet: bool) -> None:
        self.start = time.monotonic()
        self.quiet = quiet

    def __call__(self, message: str) -> None:
        if not self.quiet:
            print(f"[{time.monotonic() - self.start:6.1f}s] {message}", file=sys.stderr, flush=True)


def _fail(message: str) -> int:
    print(f"tkms testnet: {message}", file=sys.stderr)
    return 1


def _attach(args: argparse.Namespace, progress: Any = None) -> Cluster | None:
    from testnet.cluster import Cluster

    root = Path(args.dir)
    if not (root / STATE_FILE).exists():
        return None
    return Cluster.load(root, progress=progress or _Progress(True))


#: How long `status` waits for the chain and for each node, at most (they are asked at once).
STATUS_TIMEOUT = 1.0


def status_document(cluster: Cluster, probes: Probes | None = None) -> dict[str, Any]:
    """The network's state in about STATUS_TIMEOUT seconds at most, whatever the chain does: a
    chain that does not answer is reported as such, beside each node's own health. `probes`
    may have been started before (see `cmd_status`)."""
    from contracts import GovernanceClient
    from guest.committee import CommitteeError, chain_fingerprint, committee_from_chain

    doc: dict[str, Any] = {
        "dir": str(cluster.root),
        "chain_rpc": cluster.rpc_url,
        "governance": cluster.deployment.governance if cluster.deployment else None,
        "app_factory": cluster.deployment.app_factory if cluster.deployment else None,
    }

    if probes is None:
        ports = {node.index: node.status_port for node in cluster.nodes}
        probes = Probes(cluster.rpc_url, ports, STATUS_TIMEOUT)

    def chain() -> dict[str, Any]:
        assert cluster.deployment is not None and probes is not None
        no_key = {"generation": 0, "epoch": 0, "threshold": 0, "group_public_key": None}
        if not probes.chain_answers():  # never wait on web3 for a chain that does not answer
            reason = f"no answer from {cluster.rpc_url} within {STATUS_TIMEOUT:g} s"
            return {"chain": "unreachable", **no_key, "committee_error": reason}
        w3 = cluster.w3(timeout=STATUS_TIMEOUT, retries=False)
        governance = GovernanceClient(w3, cluster.deployment.governance)
        try:
            fingerprint = chain_fingerprint(governance)
            committee = committee_from_chain(governance, fingerprint=fingerprint)
        except CommitteeError as exc:
            return {"chain": "reachable", **no_key, "committee_error": str(exc)}
        except Exception as exc:  # any transport failure: the chain does not answer
            reason = f"no answer from {cluster.rpc_url} within {STATUS_TIMEOUT:g} s"
            return {"chain": "unreachable", **no_key, "committee_error": f"{reason} ({exc})"}
        root, _ = governance.get_kms_root(committee.network.generation)
        return {
            "chain": "reachable",
            "network_fingerprint": fingerprint.hex(),
            "kms_root": root.hex() or None,
            "generation": int(committee.network.generation),
            "epoch": int(committee.network.epoch),
            "threshold": committee.threshold,
            "group_public_key": committee.group_key.to_bytes().hex(),
            "members": [m.endpoint for m in committee.members],
        }

    doc.update(chain())
    members = set(doc.get("members", []))
    nodes = []
    for node in cluster.nodes:
        health = probes.health(node.index)
        nodes.append(
            {
                "index": node.index,
                "address": node.address,
                "endpoint": node.endpoints.kms,
                "peer_endpoint": node.endpoints.peer,
                "pid": node.pid,
                "health": (health or {}).get("health", "UNREACHABLE" if node.pid else "STOPPED"),
                "member": node.endpoints.kms in members,
                "log": str(node.log_path),
            }
        )
    doc["nodes"] = nodes
    doc.update({k: v for k, v in cluster.extra.items() if k not in ("pids", "starts", "commands")})
    return doc


def _print_status(doc: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(doc, indent=2))
        return
    unreachable = " (not answering)" if doc.get("chain") == "unreachable" else ""
    print(f"chain       {doc['chain_rpc']}{unreachable}")
    print(f"governance  {doc['governance']}")
    if doc.get("network_fingerprint"):
        print(f"network     {doc['network_fingerprint']}  (agents' network_fingerprint)")
    if doc.get("generation"):
        print(
            f"key         generation {doc['generation']}, epoch {doc['epoch']}, "
            f"threshold {doc['threshold']} of {len(doc.get('members', []))}"
        )
        print(f"group key   {doc['group_public_key'][:32]}…")
        root = doc.get("kms_root") or "not published (tkms chain publish-kms-root)"
        print(f"kms root    {root}  (anchor of dstack-style key chains)")
    else:
        print(f"key         none yet ({doc.get('committee_error', '')})")
    demo = doc.get("demo_app")
    if demo:
        print(
            f"demo app    {demo['app_id']}  http://127.0.0.1:{demo['http_port']}/  "
            f"https://127.0.0.1:{demo['https_port']}/  (agent socket {demo['agent_socket']})"
        )
    gateway = doc.get("gateway")
    if gateway:
        print(
            f"gateway     {gateway['proxy']}  *.{gateway['base_domain']}  "
            f"(registration {gateway['registration']}, ACME root {gateway['acme_root']})"
        )
    dns = doc.get("dns")
    if dns:
        print(f"dns         {dns['address']}  zone {dns['zone']}  (CAA at {dns['caa_name']})")
    relays = doc.get("relays")
    if relays:
        urls = "  ".join(r["http"] for r in relays)
        print(f"relays      {urls}  (signed epoch manifests: GET /v1/manifest)")
    print(f"\n{'node':>4}  {'endpoint':<22} {'pid':>7}  {'health':<10} member  address")
    for n in doc["nodes"]:
        pid = str(n["pid"] or "-")
        member = "yes" if n["member"] else "no"
        row = f"{n['index']:>4}  {n['endpoint']:<22} {pid:>7}  {n['health']:<10} {member:<6}"
        print(f"{row}  {n['address']}")


def cmd_up(args: argparse.Namespace) -> int:
    from contracts import EpochKind
    from guest.kms_root import publish_kms_root
    from guest.measure import compose_hash
    from testnet.apps import spawn_agent, start_demo_app
    from testnet.cluster import Cluster
    from testnet.gateway_run import GATEWAY_COMPOSE, launch_gateway, start_pebble, wait_routed
    from testnet.lifecycle import contents, destroy

    progress = _Progress(args.json)
    existing = _attach(args, progress)
    if existing is not None and not args.fresh:
        return _resume(existing, args, progress)
    if args.fresh and args.dir.exists():
        progress(f"--fresh: deleting {contents(args.dir, existing)}")
        destroy(args.dir, existing)
    elif args.dir.exists() and any(args.dir.iterdir()):
        return _fail(
            f"{args.dir} exists but holds no testnet state to resume; "
            f"`tkms testnet up --fresh` deletes it ({contents(args.dir, None)}) and starts anew"
        )
    if args.relays < 0:
        return _fail(f"--relays must be >= 0, got {args.relays}")
    if not 1 <= args.threshold <= args.nodes:
        return _fail(f"--threshold must be 1..{args.nodes}, got {args.threshold}")
    # Half-second blocks: registration and the DKG's phase deadlines pass twice as fast.
    cluster = Cluster(
        Path(args.dir), progress=progress, detach=True, block_time=0.5, phases=(4, 6, 5, 5, 10)
    )
    try:
        cluster.start_chain()
        nodes = cluster.create_nodes(args.nodes, start=True)
        cluster.save()
        progress(f"registering the gateway and the demo app while {len(nodes)} nodes start")
        with cluster.fast_blocks():
            # Nodes see these long before any app asks: the DKG below takes many blocks.
            gateway_app = cluster.register_app([compose_hash(GATEWAY_COMPOSE)], wait_seen=False)
            demo_app = cluster.register_app([compose_hash(DEMO_COMPOSE)], wait_seen=False)
        pebble = start_pebble(cluster)
        cluster.save()
        progress(f"waiting for {len(nodes)} nodes to serve")
        cluster.wait_healthy(nodes, timeout=120, accept=("DOWN", "DEGRADED", "NORMAL"))
        epoch = cluster.propose(EpochKind.DKG, nodes, args.threshold)
        progress("running the distributed key generation on chain")
        cluster.wait_epoch(epoch, timeout=180)
        cluster.wait_healthy(nodes, timeout=60, epoch=epoch)
        cluster.save()
        relay = _start_relays(cluster, args.relays, progress)
        # Agents pin the network by its fingerprint, which names generation 1's key.
        progress(f"network fingerprint {cluster.network_fingerprint().hex()}: starting agents")
        gateway_agent = spawn_agent(
            cluster, "gateway", GATEWAY_COMPOSE, app_id=gateway_app, wait_for_network=30,
            relay=relay,
        )  # fmt: skip
        demo_agent = spawn_agent(
            cluster, "demo-app", DEMO_COMPOSE, app_id=demo_app, wait_for_network=30, relay=relay
        )
        wait_gateway = launch_gateway(cluster, pebble, gateway_agent)
        cluster.save()
        progress("publishing generation 1's KMS root, the anchor of dstack-style key chains")
        # While the gateway and the demo app start: it needs only the nodes and the chain.
        published = ThreadPoolExecutor(max_workers=1).submit(
            publish_kms_root, cluster.governance(), 1
        )
        wait_gateway(90)
        cluster.save()
        demo = start_demo_app(cluster, DEMO_COMPOSE, agent=demo_agent)
        cluster.save()
        progress("waiting for the demo app to register with the gateway")
        wait_routed(cluster.extra["gateway"], demo["app_id"], demo["https_port"])
        published.result(timeout=60)
    except BaseException as exc:
        logs = ", ".join(str(n.log_path) for n in cluster.nodes) or str(cluster.root / "anvil.log")
        if cluster.deployment is None:
            # Nothing to resume or inspect but anvil's log: stop what started, leave no orphan.
            cluster.down()
            if not isinstance(exc, Exception):
                raise
            return _fail(f"up failed: {exc}\nread: {logs}")
        cluster.save()  # every process started so far is recorded: `down` stops them
        if not isinstance(exc, Exception):
            raise
        return _fail(
            f"up failed: {exc}\nread: {logs}\nthen run `tkms testnet down --dir {args.dir}`"
        )
    cluster.extra["up_seconds"] = round(time.monotonic() - progress.start, 1)
    cluster.save()
    progress("ready")
    _print_status(status_document(cluster), args.json)
    if not args.json:
        elsewhere = args.dir != absolute_path(DEFAULT_DIR)
        print(
            "\nnext: tkms testnet status | join | leave --node N | refresh | rotate | down"
            + (f"  (with --dir {args.dir})" if elsewhere else "")
        )
    return 0


def _start_relays(cluster: Cluster, count: int, progress: _Progress) -> str | None:
    """Start `count` relays (docs/relay.md); the URL agents cross-check with, or None."""
    from testnet.relays import relays_unavailable, start_relays

    if count == 0:
        return None
    reason = relays_unavailable()
    if reason is not None:
        progress(f"no relays: {reason}")
        return None
    relays = start_relays(cluster, count)
    cluster.save()
    progress(f"{count} relays gossip the signed epoch manifests: {relays[0]['http']}, ...")
    url: str = relays[0]["http"]
    return url


def _resume(cluster: Cluster, args: argparse.Namespace, progress: _Progress) -> int:
    from testnet.lifecycle import ResumeError, resume

    try:
        revival = resume(cluster, progress)
    except (ResumeError, RuntimeError, TimeoutError) as exc:
        cluster.save()
        return _fail(f"cannot resume the network in {cluster.root}: {exc}")
    cluster.save()
    if revival.restarted or revival.adopted:
        progress(f"resumed the network: {revival.describe()}; every share and key kept")
    else:
        progress("the testnet in this directory is already running")
    doc = status_document(cluster)
    doc["resumed"] = {"restarted": revival.restarted, "adopted": revival.adopted}
    _print_status(doc, args.json)
    return 0


def _require(args: argparse.Namespace, progress: Any = None) -> Cluster:
    cluster = _attach(args, progress)
    if cluster is None:
        raise SystemExit(_fail(f"no testnet in {args.dir} (start one with `tkms testnet up`)"))
    return cluster


def cmd_status(args: argparse.Namespace) -> int:
    # Ask the chain and the nodes first: their answers (or timeouts) overlap the imports below.
    probes = Probes.from_state(args.dir, STATUS_TIMEOUT)
    cluster = _require(args)
    _print_status(status_document(cluster, probes), args.json)
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    cluster = _require(args)
    if args.node is None:
        path = cluster.root / "anvil.log"
        print(f"# anvil: {path}; nodes: " + ", ".join(str(n.log_path) for n in cluster.nodes))
        return 0
    matches = [n for n in cluster.nodes if n.index == args.node]
    if not matches:
        return _fail(f"no node {args.node} (nodes: {[n.index for n in cluster.nodes]})")
    lines = matches[0].log_path.read_text(errors="replace").splitlines()
    print("\n".join(lines[-args.lines :]))
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from testnet.lifecycle import stop_hand_started

    cluster = _attach(args)
    if cluster is None:
        print(f"no testnet in {args.dir}")
        return 0
    cluster.down()
    by_hand = stop_hand_started(cluster)
    cluster.save()
    others = len([p for p in cluster.extra.get("pids", {}).values() if isinstance(p, int)])
    print(
        f"stopped anvil, {len(cluster.nodes)} nodes and {others} other processes "
        f"(gateway, DNS, Pebble, apps and agents)"
        + (f" and {len(by_hand)} started by hand" if by_hand else "")
        + f"; state and logs kept in {cluster.root} (`tkms testnet up` resumes it)"
    )
    return 0


def cmd_restart(args: argparse.Namespace) -> int:
    from testnet.lifecycle import ResumeError, restart

    progress = _Progress(False)
    cluster = _require(args, progress)
    try:
        revival = restart(cluster, progress, node=args.node)
    except (ResumeError, RuntimeError, TimeoutError) as exc:
        cluster.save()
        return _fail(f"restart failed: {exc}")
    cluster.save()
    progress(f"{revival.describe()}; every share and key kept")
    return 0


def cmd_destroy(args: argparse.Namespace) -> int:
    from testnet.lifecycle import destroy

    cluster = _attach(args)
    if cluster is None and not args.dir.exists():
        print(f"no testnet in {args.dir}")
        return 0
    print(f"deleted {destroy(args.dir, cluster)}; app keys derived from it are gone for good")
    return 0


def _reshare(cluster: Cluster, kind_name: str, members: list[Any], threshold: int) -> int:
    from contracts import EpochKind

    kind = EpochKind[kind_name]
    epoch = cluster.propose(kind, members, threshold)
    cluster.wait_epoch(epoch, timeout=180)
    cluster.wait_healthy(members, timeout=60, epoch=epoch)
    return epoch


def _current_members(cluster: Cluster) -> tuple[list[Any], int]:
    doc = status_document(cluster)
    members = [n for n in cluster.nodes if n.endpoints.kms in set(doc.get("members", []))]
    return members, int(doc.get("threshold", 0))


def cmd_join(args: argparse.Namespace) -> int:
    progress = _Progress(args.json)
    cluster = _require(args, progress)
    members, threshold = _current_members(cluster)
    node = cluster.create_node()
    cluster.start_node(node)
    cluster.save()
    cluster.wait_healthy([node], timeout=60, accept=("DOWN", "DEGRADED", "NORMAL"))
    epoch = _reshare(cluster, "RESHARE", [*members, node], threshold)
    cluster.save()
    progress(f"node {node.index} joined: epoch {epoch}")
    _print_status(status_document(cluster), args.json)
    return 0


def cmd_leave(args: argparse.Namespace) -> int:
    progress = _Progress(False)
    cluster = _require(args, progress)
    members, threshold = _current_members(cluster)
    leaving = [n for n in members if n.index == args.node]
    if not leaving:
        return _fail(f"node {args.node} is not a committee member")
    staying = [n for n in members if n.index != args.node]
    if not staying:
        return _fail("the last member cannot leave")
    epoch = _reshare(cluster, "RESHARE", staying, min(threshold, len(staying)))
    cluster.stop_node(leaving[0])
    cluster.save()
    progress(f"node {args.node} left: epoch {epoch}; its process is stopped")
    return 0


def cmd_refresh(args: argparse.Namespace) -> int:
    progress = _Progress(False)
    cluster = _require(args, progress)
    members, threshold = _current_members(cluster)
    epoch = _reshare(cluster, "REFRESH", members, threshold)
    progress(f"shares refreshed: epoch {epoch}")
    return 0


def rotate(cluster: Cluster, members: list[Any], threshold: int) -> tuple[int, int, bytes]:
    """A new key generation: a fresh DKG, its link to the previous generation and its KMS
    root published on chain. Returns (epoch, generation, KMS root)."""
    from guest.kms_root import publish_kms_root
    from guest.links import link_generation

    epoch = _reshare(cluster, "ROTATE", members, threshold)
    generation = cluster.governance().get_epoch(epoch).generation
    link_generation(cluster.governance(), generation)
    root, _ = publish_kms_root(cluster.governance(), generation)
    return epoch, generation, root


def cmd_rotate(args: argparse.Namespace) -> int:
    progress = _Progress(False)
    cluster = _require(args, progress)
    members, threshold = _current_members(cluster)
    epoch, generation, root = rotate(cluster, members, threshold)
    progress(
        f"new key generation {generation}: epoch {epoch}, linked to generation {generation - 1} "
        f"on chain, KMS root {root.hex()} published; the previous generation stays readable "
        "for its window"
    )
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from testnet.bench import bench, bench_table

    progress = _Progress(args.json)
    cluster = _require(args, progress)
    levels = ", ".join(map(str, args.concurrency))
    progress(f"load: {args.duration:g} s at concurrency {levels}, then the same on the baseline")
    result = bench(cluster, duration=args.duration, concurrency=args.concurrency)
    result["up_seconds"] = cluster.extra.get("up_seconds")
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print("\n".join(bench_table(result)))
    return 0


def absolute_path(text: str) -> Path:
    """A path given on the command line, made absolute once, here, against the working directory."""
    return Path(os.path.abspath(os.path.expanduser(text)))


def register(subparsers: Any, name: str, help_text: str) -> None:
    parser = subparsers.add_parser(
        name,
        help=help_text,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="testnet_command", metavar="COMMAND", required=True)

    def command(cmd: str, handler: Any, help_: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(cmd, help=help_)
        p.add_argument(
            "--dir",
            type=absolute_path,
            default=DEFAULT_DIR,
            help=f"the network's directory (default {DEFAULT_DIR}, in the working directory)",
        )
        p.set_defaults(handler=handler)
        return p

    p = command("up", cmd_up, "start a network, or resume the one in --dir")
    p.add_argument("--nodes", type=int, default=5)
    p.add_argument("--threshold", type=int, default=3)
    p.add_argument(
        "--relays",
        type=int,
        default=2,
        metavar="N",
        help="relays gossiping the signed epoch manifests beside the nodes (0: none)",
    )
    p.add_argument(
        "--fresh",
        action="store_true",
        help="delete the network in --dir (its shares, chain and keys) and start a new one",
    )
    p.add_argument("--json", action="store_true")
    p = command("status", cmd_status, "the network's state")
    p.add_argument("--json", action="store_true")
    p = command("logs", cmd_logs, "where the logs are, or the tail of one node's log")
    p.add_argument("node", type=int, nargs="?")
    p.add_argument("--lines", type=int, default=50)
    command("down", cmd_down, "stop every process of the network (state kept; up resumes)")
    p = command("restart", cmd_restart, "stop and start one node, or the whole network")
    p.add_argument("--node", type=int, help="only this node (default: every process)")
    command("destroy", cmd_destroy, "stop the network and delete its directory")
    p = command("join", cmd_join, "add a node and reshare to the larger committee")
    p.add_argument("--json", action="store_true")
    p = command("leave", cmd_leave, "reshare without a node, then stop it")
    p.add_argument("--node", type=int, required=True)
    command("refresh", cmd_refresh, "proactive refresh: every share changes, the key does not")
    command("rotate", cmd_rotate, "start a new key generation (fresh DKG)")
    p = command("bench", cmd_bench, "derivation load vs a centralized baseline")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of load per target")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 32], help="one or more levels")
    p.add_argument("--json", action="store_true")
