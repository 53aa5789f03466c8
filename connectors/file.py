"""Mentions from a JSONL or CSV file: the bundled sample data, exports from other tools, backfills.

One row per mention; only `text` is required. The cursor remembers how far the file was read (a
byte offset and line number) and a fingerprint of its start, so a re-run reads only appended rows
and a replaced or truncated file is read again from the top (the store dedupes by external id).
A record (a JSONL line, or a CSV row with the newlines inside its quoted fields) over
MAX_RECORD_BYTES is skipped with a log line, never held in memory whole; the rest are kept.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any, ClassVar

from connectors.base import Connector, Page, PayloadError, PermanentError
from triage.clock import as_utc
from triage.config import ConnectorSettings
from triage.domain import NewMention

FORMAT_BY_SUFFIX = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
FORMATS = ("jsonl", "csv")
DEFAULT_BATCH_SIZE = 500
# Enough of the file's start to notice it was replaced, small enough to hash on every run.
FINGERPRINT_BYTES = 1024
CURSOR_VERSION = 1
# The most one record may take in either format, its line ending included (README: 2 MB).
MAX_RECORD_BYTES = 2_000_000
# How much of an over-size record is read at a time while passing over it.
SKIP_CHUNK_BYTES = 64 * 1024


@dataclass(slots=True)
class Record:
    """One row as read: where it starts, where it ends, and the row or why it is unreadable."""

    line: int
    end: int
    end_line: int
    row: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    incomplete: bool = False


class FileConnector(Connector):
    """Reads rows from a local JSONL or CSV file, in batches, resuming where it stopped."""

    type = "file"
    platform = "file"
    required_options = ("path",)
    optional_options = ("format", "batch_size")
    expected: ClassVar[Mapping[str, str]] = {
        "path": "the path of a .jsonl or .csv file",
        "format": '"jsonl" or "csv"',
        "batch_size": "a whole number of rows per batch, at least 1",
    }
    uses_queries = False
    default_interval = 3600.0

    @classmethod
    def check_surroundings(cls, settings: ConnectorSettings) -> list[str]:
        path = settings.options.get("path")
        if isinstance(path, str) and path.strip() and not Path(path).exists():
            return [f"connectors[{settings.name}].options.path: {path} does not exist"]
        return []

    @classmethod
    def check_settings(cls, settings: ConnectorSettings) -> list[str]:
        problems = super().check_settings(settings)
        prefix = f"connectors[{settings.name}].options"
        path = settings.options.get("path")
        chosen = settings.options.get("format")
        if path is not None and not isinstance(path, str):
            problems.append(
                f"{prefix}.path: {path!r} is not a path; expected {cls.expected['path']}"
            )
        if chosen is not None and chosen not in FORMATS:
            problems.append(
                f"{prefix}.format: {chosen!r} is not known; expected {cls.expected['format']}"
            )
        elif (
            chosen is None
            and isinstance(path, str)
            and path.strip()
            and Path(path).suffix.lower() not in FORMAT_BY_SUFFIX
        ):
            problems.append(
                f"{prefix}.path: cannot tell the format from {Path(path).name!r}; "
                'name it .jsonl or .csv, or set format = "jsonl" or "csv"'
            )
        size = settings.options.get("batch_size")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            problems.append(
                f"{prefix}.batch_size: {size!r} is not valid; expected {cls.expected['batch_size']}"
            )
        return problems

    @property
    def path(self) -> Path:
        return Path(self.options["path"]).expanduser()

    @property
    def format(self) -> str:
        chosen = self.options.get("format")
        return str(chosen) if chosen else FORMAT_BY_SUFFIX[self.path.suffix.lower()]

    @property
    def batch_size(self) -> int:
        return int(self.options.get("batch_size", DEFAULT_BATCH_SIZE))

    def pages(self, cursor: str | None) -> Iterator[Page]:
        """Pages of up to `batch_size` rows after the cursor's position; none if nothing is new."""
        path = self.path
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            raise PermanentError(
                f"{path}: file not found; check connectors[{self.name}].options.path"
            ) from None
        except OSError as exc:
            raise PermanentError(f"{path}: cannot be read ({exc})") from None
        with handle:
            head = handle.read(FINGERPRINT_BYTES)
            offset, line = self._resume_point(handle, head, self.load_cursor(cursor))
            read = _jsonl_records if self.format == "jsonl" else _csv_records
            batch: list[Record] = []
            for record in read(handle, offset, line):
                if record.incomplete:
                    self.log.warning(
                        "%s: last line is incomplete (no newline, not valid JSON); "
                        "it is read again on the next run",
                        self._where(record),
                    )
                    break
                batch.append(record)
                if len(batch) >= self.batch_size:
                    yield self._page(head, batch)
                    batch = []
            if batch:
                yield self._page(head, batch)

    def count(self) -> int:
        """How many records the whole file holds, readable or not: rows, not physical lines."""
        try:
            handle = self.path.open("rb")
        except OSError as exc:
            raise PermanentError(f"{self.path}: cannot be read ({exc})") from None
        read = _jsonl_records if self.format == "jsonl" else _csv_records
        with handle:
            return sum(1 for _record in read(handle, 0, 0))

    def _resume_point(
        self, handle: IO[bytes], head: bytes, state: Mapping[str, Any]
    ) -> tuple[int, int]:
        """The byte offset and line count to continue from; (0, 0) for a new or replaced file."""
        offset, line = state.get("offset"), state.get("line")
        if not isinstance(offset, int) or not isinstance(line, int) or offset <= 0:
            return 0, 0
        size = handle.seek(0, os.SEEK_END)
        if offset > size or _fingerprint(head, offset) != state.get("head"):
            self.log.info("%s was replaced or truncated; reading it from the start", self.path)
            return 0, 0
        return offset, line

    def _page(self, head: bytes, batch: list[Record]) -> Page:
        last = batch[-1]
        cursor = {
            "v": CURSOR_VERSION,
            "offset": last.end,
            "line": last.end_line,
            "head": _fingerprint(head, last.end),
        }
        mentions = self.map_items(batch, self._parse_record, label=self._where)
        return Page(items=mentions, cursor=self.dump_cursor(cursor))

    def _where(self, record: Record) -> str:
        return f"{self.path}:{record.line}"

    def _parse_record(self, record: Record) -> NewMention:
        if record.error is not None:
            raise PayloadError(record.error)
        return row_to_mention(record.row, source=self.name)


