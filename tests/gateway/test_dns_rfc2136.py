"""The RFC 2136 provider against a real Knot DNS server: TXT and CAA records written with TSIG,
read back as any resolver sees them; refusals (wrong secret, unknown key, a change the key may
not make) named clearly and changing nothing; the credential file rules; the Knot launcher."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import dns.query
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.CAA
import dns.tsig
import dns.update
import pytest

from gateway.config import AcmeConfig
from gateway.dns01 import DnsError, caa_value, read_secret_file
from gateway.dns_providers import open_dns_provider
from gateway.dns_rfc2136 import Rfc2136Provider
from gateway.knot import KnotServer
from tests.gateway.conftest import dns_for, free_port, query, query_txt, require_knot

REPO = Path(__file__).resolve().parents[2]
ZONE = "other.test"  # this module's zone (the others belong to the ACME tests' fixtures)
CHALLENGE = f"_acme-challenge.{ZONE}"


def serial(knot: KnotServer, zone: str = ZONE) -> int:
    [soa] = query(knot.address, zone, "SOA")
    return int(soa.split()[2])


def raw_update(knot: KnotServer, zone: str = ZONE) -> dns.update.UpdateMessage:
    """An UPDATE of `zone` signed with the server's key, for what the provider never writes."""
    key = dns.tsig.Key(knot.key_name, knot.secret(), dns.tsig.HMAC_SHA256)
    return dns.update.UpdateMessage(zone, keyring=key, keyname=key.name)


def send(knot: KnotServer, update: dns.update.UpdateMessage) -> None:
    dns.query.tcp(update, knot.host, port=knot.port, timeout=5)


def test_txt_values_add_up_and_clear_removes_them_all(knot: KnotServer) -> None:
    provider = dns_for(knot, ZONE)
    provider.set_txt(CHALLENGE, "first")
    provider.set_txt(CHALLENGE + ".", "second")
    assert query_txt(knot.address, CHALLENGE) == [b"first", b"second"]
    assert sorted(provider.txt(CHALLENGE)) == [b"first", b"second"]
    provider.clear_txt(CHALLENGE)
    assert query_txt(knot.address, CHALLENGE) == []
    provider.clear_txt(CHALLENGE)  # nothing to remove is not an error


def test_caa_pin_replaces_the_issuers_keeps_other_tags_in_one_update(knot: KnotServer) -> None:
    # The zone holds a foreign issuer and an iodef record before the gateway pins.
    seed = raw_update(knot)
    seed.add(ZONE + ".", 60, "CAA", '0 issue "letsencrypt.org"', '0 iodef "mailto:ops@other.test"')
    send(knot, seed)
    provider = dns_for(knot, ZONE)
    first = caa_value("pebble.test", "https://ca.test/acct/1")
    before = serial(knot)
    provider.set_caa(ZONE, first)
    assert query(knot.address, ZONE, "CAA") == [
        '0 iodef "mailto:ops@other.test"',
        f'0 issue "{first}"',
        f'0 issuewild "{first}"',
    ]
    # One UPDATE message: the server applied it at once, so no moment without an issuer.
    assert serial(knot) == before + 1
    second = caa_value("pebble.test", "https://ca.test/acct/2")
    provider.set_caa(ZONE, second)
    assert query(knot.address, ZONE, "CAA") == [
        '0 iodef "mailto:ops@other.test"',
        f'0 issue "{second}"',
        f'0 issuewild "{second}"',
    ]
    assert serial(knot) == before + 2
    provider.set_caa(ZONE, second)  # already pinned: nothing is sent
    assert serial(knot) == before + 2


