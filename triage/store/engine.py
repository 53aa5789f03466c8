"""Engine and sessions: SQLite (WAL) by default, PostgreSQL through psycopg 3 by URL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlmodel import Session

MIGRATIONS = Path(__file__).parent / "migrations"


def normalise_url(url: str) -> str:
    """Route every PostgreSQL URL through psycopg 3."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


def make_engine(url: str, **kwargs: Any) -> sa.Engine:
    """An engine for the URL; SQLite gets WAL, foreign keys and a busy timeout.

    Nothing is opened here. A SQLite file is created on first use but never its directory, so a
    mistyped path grows no tree of folders: FileNotFoundError names the missing directory.
    """
    url = normalise_url(url)
    if url.startswith("sqlite"):
        folder = _missing_sqlite_folder(sa.make_url(url))
        if folder is not None:
            raise FileNotFoundError(
                f"the directory {folder} does not exist; create it or correct the path"
            )
        engine = sa.create_engine(url, connect_args={"check_same_thread": False}, **kwargs)
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return sa.create_engine(url, pool_pre_ping=True, **kwargs)


def _missing_sqlite_folder(url: sa.URL) -> Path | None:
    """The folder a SQLite file would be created in, when it does not exist."""
    database = url.database
    if not database or database == ":memory:" or url.query.get("uri") == "true":
        return None  # in memory, or a file: URI SQLite reads itself
    folder = Path(database).parent  # as SQLite reads the path: relative to the working directory
    return None if folder.is_dir() else folder


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the bot read while the scheduler writes; the timeout rides out short write locks.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def alembic_config(engine: sa.Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # configparser treats % as interpolation, and URLs carry %-escapes.
    url = engine.url.render_as_string(hide_password=False).replace("%", "%%")
    config.set_main_option("sqlalchemy.url", url)
    return config


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    """Apply the Alembic migrations up to `revision` (idempotent)."""
    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def current_revision(engine: sa.Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


@contextmanager
def session_scope(engine: sa.Engine) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
