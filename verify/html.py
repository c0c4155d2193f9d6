"""One self-contained HTML page for a person: the verdict, then each check as a row.

No external resource (no script, font, image or style sheet from elsewhere): the page can be
archived, mailed and opened offline, and opening it tells no one. Every value is escaped.
Each row folds open (`<details>`) to the values compared, the transactions it relies on, and
the raw evidence. Transactions link through `explorer` (a URL template with `{tx}`, e.g.
`https://etherscan.io/tx/{tx}`); without one they are shown as plain hashes.
"""

from __future__ import annotations

import datetime as dt
import json
from html import escape

from verify.report import FAIL, PASS, WARN, Check, Report

_STYLE = """
body{font-family:system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{padding:1.2em 2em;color:#fff}
header.pass{background:#1f7a3d}header.fail{background:#b3261e}
header h1{margin:0 0 .3em 0;font-size:1.5em}
header p{margin:.1em 0;opacity:.95}
main{padding:1em 2em}
table.context td{padding:.1em 1em .1em 0;font-size:.9em}
.check{background:#fff;border-left:6px solid #999;margin:.45em 0;border-radius:4px;
box-shadow:0 1px 2px rgba(0,0,0,.08)}
.check.pass{border-color:#2e9e52}.check.fail{border-color:#d93025}.check.warn{border-color:#e8a317}
.check summary{padding:.55em .8em;cursor:pointer;list-style:none;display:flex;gap:.8em}
.badge{font-weight:700;flex:0 0 3.5em}
.pass .badge{color:#2e9e52}.fail .badge{color:#d93025}.warn .badge{color:#b77c00}
.name{font-weight:600;flex:0 0 22em;overflow-wrap:anywhere}
.detail{color:#444;flex:1;overflow-wrap:anywhere}
.body{padding:.2em 1em 1em 4.3em;font-size:.88em}
.body table{border-collapse:collapse}
.body td,.body th{border:1px solid #ddd;padding:.2em .5em;text-align:left;vertical-align:top}
code,pre{font-family:ui-monospace,monospace;word-break:break-all;white-space:pre-wrap}
pre{background:#f3f3f3;padding:.6em;max-height:24em;overflow:auto}
"""


def _tx(tx_hash: str, explorer: str | None) -> str:
    if explorer:
        return f'<a href="{escape(explorer.replace("{tx}", tx_hash))}">{escape(tx_hash)}</a>'
    return f"<code>{escape(tx_hash)}</code>"


def _row(check: Check, explorer: str | None) -> str:
    parts = []
    if check.compared:
        rows = "".join(
            f"<tr><td>{escape(c.what)}</td><td><code>{escape(c.expected)}</code></td>"
            f"<td><code>{escape(c.found)}</code></td><td>{'=' if c.equal else '≠'}</td></tr>"
            for c in check.compared
        )
        parts.append(
            "<table><tr><th>compared</th><th>required</th><th>found</th><th></th></tr>"
            f"{rows}</table>"
        )
    if check.links:
        items = "".join(
            f"<li>{escape(link.label)}: block {link.block}, transaction "
            f"{_tx(link.tx_hash, explorer)}</li>"
            for link in check.links
        )
        parts.append(f"<p>On chain:</p><ul>{items}</ul>")
    if check.evidence:
        text = json.dumps(check.evidence, indent=2, default=str)
        parts.append(f"<p>Evidence:</p><pre>{escape(text)}</pre>")
    badge = {PASS: "PASS", FAIL: "FAIL", WARN: "WARN"}[check.status]
    opened = " open" if check.status == FAIL else ""
    return (
        f'<details class="check {check.status}"{opened}><summary>'
        f'<span class="badge">{badge}</span><span class="name">{escape(check.name)}</span>'
        f'<span class="detail">{escape(check.detail)}</span></summary>'
        f'<div class="body">{"".join(parts) or "<p>Nothing more to show.</p>"}</div></details>'
    )


def render(report: Report, explorer: str | None = None) -> str:
    """The page (a complete HTML document) for `report`."""
    verdict = PASS if report.passed else FAIL
    failures = sum(c.failed for c in report.checks)
    warnings = sum(c.status == WARN for c in report.checks)
    headline = (
        f"All {len(report.checks)} checks passed"
        if report.passed
        else f"{failures} of {len(report.checks)} checks failed"
    ) + (f" ({warnings} with a warning)" if warnings else "")
    when = dt.datetime.fromtimestamp(report.started, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    context = "".join(
        f"<tr><td>{escape(str(k))}</td><td><code>{escape(str(v))}</code></td></tr>"
        for k, v in report.context.items()
    )
    rows = "".join(_row(c, explorer) for c in report.checks)
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>tkms verify {escape(report.kind)} {escape(report.target)}</title>"
        f"<style>{_STYLE}</style></head><body>"
        f'<header class="{verdict}"><h1>{escape(headline)}</h1>'
        f"<p>tkms verify {escape(report.kind)} <b>{escape(report.target)}</b></p>"
        f"<p>checked {escape(when)}</p></header>"
        f'<main><table class="context">{context}</table>{rows}</main></body></html>'
    )
