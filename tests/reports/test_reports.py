"""Report figures from a known set of mentions and cases, charts, HTML, CSV and the CLI."""

from __future__ import annotations

import csv
import io
import struct
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.reports.conftest import DAY1, SINCE, UNTIL
from triage.cli import app
from triage.config import Settings, SlaSettings
from triage.reports import build_report
from triage.reports.charts import render_all
from triage.reports.figures import compute, percentile


def test_every_figure_of_a_known_period(known):
    f = compute(known, SINCE, UNTIL, SlaSettings(), brand_words=["Kestrel"])
    assert f.volume == 5 and f.previous_volume == 2
    assert f.sentiment == {"negative": 3, "neutral": 1, "positive": 1}
    assert f.net_sentiment == pytest.approx(-40.0) and f.previous_net_sentiment == 0.0
    assert f.by_source == {"x": 3, "reddit": 2}
    assert f.by_language == {"en": 3, "pl": 1, "de": 1}
    assert f.complaint_categories == {"billing": 2, "refund": 1, "delivery": 1}
    assert f.negative_topics == [("charged", 2), ("twice", 2)]
    assert [r.mention_id for r in f.examples["charged"]] == [1, 5]
    assert [(d.day, neg, neu, pos) for d, neg, neu, pos in f.daily] == [
        (10, 2, 0, 1),
        (11, 1, 1, 0),
    ]
    care = f.care
    assert care.replied == 3
    assert care.first_response_median == 1800.0
    assert care.first_response_p90 == pytest.approx(1800 + (36000 - 1800) * 0.8)
    assert care.within_sla == {"P1": 1.0, "P2": 1.0, "P3": 0.0, "P4": None}
    assert care.resolution_median == pytest.approx((1800 + 3600) / 2)
    assert care.by_agent == {"U1": (2, 1500.0, 1500.0), "U2": (1, 36000.0, 36000.0)}


def test_a_single_day_and_an_empty_period(known):
    day2 = compute(known, DAY1 + timedelta(days=1), UNTIL, SlaSettings())
    assert (day2.volume, day2.previous_volume) == (2, 3)
    assert len(day2.daily) == 1 and day2.care.by_agent == {"U1": (1, 1200.0, 1200.0)}
    empty = compute(known, datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC),
                    SlaSettings())  # fmt: skip
    assert (empty.volume, empty.net_sentiment, empty.negative_topics) == (0, None, [])
    assert empty.daily[0][1:] == (0, 0, 0)
    assert empty.care.first_response_median is None and empty.care.within_sla["P1"] is None
    charts = render_all(empty, SlaSettings())
    assert all(png.startswith(b"\x89PNG") for png in charts.values())
    with pytest.raises(ValueError, match="window is empty"):
        compute(known, UNTIL, SINCE, SlaSettings())


def test_percentile_interpolates():
    assert percentile([10, 20, 30, 40], 50) == 25
    assert percentile([5], 90) == 5 and percentile([], 50) is None


def _png_size(png: bytes) -> tuple[int, int]:
    return struct.unpack(">II", png[16:24])


def test_charts_are_slack_sized_pngs_with_content(known):
    import matplotlib.image

    charts = render_all(compute(known, SINCE, UNTIL, SlaSettings()), SlaSettings())
    assert set(charts) == {
        "sentiment-over-time", "volume-by-source", "volume-by-language",
        "complaint-categories", "negative-topics", "first-response",
    }  # fmt: skip
    for name, png in charts.items():
        assert png[:8] == b"\x89PNG\r\n\x1a\n", name
        assert _png_size(png) == (800, 450), name
        pixels = matplotlib.image.imread(io.BytesIO(png))
        coloured = np.abs(pixels[..., 0] - pixels[..., 1]) + np.abs(pixels[..., 1] - pixels[..., 2])
        assert (coloured > 0.2).mean() > 0.002, f"{name} has no coloured marks"
    assert len(set(charts.values())) == len(charts)


