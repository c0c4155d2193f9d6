"""The guest agent as a process against a real network: anvil + 3 node processes, t = 2.

Env vars are encrypted and signed (CLI, PK2 from chain, the app owner's key) before the app's
agent ever runs; then agents start, `DstackClient` calls every endpoint, keys are compared
across restarts, instances and apps; an unapproved compose hash, a tampered, host-made or
rolled-back env stop the agent with a clear message; encrypt-env refuses unregistered apps
and an unconfirmed network; dstack's verifier accepts the agent's chains against the KMS
root the owner published; a dstack-style controller registered with `--controller` decides
who gets keys. The steps run in one test so that pytest-xdist does not bring up a second
network; for the same reason the official SDK's own test suite runs here too, in its own
test on the same network (`make test` runs a module's tests in one worker, in file order),
and so do live revocation and a rotation, which runs last: it retires generation 1.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from dstack_sdk import DstackClient
from eth_account import Account

from attest import decode_versioned_attestation, parse_quote
from contracts import EpochKind, Receipt, Transactor, anvil_account
from guest import verify
from guest.env import seal_env
from guest.kms_client import AppKeyRequest, DerivationError
from guest.measure import compose_hash
from guest.verify import kms_root_from_chain
from testnet.cluster import OWNER_ACCOUNT, Cluster
from tests.contracts.testsol import compile_test_contracts, deploy_test_contract
from tests.guest import dstack_verifier, sdk_suite
from tests.guest.test_agent_api import forged_chains
from tests.node.test_network import App

pytestmark = pytest.mark.timeout(300)

COMPOSE = b'{"name": "web", "services": {"web": {"image": "nginx@sha256:00"}}}'
OTHER_COMPOSE = b'{"name": "web", "services": {"web": {"image": "evil@sha256:66"}}}'
TKMS = [sys.executable, "-m", "tkms"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with Cluster(tmp_path_factory.mktemp("network")) as c:
        c.start_chain()
        nodes = [c.create_node() for _ in range(3)]
        for n in nodes:
            c.start_node(n)
        c.wait_healthy(nodes, timeout=90, accept=("DOWN", "DEGRADED", "NORMAL"))
        epoch = c.propose(EpochKind.DKG, nodes, 2)
        c.wait_epoch(epoch, timeout=120)
        c.wait_healthy(nodes, timeout=60, epoch=epoch)
        yield c


@pytest.fixture(scope="module")
def apps(cluster: Cluster) -> tuple[str, str]:
    return (
        cluster.register_app([compose_hash(COMPOSE)]),
        cluster.register_app([compose_hash(COMPOSE)]),
    )


def write_config(
    cluster: Cluster,
    where: Path,
    app_id: str,
    compose: bytes = COMPOSE,
    fingerprint: str | None = None,
    **extra: str,
) -> Path:
    """An agent config for `cluster`'s RPC, pinned to its network (or to `fingerprint`)."""
    assert cluster.deployment is not None
    fingerprint = fingerprint or cluster.network_fingerprint().hex()
    where.mkdir(parents=True, exist_ok=True)
    (where / "compose.json").write_bytes(compose)
    lines = [
        f'rpc = "{cluster.rpc_url}"',
        f'governance = "{cluster.deployment.governance}"',
        f'network_fingerprint = "{fingerprint}"',
        f'app_id = "{app_id}"',
        'compose = "compose.json"',
    ] + [f'{k} = "{v}"' for k, v in extra.items()]
    path = where / "agent.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