def row_to_mention(row: Mapping[str, Any], *, source: str) -> NewMention:
    """A NewMention from one row; raises PayloadError, ValueError or TypeError for a bad row."""
    text = row.get("text")
    if text is None or (isinstance(text, str) and not text.strip()):
        raise PayloadError("no text")
    if not isinstance(text, str):
        raise PayloadError(f"text must be a string, got {type(text).__name__}")
    # A JSON escape such as "\ud83d" on its own decodes, but no database can store it.
    broken = [
        key for key, value in row.items() if isinstance(value, str) and _has_surrogates(value)
    ]
    if broken:
        raise PayloadError(f"{', '.join(broken)}: not valid Unicode (an unpaired surrogate)")
    platform = _string(row, "platform") or FileConnector.platform
    author = _string(row, "author")
    handle = _string(row, "handle")
    created_at = _timestamp(row, "created_at")
    external_id = _string(row, "id") or stable_id(platform, text, author, handle, created_at)
    return NewMention(
        source=source,
        external_id=external_id,
        platform=platform,
        text=text,
        url=_string(row, "url"),
        author_name=author,
        author_handle=handle,
        author_reach=_whole(row, "followers"),
        created_at=created_at,
        rating=_number(row, "rating"),
        engagement=_whole(row, "engagement"),
        thread_id=_string(row, "thread_id"),
        parent_id=_string(row, "parent_id"),
        title=_string(row, "title"),
        raw=dict(row),
    )


def stable_id(
    platform: str, text: str, author: str | None, handle: str | None, created_at: datetime | None
) -> str:
    """An id for a row that has none, the same on every run: 16 hex digits of a sha256."""
    parts = (
        platform,
        text,
        author or "",
        handle or "",
        created_at.isoformat() if created_at else "",
    )
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:16]


def _too_large(size: int) -> str:
    return f"{size:,} bytes, over the {MAX_RECORD_BYTES:,}-byte limit per record"


def _rest_of_line(handle: IO[bytes]) -> tuple[int, int]:
    """Read on to the end of the current line a chunk at a time: bytes read and quote marks."""
    size = quotes = 0
    while chunk := handle.readline(SKIP_CHUNK_BYTES):
        size += len(chunk)
        quotes += chunk.count(b'"')
        if chunk.endswith(b"\n"):
            break
    return size, quotes


def _jsonl_records(handle: IO[bytes], offset: int, line: int) -> Iterator[Record]:
    handle.seek(offset)
    position = offset
    while raw := handle.readline(MAX_RECORD_BYTES + 1):
        line += 1
        if len(raw) > MAX_RECORD_BYTES:
            size = len(raw) + (0 if raw.endswith(b"\n") else _rest_of_line(handle)[0])
            position += size
            yield Record(line=line, end=position, end_line=line, error=_too_large(size))
            continue
        position += len(raw)
        if not raw.strip():
            continue
        record = Record(line=line, end=position, end_line=line)
        try:
            value = json.loads(raw.decode("utf-8-sig" if line == 1 else "utf-8"))
        except UnicodeDecodeError as exc:
            record.error = f"not valid UTF-8 ({exc.reason} at byte {exc.start + 1} of the line)"
        except ValueError as exc:
            # Probably a writer still appending this line: the caller leaves it for the next run.
            record.incomplete = not raw.endswith(b"\n")
            record.error = f"invalid JSON ({exc})"
        else:
            if isinstance(value, dict):
                record.row = value
            else:
                record.error = f"expected a JSON object, got {type(value).__name__}"
        yield record


class _TooLarge(Exception):
    """The CSV record being read has passed MAX_RECORD_BYTES."""


