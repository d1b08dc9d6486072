"""Rule sets: the shipped files load; bad files are refused naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from eir.rules import CONTROL_MESSAGES, SUBSCRIBER_EVENTS, RuleError, load_rules
from tests.conftest import RULES_DIR

DEFAULT = (RULES_DIR / "default.toml").read_text(encoding="utf-8")


def test_shipped_rule_sets() -> None:
    d = load_rules(RULES_DIR / "default.toml")
    s = load_rules(RULES_DIR / "strict.toml")
    assert (d.name, d.restrict_non_owner, s.name, s.restrict_non_owner) == ("hamta", False, "hamta-strict", True)
    assert d.clone_window_s == 24 * 3600 and d.clone_grace_s == 30 * 86400 and d.traveler_period_s == 365 * 86400
    every = set(SUBSCRIBER_EVENTS) | set(CONTROL_MESSAGES["fa"])
    assert set(d.messages["fa"]) == every == set(s.messages["en"])
    assert d.digest != s.digest and len(d.digest) == 64
    assert d.plan.country_code == "98" and d.plan.home_mccs == frozenset({"432"}) and d.timezone == "Asia/Tehran"


def _load(tmp_path: Path, text: str) -> None:
    p = tmp_path / "r.toml"
    p.write_text(text, encoding="utf-8")
    load_rules(p)


@pytest.mark.parametrize(("old", "new", "named"), [
    ("window_hours = 24", "window_hours = 24\nwindow_minutes = 3", "clone.window_minutes"),
    ("[clone]", "[clones]", "[clones]"),
    ("grace_days = 30               # non-owners", "grace_days = -1  # non-owners", "clone.grace_days"),
    ("min_switchbacks = 2", "min_switchbacks = \"2\"", "clone.min_switchbacks"),
    ("exempt = true", "exempt = 1", "roamers.exempt"),
    ("timezone = \"Asia/Tehran\"", "timezone = \"Mars/Olympus\"", "policy.timezone"),
    ("home_mcc = [\"432\"]", "home_mcc = [\"43\"]", "policy.home_mcc"),
    ("home_country_code = \"98\"", "home_country_code = 98", "policy.home_country_code"),
    ("allowance_days = 30", "allowance_days = 400", "traveler.allowance_days"),
    ("GRACE_REMINDER = \"Reminder", "GRACE_REMINDERS = \"Reminder", "messages.en.GRACE_REMINDERS"),
    ("{days_left} days left", "{owner_msisdn} days left", "messages.en.GRACE_REMINDER"),
    ("{days_left} days left", "{days_left!r} days left", "messages.en.GRACE_REMINDER"),
    ("[messages.en]", "[messages.de]", "messages.de"),
])
def test_bad_values_are_named(tmp_path: Path, old: str, new: str, named: str) -> None:
    assert old in DEFAULT
    with pytest.raises(RuleError) as e:
        _load(tmp_path, DEFAULT.replace(old, new, 1))
    assert named in str(e.value)


def test_missing_template_is_named(tmp_path: Path) -> None:
    text = "\n".join(line for line in DEFAULT.splitlines() if not line.startswith("NOT_ACTIVATED ="))
    with pytest.raises(RuleError, match=r"messages\.fa\.NOT_ACTIVATED: missing template"):
        _load(tmp_path, text)


def test_not_toml_and_base_cycles(tmp_path: Path) -> None:
    with pytest.raises(RuleError, match="not valid TOML"):
        _load(tmp_path, "[policy\nname=")
    (tmp_path / "a.toml").write_text('base = "b.toml"\n', encoding="utf-8")
    (tmp_path / "b.toml").write_text('base = "a.toml"\n', encoding="utf-8")
    with pytest.raises(RuleError, match="cycle"):
        load_rules(tmp_path / "a.toml")
    with pytest.raises(RuleError, match="cannot read"):
        load_rules(tmp_path / "missing.toml")


def test_base_overlay(tmp_path: Path) -> None:
    (tmp_path / "default.toml").write_text(DEFAULT, encoding="utf-8")
    (tmp_path / "x.toml").write_text(
        'base = "default.toml"\n[clone]\ngrace_days = 7\n[messages.en]\nCLONE_BLOCKED = "blocked {msisdn}"\n',
        encoding="utf-8")
    r = load_rules(tmp_path / "x.toml")
    assert r.clone_grace_s == 7 * 86400 and r.clone_window_s == 24 * 3600
    assert r.messages["en"]["CLONE_BLOCKED"] == "blocked {msisdn}"
    assert r.messages["fa"]["CLONE_BLOCKED"].startswith("مالک")


def test_control_templates_are_optional_with_the_built_in_wording(tmp_path: Path) -> None:
    """A rule file written before the control plane loads; one may override the control SMS wording."""
    lines = [ln for ln in DEFAULT.splitlines() if not ln.startswith(("DEVICE_ACTIVATED", "TRANSFER_CODE_ISSUED"))]
    f = tmp_path / "old.toml"
    f.write_text("\n".join(lines), encoding="utf-8")
    r = load_rules(f)
    assert r.messages["en"]["TRANSFER_CODE_ISSUED"] == CONTROL_MESSAGES["en"]["TRANSFER_CODE_ISSUED"]
    f.write_text("\n".join(lines).replace("[messages.en]", '[messages.en]\nTRANSFER_CODE_ISSUED = "Code {code}"'),
                 encoding="utf-8")
    assert load_rules(f).messages["en"]["TRANSFER_CODE_ISSUED"] == "Code {code}"
    f.write_text("\n".join(lines).replace("[messages.en]", '[messages.en]\nDEVICE_ACTIVATED = "{phone}"'),
                 encoding="utf-8")
    with pytest.raises(RuleError, match=r"messages\.en\.DEVICE_ACTIVATED: unknown placeholder"):
        load_rules(f)
