"""The `triage` command: demo, once, run, queue, reply, score, check-config, db, connectors."""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Annotated, Any, TextIO

import sqlalchemy as sa
import typer
from rich.console import Console
from rich.logging import RichHandler

from triage import __version__
from triage.config import ConfigError, ConnectorSettings, Settings, default_settings, load_settings

app = typer.Typer(
    help="triage: brand mentions ranked by urgency, with reply drafts, for social-care teams.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
connectors_app = typer.Typer(help="Inspect connectors.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(connectors_app, name="connectors")

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="config.toml to read (default: $TRIAGE_CONFIG, else ./config.toml, else built-in)",
        envvar="TRIAGE_CONFIG",
    ),
]

log = logging.getLogger("triage")
# How often cards, SLA reminders and the Slack outbox are looked at.
NOTIFY_SECONDS = 10.0
# Scheduled reports are checked every minute; each slot is posted once (triage.reports.post).
REPORT_CHECK_SECONDS = 60.0
# Spikes are judged per complete hour; a check every 5 minutes alerts within minutes of it.
SPIKE_CHECK_SECONDS = 300.0
# How often `triage run` prunes old payloads ([store] keep_raw_days).
PRUNE_SECONDS = 3600.0


def _console(file: TextIO | None = None) -> Console:
    out = file or sys.stdout
    # A pipe or CI log still deserves a readable table, not 80 cramped columns.
    width = None if out.isatty() else int(os.environ.get("COLUMNS", 160))
    return Console(file=out, width=width, soft_wrap=False)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        datefmt="[%X]",
        handlers=[RichHandler(console=Console(stderr=True), show_path=False)],
        force=True,
    )
    for noisy in ("httpx", "httpcore", "apscheduler.executors", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Its INFO lines ("Adding job tentatively") are internals, not progress: only with -v.
    logging.getLogger("apscheduler.scheduler").setLevel(
        logging.DEBUG if verbose else logging.WARNING
    )


# `triage --config X COMMAND`: the path given before the command, for commands given none.
_config_before_command: Path | None = None
# Options a user may put after the command although they belong before it.
_GLOBAL_FLAGS = ("--verbose", "-v")


def hoist_global_flags(args: list[str]) -> list[str]:
    """`triage queue -v` as `triage -v queue`; nothing after a `--` is touched."""
    end = args.index("--") if "--" in args else len(args)
    flags = [arg for arg in args[:end] if arg in _GLOBAL_FLAGS]
    return flags + [arg for arg in args[:end] if arg not in _GLOBAL_FLAGS] + args[end:]


def entry() -> None:
    """The `triage` command."""
    app(args=hoist_global_flags(sys.argv[1:]), prog_name="triage")


def _settings(config: Path | None) -> Settings:
    try:
        return load_settings(config if config is not None else _config_before_command)
    except ConfigError as error:
        for problem in error.problems:
            typer.echo(problem, err=True)
        raise typer.Exit(2) from None


def _open_store(settings: Settings) -> sa.Engine:
    from triage.store import make_engine, upgrade

    try:
        engine = make_engine(settings.database.url)
        upgrade(engine)
    except (sa.exc.SQLAlchemyError, OSError) as exc:
        typer.echo(f"{settings.source}: database.url: {_no_database(settings, exc)}", err=True)
        raise typer.Exit(2) from None
    return engine


def _no_database(settings: Settings, exc: Exception) -> str:
    """One line on why the database cannot be opened: the driver's first line, no password."""
    url = sa.engine.make_url(settings.database.url).render_as_string(hide_password=True)
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    return f"cannot open {url}: {reason}"


def _check_database(settings: Settings) -> list[str]:
    """Whether the database answers; for SQLite, whether its folder exists (the file is created
    on first use, not by looking)."""
    from triage.store import make_engine

    sqlite = sa.engine.make_url(settings.database.url).get_backend_name() == "sqlite"
    try:
        if sqlite:
            make_engine(settings.database.url).dispose()
        else:
            engine = make_engine(settings.database.url, connect_args={"connect_timeout": 5})
            with engine.connect():
                pass
            engine.dispose()
    except (sa.exc.SQLAlchemyError, OSError) as exc:
        return [f"{settings.source}: database.url: {_no_database(settings, exc)}"]
    return []


def _check_connector_settings(settings: Settings) -> list[str]:
    from connectors.registry import check_connectors

    return [f"{settings.source}: {problem}" for problem in check_connectors(settings.connectors)]


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    config: ConfigOption = None,
) -> None:
    global _config_before_command
    _config_before_command = config
    _setup_logging(verbose)


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