class AgentProcess:
    def __init__(self, config: Path, *, tappd: bool = False) -> None:
        self.socket = config.parent / "dstack.sock"
        args = ["--config", str(config), "--socket", str(self.socket)]
        if tappd:
            args += ["--tappd-socket", str(config.parent / "tappd.sock")]
        self.proc = subprocess.Popen(
            [*TKMS, "guest", "agent", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while not self.socket.exists():
            if self.proc.poll() is not None:
                _, err = self.proc.communicate()
                raise RuntimeError(f"agent exited {self.proc.returncode}: {err}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("agent did not start in 60 s")
            time.sleep(0.1)

    def client(self) -> DstackClient:
        return DstackClient(str(self.socket), timeout=30)

    def stop(self) -> str:
        """Stop the agent; returns what it printed."""
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=10)
        return out

    def __enter__(self) -> AgentProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.returncode is None:
            self.stop()


def failed_start(config: Path) -> str:
    done = subprocess.run(
        [*TKMS, "guest", "agent", "--config", str(config), "--socket", str(config.parent / "s")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert not (config.parent / "s").exists()
    return done.stderr


def encrypt_env(
    cluster: Cluster,
    app_id: str,
    out: Path,
    *env: str,
    extra: tuple[str, ...] = ("--publish",),
    account: int = OWNER_ACCOUNT,
    expect: int = 0,
) -> subprocess.CompletedProcess[str]:
    """`tkms app encrypt-env` as the app owner (the testnet registers apps as the owner)."""
    assert cluster.deployment is not None
    args = [*TKMS, "app", "encrypt-env", "--app-id", app_id, "--rpc", cluster.rpc_url]
    args += ["--governance", cluster.deployment.governance, "--out", str(out)]
    args += ["--network-fingerprint", cluster.network_fingerprint().hex()]
    args += ["--compose-hash", compose_hash(COMPOSE).hex(), "--anvil-account", str(account)]
    for item in env:
        args += ["--env", item]
    out.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([*args, *extra], capture_output=True, text=True, timeout=60)
    assert done.returncode == expect, done.stderr
    if expect == 0:
        assert f"encrypted {len(env)} variables" in done.stdout
    return done


def agent_serves_every_endpoint_with_network_keys(
    cluster: Cluster, apps: tuple[str, str], tmp_path: Path
) -> None:
    app_id = apps[0]
    # Encrypted before any agent of the app has run: only PK2 from chain is needed.
    shared = tmp_path / "a" / "host-share"
    encrypt_env(cluster, app_id, shared / "env.enc", "API_TOKEN=s3cret", "MODE=prod")
    config = write_config(
        cluster, tmp_path / "a", app_id, env_file="host-share/env.enc", env_out="env.json"
    )
    with AgentProcess(config) as agent:
        c = agent.client()
        key = c.get_key("wallet", "eth")
        assert len(key.decode_key()) == 32 and len(key.decode_signature_chain()) == 2
        assert len(c.get_key("ssh", algorithm="ed25519").decode_key()) == 32
        quote = c.get_quote(b"nonce")
        assert parse_quote(quote.decode_quote()).td_report.report_data[:5] == b"nonce"
        info = c.info()
        assert (
            info.app_id == app_id[2:].lower() and info.compose_hash == compose_hash(COMPOSE).hex()
        )
        c.emit_event("ready", b"1")
        assert c.info().tcb_info.rtmr3 != info.tcb_info.rtmr3
        tls = c.get_tls_key(subject="web", alt_names=["web.local"], usage_ra_tls=True)
        assert len(tls.certificate_chain) == 2
        signed = c.sign("secp256k1", b"data")
        assert c.verify(
            "secp256k1", b"data", signed.decode_signature(), signed.decode_public_key()
        ).valid
        att = decode_versioned_attestation(c.attest(b"x").decode_attestation())
        assert att.report_data == b"x".ljust(64, b"\0") and att.vm_config == info.vm_config
        assert c.version().rev == "tkms"
        env_file = tmp_path / "a" / "env.json"
        assert json.loads(env_file.read_text()) == {"API_TOKEN": "s3cret", "MODE": "prod"}
        assert env_file.stat().st_mode & 0o077 == 0


def keys_are_stable_across_restarts_and_instances_and_differ_between_apps(
    cluster: Cluster, apps: tuple[str, str], tmp_path: Path
) -> None:
    first = write_config(cluster, tmp_path / "one", apps[0])
    with AgentProcess(first) as agent:
        key_a = agent.client().get_key("a").decode_key()
        key_b = agent.client().get_key("b").decode_key()
        root = agent.client().get_key("a").decode_signature_chain()[1]
        # A second instance of the same app, running at the same time.
        with AgentProcess(write_config(cluster, tmp_path / "two", apps[0])) as twin:
            assert twin.client().info().instance_id != agent.client().info().instance_id
            assert twin.client().get_key("a").decode_key() == key_a
    assert key_a != key_b
    with AgentProcess(first) as restarted:
        assert restarted.client().get_key("a").decode_key() == key_a
        assert restarted.client().get_key("a").decode_signature_chain()[1] == root
    with AgentProcess(write_config(cluster, tmp_path / "other", apps[1])) as other:
        assert other.client().get_key("a").decode_key() != key_a


def an_unapproved_compose_hash_does_not_start(
    cluster: Cluster, apps: tuple[str, str], tmp_path: Path
) -> None:
    stderr = failed_start(write_config(cluster, tmp_path, apps[0], compose=OTHER_COMPOSE))
    assert "the KMS network refused the app's keys" in stderr
    assert "permission_denied" in stderr and "approval" in stderr


def tampered_host_made_or_old_envs_are_refused(
    cluster: Cluster, apps: tuple[str, str], tmp_path: Path
) -> None:
    """Security III G-03 with real nodes: the network certifies AppAuth's env signer and
    version, so only the owner's current env for this compose starts the agent."""
    shared = tmp_path / "host-share"

    def refused(name: str) -> str:
        stderr = failed_start(
            write_config(
                cluster, tmp_path, apps[0], env_file=f"host-share/{name}", env_out="e.json"
            )
        )
        assert not (tmp_path / "e.json").exists()
        return stderr

    encrypt_env(cluster, apps[0], shared / "v1.enc", "API_KEY=v1-revoked-leaked")
    encrypt_env(cluster, apps[0], shared / "v2.enc", "API_KEY=v2")  # published: v1 is old now
    stderr = refused("v1.enc")
    assert "does not confirm env version" in stderr and "permission_denied: env:" in stderr
    # The host cannot get the CLI to sign as someone else's env signer...
    done = encrypt_env(cluster, apps[0], shared / "host.enc", "ADMIN=host", account=5, expect=1)
    assert "names env signer" in done.stderr and not (shared / "host.enc").exists()
    # ...so it encrypts to the app with PK2 (public) and signs with its own key.
    committee = cluster.committee()
    host = Account.from_key(b"\x0f" * 32)
    made = seal_env(
        committee.group_key,
        host,
        chain_id=committee.network.chain_id,
        governance=committee.network.contract,
        app_id=bytes.fromhex(apps[0][2:]),
        compose_hash=compose_hash(COMPOSE),
        version=2,
        env={"ADMIN_PASSWORD": "chosen-by-host", "LD_PRELOAD": "/tmp/evil.so"},
    )
    (shared / "host.enc").write_bytes(made.to_json())
    stderr = refused("host.enc")
    assert f"signed by {host.address.lower()} as the app's current env" in stderr
    blob = json.loads((shared / "v2.enc").read_text())
    blob["ciphertext"] = blob["ciphertext"][:-2] + (
        "00" if blob["ciphertext"][-2:] != "00" else "01"
    )
    (shared / "tampered.enc").write_text(json.dumps(blob))
    assert "does not confirm env version" in refused("tampered.enc")
    with AgentProcess(
        write_config(
            cluster, tmp_path / "ok", apps[0], env_file="../host-share/v2.enc", env_out="e.json"
        )
    ):
        assert json.loads((tmp_path / "ok" / "e.json").read_text()) == {"API_KEY": "v2"}
    # Encrypted to another app: refused before any decryption.
    encrypt_env(cluster, apps[1], shared / "other.enc", "A=1")
    assert "the env is for app" in refused("other.enc")


def encrypt_env_checks_the_app_and_the_network(
    cluster: Cluster, apps: tuple[str, str], tmp_path: Path
) -> None:
    """Security III G-09 and G-01: an app id nobody registered yet goes to whoever deploys it
    first; an RPC's network is only used once the owner confirmed its fingerprint."""
    unregistered = "0x" + "be" * 20
    done = encrypt_env(cluster, unregistered, tmp_path / "x.enc", "A=1", extra=(), expect=1)
    assert f"app {unregistered} is not registered in governance" in done.stderr
    assert not (tmp_path / "x.enc").exists()
    done = encrypt_env(
        cluster,
        unregistered,
        tmp_path / "x.enc",
        "A=1",
        extra=("--allow-unregistered", "--version", "1"),
    )
    assert (tmp_path / "x.enc").exists()
    done = encrypt_env(cluster, apps[1], tmp_path / "y.enc", "A=1", extra=())
    owner = cluster.owner_transactor().address
    assert f"owner       {owner}" in done.stdout and f"env signer  {owner}" in done.stdout
    assert f"allowed compose hashes: {compose_hash(COMPOSE).hex()}" in done.stdout
    assert "agents accept it once the app's env version is" in done.stdout
    assert cluster.deployment is not None
    args = [*TKMS, "app", "encrypt-env", "--app-id", apps[1], "--rpc", cluster.rpc_url]
    args += ["--governance", cluster.deployment.governance, "--out", str(tmp_path / "z.enc")]
    args += ["--compose-hash", compose_hash(COMPOSE).hex(), "--anvil-account", "0", "--env", "A=1"]
    shown = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 1 and not (tmp_path / "z.enc").exists()
    assert f"this RPC shows network {cluster.network_fingerprint().hex()}" in shown.stderr
    wrong = subprocess.run(
        [*args, "--network-fingerprint", "ab" * 32], capture_output=True, text=True, timeout=60
    )
    assert wrong.returncode == 1 and "is not the configured one" in wrong.stderr


def post(agent: AgentProcess, method: str, **body: object) -> httpx.Response:
    """One raw request: `DstackClient` drops the extra `tkms` field and knows no generation."""
    transport = httpx.HTTPTransport(uds=str(agent.socket))
    with httpx.Client(transport=transport, base_url="http://agent", timeout=30) as http:
        return http.post(f"/{method}", content=json.dumps(body).encode())


def get_key_reply(agent: AgentProcess, path: str, purpose: str, **extra: object) -> dict[str, Any]:
    """/GetKey as raw JSON."""
    reply = post(agent, "GetKey", path=path, purpose=purpose, **extra)
    assert reply.status_code == 200, reply.text
    doc: dict[str, Any] = reply.json()
    return doc


def dstack_verifiers_accept_the_agents_chains(
    cluster: Cluster, apps: tuple[str, str], tmp_path: Path
) -> None:
    """Issue 16: GetKey's and Sign's chains end at the generation's KMS root, which the owner
    publishes in governance; dstack's verifier recipe (tests/guest/dstack_verifier.py, no tkms
    code) accepts them with that anchor, forged chains fail, and the `tkms` field checks
    under PK2."""
    assert cluster.deployment is not None
    publish = [*TKMS, "chain", "publish-kms-root", "--rpc", cluster.rpc_url]
    publish += ["--governance", cluster.deployment.governance, "--generation", "1"]
    publish += ["--anvil-account", str(OWNER_ACCOUNT)]
    done = subprocess.run(publish, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    # A dstack verifier reads its anchor from the contract, never from the KMS it checks.
    anchor, certificate = cluster.governance().get_kms_root(1)
    assert done.stdout.startswith(f"generation 1 KMS root {anchor.hex()} (certificate 0x")
    assert (
        kms_root_from_chain(cluster.governance(), 1, fingerprint=cluster.network_fingerprint())
        == anchor
    )
    again = subprocess.run(publish, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and again.stdout == done.stdout  # published once, checked
    app_id = bytes.fromhex(apps[0][2:])
    with AgentProcess(write_config(cluster, tmp_path, apps[0])) as agent:
        c = agent.client()
        got = c.get_key("wallet/eth", "ethereum")
        public = dstack_verifier.derived_public_key(got.decode_key())
        chain = got.decode_signature_chain()
        app_key = dstack_verifier.verify_key_chain(
            public, chain, purpose="ethereum", app_id=app_id, kms_root=anchor
        )
        ed = c.get_key("ssh", "login", algorithm="ed25519")
        dstack_verifier.verify_key_chain(
            dstack_verifier.derived_public_key(ed.decode_key(), "ed25519"),
            ed.decode_signature_chain(),
            purpose="login",
            app_id=app_id,
            kms_root=anchor,
        )
        for algorithm, data in (
            ("secp256k1", b"data"),
            ("secp256k1_prehashed", bytes(range(32))),
            ("ed25519", b"data"),
        ):
            signed = c.sign(algorithm, data)
            assert (
                dstack_verifier.verify_sign_chain(
                    algorithm,
                    data,
                    signed.decode_public_key(),
                    signed.decode_signature_chain(),
                    app_id=app_id,
                    kms_root=anchor,
                )
                == app_key
            )
        for name, forged in forged_chains(chain, app_key, public, app_id, "ethereum").items():
            with pytest.raises(dstack_verifier.Rejected):
                dstack_verifier.verify_key_chain(
                    public, forged, purpose="ethereum", app_id=app_id, kms_root=anchor
                )
                pytest.fail(f"dstack's verifier accepted: {name}")
        with pytest.raises(dstack_verifier.Rejected):  # the chain is this app's only
            dstack_verifier.verify_key_chain(
                public,
                chain,
                purpose="ethereum",
                app_id=bytes.fromhex(apps[1][2:]),
                kms_root=anchor,
            )
        doc = get_key_reply(agent, "wallet/eth", "ethereum")
    committee = cluster.committee(1)
    certificates = verify.Certificates.from_json(doc["tkms"])
    assert (certificates.kms_root, certificates.kms_root_certificate) == (anchor, certificate)
    assert (
        verify.verify_tkms_key_chain(
            "ethereum",
            public,
            [bytes.fromhex(x) for x in doc["signature_chain"]],
            certificates,
            app_id=app_id,
            chain_id=committee.network.chain_id,
            governance=committee.network.contract,
            group_key=committee.group_key,
        )
        == app_key
    )


def a_registered_dstack_style_controller_decides_who_gets_keys(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Issue 16 item 6: `tkms app register --controller` registers an existing IAppAuth
    contract (our DstackApp-shaped test controller); nodes consult it, so its owner grants
    and revokes keys."""
    assert cluster.deployment is not None
    owner = Transactor(cluster.w3(), anvil_account(6))  # the controller's own owner
    compiled = compile_test_contracts()["DstackStyleApp"]
    controller = deploy_test_contract(owner, compiled, True, False, compose_hash(COMPOSE))
    register = [*TKMS, "app", "register", "--rpc", cluster.rpc_url, "--json"]
    register += ["--governance", cluster.deployment.governance, "--anvil-account", "7"]
    done = subprocess.run(
        [*register, "--controller", controller.address], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["app_id"] == controller.address
    cluster.wait_seen(cluster.w3().eth.block_number)
    config = write_config(cluster, tmp_path / "ok", controller.address)
    anchor, _ = cluster.governance().get_kms_root(1)
    with AgentProcess(config) as agent:
        got = agent.client().get_key("k", "p")
        dstack_verifier.verify_key_chain(
            dstack_verifier.derived_public_key(got.decode_key()),
            got.decode_signature_chain(),
            purpose="p",
            app_id=bytes.fromhex(controller.address[2:]),
            kms_root=anchor,
        )
    receipt = owner.send(controller.functions.removeComposeHash(compose_hash(COMPOSE)))
    cluster.wait_seen(receipt.block)
    stderr = failed_start(write_config(cluster, tmp_path / "revoked", controller.address))
    assert "permission_denied" in stderr and "Compose hash not allowed" in stderr


def test_guest_agent_on_a_real_network(
    cluster: Cluster, apps: tuple[str, str], tmp_path: Path
) -> None:
    agent_serves_every_endpoint_with_network_keys(cluster, apps, tmp_path / "serve")
    keys_are_stable_across_restarts_and_instances_and_differ_between_apps(
        cluster, apps, tmp_path / "stable"
    )
    an_unapproved_compose_hash_does_not_start(cluster, apps, tmp_path / "unapproved")
    tampered_host_made_or_old_envs_are_refused(cluster, apps, tmp_path / "tampered")
    encrypt_env_checks_the_app_and_the_network(cluster, apps, tmp_path / "encrypt")
    dstack_verifiers_accept_the_agents_chains(cluster, apps, tmp_path / "dstack")
    a_registered_dstack_style_controller_decides_who_gets_keys(cluster, tmp_path / "controller")


def test_the_official_python_sdk_suite_passes_against_the_agent(
    cluster: Cluster, apps: tuple[str, str], tmp_path: Path
) -> None:
    """dstack-sdk 0.5.4's own tests, unchanged, against a live agent (tests/guest/sdk_suite.py)."""
    why_not = sdk_suite.missing()
    if why_not is not None:
        pytest.skip(why_not)
    with AgentProcess(write_config(cluster, tmp_path / "run", apps[1]), tappd=True):
        result = sdk_suite.run_suite(tmp_path / "run", tmp_path / "junit.xml")
    print(result.summary())
    assert result.passed >= 122, result.output  # the suite has 122 tests; none may be lost
    assert (result.failed, result.errors) == (0, 0), (result.failures, result.output[-4000:])


def watched(config: Path) -> Path:
    """The agent reads the chain every 0.25 s (1 s blocks here) and goes stale after 10 s."""
    with config.open("a") as out:
        out.write("chain_poll_seconds = 0.25\nchain_stale_seconds = 10\n")
    return config


def wait_for(what: str, done: Any, timeout: float = 30.0, every: float = 0.05) -> float:
    """Poll `done()` until true; returns the seconds it took."""
    start = time.monotonic()
    while not done():
        if time.monotonic() - start > timeout:
            pytest.fail(f"not within {timeout:g} s: {what}")
        time.sleep(every)
    return time.monotonic() - start


LIVE_BLOCKS = 4


def nodes_refuse(cluster: Cluster, app_id: str, revoke: Callable[[], Receipt]) -> float:
    """Seconds from `revoke`'s receipt until the nodes refuse a new derivation for `app_id`
    (one client, warmed by a derivation before the revocation, asks every 20 ms)."""
    app = App(cluster, app_id, compose=COMPOSE)
    request = [AppKeyRequest(app.app_id, b"k")]

    async def go() -> float:
        client = app.client(cluster.committee())
        try:
            await client.derive(request)
            revoke()
            mined = time.monotonic()
            while time.monotonic() - mined < 30:
                try:
                    await client.derive(request)
                except DerivationError as exc:
                    assert all(w.startswith("permission_denied") for w in exc.failures.values())
                    return time.monotonic() - mined
                await asyncio.sleep(0.02)
            pytest.fail("the nodes still derive 30 s after the revocation")
        finally:
            await client.close()

    return asyncio.run(go())


def test_live_revocation_stops_a_running_agent_within_its_window(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Issue 23 item 5. Nodes refuse a revoked compose hash at once, but a running agent
    serves keys from the seed it fetched at boot (dstack's behaviour, kept for apps that do
    not opt in); with `liveRevocationBlocks` = N on chain it re-derives every N/2 blocks and
    stops serving keys within N blocks of the revocation."""
    assert cluster.deployment is not None
    live_app, plain_app = (cluster.register_app([compose_hash(COMPOSE)]) for _ in range(2))
    opt_in = [*TKMS, "app", "set-live-revocation", "--rpc", cluster.rpc_url, "--app-id"]
    opt_in += [live_app, "--blocks", str(LIVE_BLOCKS), "--anvil-account", str(OWNER_ACCOUNT)]
    done = subprocess.run(opt_in, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    with (
        AgentProcess(watched(write_config(cluster, tmp_path / "live", live_app))) as live,
        AgentProcess(watched(write_config(cluster, tmp_path / "plain", plain_app))) as plain,
    ):
        before = get_key_reply(live, "db", "p")
        plain_key = get_key_reply(plain, "db", "p")["key"]
        # New derivations are refused from the revocation's block on, for every app.
        refused_after = nodes_refuse(
            cluster,
            plain_app,
            lambda: cluster.app(plain_app).send_remove_compose_hash(compose_hash(COMPOSE)),
        )
        print(f"revocation: nodes refuse {refused_after:.2f} s after the revocation's receipt")
        receipt = cluster.app(live_app).send_remove_compose_hash(compose_hash(COMPOSE))
        mined = time.monotonic()
        w3 = cluster.w3()
        took = wait_for(
            "the live agent refuses GetKey",
            lambda: post(live, "GetKey", path="db").status_code != 200,
            every=0.02,
        )
        head = w3.eth.block_number
        print(
            f"live revocation ({LIVE_BLOCKS} blocks): first refusal {took:.2f} s after the "
            f"revocation's receipt, at head {head} (revoked in block {receipt.block})"
        )
        assert head - receipt.block <= LIVE_BLOCKS
        refused = post(live, "GetKey", path="db")
        assert refused.status_code == 403
        error = refused.json()["error"]
        assert "keys withheld (live revocation)" in error and "Compose hash not allowed" in error
        assert "Keys handed out before are beyond the agent's reach" in error
        assert post(live, "Sign", algorithm="ed25519", data="00").status_code == 403
        assert post(live, "GetTlsKey").status_code == 403
        assert post(live, "Info").status_code == 200  # not a key
        # Without the opt-in, as dstack: the running agent keeps serving past the window.
        wait_for("N + 2 more blocks", lambda: w3.eth.block_number > head + LIVE_BLOCKS + 2)
        assert get_key_reply(plain, "db", "p")["key"] == plain_key
        # Allowed again: the live agent serves again at its next confirmation.
        cluster.app(live_app).send_add_compose_hash(compose_hash(COMPOSE))
        again = wait_for(
            "the live agent serves again",
            lambda: post(live, "GetKey", path="db").status_code == 200,
        )
        print(f"live revocation: serving again {again:.2f} s after the compose hash came back")
        assert get_key_reply(live, "db", "p")["key"] == before["key"]
        assert time.monotonic() - mined < 60
        output = live.stop()
    assert "keys withheld (live revocation): at block" in output
    assert output.rstrip().endswith("serving generation 1 by default")


def chain_cli(cluster: Cluster, *args: str, account: int = OWNER_ACCOUNT) -> dict[str, Any]:
    """`tkms chain <args> --json` as the operator runs it; its JSON reply."""
    assert cluster.deployment is not None
    command = [*TKMS, "chain", *args, "--rpc", cluster.rpc_url, "--json"]
    command += ["--governance", cluster.deployment.governance, "--anvil-account", str(account)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    reply: dict[str, Any] = json.loads(done.stdout)
    return reply


#: Blocks (1 s each) generation 1 stays the default after the rotation: room for the checks
#: inside the window on a loaded machine, short enough to wait out.
WINDOW = 45
ANYONE = 9  # a funded account that is neither the owner nor a node


def test_a_rotation_serves_both_generations_until_the_old_one_retires(
    cluster: Cluster, apps: tuple[str, str], tmp_path: Path
) -> None:
    """Issue 18 item 4, last in the module (it changes the network's generation): the owner
    sets the retirement window and rotates; inside the window the agent holds both
    generations, apps get the old keys by default and the new ones on request; once the
    window ends the default is the new generation, the old one still on request, until anyone
    retires it on chain (`tkms chain retire-generation`): then it is refused."""
    from testnet.cli import rotate

    app_id = bytes.fromhex(apps[1][2:])
    governance = cluster.governance()
    window = chain_cli(cluster, "set-retirement-window", "--blocks", str(WINDOW))
    assert window["retirement_window"] == WINDOW
    with AgentProcess(watched(write_config(cluster, tmp_path / "running", apps[1]))) as agent:
        old = get_key_reply(agent, "db", "p")
        assert old["tkms"]["generation"] == 1
        _, generation, root = rotate(cluster, list(cluster.nodes), 2)
        assert generation == 2
        linked = time.monotonic()
        retire_after = governance.get_generation(1).retire_after
        took = wait_for(
            "the running agent fetches generation 2",
            lambda: post(agent, "GetKey", path="db", generation=2).status_code == 200,
        )
        print(f"rotation: generation 2 served {took:.2f} s after its link and root were published")
        assert get_key_reply(agent, "db", "p") == old  # the window is open: what apps had
        new = get_key_reply(agent, "db", "p", generation=2)
        assert new["tkms"]["generation"] == 2 and new["key"] != old["key"]
        assert get_key_reply(agent, "db", "p", generation=1)["key"] == old["key"]
        # The new chain ends at generation 2's KMS root, read from governance.
        anchor = kms_root_from_chain(governance, 2, fingerprint=cluster.network_fingerprint())
        assert anchor == root
        public = dstack_verifier.derived_public_key(bytes.fromhex(new["key"]))
        chain = [bytes.fromhex(c) for c in new["signature_chain"]]
        dstack_verifier.verify_key_chain(public, chain, purpose="p", app_id=app_id, kms_root=root)
        # An agent that starts inside the window fetches both generations at once.
        with AgentProcess(watched(write_config(cluster, tmp_path / "fresh", apps[1]))) as fresh:
            assert get_key_reply(fresh, "db", "p")["key"] == old["key"]
            assert get_key_reply(fresh, "db", "p", generation=2)["key"] == new["key"]
        head = cluster.w3().eth.block_number
        assert head <= retire_after, f"the checks above took past the window ({head})"
        # The window ends: the new generation becomes the default, the old one is still held.
        wait_for("the window's end", lambda: cluster.w3().eth.block_number > retire_after, 90)
        ended = time.monotonic()
        switched = wait_for(
            "the default switches to generation 2",
            lambda: get_key_reply(agent, "db", "p")["tkms"]["generation"] == 2,
        )
        print(
            f"rotation: default switched {switched:.2f} s after the window's last block "
            f"{retire_after}; {ended - linked:.1f} s after the link"
        )
        assert get_key_reply(agent, "db", "p")["key"] == new["key"]
        assert get_key_reply(agent, "db", "p", generation=1)["key"] == old["key"]
        # Past its window anyone may retire generation 1; nodes erase its shares.
        retired = chain_cli(cluster, "retire-generation", "--generation", "1", account=ANYONE)
        assert retired["status"] == "RETIRED"
        refused = wait_for(
            "the agent refuses generation 1",
            lambda: post(agent, "GetKey", path="db", generation=1).status_code == 410,
        )
        print(f"rotation: generation 1 refused {refused:.2f} s after its retirement")
        gone = post(agent, "GetKey", path="db", generation=1)
        assert gone.json()["error"] == (
            "GetKey: generation 1 was retired on chain: its keys are no longer served "
            "(generation 2 is the latest)"
        )
        assert get_key_reply(agent, "db", "p")["key"] == new["key"]
        output = agent.stop()
    assert "fetched the app's keys of generation 2" in output
    assert "serving generation 1 by default; generation 2 on request" in output
    assert output.rstrip().endswith(
        "serving generation 2 by default; generation 1 refused: retired"
    )