def test_html_is_self_contained_and_escapes_customer_text(known, tmp_path):
    settings = Settings()
    report = build_report(known, settings, SINCE, UNTIL)
    [path] = report.write(tmp_path / "r.html", "html")
    html = path.read_text("utf-8")
    assert (
        html.count("data:image/png;base64,") == 6 and "http://" not in html.split("<body>")[1][:200]
    )
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert" not in html
    assert "5 mentions in 2 days (+150% on the period before)" in html
    assert "net sentiment -40 (-40 points)" in html
    assert "negative mentions talk about charged, twice" in html
    assert "within the SLA: P1 100%, P2 100%, P3 0%" in html
    row = '<td>U1</td><td class="n">2</td><td class="n">25 min</td><td class="n">25 min</td>'
    assert row in html


def test_csv_has_every_row_behind_the_charts(known, tmp_path):
    report = build_report(known, Settings(), SINCE, UNTIL)
    [path] = report.write(tmp_path / "r.csv", "csv")
    rows = list(csv.DictReader(io.StringIO(path.read_text("utf-8"))))
    assert [r["mention_id"] for r in rows] == ["1", "2", "3", "4", "5"]
    assert rows[0]["intents"] == "billing refund" and rows[0]["agent"] == "U1"
    assert rows[3]["status"] == "dismissed" and rows[3]["resolution_seconds"] == "3600.0"


def test_the_report_command_writes_html_csv_and_pngs(known, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(f'[database]\nurl = "{known.url.render_as_string(hide_password=False)}"\n')
    runner = CliRunner()
    for fmt, out in (("html", "r.html"), ("csv", "r.csv"), ("png", "charts")):
        result = runner.invoke(
            app,
            ["report", "--config", str(config), "--since", "2026-11-10", "--until", "2026-11-12",
             "--format", fmt, "--out", str(tmp_path / out)],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "charts").glob("*.png"))) == 6
    bad = runner.invoke(app, ["report", "--config", str(config), "--format", "pdf", "--out", "x"])
    assert bad.exit_code == 2 and "expected html, csv or png" in bad.output
    backwards = runner.invoke(
        app, ["report", "--config", str(config), "--since", "2026-11-12", "--until", "2026-11-10",
              "--out", str(tmp_path / "x.html")],
    )  # fmt: skip
    assert backwards.exit_code == 2 and "window is empty" in backwards.output


def test_the_report_measures_how_much_agents_edit_the_drafts(known, tmp_path):
    from sqlmodel import select

    from triage.drafts.learn import draft_category, edit_class
    from triage.store import Draft, OutboundReply, session_scope

    drafted = "Hi Ana, we're really sorry your order hasn't reached you yet. Send us the number."
    # mention id -> (generator, the draft, what the agent sent)
    sent = {
        1: ("template:complaint:en:billing", drafted, drafted + " ^AB"),  # a sign-off only
        2: ("template:complaint:pl:delivery", drafted, drafted.replace("Ana", "Anno")),
        5: ("template:answer:en", drafted, "Yes, we ship to Riga: 3-5 days, free over 50 €."),
    }
    with session_scope(known) as session:
        replies = session.exec(select(OutboundReply)).all()
        assert sorted(r.mention_id for r in replies) == sorted(sent)
        for reply in replies:
            generator, draft, text = sent[reply.mention_id]
            reply.text = text
            session.add(reply)
            session.add(
                Draft(mention_id=reply.mention_id, language="en", text=draft, generator=generator)
            )
    f = compute(known, SINCE, UNTIL, SlaSettings())
    assert f.drafts.total == {"unedited": 1, "light": 1, "rewritten": 1}
    assert f.drafts.by_category == {
        "answer": {"unedited": 0, "light": 0, "rewritten": 1},
        "billing": {"unedited": 1, "light": 0, "rewritten": 0},
        "delivery": {"unedited": 0, "light": 1, "rewritten": 0},
    }
    assert sum(sum(c.values()) for c in f.drafts.by_language.values()) == 3
    assert edit_class("a b", "a  b") == "unedited"
    assert draft_category("gpt-4o-mini") == "model"
    assert draft_category("template:holding:de:legal") == "legal"
    [path] = build_report(known, Settings(), SINCE, UNTIL).write(tmp_path / "r.html", "html")
    html = path.read_text("utf-8")
    assert "Of 3 replies sent: 1 as drafted, 1 lightly edited, 1 rewritten." in html
