from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from triage.config import (
    ConfigError,
    StoreSettings,
    default_settings,
    load_settings,
    parse_duration,
)

EXAMPLE = Path(__file__).parent.parent / "config.example.toml"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _problems(path: Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env=env or {})
    return caught.value.problems


def test_every_problem_names_file_and_key(tmp_path):
    path = _write(
        tmp_path,
        """
[database]
url = "mysql://nope"
[sla]
P1 = "soon"
[models]
languages = ["english"]
batch_size = 0
[[connectors]]
name = "alerts"
type = "rss"
intervall = "5m"
""",
    )
    problems = _problems(path)
    assert len(problems) == 5
    assert all(p.startswith(f"{path}: ") for p in problems)
    joined = "\n".join(problems)
    assert "database.url: 'mysql://nope' is not supported" in joined
    assert "sla.P1: 'soon' is not a duration" in joined
    assert "models.languages:" in joined and "ISO 639-1" in joined
    assert "models.batch_size:" in joined
    assert "connectors[alerts].intervall: unknown key" in joined


def test_unknown_key_is_named(tmp_path):
    path = _write(tmp_path, '[brand]\nnmae = "x"\n')
    assert _problems(path) == [
        f"{path}: brand.nmae: unknown key; check its spelling against config.example.toml"
    ]


def test_missing_required_connector_keys(tmp_path):
    path = _write(tmp_path, '[[connectors]]\nname = "a"\n')
    assert _problems(path) == [f"{path}: connectors[a].type: required key is missing"]


def test_env_references_resolve_and_missing_ones_are_reported(tmp_path):
    path = _write(
        tmp_path,
        """
[slack]
bot_token = "${SLACK_BOT_TOKEN}"
[[connectors]]
name = "a"
type = "rss"
credentials = { token = "${A_TOKEN}" }
[[connectors]]
name = "b"
type = "rss"
enabled = false
credentials = { token = "${B_TOKEN}" }
""",
    )
    settings = load_settings(path, env={"SLACK_BOT_TOKEN": "xoxb-1", "A_TOKEN": "t"})
    assert settings.slack.bot_token == "xoxb-1"
    assert settings.connectors[0].credentials == {"token": "t"}
    assert [c.name for c in settings.enabled_connectors()] == ["a"]
    assert _problems(path, env={"SLACK_BOT_TOKEN": "x"}) == [
        f"{path}: connectors[a].credentials.token: environment variable A_TOKEN is not set; "
        "expected it to hold the value (export A_TOKEN=...)"
    ]


def test_duplicate_connector_names(tmp_path):
    path = _write(
        tmp_path,
        '[[connectors]]\nname = "a"\ntype = "rss"\n[[connectors]]\nname = "a"\ntype = "file"\n',
    )
    assert any("connector name 'a' is used twice" in p for p in _problems(path))


def test_invalid_toml_and_missing_file(tmp_path):
    path = _write(tmp_path, "[database\n")
    (problem,) = _problems(path)
    assert problem.startswith(f"{path}: not valid TOML")
    missing = tmp_path / "nope.toml"
    assert _problems(missing) == [f"{missing}: file not found"]


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(90, 90.0), ("90s", 90.0), ("15m", 900.0), ("2h", 7200.0), ("1d", 86400.0)],
)
def test_durations(value, seconds):
    assert parse_duration(value) == seconds


