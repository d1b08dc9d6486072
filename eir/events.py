"""Warning events (SPEC §5): the record, its JSON form, and the rendering of subscriber texts.

Texts come from the rule set's ``[messages.fa]`` / ``[messages.en]``. Persian texts get Persian digits
and Jalali dates in the rule set's time zone. The owner's number is never a placeholder value: ``{owner}``
always renders as ``***``, as in the registry's own messages.
"""

from __future__ import annotations

import datetime as dt
import functools
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


@functools.lru_cache(maxsize=4096)
def _iso_day(day: int) -> str:
    """Days since 1970-01-01 -> ``YYYY-MM-DD`` (a pure function: memoised, events cluster on few days)."""
    return (_EPOCH_DAY + dt.timedelta(days=day)).isoformat()


_EPOCH_DAY: Final = dt.date(1970, 1, 1)


def iso_utc(t: int | None) -> str | None:
    """Epoch seconds -> ``2026-11-22T03:00:00Z`` (None stays None)."""
    if t is None:
        return None
    # Arithmetic on the day's cached text, not datetime.strftime (~4 µs): every outbox row and event
    # line carries one or two of these, on the event loop's thread.
    day, s = divmod(int(t), 86_400)
    h, s = divmod(s, 3_600)
    m, s = divmod(s, 60)
    return f"{_iso_day(day)}T{h:02d}:{m:02d}:{s:02d}Z"


class Event:
    """One event of the outbox; ``seq`` is assigned by the state when the event is appended.

    The subscriber texts may be *pending* (:meth:`defer_texts`): they are rendered on first read of
    ``text_fa`` / ``text_en`` - when the outbox is written or the event delivered - not in the decision,
    since rendering (Persian digits, Jalali dates, two templates) is most of the cost of an event and an
    event nobody reads (a replay that counts events, a benchmark) never needs them. The result is the
    same as rendering at once: the renderer and the model are captured when the event is made, and the
    fields a text depends on are not changed after.
    """

    __slots__ = ("_en", "_fa", "_pending", "deadline", "detail", "imei", "msisdn", "reason", "seq", "slot",
                 "subscribers", "time", "type")

    def __init__(self, type: str, time: int, imei: int, msisdn: int | None, slot: int, reason: str | None,
                 deadline: int | None, text_fa: str | None = None, text_en: str | None = None,
                 subscribers: tuple[int, ...] = (), seq: int = 0, detail: dict[str, str] | None = None) -> None:
        self.type = type
        self.time = time
        self.imei = imei
        self.msisdn = msisdn
        self.slot = slot
        self.reason = reason
        self.deadline = deadline
        self._fa = text_fa
        self._en = text_en
        self._pending: tuple[Renderer, str] | None = None
        self.subscribers = subscribers
        self.seq = seq
        #: Control-plane events: what changed (string values only; never a code or a token).
        self.detail = detail

    def defer_texts(self, renderer: Renderer, model: str) -> None:
        """Render the texts with ``renderer`` (and the device's ``model``) when first read."""
        self._pending = (renderer, model)

    def _render(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            self._fa, self._en = pending[0].render(self, pending[1])

    @property
    def text_fa(self) -> str | None:
        """The Persian subscriber text (None for ops events and events without a subscriber)."""
        if self._pending is not None:
            self._render()
        return self._fa

    @text_fa.setter
    def text_fa(self, value: str | None) -> None:
        self._pending = None
        self._fa = value

    @property
    def text_en(self) -> str | None:
        """The English subscriber text."""
        if self._pending is not None:
            self._render()
        return self._en

    @text_en.setter
    def text_en(self, value: str | None) -> None:
        self._pending = None
        self._en = value

    def _fields(self) -> tuple[Any, ...]:
        return (self.type, self.time, self.imei, self.msisdn, self.slot, self.reason, self.deadline,
                self.text_fa, self.text_en, self.subscribers, self.seq, self.detail)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Event)
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]  # mutable (seq, texts), as the dataclass it replaces

    def __repr__(self) -> str:
        names = ("type", "time", "imei", "msisdn", "slot", "reason", "deadline", "text_fa", "text_en",
                 "subscribers", "seq", "detail")
        return "Event(" + ", ".join(f"{n}={v!r}" for n, v in zip(names, self._fields(), strict=True)) + ")"

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
    return dt.datetime.fromtimestamp(t, tz).date().isoformat()


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
