"""The CLI end to end, in a subprocess, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write_jsonl

REPO = Path(__file__).parent.parent
EXPECTED_DURATION = 'expected e.g. 90, "90s", "15m", "2h" or "1d"'


def triage(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "COLUMNS": "200", "HF_HUB_OFFLINE": "1", **(env or {})}
    environment.pop("TRIAGE_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "triage", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_check_config_reports_every_problem_and_exits_2(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(
        '[sla]\nP2 = "later"\n[[connectors]]\nname = "feed"\ntype = "rss"\n'
        '[[connectors]]\nname = "x"\ntype = "telepathy"\n',
        encoding="utf-8",
    )
    result = triage("check-config", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [f"{config}: sla.P2: 'later' is not a duration; " + EXPECTED_DURATION]

    config.write_text(
        '[[connectors]]\nname = "feed"\ntype = "rss"\n'
        '[[connectors]]\nname = "x"\ntype = "telepathy"\n',
        encoding="utf-8",
    )
    result = triage("check-config", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2
    problems = result.stderr.strip().splitlines()
    assert any(
        p.startswith(f"{config}: connectors[feed].options.url: required option is missing")
        for p in problems
    )
    assert any(
        p.startswith(f"{config}: connectors[x].type: unknown connector type 'telepathy'")
        for p in problems
    )


def test_check_config_accepts_the_example(tmp_path):
    text = (REPO / "config.example.toml").read_text(encoding="utf-8")
    env = {name: "dummy" for name in __import__("re").findall(r"\$\{([A-Z0-9_]+)\}", text)}
    result = triage(
        "check-config", "--config", str(REPO / "config.example.toml"), cwd=tmp_path, env=env
    )
    assert result.returncode == 0, result.stderr
    assert "OK (14 connectors, 2 enabled" in result.stdout
    # As shipped, with nothing exported: fine, and it says Slack stays off until the tokens are.
    shipped = triage("check-config", "--config", str(REPO / "config.example.toml"), cwd=tmp_path)
    assert shipped.returncode == 0, shipped.stderr
    assert "note:" in shipped.stderr and "slack.bot_token" in shipped.stderr
    assert "SLACK_BOT_TOKEN is not set, so that part of Slack stays off" in shipped.stderr


@pytest.mark.model
def test_demo_runs_the_whole_flow_offline(tmp_path):
    out = tmp_path / "queue.html"
    result = triage("demo", "--out", str(out), "--db", str(tmp_path / "demo.db"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Open queue" in result.stdout
    assert "P1" in result.stdout
    html = out.read_text(encoding="utf-8")
    assert html.count('class="card P') >= 40
    assert "Draft reply" in html
    assert "<script" not in html.lower()

    # The queue command reads the same database, worst first.
    config = tmp_path / "config.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "demo.db"}"\n', encoding="utf-8")
    queue = triage("queue", "--config", str(config), "--limit", "5", cwd=tmp_path)
    assert queue.returncode == 0, queue.stderr
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in queue.stdout.splitlines()]
    priorities = [cells[1] for cells in rows if len(cells) > 2 and cells[1].startswith("P")]
    assert len(priorities) == 5 and priorities == sorted(priorities)
    assert all(cells[0].isdigit() for cells in rows if len(cells) > 2 and cells[1].startswith("P"))


@pytest.mark.model
def test_score_streams_jsonl_and_skips_bad_rows(tmp_path):
    source = tmp_path / "in.jsonl"
    write_jsonl(
        source,
        [
            {"id": "a", "text": "Pobraliście mi dwa razy opłatę za abonament, oddajcie pieniądze!"},
            {
                "id": "b",
                "text": "Merci beaucoup pour la livraison rapide, super service !",
                "rating": 5,
            },
            {"id": "c", "text": ""},
            {
                "id": "d",
                "text": "My account was hacked and someone ordered a phone",
                "followers": 25000,
            },
        ],
    )
    with source.open("a", encoding="utf-8") as handle:
        handle.write("{not json\n")
    out = tmp_path / "out.jsonl"
    result = triage("score", "--in", str(source), "--out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    records = {r["id"]: r for r in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
    assert set(records) == {"a", "b", "d"}
    assert records["a"]["language"] == "pl" and records["a"]["sentiment"] == "negative"
    assert records["b"]["language"] == "fr" and records["b"]["sentiment"] == "positive"
    assert records["d"]["priority"] == "P1" and "25k followers" in records["d"]["reasons"]
    for record in records.values():
        assert set(record) >= {
            "language",
            "sentiment",
            "probabilities",
            "complaint_probability",
            "urgency",
            "priority",
            "reasons",
        }
        assert abs(sum(record["probabilities"].values()) - 1) < 1e-3

    csv_source = tmp_path / "in.csv"
    csv_source.write_text(
        'id,text,rating\nx,"Still waiting for my refund, third week now",1\n', "utf-8"
    )
    result = triage("score", "--in", str(csv_source), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (record,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert record["id"] == "x" and "1-star review" in record["reasons"]


def _file_source_config(tmp_path: Path, texts: list[str]) -> Path:
    """A config reading `texts` from one JSONL file source into run.db, polled hourly."""
    write_jsonl(tmp_path / "in.jsonl", [{"id": str(i), "text": t} for i, t in enumerate(texts)])
    config = tmp_path / "config.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "run.db"}"\n'
        f'[[connectors]]\nname = "imports"\ntype = "file"\ninterval = "1h"\n'
        f'options = {{ path = "{tmp_path / "in.jsonl"}" }}\n',
        encoding="utf-8",
    )
    return config


@pytest.mark.model
def test_run_polls_on_schedule_and_stops_cleanly_on_sigterm(tmp_path):
    import signal
    import sqlite3
    import time

    config = _file_source_config(tmp_path, [f"Where is my order {i}?" for i in range(5)])
    environment = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "triage", "run", "--config", str(config)],
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        analyzed = 0
        while time.monotonic() < deadline and analyzed < 5 and process.poll() is None:
            time.sleep(1)
            if (tmp_path / "run.db").exists():
                with sqlite3.connect(tmp_path / "run.db") as db:
                    tables = {r[0] for r in db.execute("select name from sqlite_master")}
                    if "analysis" in tables:
                        analyzed = db.execute("select count(*) from analysis").fetchone()[0]
        assert analyzed == 5, process.stderr.read() if process.poll() is not None else "timed out"
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "received SIGTERM" in err and "scheduler stopped" in err


@pytest.mark.model
def test_a_second_ctrl_c_exits_at_once_and_the_next_start_loses_nothing(tmp_path):
    import signal
    import sqlite3

    config = _file_source_config(tmp_path, [f"My order {i} never came" for i in range(5)])
    process = subprocess.Popen(
        [sys.executable, "-m", "triage", "run", "--config", str(config)],
        cwd=tmp_path,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        seen = []
        assert process.stderr is not None
        # While the models load, the first Ctrl-C waits for the load; the second must not.
        for line in process.stderr:
            seen.append(line)
            if "loading the language, sentiment and intent models" in line:
                break
        process.send_signal(signal.SIGINT)
        # Two signals sent at once arrive as one: the second goes once the first is heard.
        for line in process.stderr:
            seen.append(line)
            if "received SIGINT" in line:
                break
        process.send_signal(signal.SIGINT)
        _out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + signal.SIGINT, "".join(seen) + err
    assert "received SIGINT again: exiting now" in err

    result = triage("once", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(tmp_path / "run.db") as db:
        assert db.execute("select count(*) from analysis").fetchone()[0] == 5


def test_connectors_test_dry_runs_and_list_shows_health(tmp_path):
    from triage.domain import NewMention
    from triage.store import make_engine, session_scope, upgrade
    from triage.store.queries import record_run, save_batch

    write_jsonl(tmp_path / "in.jsonl", [{"id": "1", "text": "Where is my parcel?"}, {"text": ""}])
    db = tmp_path / "t.db"
    config = tmp_path / "config.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{db}"\n'
        '[[connectors]]\nname = "imports"\ntype = "file"\noptions = { path = "in.jsonl" }\n'
        '[[connectors]]\nname = "feed"\ntype = "rss"\noptions = { url = "https://x.example/f" }\n',
        encoding="utf-8",
    )
    dry = triage("connectors", "test", "imports", "--config", str(config), cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert "imports: OK, first page has 1 mentions" in dry.stdout
    assert '"text": "Where is my parcel?"' in dry.stdout
    unknown = triage("connectors", "test", "nope", "--config", str(config), cwd=tmp_path)
    assert unknown.returncode == 2 and "no connector named 'nope'" in unknown.stderr

    engine = make_engine(f"sqlite:///{db}")
    upgrade(engine)
    with session_scope(engine) as session:
        mention = NewMention(source="imports", external_id="1", platform="file", text="hi")
        save_batch(session, source="imports", mentions=[mention], cursor=None)
        record_run(session, name="imports", error=None)
        record_run(session, name="feed", error="AuthError: check credentials")
    engine.dispose()
    listing = triage("connectors", "list", "--config", str(config), cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    rows = {
        cells[0]: cells
        for line in listing.stdout.splitlines()
        if len(cells := [c.strip() for c in line.split("│")[1:-1]]) == 9
    }
    assert rows["imports"][4] == "no: open + mark replied"
    assert rows["imports"][5] == "1" and rows["imports"][7] == "0"
    assert rows["feed"][5] == "0" and rows["feed"][7] == "1"
    assert rows["feed"][8] == "AuthError: check credentials"


def test_reply_refuses_a_source_without_replies_and_mark_replied_closes_it(tmp_path):
    from sqlmodel import select

    from triage.domain import NewMention
    from triage.store import AuditEvent, Case, CaseStatus, make_engine, session_scope, upgrade
    from triage.store.queries import save_batch

    db = tmp_path / "t.db"
    config = tmp_path / "config.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{db}"\n'
        '[[connectors]]\nname = "imports"\ntype = "file"\noptions = { path = "in.jsonl" }\n',
        encoding="utf-8",
    )
    engine = make_engine(f"sqlite:///{db}")
    upgrade(engine)
    with session_scope(engine) as session:
        mention = NewMention(source="imports", external_id="1", platform="file", text="help")
        save_batch(session, source="imports", mentions=[mention], cursor=None)
    with session_scope(engine) as session:
        session.add(Case(mention_id=1, status=CaseStatus.POSTED))

    refused = triage(
        "reply", "1", "--as", "ana", "--text", "Sorry!", "--config", str(config), cwd=tmp_path
    )
    assert refused.returncode == 1
    assert "not sent: file has no API for replies" in refused.stderr
    no_draft = triage("reply", "1", "--as", "ana", "--config", str(config), cwd=tmp_path)
    assert no_draft.returncode == 2 and "has no draft" in no_draft.stderr
    unknown = triage("reply", "99999", "--as", "ana", "--config", str(config), cwd=tmp_path)
    assert unknown.returncode == 2 and "no mention 99999" in unknown.stderr

    marked = triage(
        "mark-replied",
        "1",
        "--as",
        "ana",
        "--url",
        "https://x.example/a",
        "--config",
        str(config),
        cwd=tmp_path,
    )
    assert marked.returncode == 0, marked.stderr
    again = triage("mark-replied", "1", "--as", "ana", "--config", str(config), cwd=tmp_path)
    assert again.returncode == 1 and "already marked replied" in again.stderr
    with session_scope(engine) as session:
        case = session.exec(select(Case)).one()
        actions = [event.action for event in session.exec(select(AuditEvent))]
    engine.dispose()
    assert case.status == CaseStatus.REPLIED and case.reply_url == "https://x.example/a"
    assert actions == ["reply_failed", "mark_replied"]


def test_serve_receives_a_signed_webhook_over_real_http(tmp_path):
    import socket
    import time as clock

    import httpx

    from connectors.webhook import sign

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    db = tmp_path / "t.db"
    config = tmp_path / "config.toml"
    secret = "0123456789abcdef0123"
    config.write_text(
        f'[database]\nurl = "sqlite:///{db}"\n'
        '[[connectors]]\nname = "zap"\ntype = "webhook"\n'
        f'credentials = {{ secret = "{secret}" }}\n',
        encoding="utf-8",
    )
    environment = {**os.environ, "HF_HUB_OFFLINE": "1"}
    environment.pop("TRIAGE_CONFIG", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "triage", "serve", "--port", str(port), "--config", str(config)],
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).text == "ok":
                    break
            except httpx.TransportError:
                clock.sleep(0.2)
        body = json.dumps({"id": "m-1", "text": "Charged twice!", "rating": 1}).encode()
        stamp = str(int(clock.time()))
        headers = {
            "X-Triage-Timestamp": stamp,
            "X-Triage-Signature": "sha256=" + sign(secret.encode(), stamp, body),
            "Content-Type": "application/json",
        }
        answer = httpx.post(f"{base}/webhooks/zap", content=body, headers=headers, timeout=10)
        assert answer.status_code == 202, answer.text
        assert answer.json() == {"received": 1, "new": 1}
        forged = httpx.post(
            f"{base}/webhooks/zap", content=body, headers={**headers, "X-Triage-Signature": "x"}
        )
        assert forged.status_code == 401
    finally:
        server.terminate()
        server.wait(timeout=30)
    listing = triage("connectors", "list", "--config", str(config), cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    row = next(line for line in listing.stdout.splitlines() if line.startswith("│ zap"))
    assert "no: open + mark replied" in row and "│ 1 " in row


@pytest.mark.parametrize("limit", ["0", "-5"])
def test_queue_refuses_a_limit_below_one(tmp_path, limit):
    result = triage("queue", "--limit", limit, cwd=tmp_path)
    assert result.returncode == 2
    assert "--limit" in result.stderr and "1" in result.stderr


def test_a_users_config_toml_is_never_committed():
    ignored = (REPO / ".gitignore").read_text(encoding="utf-8").split()
    assert "config.toml" in ignored


def test_config_and_verbose_work_before_or_after_the_command(tmp_path):
    config = tmp_path / "elsewhere.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "x.db"}"\n', encoding="utf-8")
    for args in (
        ("--config", str(config), "check-config"),
        ("check-config", "--config", str(config)),
        ("-v", "check-config", "-c", str(config)),
        ("check-config", "-v", "-c", str(config)),
    ):
        result = triage(*args, cwd=tmp_path)
        assert result.returncode == 0, (args, result.stderr)
        assert "elsewhere.toml" in result.stdout + result.stderr, args


@pytest.mark.model
def test_once_exits_1_when_a_source_fails_and_still_stores_the_others(tmp_path):
    good = tmp_path / "good.jsonl"
    write_jsonl(good, [{"id": "g1", "text": "Your app keeps crashing when I pay, please help"}])
    config = tmp_path / "config.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "o.db"}"\n'
        f'[[connectors]]\nname = "good"\ntype = "file"\noptions = {{ path = "{good}" }}\n'
        f'[[connectors]]\nname = "gone"\ntype = "file"\n'
        f'options = {{ path = "{tmp_path / "missing.jsonl"}" }}\n',
        encoding="utf-8",
    )
    result = triage("once", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "gone: failed" in result.stderr
    assert "good: 1 new mentions" in result.stderr


def test_check_config_says_when_a_file_source_is_missing(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(
        '[[connectors]]\nname = "exports"\ntype = "file"\noptions = { path = "nope.jsonl" }\n'
        '[[connectors]]\nname = "later"\ntype = "file"\nenabled = false\n'
        'options = { path = "later.jsonl" }\n',
        encoding="utf-8",
    )
    result = triage("check-config", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert f"connectors[exports].options.path: {tmp_path / 'nope.jsonl'} does not exist" in (
        result.stderr
    )
    assert "later" not in result.stderr  # a disabled source may wait for its file


def test_a_database_that_cannot_be_opened_is_one_clear_line_not_a_traceback(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(
        '[database]\nurl = "postgresql://nobody:secret@127.0.0.1:1/none"\n', encoding="utf-8"
    )
    checked = triage("check-config", "--config", str(config), cwd=tmp_path)
    assert checked.returncode == 2
    assert "database.url: cannot open postgresql://nobody:***@127.0.0.1:1/none" in checked.stderr
    queue = triage("queue", "--config", str(config), cwd=tmp_path)
    assert queue.returncode == 2
    assert "Traceback" not in queue.stderr and "secret" not in queue.stderr
    assert "database.url: cannot open" in queue.stderr

    config.write_text('[database]\nurl = "sqlite://triage.db"\n', encoding="utf-8")
    slashes = triage("check-config", "--config", str(config), cwd=tmp_path)
    assert slashes.returncode == 2 and "three slashes" in slashes.stderr


def test_the_scheduler_internals_stay_out_of_the_log_unless_verbose():
    import logging

    from triage.cli import _setup_logging

    scheduler = logging.getLogger("apscheduler.scheduler")
    _setup_logging(False)
    assert not scheduler.isEnabledFor(logging.INFO)  # "Adding job tentatively"
    _setup_logging(True)
    assert scheduler.isEnabledFor(logging.DEBUG)
    _setup_logging(False)


def test_score_without_records_says_so_and_loads_no_model(tmp_path):
    # A model that cannot load: the command would fail if it tried.
    config = tmp_path / "config.toml"
    config.write_text('[models]\nencoder = "nobody/no-such-encoder"\n', encoding="utf-8")
    (tmp_path / "header.csv").write_text("id,text\n", encoding="utf-8")
    (tmp_path / "empty.jsonl").write_text("", encoding="utf-8")
    for name in ("header.csv", "empty.jsonl"):
        out = tmp_path / f"{name}.out"
        result = triage("score", "--in", name, "--out", str(out), "-c", str(config), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stderr.strip() == (
            f"{name}: no records to score (the file is empty or has only a header)"
        )
        assert out.read_text(encoding="utf-8") == ""
    (tmp_path / "export.txt").write_text("id,text\na,hello\n", encoding="utf-8")
    unknown = triage("score", "--in", "export.txt", "-c", str(config), cwd=tmp_path)
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == (
        "export.txt: cannot tell the format from its name; expected .jsonl, .ndjson, .csv"
    )


def test_a_sqlite_file_in_a_missing_directory_is_one_line_and_creates_nothing(tmp_path):
    config = tmp_path / "config.toml"
    url = f"sqlite:///{tmp_path / 'no' / 'such' / 'triage.db'}"
    config.write_text(f'[database]\nurl = "{url}"\n', encoding="utf-8")
    expected = (
        f"{config}: database.url: cannot open {url}: the directory {tmp_path / 'no' / 'such'} "
        "does not exist; create it or correct the path"
    )
    for command in ("check-config", "queue", "db upgrade"):
        result = triage(*command.split(), "--config", str(config), cwd=tmp_path)
        assert result.returncode == 2
        assert result.stderr.strip() == expected
    assert not (tmp_path / "no").exists()
