"""The file connector: JSONL and CSV rows, bad rows skipped with file:line, resumable cursor."""

from __future__ import annotations

import json
import logging
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.base import PermanentError
from connectors.file import MAX_RECORD_BYTES, FileConnector, stable_id
from triage.config import ConnectorSettings
from triage.domain import Batch, NewMention

FIXTURES = Path(__file__).parent.parent / "fixtures" / "file"
LOGGER = "triage.connectors.imports"


def connector(path: Path, **options: Any) -> FileConnector:
    return FileConnector(
        ConnectorSettings(name="imports", type="file", options={"path": str(path), **options})
    )


def mentions(batches: list[Batch]) -> list[NewMention]:
    return [m for batch in batches for m in batch.mentions]


def skipped(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


@pytest.fixture
def jsonl(tmp_path: Path) -> Path:
    return Path(shutil.copy(FIXTURES / "mentions.jsonl", tmp_path / "mentions.jsonl"))


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    return Path(shutil.copy(FIXTURES / "mentions.csv", tmp_path / "mentions.csv"))


def test_jsonl_rows_are_mapped_and_bad_rows_skipped(
    jsonl: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        batches = list(connector(jsonl).fetch(None))
    found = mentions(batches)
    assert [m.external_id for m in found] == [
        "x-1001",
        stable_id(
            "appstore",
            "Kestrel app logs me out every time I open it. One star until it's fixed.",
            "drew_k",
            None,
            datetime(2025, 3, 3, 9, 0, tzinfo=UTC),
        ),
        "tp-3",
    ]
    first, review, trustpilot = found
    assert first == NewMention(
        source="imports",
        external_id="x-1001",
        platform="x",
        text="@kestrel_help my Kestrel K7 won't charge since yesterday's update, third cable now",
        url="https://x.example/majan/status/1001",
        author_name="Maja Nowak",
        author_handle="@majan",
        author_reach=1830,
        created_at=datetime(2025, 3, 3, 8, 15, tzinfo=UTC),
        engagement=12,
        raw=first.raw,
    )
    assert first.raw["followers"] == 1830
    assert len(review.external_id) == 16
    assert review.rating == 1.0 and review.title == "Logs me out constantly"
    assert review.created_at == datetime(2025, 3, 3, 9, 0, tzinfo=UTC)  # naive means UTC
    assert trustpilot.created_at == datetime(2025, 3, 2, 16, 45, tzinfo=UTC)
    assert trustpilot.text.endswith("ten minutes 👏")
    messages = skipped(caplog)
    assert messages[0].startswith(f"skipped {jsonl}:3: invalid JSON (")
    assert messages[1:] == [
        f"skipped {jsonl}:4: no text",
        f"skipped {jsonl}:5: rating: 'five stars' is not a number",
        f"skipped {jsonl}:7: followers: 'lots' is not a whole number",
        f"skipped {jsonl}:8: created_at: 'last Tuesday' is not an ISO-8601 timestamp",
    ]


def test_csv_rows_are_mapped_and_bad_rows_skipped(
    csv_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        found = mentions(list(connector(csv_file).fetch(None)))
    assert [m.external_id for m in found] == ["gp-101", "gp-102", "x-201"]
    verify, roaming, billing = found
    assert (
        verify.text == 'Kestrel app keeps asking me to verify my number, then says "code expired"'
    )
    assert verify.rating == 2.0 and verify.author_handle is None and verify.url is not None
    assert roaming.text == "Great plan.\r\n\r\nRoaming in Spain just worked, thanks Kestrel"
    assert roaming.author_name == "Lucía" and roaming.url is None and roaming.title is None
    assert billing.author_reach == 12500 and billing.rating is None
    assert billing.platform == "x" and billing.source == "imports"
    assert skipped(caplog) == [
        f"skipped {csv_file}:6: no text",
        f"skipped {csv_file}:7: rating: 'four' is not a number",
        f"skipped {csv_file}:10: 12 fields but the header names 10",
        f"skipped {csv_file}:11: followers: 'notanumber' is not a whole number",
    ]


def test_spreadsheet_counts_are_read_and_times_past_utc_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "sheet.csv"
    path.write_text(
        "id,text,followers,engagement,created_at\n"
        "a,float count,1200.0,3.0,\n"
        "b,exponent,1.2e4,,\n"
        "c,half a follower,12.5,,\n"
        "d,infinite,inf,,\n"
        "e,too late,,,9999-12-31T23:59:59-05:00\n"
        "f,too early,,,0001-01-01T00:00:00+05:00\n"
        "g,naive time,,,2026-11-20T09:30:00\n",
        "utf-8",
    )
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        found = mentions(list(connector(path).fetch(None)))
    assert [(m.external_id, m.author_reach, m.engagement) for m in found] == [
        ("a", 1200, 3),
        ("b", 12000, None),
        ("g", None, None),
    ]
    assert found[-1].created_at == datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
    assert skipped(caplog) == [
        f"skipped {path}:4: followers: '12.5' is not a whole number",
        f"skipped {path}:5: followers: 'inf' is not a whole number",
        f"skipped {path}:6: created_at: '9999-12-31T23:59:59-05:00' cannot be represented in UTC",
        f"skipped {path}:7: created_at: '0001-01-01T00:00:00+05:00' cannot be represented in UTC",
    ]


def test_rerun_on_an_unchanged_file_fetches_nothing(jsonl: Path) -> None:
    source = connector(jsonl)
    cursor = list(source.fetch(None))[-1].cursor
    assert list(source.fetch(cursor)) == []


def test_appended_jsonl_rows_are_the_only_new_ones(jsonl: Path) -> None:
    source = connector(jsonl)
    cursor = list(source.fetch(None))[-1].cursor
    with jsonl.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"id": "x-1003", "text": "Kestrel esim activation stuck"}) + "\n")
        handle.write(
            json.dumps({"id": "x-1004", "text": "Kestrel: thanks for the quick fix"}) + "\n"
        )
    batches = list(source.fetch(cursor))
    assert [m.external_id for m in mentions(batches)] == ["x-1003", "x-1004"]
    assert list(source.fetch(batches[-1].cursor)) == []


