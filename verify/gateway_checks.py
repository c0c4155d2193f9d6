"""The gateway behind a domain: its fresh challenge quote, its dstack evidence, its approval on
chain and the CAA records that pin its ACME account.

Against the gaps of dstack's own checks: the quote is fresh (our nonce is in it), it binds the
key the name serves right now and the account together, every quoted key's quote is checked
(not only the first), and evidence the gateway cannot produce is a failed row, not a skipped
one. `challenge_checks` is pure (an answer, our nonce, the key we were served): a replayed
answer or one for another key fails there whatever the network did.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from attest import BindingError, BindingLabel, zt_challenge_content
from verify.caa import check_pinned, parse_issue_value
from verify.chain import (
    ChainView,
    allowed_check,
    app_registry_check,
    compose_check,
    os_image_check,
)
from verify.dns import Answer, DnsError
from verify.fetch import FetchError, Target, get_json, spki_of, unverified
from verify.quotes import Attested, TrustPolicy, check_evidence
from verify.report import Check, Compared, failed, judged

CHALLENGE = "/.dstack/challenge"
ACME_INFO = "/.dstack/acme-info"
APP_INFO = "/.dstack/app-info"
FRESH = "gateway key is in a fresh quote (our nonce)"


@dataclass
class GatewayFacts:
    """What the gateway's evidence established (empty when it did not)."""

    app_id: bytes | None = None
    account_uri: str | None = None
    served_spki: bytes | None = None
    fingerprint: bytes | None = None
    checks: list[Check] = field(default_factory=list)


def _quote_parts(text: str) -> tuple[bytes, str, str | None]:
    """(quote, event log, vm_config) of a GetQuote answer carried as JSON text (dstack)."""
    reply = json.loads(text)
    return bytes.fromhex(reply["quote"]), reply["event_log"], reply.get("vm_config") or None


def challenge_checks(
    answer: dict[str, Any], nonce: bytes, served_spki: bytes, trust: TrustPolicy
) -> tuple[list[Check], Attested | None]:
    """Rows for one challenge answer: the quote is the gateway's, made for our nonce, the key
    we were served and the account it names."""
    try:
        account = str(answer["account_uri"])
        content = zt_challenge_content(nonce, served_spki, account)
        quote, log, vm_config = _quote_parts(answer["quote"])
    except (KeyError, TypeError, ValueError, BindingError) as exc:
        return [failed(FRESH, f"the challenge answer is malformed: {exc}")], None
    attested = check_evidence(
        "gateway",
        quote,
        log,
        trust,
        binding=(BindingLabel.ZT_CHALLENGE_V1, content, "our nonce, the served key, the account"),
        vm_config=vm_config,
    )
    claimed_nonce = str(answer.get("nonce", ""))
    claimed_key = str(answer.get("public_key", ""))
    compared = [
        Compared("nonce", nonce.hex(), claimed_nonce),
        Compared("certificate key (SPKI)", served_spki.hex(), claimed_key),
    ]
    bound = attested.checks[-1].status == "pass"
    if bound:
        detail = f"the quote binds our nonce, the key the name serves and account {account}"
    elif claimed_nonce != nonce.hex():
        detail = "stale nonce: the quote answers another challenge (a replayed quote)"
    elif claimed_key != served_spki.hex():
        detail = (
            "the key the name serves is not the quoted key (a certificate whose key is not quoted)"
        )
    else:
        detail = "the quote's report_data binds something else than our nonce, key and account"
    row = judged(FRESH, bound, detail, *compared)
    return [row, *attested.checks], attested


def _hist_key_checks(info: dict[str, Any], served: bytes, trust: TrustPolicy) -> list[Check]:
    """The live key is among the quoted keys, and every quoted key's quote binds it."""
    name = "every quoted certificate key has a zt-cert quote"
    entries = info.get("quoted_hist_keys") or []
    bad: list[str] = []
    keys: list[str] = []
    for entry in entries:
        try:
            key = bytes.fromhex(entry["public_key"])
            quote, log, _ = _quote_parts(entry["quote"])
        except (KeyError, TypeError, ValueError) as exc:
            bad.append(f"malformed entry: {exc}")
            continue
        keys.append(key.hex())
        result = check_evidence(
            "quoted key", quote, log, trust, binding=(BindingLabel.ZT_CERT, key, "its key")
        )
        if not result.ok:
            bad.append(f"key {key.hex()[:24]}…: {[c.detail for c in result.checks if c.failed]}")
    listed = served.hex() in keys
    return [
        judged(
            "live certificate key is listed in acme-info",
            listed,
            f"found among {len(keys)} quoted keys"
            if listed
            else f"the served key is not among the {len(keys)} quoted keys",
            Compared("served key", served.hex(), served.hex() if listed else "absent"),
        ),
        judged(
            name,
            bool(entries) and not bad,
            "; ".join(bad) if bad else f"{len(entries)} quotes verify and bind their keys",
        ),
    ]