@app.command("check-config")
def check_config(config: ConfigOption = None) -> None:
    """Validate the configuration; exit 2 with one line per problem."""
    settings = _settings(config)
    problems = _check_connector_settings(settings)
    problems += _check_database(settings)
    for notice in settings.notices:
        typer.echo(f"note: {notice}", err=True)
    if problems:
        for problem in problems:
            typer.echo(problem, err=True)
        raise typer.Exit(2)
    enabled = settings.enabled_connectors()
    typer.echo(
        f"{settings.source}: OK ({len(settings.connectors)} connectors, {len(enabled)} enabled; "
        f"database {settings.database.url.split('://')[0]})"
    )


@db_app.command("upgrade")
def db_upgrade(config: ConfigOption = None) -> None:
    """Apply database migrations (also done on every start)."""
    from triage.store.engine import current_revision

    settings = _settings(config)
    engine = _open_store(settings)
    typer.echo(f"database at revision {current_revision(engine)}")


@connectors_app.command("list")
def connectors_list(config: ConfigOption = None) -> None:
    """Configured connectors and their health."""
    from rich.table import Table
    from rich.text import Text

    from triage.store import session_scope
    from triage.store.queries import connector_states, mention_counts

    settings = _settings(config)
    engine = _open_store(settings)
    with session_scope(engine) as session:
        states = connector_states(session)
        counts = mention_counts(session)
    table = Table(title="Connectors")
    columns = ("name", "type", "enabled", "interval", "replies", "mentions", "last success")
    for column in (*columns, "failures", "last error"):
        table.add_column(column)
    for connector in settings.connectors:
        state = states.get(connector.name)
        table.add_row(
            connector.name,
            connector.type,
            "yes" if connector.enabled else "no",
            f"{connector.interval:.0f}s",
            _reply_support(connector),
            str(counts.get(connector.name, 0)),
            f"{state.last_success_at:%Y-%m-%d %H:%M}" if state and state.last_success_at else "-",
            str(state.consecutive_failures) if state else "0",
            # A platform's error text is outside input: never read as Rich markup.
            Text((state.last_error or "")[:80] if state else ""),
        )
    _console().print(table)


def _reply_support(connector: ConnectorSettings) -> str:
    """yes, no (open and mark replied), or what replying still needs."""
    from connectors.registry import build_connector

    try:
        with build_connector(connector) as source:
            if source.reply_rules is None:
                return "no: open + mark replied"
            missing = source.reply_unavailable()
    except ConfigError:
        return "-"
    return "yes" if missing is None else "needs credentials"