@pytest.mark.parametrize("zone", [ZONE, "gw.test"], ids=["records-there", "none-yet"])
def test_a_change_between_read_and_write_is_detected_and_retried(
    knot: KnotServer, zone: str
) -> None:
    provider = dns_for(knot, zone)
    if zone == ZONE:
        provider.set_caa(zone, caa_value("pebble.test", "https://ca.test/acct/3"))
    else:
        assert query(knot.address, zone, "CAA") == []  # the prerequisite is "none there"
    stale = True
    real_caa = provider.caa

    def caa_seen_late(fqdn: str) -> list[dns.rdtypes.ANY.CAA.CAA]:
        # Someone else adds a record right after the first read.
        nonlocal stale
        records = real_caa(fqdn)
        if stale:
            stale = False
            extra = raw_update(knot, zone)
            extra.add(zone + ".", 60, "CAA", '0 issue "sneaky.ca"')
            send(knot, extra)
        return records

    provider.caa = caa_seen_late  # type: ignore[method-assign]
    before = serial(knot, zone)
    wanted = caa_value("pebble.test", "https://ca.test/acct/4")
    provider.set_caa(zone, wanted)
    issuers = [r for r in query(knot.address, zone, "CAA") if "iodef" not in r]
    assert issuers == [f'0 issue "{wanted}"', f'0 issuewild "{wanted}"']
    assert serial(knot, zone) == before + 2  # the intruder's update, then ours (once)


def test_a_wrong_secret_is_refused_and_changes_nothing(knot: KnotServer) -> None:
    wrong = base64.b64encode(b"\x01" * 32).decode()
    provider = dns_for(knot, ZONE, secret=wrong)
    before = serial(knot)
    with pytest.raises(DnsError) as refused:
        provider.set_txt(CHALLENGE, "forged")
    message = str(refused.value)
    assert message.startswith(f"adding TXT {CHALLENGE}. at {knot.address}: ")
    assert "refused the signature of TSIG key 'tkms-gateway'" in message
    assert "(TSIG BADSIG)" in message
    assert wrong not in message and knot.secret() not in message
    with pytest.raises(DnsError, match="BADSIG"):
        provider.set_caa(ZONE, caa_value("evil.ca", "https://evil/acct/1"))
    assert serial(knot) == before
    assert query_txt(knot.address, CHALLENGE) == []


def test_an_unknown_key_is_refused(knot: KnotServer) -> None:
    provider = Rfc2136Provider(knot.address, ZONE, "someone-else", knot.secret())
    with pytest.raises(DnsError, match=r"refused TSIG key 'someone-else': it does not know"):
        provider.set_txt(CHALLENGE, "x")


def test_the_key_may_change_only_challenge_and_caa_records(knot: KnotServer) -> None:
    provider = dns_for(knot, ZONE)
    before = serial(knot)
    # Knot's ACL: TXT and CAA, at _acme-challenge.<zone> and the apex only.
    with pytest.raises(DnsError, match=r"adding TXT _acme-challenge\.app\.other\.test\. .*BADKEY"):
        provider.set_txt(f"_acme-challenge.app.{ZONE}", "x")
    hijack = raw_update(knot)
    hijack.replace(f"app.{ZONE}.", 60, "A", "192.0.2.1")
    with pytest.raises(dns.tsig.PeerBadKey):
        send(knot, hijack)
    assert serial(knot) == before
    assert query(knot.address, f"app.{ZONE}", "A") == ["127.0.0.1"]


def test_names_outside_the_zone_are_refused_before_sending(knot: KnotServer) -> None:
    provider = dns_for(knot, ZONE)
    for name in ("_acme-challenge.gw.test", "notother.test", "other.test.evil"):
        with pytest.raises(DnsError, match=f"{name} is not in the zone other.test."):
            provider.set_txt(name, "x")


def test_a_server_down_or_not_serving_the_zone_is_named(knot: KnotServer) -> None:
    down = Rfc2136Provider(f"127.0.0.1:{free_port()}", ZONE, knot.key_name, knot.secret())
    with pytest.raises(DnsError, match=r"adding TXT .* at 127\.0\.0\.1:\d+: Connection refused"):
        down.set_txt(CHALLENGE, "x")
    with pytest.raises(DnsError, match=r"reading CAA other\.test\. .*Connection refused"):
        down.set_caa(ZONE, caa_value("pebble.test", "https://ca.test/acct/1"))
    elsewhere = Rfc2136Provider(knot.address, "unserved.test", knot.key_name, knot.secret())
    with pytest.raises(DnsError, match="answered without a TSIG signature .does it serve"):
        elsewhere.set_txt("_acme-challenge.unserved.test", "x")


