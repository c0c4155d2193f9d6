"""Helpers for the event-log tests: load vendored test data, read TD-report fields with dcap-qvl.

dcap-qvl (a separate, well-kept parser) reads the quotes here, so the replay tests do not
depend on tkms's own quote parser.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dcap_qvl


def load_json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def quote_rtmrs(quote: bytes) -> list[bytes]:
    report = dcap_qvl.parse_quote(quote).report
    return [bytes(report.rt_mr0), bytes(report.rt_mr1), bytes(report.rt_mr2), bytes(report.rt_mr3)]


def td_field(quote: bytes, name: str) -> bytes:
    return bytes(getattr(dcap_qvl.parse_quote(quote).report, name))
