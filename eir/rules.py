"""Rule sets (SPEC §6): TOML in, one frozen, validated :class:`RuleSet` out.

Everything is checked at load time: unknown tables or keys, wrong types, out-of-range values and
templates with unknown placeholders are :class:`RuleError` naming the key. The decision core only ever
sees a compiled rule set (durations already in seconds).
"""

from __future__ import annotations

import hashlib
import string
import tomllib
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from eir.identifiers import ImeiPolicy, NumberingPlan

DAY: Final = 86_400
HOUR: Final = 3_600

#: Subscriber-addressed event types: each needs a template in [messages.fa] and [messages.en].
SUBSCRIBER_EVENTS: Final = (
    "CLONE_GRACE_STARTED",
    "CLONE_BLOCKED",
    "OWNERSHIP_GRACE_STARTED",
    "OWNERSHIP_BLOCKED",
    "ACTIVATION_REQUIRED",
    "NOT_ACTIVATED",
    "TRAVELER_ALLOWANCE_STARTED",
    "ALLOWANCE_EXPIRED",
    "UNREGISTERED_DEVICE",
    "GRACE_REMINDER",
)
#: Subscriber SMS of the control plane (eir.control). Optional in a rule file: a missing template takes
#: the built-in wording below, so rule files written before the control plane keep loading.
CONTROL_MESSAGES: Final[dict[str, dict[str, str]]] = {
    "fa": {
        "DEVICE_ACTIVATED": "دستگاه {model} با شناسه {imei} با موفقیت برای شماره تلفن {msisdn} فعال‌سازی شد.",
        "TRANSFER_CODE_ISSUED": "کد فعال‌سازی دستگاه {model} با شناسه {imei} برای شماره تلفن {msisdn}: {code}. "
                                "مالکیت پس از فعال‌سازی با این کد منتقل می‌شود. این کد را در اختیار دیگران قرار ندهید.",
    },
    "en": {
        "DEVICE_ACTIVATED": "The device {model} with IMEI {imei} is now activated for number {msisdn}.",
        "TRANSFER_CODE_ISSUED": "Activation code of the device {model} with IMEI {imei} for number {msisdn}: "
                                "{code}. Ownership moves to you once you activate with it. Do not share this code.",
    },
}
#: Placeholders a template may use. The owner's number is deliberately not among them: {owner} is "***".
#: ``{code}`` is empty in every event but TRANSFER_CODE_ISSUED.
PLACEHOLDERS: Final = frozenset({"msisdn", "imei", "model", "deadline", "today", "owner", "days_left", "code"})
LANGUAGES: Final = ("fa", "en")
MAX_RULE_FILE_BYTES: Final = 1 << 20
MAX_TEMPLATE_CHARS: Final = 1_000


class RuleError(ValueError):
    """A rule file that cannot be used; the message names the file and the key."""


@dataclass(frozen=True, slots=True)
class RuleSet:
    """A compiled rule set. Durations are in seconds; names follow the TOML keys."""

    name: str
    plan: NumberingPlan
    timezone: str
    roamers_exempt: bool
    imei: ImeiPolicy
    clone_detect: bool
    clone_window_s: int
    clone_min_switchbacks: int
    clone_grace_s: int
    restrict_non_owner: bool
    ownership_grace_s: int
    activation_grace_s: int
    traveler_allowance_s: int
    traveler_period_s: int
    traveler_require_entry: bool
    traveler_entry_window_s: int
    reminder_before_s: int
    repeat_deny_notice_s: int
    max_new_restrictions_per_hour: int
    messages: Mapping[str, Mapping[str, str]]
    source: str = ""
    digest: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        """The rule set's time zone (for Jalali dates in texts)."""
        return zoneinfo.ZoneInfo(self.timezone)


# --- schema -------------------------------------------------------------------------------------------
# (table, key) -> (default, validator). A validator returns the value or raises ValueError with the reason.


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError("must be true or false")
    return v


def _int(lo: int, hi: int) -> Callable[[Any], int]:
    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError("must be an integer")
        if not lo <= v <= hi:
            raise ValueError(f"must be between {lo} and {hi}")
        return v

    return check


def _name(v: Any) -> str:
    if not isinstance(v, str) or not v or len(v) > 64 or not v.replace("-", "").replace("_", "").isalnum():
        raise ValueError("must be a short name of letters, digits, '-' and '_'")
    return v


