"""Warning events (SPEC §5): the record, its JSON form, and the rendering of subscriber texts.

Texts come from the rule set's ``[messages.fa]`` / ``[messages.en]``. Persian texts get Persian digits
and Jalali dates in the rule set's time zone. The owner's number is never a placeholder value: ``{owner}``
always renders as ``***``, as in the registry's own messages.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Final

import jdatetime

from eir.identifiers import NumberingPlan, format_imei, imei15, national_format

PERSIAN_DIGITS: Final = str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹")
HIDDEN: Final = "***"
UTC: Final = dt.UTC

#: Control-plane (registry) changes reported to the registry / operations stream (eir.control).
CONTROL_OPS_EVENTS: Final = frozenset({
    "OWNERSHIP_TRANSFERRED", "TRANSFER_STARTED", "OPERATOR_SIM_ADDED", "OPERATOR_SIM_REMOVED", "DEVICE_CLAIMED",
    "DEVICE_RECOVERED", "IMEI_CORRECTED", "DEVICE_REPAIRED", "DEVICE_BLOCKED", "DEVICE_UNBLOCKED",
    "CLONE_FLAG_SET", "CLONE_FLAG_CLEARED",
})
#: Events for the registry / operations: no subscriber text.
OPS_EVENTS: Final = frozenset({"CLONE_DETECTED", "BLACKLISTED_DEVICE_SEEN", "SAFETY_BRAKE"}) | CONTROL_OPS_EVENTS


def iso_utc(t: int | None) -> str | None:
    """Epoch seconds -> ``2026-11-22T03:00:00Z`` (None stays None)."""
    if t is None:
        return None
    return dt.datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(slots=True)
class Event:
    """One event of the outbox; ``seq`` is assigned by the state when the event is appended."""

    type: str
    time: int
    imei: int
    msisdn: int | None
    slot: int
    reason: str | None
    deadline: int | None
    text_fa: str | None = None
    text_en: str | None = None
    subscribers: tuple[int, ...] = ()
    seq: int = 0
    #: Control-plane events: what changed (string values only; never a code or a token).
    detail: dict[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (SPEC §5 fields; times as ISO 8601 UTC)."""
        d: dict[str, Any] = {
            "seq": self.seq,
            "type": self.type,
            "time": iso_utc(self.time),
            "imei": format_imei(self.imei),
            "msisdn": None if self.msisdn is None else str(self.msisdn),
            "slot": self.slot,
            "reason": self.reason,
            "deadline": iso_utc(self.deadline),
        }
        if self.type not in OPS_EVENTS:
            d["text_fa"] = self.text_fa
            d["text_en"] = self.text_en
        if self.subscribers:
            d["subscribers"] = [str(s) for s in self.subscribers]
        if self.detail:
            d["detail"] = self.detail
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Event:
        """Inverse of :meth:`to_dict` (the durable outbox stores the JSON form)."""

        def epoch(s: str | None) -> int | None:
            if s is None:
                return None
            return int(dt.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp())

        t = epoch(d["time"])
        return cls(
            type=d["type"],
            time=t if t is not None else 0,
            imei=int(d["imei"]),
            msisdn=None if d.get("msisdn") is None else int(d["msisdn"]),
            slot=int(d["slot"]),
            reason=d.get("reason"),
            deadline=epoch(d.get("deadline")),
            text_fa=d.get("text_fa"),
            text_en=d.get("text_en"),
            subscribers=tuple(int(s) for s in d.get("subscribers", ())),
            seq=int(d["seq"]),
            detail={str(k): str(v) for k, v in d["detail"].items()} if d.get("detail") else None,
        )


def jalali_date(t: int, tz: dt.tzinfo) -> str:
    """Epoch seconds -> Jalali ``YYYY/MM/DD`` (ASCII digits) in ``tz``."""
    local = dt.datetime.fromtimestamp(t, tz).date()
    j = jdatetime.date.fromgregorian(date=local)
    return f"{j.year:04d}/{j.month:02d}/{j.day:02d}"


def gregorian_date(t: int, tz: dt.tzinfo) -> str:
    """Epoch seconds -> ``YYYY-MM-DD`` in ``tz``."""
    return dt.datetime.fromtimestamp(t, tz).strftime("%Y-%m-%d")


#: Date strings are cached per 15-minute bucket: every UTC offset in use is a multiple of 15 minutes, so
#: all instants of a bucket share one local date.
_BUCKET: Final = 900
_MAX_CACHED_DATES: Final = 50_000


class Renderer:
    """Renders subscriber texts with one rule set's templates, time zone and numbering plan."""

    __slots__ = ("_dates", "_en", "_fa", "_plan", "_tz")

    def __init__(self, messages: dict[str, dict[str, str]] | Any, tz: dt.tzinfo, plan: NumberingPlan) -> None:
        self._fa: dict[str, str] = dict(messages["fa"])
        self._en: dict[str, str] = dict(messages["en"])
        self._tz = tz
        self._plan = plan
        self._dates: dict[int, tuple[str, str]] = {}

    def dates(self, t: int) -> tuple[str, str]:
        """``(Jalali date with Persian digits, Gregorian ISO date)`` of ``t`` in the rule set's zone."""
        bucket = t // _BUCKET
        got = self._dates.get(bucket)
        if got is None:
            if len(self._dates) >= _MAX_CACHED_DATES:
                self._dates.clear()
            got = self._dates[bucket] = (jalali_date(t, self._tz).translate(PERSIAN_DIGITS),
                                         gregorian_date(t, self._tz))
        return got

    def render(self, ev: Event, model: str = "", code: str = "") -> tuple[str | None, str | None]:
        """``(text_fa, text_en)`` for a subscriber event; ``(None, None)`` for ops events.

        ``code`` fills ``{code}``: only the TRANSFER_CODE_ISSUED SMS carries one (eir.control).
        """
        fa_t = self._fa.get(ev.type)
        en_t = self._en.get(ev.type)
        if fa_t is None or en_t is None or ev.msisdn is None:
            return None, None
        msisdn = national_format(ev.msisdn, self._plan)
        imei = imei15(ev.imei)
        if ev.deadline is not None:
            days_left = max(0, -(-(ev.deadline - ev.time) // 86_400))
            dl_fa, dl_en = self.dates(ev.deadline)
        else:
            days_left, dl_fa, dl_en = 0, "", ""
        today_fa, today_en = self.dates(ev.time)
        en = {
            "msisdn": msisdn, "imei": imei, "model": model, "deadline": dl_en,
            "today": today_en, "days_left": str(days_left), "owner": HIDDEN, "code": code,
        }
        fa = {
            "msisdn": msisdn.translate(PERSIAN_DIGITS), "imei": imei.translate(PERSIAN_DIGITS),
            "model": model, "deadline": dl_fa, "today": today_fa,
            "days_left": en["days_left"].translate(PERSIAN_DIGITS), "owner": HIDDEN,
            "code": code.translate(PERSIAN_DIGITS),
        }
        return fa_t.format_map(fa), en_t.format_map(en)
