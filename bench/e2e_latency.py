"""Poll-to-card latency per priority under load, with Slack's real pace, end to end.

A writer appends mentions to a JSONL file at a steady rate (hand-written mentions of other brands,
by default 2% that a care lead ranks P1, 8% P2, 30% P3, 60% P4: a busy day, not a demo); `triage
run` (a real process, SQLite, the real model) polls it every second and posts to a local fake
Slack Web API that answers 429 to a second post in the same channel within a second. For each
case: the time from the mention being written to its card (or the digest that holds it)
reaching Slack, p50/p95 per priority, and how many cases got neither. The clock starts once
`triage run` has loaded its models (a few calm warm-up mentions make it). Run by hand, idle machine:

    .venv/bin/python bench/e2e_latency.py --rate 5 --seconds 120
    .venv/bin/python bench/e2e_latency.py --rate 20 --seconds 120
    .venv/bin/python bench/e2e_latency.py --rate 20 --seconds 120 --channels 3
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.slack.fake_slack import start_fake_slack  # noqa: E402

# Hand-written mentions of many brands and sectors in seven languages, each with the priority a
# care lead gave it: the stream draws from them in the mix asked for.
MENTIONS = ROOT / "models" / "data" / "intents" / "validation"
CARE = "C0BENCHCARE"
TEAMS = ["C0BENCHPL01", "C0BENCHAPP1"]
LANGUAGE_ROUTE = ("pl", "lv")


def write_config(folder: Path, api_url: str, feed: Path, channels: int) -> Path:
    routes = ""
    if channels >= 2:
        routes += (
            f'\n[[slack.routes]]\nchannel = "{TEAMS[0]}"\nlanguages = {list(LANGUAGE_ROUTE)}\n'
        )
    if channels >= 3:
        routes += f'\n[[slack.routes]]\nchannel = "{TEAMS[1]}"\nlanguages = ["de", "fr"]\n'
    path = folder / "config.toml"
    path.write_text(
        f"""
[database]
url = "sqlite:///{folder / "bench.db"}"

