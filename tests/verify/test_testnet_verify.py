"""`tkms verify` against a real testnet (one per module), a real DNS server and Pebble, and
headless Chromium looking at what a person would see.

Up: `tkms testnet up` (anvil, 5 nodes, DKG, Pebble, the gateway, the demo app); the gateway's
CAA records are served by Knot (the testnet's own DNS server where it has one). Then:
`tkms verify domain <demo app name>` passes every check; `app`, `gateway` and `node` pass;
Chromium opens the demo app by its name through the gateway with Pebble's root trusted (and
refuses it without), and renders the verification page all green (screenshots in
tests/artifacts/). Then each negative case, each restoring what it changed: a certificate whose
key is not quoted, CAA pinning another account, a replayed challenge answer, a gateway app not
approved, a KMS member whose evidence no longer verifies, a compose hash revoked after the app
started.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway._selfsigned import ThrowawayCA
from testnet.cluster import Cluster
from tests.verify.knot import Knot

pytestmark = pytest.mark.timeout(600)

TKMS = Path(sys.executable).parent / "tkms"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


def tkms(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([str(TKMS), *args], capture_output=True, text=True, timeout=240)
    if check and out.returncode != 0:
        raise AssertionError(f"tkms {' '.join(args)}: {out.returncode}\n{out.stdout}\n{out.stderr}")
    return out


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("verify-net") / "net"
    knot: Knot | None = None
    try:
        # Inside the try: an `up` that fails half-way leaves processes for `down` to stop.
        tkms("testnet", "up", "--dir", str(root), "--json")
        status = json.loads(tkms("testnet", "status", "--dir", str(root), "--json").stdout)
        gateway = status["gateway"]
        records = [line.split(" CAA ", 1)[1] for line in gateway["caa_records"]]
        # Our own Knot serves the records the gateway printed (and the CAA negative case);
        # where the testnet runs its own DNS server, the gateway's records are read there.
        knot = Knot.start(root.parent / "knot", gateway["base_domain"], records)
        dns = (status.get("dns") or {}).get("address") or knot.address
        demo = status["demo_app"]
        name = f"{demo['app_id'].lower().removeprefix('0x')}-{demo['https_port']}"
        yield {
            "root": root,
            "status": status,
            "knot": knot,
            "caa": records,
            "port": gateway["proxy"].rsplit(":", 1)[1],
            "name": f"{name}.{gateway['base_domain']}",
            "chain": ["--rpc", status["chain_rpc"], "--governance", status["governance"]],
            "trust": ["--ca-file", gateway["acme_root"], "--dns-server", dns],
        }
    finally:
        tkms("testnet", "down", "--dir", str(root), check=False)
        if knot is not None:
            knot.stop()


def verify(net: dict[str, Any], *args: str) -> tuple[int, dict[str, Any]]:
    # WHAT TARGET, then the network's options, then the test's (later options win).
    what, target, *extra = args
    out = tkms("verify", what, target, *net["chain"], *net["trust"], *extra, "--json", check=False)
    assert out.returncode in (0, 1), out.stderr
    return out.returncode, json.loads(out.stdout)


def rows(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in report["checks"]}


def domain(net: dict[str, Any], *extra: str) -> tuple[int, dict[str, Any]]:
    return verify(net, "domain", f"{net['name']}:{net['port']}", *extra)


#: What a third party needs, as the rows of `tkms verify domain` name it.
REQUIRED = (
    "chain head is recent",
    "TLS certificate for the name",
    "gateway key is in a fresh quote (our nonce)",
    "gateway: quote (DCAP, TCB)",
    "gateway: RTMR replay",
    "the name's certificate key is the gateway's quoted key",
    "ACME account is held by the same gateway app",
    "every quoted certificate key has a zt-cert quote",
    "gateway: app id approved by governance",
    "CAA in DNS pins the TEE-held ACME account",
    "app: RTMR replay",
    "app: identity is the app asked for",
    "app: compose hash approved on chain now",
    "app: OS image approved on chain now",
    "KMS network is the one the app measured",
    "a key the app got verifies to the network's key on chain",
)


def test_verify_domain_passes_every_check_and_writes_its_page(net: dict[str, Any]) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page = ARTIFACTS / "verify-domain.html"
    code, report = domain(net, "--html", str(page))
    assert code == 0, [(r["name"], r["detail"]) for r in report["checks"] if r["status"] == "fail"]
    found = rows(report)
    assert set(REQUIRED) <= set(found)
    members = [n for n in found if n.startswith("KMS member ")]
    assert len(members) == 5
    # Simulator quotes pass only as warnings that say so.
    for row in report["checks"]:
        assert row["status"] in ("pass", "warn"), row
        if row["status"] == "warn":
            assert "SIMULATOR quote" in row["detail"] and "dev chain" in row["detail"]
    compose = found["app: compose hash approved on chain now"]
    assert compose["links"][0]["label"] == "ComposeHashAdded"
    assert compose["links"][0]["tx_hash"].startswith("0x")
    assert page.read_text().count("<details") == len(report["checks"])


def test_verify_app_gateway_and_node_pass(net: dict[str, Any]) -> None:
    status = net["status"]
    code, report = verify(
        net, "app", status["demo_app"]["app_id"], "--gateway", f"{net['name']}:{net['port']}"
    )
    assert code == 0, report["failed"]
    code, report = verify(
        net, "gateway", f"gateway.{status['gateway']['base_domain']}:{net['port']}"
    )
    assert code == 0, report["failed"]
    assert "KMS member 1" in " ".join(rows(report))
    code, report = verify(net, "node", status["nodes"][0]["address"])
    assert code == 0, report["failed"]
    assert rows(report)["member of the active committee"]["detail"] == "member 1 of 5"


# --- what a person sees --------------------------------------------------------------------


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None or shutil.which("certutil") is None:
        pytest.skip("chromium and certutil come from Debian (`make install`)")
    return found


def browse(url: str, home: Path, shot: Path | None = None) -> str:
    """Headless Chromium with `home` as its HOME (its NSS store); the DOM it ends up with."""
    args = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        f"--user-data-dir={home / 'profile'}",
        "--window-size=1280,3600",
        "--hide-scrollbars",
        "--virtual-time-budget=3000",
    ]
    env = {**os.environ, "HOME": str(home)}
    if shot is not None:
        subprocess.run(
            [*args, f"--screenshot={shot}", url], env=env, capture_output=True, timeout=90
        )
        assert shot.exists() and shot.stat().st_size > 1000
    out = subprocess.run([*args, "--dump-dom", url], env=env, capture_output=True, timeout=90)
    return out.stdout.decode(errors="replace")


def trusting(home: Path, root_pem: str) -> Path:
    """A HOME whose NSS database trusts `root_pem` for TLS servers (Chromium reads it)."""
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True, exist_ok=True)
    subprocess.run(["certutil", "-N", "--empty-password", "-d", f"sql:{nssdb}"], check=True)
    subprocess.run(
        ["certutil", "-A", "-n", "pebble-root", "-t", "C,,", "-i", root_pem, "-d", f"sql:{nssdb}"],
        check=True,
    )
    return home


def test_chromium_opens_the_demo_app_by_name_with_pebbles_root_trusted(
    net: dict[str, Any], tmp_path: Path
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    url = f"https://{net['name']}:{net['port']}/"
    home = trusting(tmp_path / "trusting", net["status"]["gateway"]["acme_root"])
    dom = browse(url, home, ARTIFACTS / "demo-app.png")
    app_id = net["status"]["demo_app"]["app_id"]
    assert "tkms demo app" in dom and app_id.lower().removeprefix("0x") in dom.lower()
    # The same page without the root: Chromium refuses the connection (the trust is real).
    (tmp_path / "bare").mkdir()
    dom = browse(url, tmp_path / "bare", ARTIFACTS / "demo-app-untrusted.png")
    assert "tkms demo app" not in dom
    print(f"\nscreenshots: {ARTIFACTS / 'demo-app.png'}, {ARTIFACTS / 'demo-app-untrusted.png'}")


def test_chromium_renders_the_verification_page_all_green(
    net: dict[str, Any], tmp_path: Path
) -> None:
    page = ARTIFACTS / "verify-domain.html"
    if not page.exists():
        domain(net, "--html", str(page))
    (tmp_path / "home").mkdir()
    dom = browse(page.as_uri(), tmp_path / "home", ARTIFACTS / "verify-domain.png")
    assert 'class="pass"' in dom and "checks passed" in dom
    assert 'class="check fail"' not in dom
    print(f"\nscreenshot: {ARTIFACTS / 'verify-domain.png'}")


# --- negative cases ------------------------------------------------------------------------


def failing(report: dict[str, Any], name: str) -> str:
    row = rows(report)[name]
    assert row["status"] == "fail", row
    return str(row["detail"])


def test_caa_pinning_another_account_fails(net: dict[str, Any]) -> None:
    knot: Knot = net["knot"]
    other = [
        r.replace("accounturi=", "accounturi=https://attacker.example/acct/1#") for r in net["caa"]
    ]
    knot.set_caa(other)
    try:
        code, report = domain(net, "--no-key-proof", "--dns-server", knot.address)
    finally:
        knot.set_caa(net["caa"])
    assert code == 1
    detail = failing(report, "CAA in DNS pins the TEE-held ACME account")
    assert "not the quoted account" in detail and "attacker.example" in detail


class Impostor:
    """A front on its own port: the demo app's name is answered with another key (from a CA
    the client trusts), every other name is passed through to the real gateway."""

    def __init__(self, name: str, upstream: int, ca: ThrowawayCA) -> None:
        from gateway._tlsconfig import server_context

        issued = ca.issue(name)
        self.context = server_context(issued.chain_pem, issued.key_pem)[0]
        self.name, self.upstream = name, upstream
        self.loop = asyncio.new_event_loop()
        self.port = 0
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        ready.wait(10)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)

        async def start() -> None:
            self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
            self.port = self.server.sockets[0].getsockname()[1]
            ready.set()

        self.loop.run_until_complete(start())
        self.loop.run_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        from gateway._relay import PlainEnd, TlsEnd, relay
        from gateway.clienthello import HelloReader

        hello_reader = HelloReader()
        hello = None
        try:
            while hello is None:
                chunk = await reader.read(4096)
                if not chunk:
                    return
                hello = hello_reader.feed(chunk)
            if hello.server_name == self.name:
                tls = TlsEnd.server(self.context, (reader, writer), hello_reader.data)
                await tls.handshake()
                await tls.read()
                await tls.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                await tls.write_eof()
                return
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
            up_writer.write(hello_reader.data)
            await relay(
                PlainEnd(reader, writer),
                PlainEnd(up_reader, up_writer),
                idle_timeout=30,
                max_lifetime=60,
            )
            up_writer.close()
        except Exception:
            pass
        finally:
            writer.close()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def test_a_certificate_whose_key_is_not_quoted_fails(net: dict[str, Any], tmp_path: Path) -> None:
    ca = ThrowawayCA.create("a CA the client trusts")
    bundle = tmp_path / "roots.pem"
    root = Path(net["status"]["gateway"]["acme_root"]).read_bytes()
    bundle.write_bytes(root + ca.cert_pem)
    impostor = Impostor(net["name"], int(net["port"]), ca)
    try:
        out = tkms(
            "verify",
            "domain",
            f"{net['name']}:{impostor.port}",
            *net["chain"],
            "--ca-file",
            str(bundle),
            "--dns-server",
            net["knot"].address,
            "--json",
            check=False,
        )
    finally:
        impostor.stop()
    assert out.returncode == 1, out.stderr
    report = json.loads(out.stdout)
    assert rows(report)["TLS certificate for the name"]["status"] == "pass"  # a trusted CA...
    detail = failing(report, "the name's certificate key is the gateway's quoted key")
    assert "does not cover" in detail  # ...but not the key the TEE quoted


def test_a_replayed_challenge_answer_fails_as_stale(net: dict[str, Any]) -> None:
    from verify.fetch import Target, get_json, spki_of, unverified
    from verify.gateway_checks import FRESH, challenge_checks
    from verify.quotes import TrustPolicy

    site = Target(f"gateway.{net['status']['gateway']['base_domain']}", int(net["port"]))
    recorded, der = get_json(site, "/.dstack/challenge?nonce=" + "5a" * 32, unverified())
    trust = TrustPolicy(now=int(time.time()), simulator_allowed=True, simulator_note="dev chain")
    checks, _ = challenge_checks(recorded, b"\x5a" * 32, spki_of(der), trust)
    assert [c.status for c in checks if c.name == FRESH] == ["pass"]
    checks, _ = challenge_checks(recorded, os.urandom(32), spki_of(der), trust)
    [row] = [c for c in checks if c.name == FRESH]
    assert row.status == "fail" and "stale nonce" in row.detail


def test_a_gateway_whose_app_id_is_not_approved_fails(net: dict[str, Any]) -> None:
    governance = Cluster.load(net["root"]).governance()
    gateway_app = net["status"]["gateway"]["app_id"]
    # Governance removes the gateway's app id (and brings it back: only the owner can).
    governance.send_remove_app(gateway_app)
    try:
        code, report = domain(net, "--no-key-proof")
    finally:
        governance.send_register_app(gateway_app)
    assert code == 1
    detail = failing(report, "gateway: app id approved by governance")
    assert "status REMOVED" in detail and "revoked at block" in detail
    assert "App removed by governance" in failing(report, "gateway: allowed by governance now")
    # A gateway other than the one the domain's owner names fails even while approved.
    code, report = domain(net, "--no-key-proof", "--gateway-app-id", "0x" + "77" * 20)
    assert code == 1
    assert "another app" in failing(report, "gateway is the app expected")


def test_a_kms_member_whose_evidence_no_longer_verifies_fails(net: dict[str, Any]) -> None:
    from contracts import fetch_events

    cluster = Cluster.load(net["root"])
    governance = cluster.governance()
    [added] = fetch_events(governance.w3, [governance.address], 0, names=["KmsMeasurementAdded"])
    measurement = bytes(added.args["mrAggregated"])
    governance.send_remove_kms_measurement(measurement)
    try:
        code, report = verify(net, "node", net["status"]["nodes"][1]["address"])
    finally:
        governance.send_add_kms_measurement(measurement)
    assert code == 1
    [member] = [r for r in report["checks"] if r["name"].startswith("KMS member")]
    assert member["status"] == "fail"
    assert "KMS measurement not allowed" in member["detail"]
    assert "revoked at block" in member["detail"]


def test_a_compose_hash_revoked_after_the_app_started_fails(net: dict[str, Any]) -> None:
    from guest.measure import compose_hash
    from testnet.cli import DEMO_COMPOSE

    cluster = Cluster.load(net["root"])
    demo = net["status"]["demo_app"]
    app = cluster.app(demo["app_id"])
    app.send_remove_compose_hash(compose_hash(DEMO_COMPOSE))
    try:
        code, report = verify(
            net, "app", demo["app_id"], "--endpoint", f"localhost:{demo['https_port']}"
        )
    finally:
        app.send_add_compose_hash(compose_hash(DEMO_COMPOSE))
    assert code == 1
    detail = failing(report, "app: compose hash approved on chain now")
    assert "is NOT allowed by the app's AppAuth" in detail and "revoked at block" in detail
    assert "Compose hash not allowed" in failing(report, "app: allowed by governance now")