def test_defaults_need_no_file_and_use_the_bundled_sample(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TRIAGE_CONFIG", raising=False)
    settings = load_settings(None)
    assert settings == default_settings()
    (sample,) = settings.connectors
    assert sample.type == "file"
    assert Path(sample.options["path"]).name == "mentions.jsonl"


def _realistic_secrets() -> dict[str, str]:
    """Values shaped like the real ones, for the secrets whose shape the connectors check."""
    import json

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    def pem(key) -> str:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return {
        "ASC_PRIVATE_KEY": pem(ec.generate_private_key(ec.SECP256R1())),
        "GOOGLE_PLAY_SERVICE_ACCOUNT": json.dumps(
            {"client_email": "triage@kestrel.iam.gserviceaccount.com", "private_key": pem(rsa_key)}
        ),
        "ZAPIER_WEBHOOK_SECRET": "3f9a1c0b7d2e4f60a8b5c6d7e8f90123",
        "REDDIT_USERNAME": "kestrel_care",
    }


def test_example_config_is_valid_and_holds_no_literal_secrets():
    text = EXAMPLE.read_text(encoding="utf-8")
    env = {name: "x" for name in re.findall(r"\$\{([A-Z0-9_]+)\}", text)}
    env.update(_realistic_secrets())
    settings = load_settings(EXAMPLE, env=env)
    assert settings.connectors
    # Every example, enabled or not, is a working block for its connector type.
    from connectors.registry import check_connectors

    enabled = [c.model_copy(update={"enabled": True}) for c in settings.connectors]
    assert check_connectors(enabled, surroundings=False) == []
    raw = tomllib.loads(text)
    secrets = [
        value
        for connector in raw["connectors"]
        for value in connector.get("credentials", {}).values()
    ]
    secrets += [raw["slack"][key] for key in ("bot_token", "app_token", "signing_secret")]
    assert secrets
    assert all(re.fullmatch(r"\$\{[A-Z0-9_]+\}", value) for value in secrets), secrets


def test_relative_file_paths_are_read_from_the_config_folder(tmp_path):
    path = _write(
        tmp_path,
        '[[connectors]]\nname = "a"\ntype = "file"\noptions = { path = "data/in.jsonl" }\n',
    )
    settings = load_settings(path, env={})
    assert settings.connectors[0].options["path"] == str(tmp_path / "data" / "in.jsonl")


def test_urgency_weights_come_from_config_and_are_checked(tmp_path):
    from models.urgency import Signals, UrgencyScorer

    path = _write(
        tmp_path,
        "[models.urgency]\nvip = 40\nbands = [80, 60, 30]\nreach = [[500, 6]]\n"
        'repeat_window = "3d"\n',
    )
    urgency = load_settings(path).models.urgency
    assert urgency.repeat_window == 3 * 86400
    weights = urgency.weights()
    assert (weights.vip, weights.bands, weights.reach) == (40, (80, 60, 30), ((500, 6.0),))
    calm = Signals(text="hello", language="en", p_negative=0.1, p_positive=0.2, vip=True)
    assert UrgencyScorer(weights).score(calm).score == 40
    assert UrgencyScorer().score(calm).score == 15

    bad = _write(tmp_path, "[models.urgency]\nbands = [25, 50, 75]\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(bad)
    assert "models.urgency.bands" in caught.value.problems[0]
    assert "must fall from P1 to P3" in caught.value.problems[0]


def test_model_drafts_are_off_by_default_and_checked_when_set(tmp_path):
    assert default_settings().drafts.llm is None
    bad = '[drafts.llm]\nurl = "localhost:11434"\nmodel = "m"\ntimeout = "soon"\n'
    path = _write(tmp_path, bad)
    problems = _problems(path)
    assert any("drafts.llm.url" in p and "not an http(s) URL" in p for p in problems), problems
    assert any("drafts.llm.timeout" in p for p in problems), problems
    ok = _write(tmp_path, '[drafts.llm]\nurl = "http://127.0.0.1:11434/v1/"\nmodel = "m"\n')
    llm = load_settings(ok, env={}).drafts.llm
    assert (llm.url, llm.model, llm.timeout) == ("http://127.0.0.1:11434/v1", "m", 20.0)


def test_formality_is_formal_or_informal_per_language(tmp_path):
    path = _write(tmp_path, '[brand]\nformality = { de = "informal", pl = "casual" }\n')
    problems = _problems(path)
    assert any("brand.formality.pl" in p for p in problems), problems
    ok = _write(tmp_path, '[brand]\nformality = { de = "informal" }\n')
    assert load_settings(ok, env={}).brand.formality == {"de": "informal"}


def test_sign_off_placeholders_are_checked(tmp_path):
    problems = _problems(_write(tmp_path, '[brand]\nsign_off = "^{agent}"\n'))
    assert any("brand.sign_off" in p and "unknown placeholder" in p for p in problems), problems


def test_a_playbook_file_is_read_and_its_errors_name_its_file_and_key(tmp_path):
    (tmp_path / "playbook.toml").write_text(
        'sector = "smart home"\n'
        '[next_steps.delivery]\nen = "Send us your order number {privately}."\n'
        '[[saved_replies]]\nlanguage = "en"\ncues = ["opening hours"]\nanswer = "9 to 5."\n',
        encoding="utf-8",
    )
    path = _write(tmp_path, '[brand]\nplaybook = "playbook.toml"\n')
    playbook = load_settings(path).playbook
    assert playbook.sector == "smart home"
    assert playbook.phrase("next_steps", "delivery", "en", None, None) == (
        "Send us your order number {privately}."
    )
    assert playbook.saved_replies[0].cues == ["opening hours"]

    (tmp_path / "playbook.toml").write_text(
        '[next_steps.delivery]\nen = "Call {phone}."\nxx = "?"\n'
        '[next_steps.parcels]\nen = "?"\n'
        '[[saved_replies]]\nlanguage = "en"\ncues = []\nanswer = "x"\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    problems = "\n".join(err.value.problems)
    book = str(tmp_path / "playbook.toml")
    assert f"{book}: next_steps:" in problems and "unknown placeholder(s) ['phone']" in problems
    assert f"{book}: saved_replies[0].cues:" in problems
    # A playbook file that is not there is named with the key that points to it.
    missing = _write(tmp_path, '[brand]\nplaybook = "nope.toml"\n')
    with pytest.raises(ConfigError, match=r"brand\.playbook: .*nope\.toml does not exist"):
        load_settings(missing)


def test_an_inline_playbook_in_config_toml_is_checked_too(tmp_path):
    path = _write(tmp_path, '[playbook.next_steps.refund]\n"de.casual" = "x"\n')
    with pytest.raises(ConfigError, match=r"config\.toml: playbook\.next_steps: .*de\.casual"):
        load_settings(path)


def test_opening_hours_are_checked(tmp_path):
    path = _write(
        tmp_path, '[playbook.hours]\nopens = "8am"\ncloses = "20:00"\ntimezone = "Mars/Base"\n'
    )
    problems = "\n".join(_problems(path))
    assert "playbook.hours.opens: '8am' is not a time of day" in problems
    assert "playbook.hours.timezone: 'Mars/Base' is not a time zone" in problems
    good = _write(tmp_path, '[playbook.hours]\nopens = "08:00"\ncloses = "20:00"\n')
    assert load_settings(good).playbook.hours.closes == "20:00"


def test_keep_raw_days_is_read_and_a_bad_one_names_file_and_key(tmp_path):
    assert load_settings(_write(tmp_path, "[store]\nkeep_raw_days = 90\n"), env={}).store == (
        StoreSettings(keep_raw_days=90)
    )
    assert load_settings(_write(tmp_path, ""), env={}).store.keep_raw_days is None
    with pytest.raises(ConfigError, match=r"config\.toml: store\.keep_raw_days"):
        load_settings(_write(tmp_path, "[store]\nkeep_raw_days = 0\n"), env={})


def test_slack_routes_are_read_and_their_errors_name_file_and_key(tmp_path):
    good = """
[slack]
care_channel = "C0CARE0001"

[[slack.routes]]
channel = "C0POLISH01"
languages = ["pl"]

[[slack.routes]]
channel = "C0APPTEAM1"
sources = ["play"]
intents = ["defect", "accessibility"]

[[connectors]]
name = "play"
type = "file"
options = { path = "x.jsonl" }
"""
    slack = load_settings(_write(tmp_path, good), env={}).slack
    assert slack.channel_for("pl", "play", ["defect"], "P3") == "C0POLISH01"
    assert slack.channel_for("en", "play", ["billing", "defect"], "P2") == "C0APPTEAM1"
    assert slack.channel_for("en", "play", ["billing"], "P2") == "C0CARE0001"
    assert slack.channel_for("en", "reddit", ["defect"], "P2") == "C0CARE0001"

    bad = good.replace('"C0POLISH01"', '"#polish"').replace('"accessibility"', '"hacked"')
    bad = bad.replace('sources = ["play"]', 'sources = ["appstore"]')
    problems = _problems(_write(tmp_path, bad))
    text = "\n".join(problems)
    assert "config.toml" in text
    assert "slack.routes[0].channel" in text and "'#polish' is not a channel id" in text
    assert "slack.routes[1].intents" in text and "'hacked'" in text

    unknown_source = good.replace('sources = ["play"]', 'sources = ["appstore"]')
    [problem] = _problems(_write(tmp_path, unknown_source))
    assert "slack.routes[1].sources: ['appstore'] are not connector names" in problem

    everything = good.replace('languages = ["pl"]', "")
    [problem] = _problems(_write(tmp_path, everything))
    assert "slack.routes[0]" in problem and "matches every case" in problem

    no_default = good.replace('care_channel = "C0CARE0001"', "")
    [problem] = _problems(_write(tmp_path, no_default))
    assert "slack" in problem and "routes need care_channel" in problem