@connectors_app.command("test")
def connectors_test(
    name: Annotated[str, typer.Argument(help="The connector's name in config.toml.")],
    config: ConfigOption = None,
    show: Annotated[int, typer.Option(help="How many mentions to print.")] = 5,
) -> None:
    """Dry-run one connector: fetch its first page from scratch, store nothing."""
    from connectors.registry import build_connector

    settings = _settings(config)
    connector = _connector_for(settings, name)
    problems = _check_connector_settings(settings)
    if problems:
        for problem in problems:
            typer.echo(problem, err=True)
        raise typer.Exit(2)
    try:
        with build_connector(connector) as source:
            batch = next(iter(source.fetch(None)), None)
    except Exception as exc:
        typer.echo(f"{name}: failed: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1) from None
    mentions = batch.mentions if batch else []
    typer.echo(f"{name}: OK, first page has {len(mentions)} mentions")
    for mention in mentions[:show]:
        shown = {
            "id": mention.external_id,
            "created_at": mention.created_at.isoformat() if mention.created_at else None,
            "author": mention.author_handle or mention.author_name,
            "reach": mention.author_reach,
            "rating": mention.rating,
            "url": mention.url,
            "title": mention.title,
            "text": mention.text[:200],
        }
        typer.echo(
            json.dumps(
                {key: value for key, value in shown.items() if value is not None},
                ensure_ascii=False,
            )
        )


def _report_run(run: Any) -> None:
    for ingest in run.ingests:
        if ingest.skipped:
            log.info("%s: paused, skipped", ingest.connector)
        elif ingest.error:
            log.error("%s: failed: %s", ingest.connector, ingest.error)
        else:
            log.info("%s: %d new mentions", ingest.connector, ingest.new)
    process = run.process
    log.info(
        "analyzed %d mentions, opened %d cases, wrote %d drafts",
        process.analyzed,
        process.cases,
        process.drafts,
    )


@app.command()
def once(config: ConfigOption = None) -> None:
    """Poll every enabled connector once, analyze, draft, and exit."""
    from triage.pipeline import Pipeline

    settings = _settings(config)
    engine = _open_store(settings)
    run = Pipeline(settings, engine).run_once()
    _report_run(run)
    # A failing source never stops the others, but a script running this must hear of it.
    if any(ingest.error for ingest in run.ingests):
        raise typer.Exit(1)


@app.command()
def run(config: ConfigOption = None) -> None:
    """Poll connectors on their schedules and run the Slack bot until SIGINT or SIGTERM."""
    from triage.pipeline import Pipeline
    from triage.reports.post import register as register_reports
    from triage.reports.post import reports_cycle
    from triage.reports.spikes import spikes_cycle
    from triage.scheduler import ConnectorScheduler
    from triage.slack.bot import build_bot
    from triage.slack.transport import run_socket_mode

    settings = _settings(config)
    for notice in settings.notices:
        log.warning(notice)
    engine = _open_store(settings)
    if not settings.enabled_connectors():
        typer.echo(f"{settings.source}: no enabled connectors; nothing to run", err=True)
        raise typer.Exit(2)
    pipeline = Pipeline(settings, engine)
    scheduler = ConnectorScheduler(pipeline)
    if settings.store.keep_raw_days:
        scheduler.every(PRUNE_SECONDS, "prune", pipeline.prune)
    socket = None
    bot = build_bot(settings, engine)
    if bot is None:
        log.info("Slack is not configured ([slack] bot_token and care_channel): no cards")
    else:
        # Each cycle posts cards as cases come for NOTIFY_SECONDS; the job is due every second,
        # so the next cycle starts within a second of the last one ending.
        cycle = partial(bot.notifier.cycle, budget=NOTIFY_SECONDS, stop=scheduler.stop_event)
        scheduler.every(1.0, "slack", cycle)
        register_reports(bot)
        scheduler.every(
            REPORT_CHECK_SECONDS, "reports", lambda: reports_cycle(engine, settings, bot.client)
        )
        scheduler.every(
            SPIKE_CHECK_SECONDS, "spikes", lambda: spikes_cycle(engine, settings, bot.client)
        )
        if settings.slack.app_token:
            socket = run_socket_mode(bot, settings.slack.app_token, bot.client)
        else:
            log.info("no [slack] app_token: run `triage serve` for Slack's buttons and commands")
    try:
        scheduler.run_forever()
    finally:
        if socket is not None:
            socket.close()


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    config: ConfigOption = None,
) -> None:
    """Receive webhooks (POST /webhooks/NAME) and Slack's requests (POST /slack/events)."""
    import uvicorn

    from triage.server import create_app
    from triage.slack.bot import build_bot

    settings = _settings(config)
    engine = _open_store(settings)
    bot = build_bot(settings, engine)
    if bot is not None:
        from triage.reports.post import register as register_reports

        register_reports(bot)
    if bot is not None and not settings.slack.signing_secret:
        log.warning("no [slack] signing_secret: POST /slack/events is off")
    uvicorn.run(create_app(settings, engine, bot=bot), host=host, port=port, log_level="info")


@app.command()
def queue(
    config: ConfigOption = None,
    limit: Annotated[int, typer.Option(help="How many cases to show.", min=1)] = 30,
) -> None:
    """Print the open queue, worst first."""
    from triage.views import load_queue, open_count, print_queue

    settings = _settings(config)
    engine = _open_store(settings)
    print_queue(load_queue(engine, limit=limit), _console(), total=open_count(engine))