[slack]
bot_token = "xoxb-bench"
care_channel = "{CARE}"
api_url = "{api_url}"
post_interval = "1s"
{routes}
[[connectors]]
name = "feed"
type = "file"
interval = "1s"
options = {{ path = "{feed}" }}
""",
        encoding="utf-8",
    )
    return path


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=5.0, help="mentions per second")
    parser.add_argument("--seconds", type=float, default=120.0, help="how long to write")
    parser.add_argument("--drain", type=float, default=60.0, help="seconds to wait after")
    parser.add_argument("--channels", type=int, default=1, choices=(1, 2, 3))
    parser.add_argument(
        "--mix",
        type=float,
        nargs=4,
        default=(0.02, 0.08, 0.3, 0.6),
        metavar=("P1", "P2", "P3", "P4"),
        help="shares of mentions a care lead ranked P1..P4 (default 2%% 8%% 30%% 60%%)",
    )
    args = parser.parse_args()

    pools: dict[str, list[dict]] = {}
    for path in sorted(MENTIONS.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                pools.setdefault(row.get("priority") or "P4", []).append(
                    {"platform": "x", "text": row["text"], "lang": row.get("lang")}
                )
    mix = dict(zip(("P1", "P2", "P3", "P4"), args.mix, strict=True))
    # A fixed, shuffled schedule of priorities with the mix's shares.
    schedule = [band for band, share in mix.items() for _ in range(round(share * 1000))]
    random.Random(7).shuffle(schedule)
    server, api_url = start_fake_slack()
    server.state.min_post_interval = 1.0
    folder = Path(tempfile.mkdtemp(prefix="triage-e2e-"))
    feed = folder / "feed.jsonl"
    feed.write_text("", encoding="utf-8")
    config = write_config(folder, api_url, feed, args.channels)
    env = {**os.environ, "TRIAGE_CONFIG": str(config)}
    run = subprocess.Popen(
        [sys.executable, "-m", "triage", "run"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(folder / "run.log", "w"),  # noqa: SIM115
    )
    written: dict[str, float] = {}
    try:
        # Steady state, not a cold start: a few calm mentions make `triage run` load its models
        # (they load at the first poll that finds mentions), and the clock starts after that.
        with feed.open("a", encoding="utf-8") as out:
            for index, row in enumerate(pools["P4"][:5]):
                warm = {**row, "id": f"warm-{index}"}
                out.write(json.dumps(warm, ensure_ascii=False) + "\n")
        deadline = time.monotonic() + 300
        while "models loaded" not in (folder / "run.log").read_text(encoding="utf-8"):
            if time.monotonic() > deadline or run.poll() is not None:
                raise SystemExit(f"triage run did not load its models: see {folder / 'run.log'}")
            time.sleep(0.5)
        time.sleep(2)
        started = time.monotonic()
        n = 0
        with feed.open("a", encoding="utf-8") as out:
            while time.monotonic() - started < args.seconds:
                due = int((time.monotonic() - started) * args.rate)
                while n < due:
                    pool = pools[schedule[n % len(schedule)]]
                    row = dict(pool[(n // len(schedule) + n) % len(pool)])
                    row["id"] = f"e2e-{n}"
                    row["created_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                    out.write(json.dumps(row, ensure_ascii=False) + "\n")
                    out.flush()
                    written[row["id"]] = time.time()
                    n += 1
                time.sleep(0.05)
        time.sleep(args.drain)
    finally:
        run.send_signal(signal.SIGTERM)
        run.wait(timeout=60)
        server.shutdown()

    posted: dict[int, float] = {}  # case id -> when its card or digest reached Slack
    answered = [c for c in server.state.calls if c.method == "chat.postMessage" and c.status == 200]
    limited = sum(c.status == 429 for c in server.state.calls)
    for call in answered:
        key = str(((call.body.get("metadata") or {}).get("event_payload") or {}).get("key", ""))
        if key.startswith("card:") and key.count(":") == 1:
            posted.setdefault(int(key.split(":")[1]), call.at)
    db = sqlite3.connect(folder / "bench.db")
    rows = db.execute(
        "select c.id, m.external_id, a.priority, o.status, o.digest, c.created_at from care_case c "
        "join mention m on m.id = c.mention_id join analysis a on a.mention_id = m.id "
        "left join slack_outbox o on o.key = 'card:' || c.id"
    ).fetchall()
    query = "select key from slack_outbox where key like 'digest:%' or key like 'stack:%'"
    groups = {key for (key,) in db.execute(query)}
    sent_group_at: dict[str, float] = {}
    for call in answered:
        key = str(((call.body.get("metadata") or {}).get("event_payload") or {}).get("key", ""))
        if key in groups:
            sent_group_at.setdefault(key, call.at)
    latency: dict[str, list[float]] = {}
    waiting = in_digest = stacked = 0
    # A case with no outbox row at all would be lost: neither a card nor a digest line.
    lost = sum(status is None for *_, status, _group, _opened in rows)
    # From the case being opened (analysis done) to Slack: the notify stage's own share.
    after_open: dict[str, list[float]] = {}
    for case_id, external_id, priority, _status, group, opened in rows:
        at = posted.get(case_id)
        if at is None and group in sent_group_at:
            at = sent_group_at[group]
            if group.startswith("stack:"):
                stacked += 1
            else:
                in_digest += 1
        if at is None or external_id not in written:
            waiting += external_id in written
            continue
        latency.setdefault(priority, []).append(at - written[external_id])
        opened_at = datetime.fromisoformat(opened).replace(tzinfo=UTC).timestamp()
        after_open.setdefault(priority, []).append(at - opened_at)
    per_channel: dict[str, list[float]] = {}
    for call in answered:
        per_channel.setdefault(str(call.body.get("channel")), []).append(call.at)
    result = {
        "rate": args.rate,
        "seconds": args.seconds,
        "channels": args.channels,
        "mix": mix,
        "mentions": len(written),
        "cases": len(rows),
        "cards": len(posted),
        "stacked_cards": stacked,
        "stacks": sum(key.startswith("stack:") for key in sent_group_at),
        "in_digests": in_digest,
        "digests": sum(key.startswith("digest:") for key in sent_group_at),
        "waiting_at_end": waiting,  # queued (card or digest) when the run stopped
        "lost": lost,
        "answered_429": limited,
        "latency_s": {
            band: {
                "n": len(values),
                "p50": round(statistics.median(values), 1),
                "p95": round(percentile(values, 0.95), 1),
            }
            for band, values in sorted(latency.items())
        },
        "case_opened_to_slack_s": {
            band: {
                "p50": round(statistics.median(values), 1),
                "p95": round(percentile(values, 0.95), 1),
            }
            for band, values in sorted(after_open.items())
        },
        "max_posts_per_channel_in_any_second": {
            channel: max(sum(1 for other in times if 0 <= other - at < 1.0) for at in times)
            for channel, times in per_channel.items()
        },
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