def _country_code(v: Any) -> str:
    if not isinstance(v, str) or not v.isascii() or not v.isdigit() or not 1 <= len(v) <= 3 or v[0] == "0":
        raise ValueError("must be a 1-3 digit country code as a string, e.g. \"98\"")
    return v


def _mccs(v: Any) -> tuple[str, ...]:
    if not isinstance(v, list) or not v:
        raise ValueError("must be a non-empty list of 3-digit strings")
    for m in v:
        if not isinstance(m, str) or len(m) != 3 or not m.isascii() or not m.isdigit() or m[0] == "0":
            raise ValueError(f"{m!r} is not a 3-digit MCC string")
    return tuple(v)


def _tz(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError("must be an IANA time zone name")
    try:
        zoneinfo.ZoneInfo(v)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as e:
        raise ValueError(f"unknown time zone {v!r}") from e
    return v


_DAYS = _int(0, 36_500)
SCHEMA: Final[dict[str, dict[str, tuple[Any, Callable[[Any], Any]]]]] = {
    "policy": {
        "name": ("hamta", _name),
        "home_country_code": ("98", _country_code),
        "home_mcc": (["432"], _mccs),
        "timezone": ("Asia/Tehran", _tz),
    },
    "roamers": {"exempt": (True, _bool)},
    "imei": {"deny_invalid_check_digit": (True, _bool), "deny_test_imeis": (True, _bool)},
    "clone": {
        "detect": (True, _bool),
        "window_hours": (24, _int(1, 24 * 366)),
        "min_switchbacks": (2, _int(1, 1_000)),
        "grace_days": (30, _DAYS),
    },
    "ownership": {"restrict_non_owner": (False, _bool), "grace_days": (30, _DAYS)},
    "activation": {"grace_days": (30, _DAYS)},
    "traveler": {
        "allowance_days": (30, _DAYS),
        "period_days": (365, _int(1, 36_500)),
        "require_entry_record": (False, _bool),
        "entry_window_days": (30, _DAYS),
    },
    "events": {"reminder_days_before": (3, _DAYS), "repeat_deny_notice_days": (30, _int(1, 36_500))},
    "safety": {"max_new_restrictions_per_hour": (0, _int(0, 10_000_000))},
}


def _check_template(v: Any) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ValueError("must be a non-empty string")
    if len(v) > MAX_TEMPLATE_CHARS:
        raise ValueError(f"longer than {MAX_TEMPLATE_CHARS} characters")
    try:
        parsed = list(string.Formatter().parse(v))
    except ValueError as e:
        raise ValueError(f"bad template: {e}") from e
    for _, fname, spec, conv in parsed:
        if fname is None:
            continue
        if fname not in PLACEHOLDERS:
            raise ValueError(f"unknown placeholder {{{fname}}}; allowed: {', '.join(sorted(PLACEHOLDERS))}")
        if spec or conv:
            raise ValueError(f"placeholder {{{fname}}} takes no format spec or conversion")
    return v


def _read_toml(path: Path, seen: tuple[Path, ...]) -> dict[str, Any]:
    """Read a rule file, resolving ``base = "other.toml"`` (the other file's values, overlaid)."""
    path = path.resolve()
    if path in seen:
        raise RuleError(f"{path}: base: cycle through {' -> '.join(p.name for p in seen)}")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise RuleError(f"{path}: cannot read: {e.strerror}") from e
    if len(data) > MAX_RULE_FILE_BYTES:
        raise RuleError(f"{path}: larger than {MAX_RULE_FILE_BYTES} bytes")
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise RuleError(f"{path}: not valid TOML: {e}") from e
    base = doc.pop("base", None)
    if base is None:
        return doc
    if not isinstance(base, str):
        raise RuleError(f"{path}: base: must be a file name")
    merged = _read_toml(path.parent / base, (*seen, path))
    for table, values in doc.items():
        if isinstance(values, dict) and isinstance(merged.get(table), dict):
            if table == "messages":
                for lang, msgs in values.items():
                    if isinstance(msgs, dict) and isinstance(merged["messages"].get(lang), dict):
                        merged["messages"][lang] = {**merged["messages"][lang], **msgs}
                    else:
                        merged["messages"][lang] = msgs
            else:
                merged[table] = {**merged[table], **values}
        else:
            merged[table] = values
    return merged


def load_rules(path: str | Path) -> RuleSet:
    """Load and compile a rule file; raises :class:`RuleError` naming the offending key."""
    p = Path(path)
    doc = _read_toml(p, ())
    return compile_rules(doc, source=str(p), digest=hashlib.sha256(repr(sorted_doc(doc)).encode()).hexdigest())


def sorted_doc(doc: Any) -> Any:
    """A canonical, order-independent form of a rule document (for its digest)."""
    if isinstance(doc, Mapping):
        return tuple((k, sorted_doc(v)) for k, v in sorted(doc.items()))
    if isinstance(doc, list):
        return tuple(sorted_doc(v) for v in doc)
    return doc


def compile_rules(doc: Mapping[str, Any], source: str = "<memory>", digest: str = "") -> RuleSet:
    """Validate a parsed rule document and compile it into a :class:`RuleSet`."""
    where = source
    v: dict[str, dict[str, Any]] = {}
    for table in doc:
        if table not in SCHEMA and table != "messages":
            raise RuleError(f"{where}: unknown table [{table}]")
    for table, keys in SCHEMA.items():
        given = doc.get(table, {})
        if not isinstance(given, dict):
            raise RuleError(f"{where}: {table}: must be a table")
        for key in given:
            if key not in keys:
                raise RuleError(f"{where}: unknown key {table}.{key}")
        v[table] = {}
        for key, (default, check) in keys.items():
            try:
                v[table][key] = check(given.get(key, default))
            except ValueError as e:
                raise RuleError(f"{where}: {table}.{key}: {e}") from e
    messages = _compile_messages(doc.get("messages", {}), where)
    t = v["traveler"]
    if t["allowance_days"] > t["period_days"]:
        raise RuleError(f"{where}: traveler.allowance_days: must not exceed traveler.period_days")
    pol = v["policy"]
    return RuleSet(
        name=pol["name"],
        plan=NumberingPlan(country_code=pol["home_country_code"], home_mccs=frozenset(pol["home_mcc"])),
        timezone=pol["timezone"],
        roamers_exempt=v["roamers"]["exempt"],
        imei=ImeiPolicy(
            deny_invalid_check_digit=v["imei"]["deny_invalid_check_digit"],
            deny_test_imeis=v["imei"]["deny_test_imeis"],
        ),
        clone_detect=v["clone"]["detect"],
        clone_window_s=v["clone"]["window_hours"] * HOUR,
        clone_min_switchbacks=v["clone"]["min_switchbacks"],
        clone_grace_s=v["clone"]["grace_days"] * DAY,
        restrict_non_owner=v["ownership"]["restrict_non_owner"],
        ownership_grace_s=v["ownership"]["grace_days"] * DAY,
        activation_grace_s=v["activation"]["grace_days"] * DAY,
        traveler_allowance_s=t["allowance_days"] * DAY,
        traveler_period_s=t["period_days"] * DAY,
        traveler_require_entry=t["require_entry_record"],
        traveler_entry_window_s=t["entry_window_days"] * DAY,
        reminder_before_s=v["events"]["reminder_days_before"] * DAY,
        repeat_deny_notice_s=v["events"]["repeat_deny_notice_days"] * DAY,
        max_new_restrictions_per_hour=v["safety"]["max_new_restrictions_per_hour"],
        messages=messages,
        source=source,
        digest=digest,
        raw=v,
    )


def _compile_messages(given: Any, where: str) -> dict[str, dict[str, str]]:
    if not isinstance(given, dict):
        raise RuleError(f"{where}: messages: must be a table")
    out: dict[str, dict[str, str]] = {}
    for lang in given:
        if lang not in LANGUAGES:
            raise RuleError(f"{where}: unknown table [messages.{lang}]; languages: {', '.join(LANGUAGES)}")
    for lang in LANGUAGES:
        table = given.get(lang)
        if not isinstance(table, dict):
            raise RuleError(f"{where}: messages.{lang}: missing table [messages.{lang}]")
        for key in table:
            if key not in SUBSCRIBER_EVENTS and key not in CONTROL_MESSAGES[lang]:
                raise RuleError(f"{where}: unknown key messages.{lang}.{key}")
        out[lang] = {}
        for ev, default in CONTROL_MESSAGES[lang].items():
            try:
                out[lang][ev] = _check_template(table.get(ev, default))
            except ValueError as e:
                raise RuleError(f"{where}: messages.{lang}.{ev}: {e}") from e
        for ev in SUBSCRIBER_EVENTS:
            if ev not in table:
                raise RuleError(f"{where}: messages.{lang}.{ev}: missing template")
            try:
                out[lang][ev] = _check_template(table[ev])
            except ValueError as e:
                raise RuleError(f"{where}: messages.{lang}.{ev}: {e}") from e
    return out
