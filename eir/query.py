"""Building a :class:`~eir.model.Query` from raw request values (the edge of every interface).

Replay rows, RPC params and HTTP query strings all come through :func:`build_query`. A malformed IMEI is
not an error here (it is decided ``DENY MALFORMED_IMEI``); a bad time, MSISDN, IMSI or slot is a
:class:`RequestError` that the caller maps to its own error form (stderr line, RPC error, HTTP 400).
"""

from __future__ import annotations

import datetime as dt
import math
from typing import TYPE_CHECKING, Final

from eir.identifiers import (
    IdentifierError,
    imsi_is_home,
    parse_imei,
    parse_imsi,
    parse_msisdn,
    parse_slot,
)
from eir.model import Query

if TYPE_CHECKING:
    from eir.index import Index
    from eir.rules import RuleSet

MAX_FIELD_CHARS: Final = 64
# Times outside this range are almost certainly unit mistakes (milliseconds) or garbage.
MIN_EPOCH: Final = 946_684_800  # 2000-01-01
MAX_EPOCH: Final = 4_102_444_800  # 2100-01-01


class RequestError(IdentifierError):
    """A request value that cannot be used (names the field)."""


def parse_time(raw: object) -> int:
    """ISO 8601 with an offset, or epoch seconds (int, float or digits) -> int epoch seconds (floored)."""
    if isinstance(raw, bool):
        raise RequestError("time", raw, "not a time")
    if isinstance(raw, int | float):
        if isinstance(raw, float) and not math.isfinite(raw):
            raise RequestError("time", raw, "not a finite number")
        t = math.floor(raw)
    elif isinstance(raw, str):
        s = raw.strip()
        if not s or len(s) > MAX_FIELD_CHARS:
            raise RequestError("time", raw, "empty or too long")
        # ASCII only: str.isdigit() also accepts superscripts and other digits float() refuses
        if s.isascii() and s[0].isdigit() and s.replace(".", "", 1).isdigit():
            t = math.floor(float(s))
        else:
            try:
                d = dt.datetime.fromisoformat(s)
            except ValueError as e:
                raise RequestError("time", raw, "not ISO 8601 or epoch seconds") from e
            if d.tzinfo is None:
                raise RequestError("time", raw, "ISO 8601 time without a UTC offset")
            t = math.floor(d.timestamp())
    else:
        raise RequestError("time", raw, "not a time")
    if not MIN_EPOCH <= t <= MAX_EPOCH:
        raise RequestError("time", raw, "outside 2000..2100")
    return t


def _text(field: str, raw: object) -> str:
    if not isinstance(raw, str):
        if isinstance(raw, int) and not isinstance(raw, bool):
            return str(raw)
        raise RequestError(field, raw, "not a string")
    if len(raw) > MAX_FIELD_CHARS:
        raise RequestError(field, raw[:MAX_FIELD_CHARS] + "...", "too long")
    return raw


def build_query(index: Index, rules: RuleSet, time: int, imei: object, msisdn: object = None,
                slot: object = None, imsi: object = None) -> Query:
    """Parse one attach's raw values into a Query; the subscriber may come from the IMSI."""
    core = parse_imei(imei if imei.__class__ is str and len(imei) <= MAX_FIELD_CHARS
                      else _text("imei", imei), rules.imei)
    plan = rules.plan
    try:
        slot_n = parse_slot(slot)
        imsi_n = 0
        imsi_home = True
        if imsi is not None and imsi != "":
            imsi_n = parse_imsi(_text("imsi", imsi))
            imsi_home = imsi_is_home(imsi_n, plan)
        if msisdn is not None and msisdn != "":
            m, home = parse_msisdn(msisdn if msisdn.__class__ is str and len(msisdn) <= MAX_FIELD_CHARS
                                   else _text("msisdn", msisdn), plan)
            return Query(time, core, m, slot_n, not (home and imsi_home), imsi_n)
    except IdentifierError as e:
        raise RequestError(e.field, e.value, e.reason) from e
    if imsi_n:
        if not imsi_home:
            return Query(time, core, 0, slot_n, True, imsi_n)
        return Query(time, core, index.msisdn_for_imsi(imsi_n), slot_n, False, imsi_n)
    # Neither a usable MSISDN nor an IMSI: an unknown subscriber.
    return Query(time, core, 0, slot_n, False, 0)
