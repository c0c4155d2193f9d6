"""Does DNS pin certificate issuance for a name to one ACME account? (RFC 8659, RFC 8657)

The relevant CAA record set of a name is the first non-empty one found climbing from the name
towards the root (RFC 8659 §3); CNAME targets are followed at each step. A CA honouring CAA
issues a certificate for the name only if an `issue` record (for a wildcard: `issuewild`,
falling back to `issue` when there is none) names it; with RFC 8657's `accounturi` parameter
only to that ACME account. So the name is pinned to the gateway's account when the relevant
set has at least one `issue` record, and every `issue` and `issuewild` record that grants
issuance carries `accounturi=<the quoted account URI>`. A record granting nothing (`";"`) is
harmless. No record at all means any CA may issue to anyone: that fails.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from verify.dns import Answer, CaaRecord, DnsError

Lookup = Callable[[str], Answer]
_MAX_CNAMES = 8


@dataclass(frozen=True)
class CaaVerdict:
    pinned: bool
    reason: str
    owner: str  # the name whose records are relevant ("" if none)
    records: tuple[CaaRecord, ...]


def parse_issue_value(value: str) -> tuple[str, dict[str, str]]:
    """(issuer domain, parameters) of an `issue`/`issuewild` value (RFC 8659 §4.2)."""
    issuer, *params = value.split(";")
    parsed: dict[str, str] = {}
    for param in params:
        key, sep, val = param.strip().partition("=")
        if sep:
            parsed[key.strip().lower()] = val.strip()
    return issuer.strip(), parsed


def relevant_records(name: str, lookup: Lookup) -> tuple[str, tuple[CaaRecord, ...]]:
    """(owner, records) of the relevant CAA set of `name`; ("", ()) if there is none."""
    labels = name.lower().rstrip(".").split(".")
    for i in range(len(labels) - 1):  # stop before the top-level label alone
        owner = target = ".".join(labels[i:])
        for _ in range(_MAX_CNAMES):
            answer = lookup(target)
            if answer.records or answer.cname is None:
                break
            target = answer.cname
        else:
            raise DnsError(f"more than {_MAX_CNAMES} CNAMEs from {owner}")
        if answer.records:
            return owner, answer.records
    return "", ()


def check_pinned(name: str, account_uri: str, lookup: Lookup) -> CaaVerdict:
    """Whether the relevant CAA set of `name` pins issuance to `account_uri` (module rules)."""
    owner, records = relevant_records(name, lookup)
    if not records:
        return CaaVerdict(False, f"no CAA record for {name} or a parent: any CA may issue", "", ())
    issuing = [r for r in records if r.tag in ("issue", "issuewild")]
    if not any(r.tag == "issue" for r in issuing):
        why = f"{owner} has no 'issue' record: issuance of non-wildcard names is not restricted"
        return CaaVerdict(False, why, owner, records)
    for record in issuing:
        issuer, params = parse_issue_value(record.value)
        if not issuer:
            continue  # `;` grants nothing
        uri = params.get("accounturi")
        if uri != account_uri:
            shown = f"accounturi={uri}" if uri else "no accounturi"
            why = f"{owner} CAA {record}: {shown}, not the quoted account {account_uri}"
            return CaaVerdict(False, why, owner, records)
    return CaaVerdict(
        True, f"every issue/issuewild record of {owner} names the account", owner, records
    )