def test_the_secret_never_shows(knot: KnotServer) -> None:
    provider = dns_for(knot, ZONE)
    assert knot.secret() not in repr(provider)
    assert knot.secret() not in repr(provider._key)
    assert (
        repr(provider) == f"Rfc2136Provider('{knot.address}', zone=other.test., key='tkms-gateway')"
    )
    for bad in ("not base64!", base64.b64encode(b"short").decode()):
        with pytest.raises(ValueError, match="TSIG key 'k'") as refused:
            Rfc2136Provider(knot.address, ZONE, "k", bad)
        assert bad not in str(refused.value)


def test_secret_files_must_be_private(tmp_path: Path) -> None:
    path = tmp_path / "tsig.key"
    path.write_text("c2VjcmV0LXNlY3JldC1zZWNyZXQ=\n")
    path.chmod(0o644)
    with pytest.raises(DnsError) as refused:
        read_secret_file(path, "TSIG key file")
    assert str(refused.value) == (
        f"TSIG key file {path}: mode 0644 lets others read it; it must be 0600 (chmod 600 {path})"
    )
    path.chmod(0o600)
    assert read_secret_file(path, "TSIG key file") == "c2VjcmV0LXNlY3JldC1zZWNyZXQ="
    link = tmp_path / "link.key"
    link.symlink_to(path)
    with pytest.raises(DnsError, match="link.key: cannot open"):
        read_secret_file(link, "TSIG key file")
    empty = tmp_path / "empty.key"
    empty.write_text("\n")
    empty.chmod(0o600)
    with pytest.raises(DnsError, match="empty.key: empty"):
        read_secret_file(empty, "TSIG key file")
    with pytest.raises(DnsError, match="missing.key: cannot open: No such file"):
        read_secret_file(tmp_path / "missing.key", "TSIG key file")


def test_the_configured_provider_reads_its_key_file(knot: KnotServer, tmp_path: Path) -> None:
    key_file = tmp_path / "tsig.key"
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, knot.secret().encode())
    os.close(fd)
    config = AcmeConfig(
        directory_url="https://ca.test/dir",
        dns_provider="rfc2136",
        dns_zone=ZONE,
        dns_server=knot.address,
        tsig_key_name=knot.key_name,
        tsig_key_file=str(key_file),
    )
    provider = open_dns_provider(config)
    provider.set_txt(CHALLENGE, "configured")
    assert query_txt(knot.address, CHALLENGE) == [b"configured"]
    provider.clear_txt(CHALLENGE)
    key_file.chmod(0o640)
    with pytest.raises(DnsError, match="mode 0640 lets others read it"):
        open_dns_provider(config)
    key_file.write_text("not base64!\n")
    key_file.chmod(0o600)
    with pytest.raises(DnsError, match=rf"TSIG key file {key_file}: the secret .* is not base64"):
        open_dns_provider(config)


def test_knot_started_again_with_its_argv_serves_the_same_records(tmp_path: Path) -> None:
    # As `tkms testnet` resume does: the recorded command line, run again after a stop.
    require_knot()
    server = KnotServer.start(tmp_path, ["again.test"], detach=True)
    value = caa_value("pebble.test", "https://ca.test/acct/9")
    try:
        provider = Rfc2136Provider(server.address, "again.test", server.key_name, server.secret())
        provider.set_caa("again.test", value)
        [(_, argv, log)] = server.commands()
        assert oct(server.config.stat().st_mode & 0o777) == "0o600"
        assert oct(server.key_file.stat().st_mode & 0o777) == "0o600"
    finally:
        server.stop()
    with open(log, "ab") as out:
        again = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    loaded = KnotServer.from_dict({**server.to_dict(), "pids": [again.pid]})
    try:
        loaded._wait_ready()
        expected = [f'0 issue "{value}"', f'0 issuewild "{value}"']
        assert query(loaded.address, "again.test", "CAA") == expected
        # Stopped from another process, as `tkms testnet down` does.
        script = "import json, sys; from gateway.knot import KnotServer; "
        script += "KnotServer.from_dict(json.loads(sys.argv[1])).stop()"
        state = json.dumps(loaded.to_dict())
        subprocess.run([sys.executable, "-c", script, state], check=True, timeout=20, cwd=REPO)
        assert again.wait(timeout=5) == 0
    finally:
        again.kill()
        again.wait()
    with pytest.raises(ValueError, match="knot state: zones must be a list"):
        KnotServer.from_dict({**server.to_dict(), "zones": "again.test"})