class _Lines:
    """Decoded lines from a binary file for csv.reader, counting bytes and lines consumed.

    Each record's bytes are counted from `begin()`: a read that takes them past MAX_RECORD_BYTES
    (by one byte at most) raises _TooLarge, and `skip_record()` passes over the rest of the
    record a chunk at a time, to the first line end outside quotes.
    """

    def __init__(self, handle: IO[bytes], position: int, line: int):
        self.handle = handle
        self.position = position
        self.line = line
        self.start = position
        self.quotes = 0
        self.at_line_end = True

    def __iter__(self) -> Iterator[str]:
        return self

    def begin(self) -> None:
        """The next line read starts a record."""
        self.start, self.quotes = self.position, 0

    @property
    def size(self) -> int:
        return self.position - self.start

    def __next__(self) -> str:
        wanted = max(MAX_RECORD_BYTES - self.size, 0) + 1
        raw = self.handle.readline(wanted)
        if not raw:
            raise StopIteration
        ended = raw.endswith(b"\n") or len(raw) < wanted  # short of what was asked: the end
        if self.position == 0 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8) :]
            self.position = self.start = len(codecs.BOM_UTF8)
        self._consumed(len(raw), raw.count(b'"'), ended)
        if self.size > MAX_RECORD_BYTES:
            raise _TooLarge
        # Undecodable bytes survive as lone surrogates so csv keeps going; the row is refused.
        return raw.decode("utf-8", "surrogateescape")

    def skip_record(self) -> None:
        """Read on past the end of a record that raised _TooLarge, a chunk at a time."""
        while not self.at_line_end or self.quotes % 2:
            size, quotes = _rest_of_line(self.handle)
            if not size:
                return
            self._consumed(size, quotes, True)

    def _consumed(self, size: int, quotes: int, line_ended: bool) -> None:
        self.position += size
        self.quotes += quotes
        self.at_line_end = line_ended
        if line_ended:
            self.line += 1


def _csv_records(handle: IO[bytes], offset: int, line: int) -> Iterator[Record]:
    # A field may be as long as a record may be; csv's own limit (128 KB) would refuse sooner.
    csv.field_size_limit(max(csv.field_size_limit(), MAX_RECORD_BYTES))
    handle.seek(0)
    lines = _Lines(handle, 0, 0)
    reader = csv.reader(lines)
    try:
        header = next(reader, None)
    except _TooLarge:
        lines.skip_record()
        yield Record(1, lines.position, lines.line, error=f"header row: {_too_large(lines.size)}")
        return
    if header is None:
        return
    names = [name.strip().lower() for name in header]
    if offset > lines.position:
        handle.seek(offset)
        lines.position, lines.line = offset, line
        reader = csv.reader(lines)
    while True:
        start = lines.line + 1
        lines.begin()
        try:
            values = next(reader)
        except StopIteration:
            return
        except _TooLarge:
            lines.skip_record()
            yield Record(start, lines.position, lines.line, error=_too_large(lines.size))
            continue
        except csv.Error as exc:
            yield Record(start, lines.position, lines.line, error=f"unreadable CSV ({exc})")
            continue
        if not values:
            continue
        record = Record(start, lines.position, lines.line)
        if len(values) > len(names):
            record.error = f"{len(values)} fields but the header names {len(names)}"
        elif any(_has_surrogates(value) for value in values):
            record.error = "not valid UTF-8"
        else:
            record.row = dict(zip(names, values, strict=False))
        yield record


def _fingerprint(head: bytes, offset: int) -> str:
    """A hash of the file's first bytes up to `offset`, to notice a replaced file."""
    return hashlib.sha256(head[: min(offset, FINGERPRINT_BYTES)]).hexdigest()[:16]


def _has_surrogates(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _present(row: Mapping[str, Any], key: str) -> Any:
    value = row.get(key)
    return None if value is None or (isinstance(value, str) and not value.strip()) else value


def _string(row: Mapping[str, Any], key: str) -> str | None:
    value = _present(row, key)
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise TypeError(f"{key} must be a string, got {type(value).__name__}")


def _whole(row: Mapping[str, Any], key: str) -> int | None:
    value = _present(row, key)
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"{key}: {value!r} is not a whole number")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
        # Spreadsheets write counts as "1200.0" or "1.2e4"; inf and nan are not whole.
        try:
            number = float(value.strip())
        except ValueError:
            pass
        else:
            if number.is_integer():
                return int(number)
    raise ValueError(f"{key}: {value!r} is not a whole number")


def _number(row: Mapping[str, Any], key: str) -> float | None:
    value = _present(row, key)
    if value is None:
        return None
    if not isinstance(value, bool) and isinstance(value, int | float | str):
        try:
            number = float(value)
        except ValueError:
            pass
        else:
            if math.isfinite(number):
                return number
    raise ValueError(f"{key}: {value!r} is not a number")


def _timestamp(row: Mapping[str, Any], key: str) -> datetime | None:
    value = _present(row, key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{key}: {value!r} is not an ISO-8601 timestamp")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"{key}: {value!r} is not an ISO-8601 timestamp") from None
    try:
        return as_utc(moment)
    except ValueError:
        raise ValueError(f"{key}: {value!r} cannot be represented in UTC") from None