def test_appended_csv_rows_are_the_only_new_ones(csv_file: Path) -> None:
    source = connector(csv_file)
    cursor = list(source.fetch(None))[-1].cursor
    with csv_file.open("a", encoding="utf-8", newline="") as handle:
        handle.write("x-204,x,Kestrel outage in Porto?,Rui,@rui,40,,2025-03-04T07:00:00Z,,\r\n")
    found = mentions(list(source.fetch(cursor)))
    assert [m.external_id for m in found] == ["x-204"]
    assert found[0].author_reach == 40


def test_replaced_or_truncated_file_starts_over(
    jsonl: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = connector(jsonl)
    cursor = list(source.fetch(None))[-1].cursor
    jsonl.write_text(json.dumps({"id": "new-1", "text": "A brand new export"}) + "\n")
    with caplog.at_level(logging.INFO, logger=LOGGER):
        found = mentions(list(source.fetch(cursor)))
    assert [m.external_id for m in found] == ["new-1"]
    assert "replaced or truncated" in caplog.text


def test_batches_carry_the_position_to_resume_from(tmp_path: Path) -> None:
    path = tmp_path / "many.jsonl"
    rows = [{"id": f"m-{n}", "text": f"Kestrel mention {n}"} for n in range(7)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    source = connector(path, batch_size=3)
    batches = list(source.fetch(None))
    assert [len(b.mentions) for b in batches] == [3, 3, 1]
    # A run that stopped after the first batch resumes at row 4.
    resumed = mentions(list(source.fetch(batches[0].cursor)))
    assert [m.external_id for m in resumed] == ["m-3", "m-4", "m-5", "m-6"]


def test_large_multilingual_text_passes_through_untouched(tmp_path: Path) -> None:
    text = (
        "  Kestrel 📱🔥👨‍👩‍👧 "
        + "שירות הלקוחות של קסטרל לא עונה "
        + "خدمة العملاء لا ترد "
        + "Zażółć gęślą jaźń e\u0301 \u200f\u200e\t"
    ) * 400 + "end "
    assert len(text.encode("utf-8")) > 50_000
    jsonl_path = tmp_path / "big.jsonl"
    jsonl_path.write_text(json.dumps({"id": "big", "text": text}) + "\n", encoding="utf-8")
    csv_path = tmp_path / "big.csv"
    quoted = text.replace('"', '""')
    csv_path.write_text(f'id,text\nbig,"{quoted}"\n', encoding="utf-8")
    for path in (jsonl_path, csv_path):
        (found,) = mentions(list(connector(path).fetch(None)))
        assert found.text == text


def test_one_size_limit_per_record_in_both_formats(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A record of MAX_RECORD_BYTES (line end included) is read, one byte more is skipped with
    its starting line, and the records after it are read, also from the cursor past it."""

    def padded(start: str, end: str, size: int, filler: str = "x") -> str:
        body = size - len(start) - len(end)
        return start + filler * (body // len(filler)) + "y" * (body % len(filler)) + end

    jsonl_path = tmp_path / "big.jsonl"
    jsonl_path.write_text(
        padded('{"id": "fit", "text": "', '"}\n', MAX_RECORD_BYTES)
        + padded('{"id": "over", "text": "', '"}\n', MAX_RECORD_BYTES + 1)
        + '{"id": "after", "text": "fine"}\n{"id": "empty", "text": ""}\n',
        encoding="utf-8",
    )
    # In CSV the one over the limit runs over many lines, with quotes inside its quoted field.
    over = padded('over,"', '"\n', MAX_RECORD_BYTES + 1, filler='a "" b\n')
    after = 3 + over.count("\n")
    csv_path = tmp_path / "big.csv"
    csv_path.write_text(
        "id,text\n" + padded('fit,"', '"\n', MAX_RECORD_BYTES) + over + "after,fine\nempty,\n",
        encoding="utf-8",
    )
    too_large = f"{MAX_RECORD_BYTES + 1:,} bytes, over the {MAX_RECORD_BYTES:,}-byte limit"
    for path, over_line, empty_line in ((jsonl_path, 2, 4), (csv_path, 3, after + 1)):
        source = connector(path)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            batches = list(source.fetch(None))
        found = mentions(batches)
        assert [m.external_id for m in found] == ["fit", "after"]
        assert len(found[0].text) > 1_900_000 and found[1].text == "fine"
        assert skipped(caplog) == [
            f"skipped {path}:{over_line}: {too_large} per record",
            f"skipped {path}:{empty_line}: no text",
        ]
        assert source.count() == 4
        assert list(source.fetch(batches[-1].cursor)) == []


def test_incomplete_last_jsonl_line_waits_for_the_next_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "live.jsonl"
    path.write_text('{"id": "a", "text": "Kestrel one"}\n{"id": "b", "tex', encoding="utf-8")
    source = connector(path)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        batches = list(source.fetch(None))
    assert [m.external_id for m in mentions(batches)] == ["a"]
    assert f"{path}:2: last line is incomplete" in caplog.text
    with path.open("a", encoding="utf-8") as handle:
        handle.write('t": "Kestrel two"}\n')
    assert [m.external_id for m in mentions(list(source.fetch(batches[-1].cursor)))] == ["b"]


def test_undecodable_text_is_refused_rather_than_stored_mangled(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    jsonl_path = tmp_path / "odd.jsonl"
    jsonl_path.write_bytes(
        b'{"id": "a", "text": "half an emoji \\ud83d"}\n'
        b'{"id": "b", "text": "caf\xe9 in latin-1"}\n'
        b'{"id": "c", "text": "fine \\ud83d\\udcf1"}\n'
    )
    csv_path = tmp_path / "odd.csv"
    csv_path.write_bytes(b"id,text\nd,caf\xe9 in latin-1\ne,fine\n")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        from_jsonl = mentions(list(connector(jsonl_path).fetch(None)))
        from_csv = mentions(list(connector(csv_path).fetch(None)))
    assert [(m.external_id, m.text) for m in from_jsonl] == [("c", "fine 📱")]
    assert [m.external_id for m in from_csv] == ["e"]
    assert skipped(caplog) == [
        f"skipped {jsonl_path}:1: text: not valid Unicode (an unpaired surrogate)",
        f"skipped {jsonl_path}:2: not valid UTF-8 "
        "(invalid continuation byte at byte 25 of the line)",
        f"skipped {csv_path}:2: not valid UTF-8",
    ]


def test_format_option_overrides_the_suffix_and_bom_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "export.txt"
    path.write_bytes("\ufeffID,Text\nr-1,Kestrel réseau en panne\n".encode())
    (found,) = mentions(list(connector(path, format="csv").fetch(None)))
    assert (found.external_id, found.text, found.platform) == (
        "r-1",
        "Kestrel réseau en panne",
        "file",
    )


def test_missing_file_is_a_permanent_error(tmp_path: Path) -> None:
    with pytest.raises(PermanentError, match="file not found; check connectors\\[imports\\]"):
        list(connector(tmp_path / "nope.jsonl").fetch(None))


def test_check_settings_explains_path_format_and_batch_size() -> None:
    def check(**options: Any) -> list[str]:
        return FileConnector.check_settings(
            ConnectorSettings(name="imports", type="file", options=options)
        )

    assert check() == [
        "connectors[imports].options.path: required option is missing; "
        "expected the path of a .jsonl or .csv file"
    ]
    assert check(path="export.txt") == [
        "connectors[imports].options.path: cannot tell the format from 'export.txt'; "
        'name it .jsonl or .csv, or set format = "jsonl" or "csv"'
    ]
    assert check(path="x.jsonl", format="xlsx", batch_size=0) == [
        'connectors[imports].options.format: \'xlsx\' is not known; expected "jsonl" or "csv"',
        "connectors[imports].options.batch_size: 0 is not valid; "
        "expected a whole number of rows per batch, at least 1",
    ]
    assert check(path="x.csv") == []