@app.command()
def report(
    out: Annotated[Path, typer.Option(help="The file to write (a folder for png).")],
    since: Annotated[
        str | None, typer.Option(help="Start, e.g. 2026-11-01 (default: 7 days before --until).")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="End, exclusive, e.g. 2026-11-08 (default: now).")
    ] = None,
    format: Annotated[str, typer.Option("--format", help="html, csv or png.")] = "html",
    config: ConfigOption = None,
) -> None:
    """Write the sentiment report for a period: HTML with charts, the CSV rows, or the PNGs."""
    from triage.clock import utcnow
    from triage.reports import build_report

    if format not in ("html", "csv", "png"):
        raise typer.BadParameter(f"{format!r}: expected html, csv or png", param_hint="--format")
    end = _moment(until, "--until") if until else utcnow()
    start = _moment(since, "--since") if since else end - timedelta(days=7)
    settings = _settings(config)
    engine = _open_store(settings)
    try:
        written = build_report(engine, settings, start, end).write(out, format)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since/--until") from None
    typer.echo("\n".join(f"Wrote {path}" for path in written))


def _moment(value: str, option: str) -> datetime:
    """A date (midnight UTC) or an ISO date-time; naive times are UTC."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not a date such as 2026-11-01", param_hint=option
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@contextmanager
def _demo_database(db: Path | None) -> Iterator[str]:
    if db is not None:
        yield f"sqlite:///{db}"
        return
    with tempfile.TemporaryDirectory(prefix="triage-demo-") as directory:
        yield f"sqlite:///{Path(directory) / 'demo.db'}"


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Where to write the HTML queue.")] = Path("demo.html"),
    db: Annotated[
        Path | None, typer.Option(help="Keep the demo database here (default: a throwaway file).")
    ] = None,
    limit: Annotated[int, typer.Option(help="How many cases to print.", min=1)] = 25,
) -> None:
    """Run the whole flow on the bundled sample mentions: no credentials, no network."""
    from triage.pipeline import Pipeline
    from triage.views import load_queue, open_count, print_queue, render_queue_html

    with _demo_database(db) as url:
        settings = default_settings(url)
        engine = _open_store(settings)
        run = Pipeline(settings, engine).run_once()
        _report_run(run)
        rows = load_queue(engine, limit=1000)
        print_queue(rows[:limit], _console(), total=open_count(engine))
        out.write_text(render_queue_html(rows, brand=settings.brand.name), encoding="utf-8")
        engine.dispose()
    typer.echo(f"Wrote {out} ({len(rows)} open cases with drafts).")


@app.command()
def score(
    in_: Annotated[Path, typer.Option("--in", help="JSONL or CSV with a text column.")],
    out: Annotated[
        Path | None, typer.Option("--out", help="JSONL to write (default: standard output).")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Score a file of texts: language, sentiment, complaint, urgency, priority and reasons."""
    from connectors.file import FORMAT_BY_SUFFIX
    from triage.scoring import score_file

    settings = _settings(config)
    if not in_.exists():
        typer.echo(f"{in_}: file not found", err=True)
        raise typer.Exit(2)
    if in_.suffix.lower() not in FORMAT_BY_SUFFIX:
        known = ", ".join(FORMAT_BY_SUFFIX)
        typer.echo(f"{in_}: cannot tell the format from its name; expected {known}", err=True)
        raise typer.Exit(2)
    with open(out, "w", encoding="utf-8") if out else _stdout() as sink:
        counts = score_file(settings, in_, sink, progress=sys.stderr.isatty())
    if not counts.records:
        typer.echo(f"{in_}: no records to score (the file is empty or has only a header)", err=True)
        return
    log.info("scored %d of %d records (%d skipped)", counts.scored, counts.records, counts.skipped)