def _acme_checks(info: dict[str, Any], facts: GatewayFacts, trust: TrustPolicy) -> list[Check]:
    uri = str(info.get("account_uri", ""))
    rows = [
        judged(
            "acme-info names the account the fresh quote binds",
            uri == facts.account_uri,
            f"account {uri}",
            Compared("account_uri", facts.account_uri or "", uri),
        )
    ]
    if not info.get("account_quote"):
        return [*rows, failed("ACME account quote", "acme-info carries no account quote")]
    try:
        quote, log, vm = _quote_parts(info["account_quote"])
    except (KeyError, TypeError, ValueError) as exc:
        return [*rows, failed("ACME account quote", f"malformed: {exc}")]
    account = check_evidence(
        "ACME account quote",
        quote,
        log,
        trust,
        binding=(BindingLabel.ACME_ACCOUNT, uri.encode(), "the account URI"),
        vm_config=vm,
    )
    same = account.identity is not None and account.identity.app_id == facts.app_id
    rows += [c for c in account.checks if c.failed or "binds" in c.name]
    rows.append(
        judged(
            "ACME account is held by the same gateway app",
            same,
            "the account quote comes from the app that answered the challenge"
            if same
            else "the account quote comes from another app",
            Compared(
                "app id",
                "0x" + (facts.app_id or b"").hex(),
                "0x" + (account.identity.app_id.hex() if account.identity else ""),
            ),
        )
    )
    return rows


def caa_check(
    base: str, account_uri: str | None, lookup: Callable[[str], Answer], server: str
) -> Check:
    name = "CAA in DNS pins the TEE-held ACME account"
    if account_uri is None:
        return failed(name, "no quoted ACME account to compare with")
    try:
        verdict = check_pinned(base, account_uri, lookup)
    except DnsError as exc:
        return failed(name, f"cannot read CAA: {exc}")
    records = [str(r) for r in verdict.records]
    pinned_to = sorted(
        {
            parse_issue_value(r.value)[1].get("accounturi", "none")
            for r in verdict.records
            if r.tag in ("issue", "issuewild")
        }
    )
    return judged(
        name,
        verdict.pinned,
        f"{verdict.reason} (DNS server {server})",
        Compared("accounturi in CAA", account_uri, ", ".join(pinned_to) or "no record"),
        owner=verdict.owner,
        records=records,
        server=server,
    )


def gateway_checks(
    view: ChainView,
    trust: TrustPolicy,
    evidence_site: Target,
    lookup: Callable[[str], Answer],
    dns_server: str,
    expected_app: bytes | None = None,
) -> GatewayFacts:
    """Every gateway row for the gateway serving `evidence_site` (`gateway.<base>`);
    `expected_app`, if known, is the gateway app the domain's owner names."""
    facts = GatewayFacts()
    base = evidence_site.name.removeprefix("gateway.")
    nonce = os.urandom(32)
    context = unverified()  # the evidence verifies itself; the name's trust is checked apart
    try:
        answer, der = get_json(evidence_site, f"{CHALLENGE}?nonce={nonce.hex()}", context)
    except FetchError as exc:
        facts.checks.append(failed(FRESH, f"no challenge answer: {exc}"))
        return facts
    facts.served_spki = spki_of(der)
    rows, attested = challenge_checks(answer, nonce, facts.served_spki, trust)
    facts.checks += rows
    if attested is None or attested.identity is None or not attested.ok:
        return facts
    facts.app_id = attested.identity.app_id
    facts.account_uri = str(answer["account_uri"])
    provider = attested.identity.key_provider
    facts.fingerprint = bytes.fromhex(provider.id) if provider and provider.id else None
    try:
        info, _ = get_json(evidence_site, ACME_INFO, context)
        facts.checks += _acme_checks(info, facts, trust)
        facts.checks += _hist_key_checks(info, facts.served_spki, trust)
    except FetchError as exc:
        facts.checks.append(failed("ACME account quote", f"acme-info: {exc}"))
    try:
        app_info, _ = get_json(evidence_site, APP_INFO, context)
        said = str(app_info.get("app_id", "")).removeprefix("0x").lower()
        facts.checks.append(
            judged(
                "app-info agrees with the quotes",
                said == facts.app_id.hex(),
                "the gateway's /Info names the app its quotes measure",
                Compared("app_id", facts.app_id.hex(), said),
            )
        )
    except FetchError as exc:
        facts.checks.append(failed("app-info agrees with the quotes", str(exc)))
    app_id = "0x" + facts.app_id.hex()
    if expected_app is not None:
        facts.checks.append(
            judged(
                "gateway is the app expected",
                facts.app_id == expected_app,
                "the quotes come from the gateway app given with --gateway-app-id"
                if facts.app_id == expected_app
                else "the quotes come from another app than --gateway-app-id",
                Compared("app id", "0x" + expected_app.hex(), app_id),
            )
        )
    facts.checks.append(app_registry_check(view, app_id, "gateway"))
    info_boot = attested.boot_info()
    if info_boot is not None:
        facts.checks.append(allowed_check(view, info_boot, "gateway"))
        facts.checks.append(compose_check(view, app_id, info_boot.compose_hash, "gateway"))
        facts.checks.append(os_image_check(view, info_boot.os_image_hash, "gateway"))
    facts.checks.append(caa_check(base, facts.account_uri, lookup, dns_server))
    return facts
