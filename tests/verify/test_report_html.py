"""The report: verdict rules, text and JSON forms, and the HTML page (self-contained, escaped,
failures folded open, transactions linked only through the explorer template given)."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from verify.html import render
from verify.report import FAIL, PASS, WARN, Check, Compared, Link, Report, merged

TX = "0x" + "ab" * 32


def report(*statuses: str) -> Report:
    result = Report("domain", "app.example:443", context={"chain_id": 31337})
    for i, status in enumerate(statuses):
        check = Check(f"check {i}", status, f"detail {i} <script>alert(1)</script>")  # type: ignore[arg-type]
        check.compared.append(Compared("key", "aa" * 40, "aa" * 40 if status == PASS else "bb"))
        check.links.append(Link("ComposeHashAdded", TX, 7))
        check.evidence["quote"] = {"report_data": "<b>not markup</b>"}
        result.add(check)
    return result


def test_a_report_passes_only_without_failures_and_warnings_pass() -> None:
    assert report(PASS, WARN).passed
    assert not report(PASS, FAIL).passed
    assert not Report("app", "x").passed  # nothing checked is not a pass
    data = report(PASS, WARN, FAIL).to_json()
    assert (data["passed"], data["failed"], data["warnings"]) == (False, ["check 2"], ["check 1"])
    assert data["checks"][2]["compared"] == [{"what": "key", "expected": "aa" * 40, "found": "bb"}]


def test_text_cuts_long_values_and_marks_each_row() -> None:
    text = report(PASS, FAIL).to_text()
    assert "PASS  check 0" in text and "FAIL  check 1" in text
    assert "…" in text and "aa" * 40 not in text
    assert "aa" * 40 in report(PASS).to_text(full=True)
    assert text.endswith("result: 1 failed")


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def test_the_page_is_self_contained_and_escapes_everything() -> None:
    page = render(report(PASS, WARN, FAIL))
    parser = _Tags()
    parser.feed(page)
    names = [tag for tag, _ in parser.tags]
    assert "script" not in names and "link" not in names and "img" not in names
    assert not any("src" in attrs for _, attrs in parser.tags)
    assert not re.search(r"https?://", page)  # no transaction link without a template
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;not markup&lt;/b&gt;" in page
    # Failed rows are folded open, passing ones closed.
    details = [attrs for tag, attrs in parser.tags if tag == "details"]
    assert [("open" in d) for d in details] == [False, False, True]
    assert "1 of 3 checks failed (1 with a warning)" in page


def test_transactions_link_through_the_explorer_template() -> None:
    page = render(report(PASS), explorer="https://explorer.example/tx/{tx}")
    assert f'href="https://explorer.example/tx/{TX}"' in page


def test_merged_rows_take_the_worst_status_and_name_the_failing_steps() -> None:
    steps = [Check("a", PASS, "ok"), Check("b", WARN, "simulated"), Check("c", FAIL, "revoked")]
    row = merged("member 1", steps, "all fine")
    assert row.status == FAIL and row.detail == "c: revoked"
    row = merged("member 2", steps[:2], "all fine")
    assert row.status == WARN and row.detail == "all fine (simulated)"
    assert len(row.evidence["steps"]) == 2