@app.command("eval")
def evaluate_models(
    benchmarks: Annotated[
        Path, typer.Option(help="The folder of public test sets (never trained on).")
    ] = Path("../shared/benchmarks"),
    out: Annotated[
        Path | None, typer.Option(help="Write the model card here (e.g. docs/model-card.md).")
    ] = None,
    limit: Annotated[
        int | None, typer.Option(help="Only the first N rows per language (a quick check).")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Measure the models on every benchmark and print (or write) the model card."""
    from triage.analyze import Analyzer
    from triage.evaluate import evaluate, model_card

    settings = _settings(config)
    try:
        report = evaluate(Analyzer(settings), benchmarks, limit=limit)
    except FileNotFoundError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    card = model_card(report)
    if out is None:
        typer.echo(card)
    else:
        out.write_text(card, encoding="utf-8")
        typer.echo(f"wrote {out}")


ActorOption = Annotated[
    str,
    typer.Option("--as", help="Who is acting, recorded in the audit log (a name or Slack id)."),
]


def _replies(settings: Settings, engine: sa.Engine) -> Any:
    from connectors.registry import build_connector
    from triage.act import Replies, ReplyRefused

    def connector_for(source: str) -> Any:
        try:
            return build_connector(settings.connector(source))
        except KeyError:
            raise ReplyRefused(
                f"{settings.source}: the mention came from connector {source!r}, which is no "
                "longer configured; open the mention and mark it replied"
            ) from None

    return Replies(engine, connector_for)


@app.command()
def reply(
    mention_id: Annotated[int, typer.Argument(help="The mention's id (the ID column of queue).")],
    actor: ActorOption,
    text: Annotated[
        str | None, typer.Option("--text", help="The reply; default: the mention's draft.")
    ] = None,
    force: Annotated[
        bool,
        typer.Option(help="Send again although an earlier attempt may have gone out."),
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Send the reply to one mention on its platform; a repeat never posts twice."""
    from sqlmodel import select

    from connectors.reply import ReplyNotAllowed
    from triage.act import ReplyRefused
    from triage.drafts.render import sign
    from triage.http import ConnectorError
    from triage.store import Draft, Mention, session_scope

    settings = _settings(config)
    engine = _open_store(settings)
    with session_scope(engine) as session:
        known = session.get(Mention, mention_id) is not None
        draft = session.exec(select(Draft).where(Draft.mention_id == mention_id)).first()
    if not known:
        typer.echo(f"no mention {mention_id}; `triage queue` lists the open ones", err=True)
        raise typer.Exit(2)
    if text is None:
        if draft is None:
            typer.echo(f"mention {mention_id} has no draft; give the reply with --text", err=True)
            raise typer.Exit(2)
        text = draft.text
    try:
        text = sign(text, settings.brand.sign_off, actor, settings.brand.name)
        result = _replies(settings, engine).send(mention_id, text, actor=actor, force=force)
    except ReplyRefused as exc:
        typer.echo(f"not sent: {exc}", err=True)
        raise typer.Exit(1) from None
    except ReplyNotAllowed as exc:
        typer.echo(f"not sent: {exc}", err=True)
        raise typer.Exit(1) from None
    except ConnectorError as exc:
        outcome = "may have gone out (run again to check)" if exc.uncertain else "not sent"
        typer.echo(f"{outcome}: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1) from None
    if result.already_sent:
        typer.echo(f"already sent by {result.sent_by}: {result.url or result.external_id}")
    else:
        typer.echo(f"sent: {result.url or result.external_id}")


@app.command("mark-replied")
def mark_replied(
    mention_id: Annotated[int, typer.Argument(help="The mention's id (the ID column of queue).")],
    actor: ActorOption,
    url: Annotated[str | None, typer.Option(help="Where the answer was posted.")] = None,
    config: ConfigOption = None,
) -> None:
    """Close a case that was answered outside triage (sources without a reply API)."""
    from triage.act import ReplyRefused

    settings = _settings(config)
    engine = _open_store(settings)
    try:
        _replies(settings, engine).mark_replied(mention_id, actor=actor, url=url)
    except ReplyRefused as exc:
        typer.echo(f"not changed: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"mention {mention_id} marked replied")


@contextmanager
def _stdout() -> Iterator[TextIO]:
    yield sys.stdout


def _connector_for(settings: Settings, name: str) -> ConnectorSettings:
    try:
        return settings.connector(name)
    except KeyError:
        known = ", ".join(c.name for c in settings.connectors) or "none"
        typer.echo(
            f"{settings.source}: no connector named {name!r} (configured: {known})", err=True
        )
        raise typer.Exit(2) from None


if __name__ == "__main__":  # pragma: no cover
    app()
