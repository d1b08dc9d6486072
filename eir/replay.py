"""Replay an attach log through the engine (SPEC §1 what-if analysis; `eir replay`).

Rows flow: file bytes -> raw fields (CSV or JSON Lines) -> :func:`eir.query.build_query` -> engine ->
one JSON line per row. A row that cannot be read is reported with its line number and skipped (or is
fatal with ``strict``). :func:`compare` runs one log under two rule sets side by side.
"""

from __future__ import annotations

import csv
import datetime as dt
import time as _time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

import orjson

from eir.engine import Engine
from eir.events import Event
from eir.model import CONST, VERDICT_OF, Decision, Query, Reason, Verdict
from eir.query import RequestError, build_query, parse_time

COLUMNS: Final = ("time", "imei", "msisdn", "slot", "imsi")
REQUIRED: Final = ("time", "imei")
MAX_LINE_BYTES: Final = 4096
_EPOCH_DAY: Final = dt.date(1970, 1, 1).toordinal()


class ReplayError(ValueError):
    """A replay that cannot go on (unreadable file, bad header, a bad row under ``strict``)."""


@dataclass(frozen=True, slots=True)
class BadRow:
    """A row that could not be read: its line number and why."""

    line: int
    reason: str


RawRow = tuple[int, Any, Any, Any, Any, Any]  # line, time, imei, msisdn, slot, imsi


def read_rows(path: Path) -> Iterator[RawRow | BadRow]:
    """Raw rows of a CSV (header ``time,imei,msisdn,slot[,imsi]``) or JSON Lines attach log."""
    try:
        with path.open("rb") as probe:
            is_jsonl = probe.read(1) == b"{"
        if is_jsonl:
            with path.open("rb") as fb:
                yield from _read_jsonl(fb)
        else:
            with path.open("r", encoding="utf-8", errors="replace", newline="") as ft:
                yield from _read_csv(ft, path)
    except OSError as e:
        raise ReplayError(f"{path}: cannot read: {e.strerror}") from e


def _read_jsonl(f: IO[bytes]) -> Iterator[RawRow | BadRow]:
    for n, line in enumerate(f, 1):
        if len(line) > MAX_LINE_BYTES:
            yield BadRow(n, f"line longer than {MAX_LINE_BYTES} bytes")
            continue
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as e:
            yield BadRow(n, f"not JSON: {e}")
            continue
        if not isinstance(obj, dict):
            yield BadRow(n, "not a JSON object")
            continue
        missing = [k for k in REQUIRED if obj.get(k) in (None, "")]
        if missing:
            yield BadRow(n, f"missing {', '.join(missing)}")
            continue
        yield n, obj["time"], obj["imei"], obj.get("msisdn"), obj.get("slot"), obj.get("imsi")


def _read_csv(f: IO[str], path: Path) -> Iterator[RawRow | BadRow]:
    reader = csv.reader(f)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as e:
        raise ReplayError(f"{path}:1: bad CSV header: {e}") from e
    yield from csv_rows(reader, *csv_columns(header, path))


Columns = tuple[int, int, int, int, int]  # index of time, imei, msisdn, slot, imsi (-1: absent)


def csv_columns(header: list[str], path: Path) -> tuple[Columns, int]:
    """Where each column is (see :data:`COLUMNS`) and the header's width; ReplayError for a bad header."""
    names = [h.strip().lower() for h in header]
    for col in REQUIRED:
        if col not in names:
            raise ReplayError(f"{path}:1: CSV header lacks column {col!r} (need time,imei,msisdn,slot)")
    if "msisdn" not in names and "imsi" not in names:
        raise ReplayError(f"{path}:1: CSV header needs an msisdn or an imsi column")
    it, ii, im, isl, iimsi = (names.index(c) if c in names else -1 for c in COLUMNS)
    return (it, ii, im, isl, iimsi), len(names)


def csv_rows(reader: Any, pos: Columns, width: int, base: int = 0) -> Iterator[RawRow | BadRow]:
    """The rows of a csv.reader past the header; line numbers are ``base`` + the reader's."""
    it, ii, im, isl, iimsi = pos
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            yield BadRow(base + reader.line_num, f"bad CSV: {e}")
            continue
        n = base + reader.line_num
        if len(row) != width:
            if not row:
                continue
            yield BadRow(n, f"expected {width} columns, got {len(row)}")
            continue
        yield (n, row[it], row[ii], row[im] if im >= 0 else None, row[isl] if isl >= 0 else None,
               row[iimsi] if iimsi >= 0 else None)


#: "00".."59" -> int: seconds of the canonical form, validated and converted in one lookup.
_SIXTY: Final = {f"{n:02d}": n for n in range(60)}


class TimeParser:
    """parse_time with a fast path for the canonical ``YYYY-MM-DDTHH:MM:SSZ`` form (per-minute cache)."""

    __slots__ = ("_minutes",)

    def __init__(self) -> None:
        self._minutes: dict[str, int] = {}

    def __call__(self, raw: Any) -> int:
        if raw.__class__ is str and len(raw) == 20 and raw[19] == "Z":
            sec = _SIXTY.get(raw[17:19])
            if sec is not None:
                minute = self._minutes.get(raw[:17])
                if minute is not None:
                    return minute + sec
                if raw[16] == ":" and raw[13] == ":":
                    try:
                        minute = parse_time(raw[:17] + "00Z")
                    except RequestError:
                        return parse_time(raw)  # the error names the whole value
                    if len(self._minutes) >= 100_000:
                        self._minutes.clear()
                    self._minutes[raw[:17]] = minute
                    return minute + sec
        return parse_time(raw)


class IsoFormatter:
    """Epoch seconds -> ``YYYY-MM-DDTHH:MM:SSZ`` from a per-hour cache and a table of ``MM:SS``."""

    __slots__ = ("_hours", "_mmss")

    def __init__(self) -> None:
        self._hours: dict[int, str] = {}
        self._mmss = [f"{m:02d}:{s:02d}Z" for m in range(60) for s in range(60)]

    def __call__(self, t: int) -> str:
        hour, sec = divmod(t, 3600)
        h = self._hours.get(hour)
        if h is None:
            if len(self._hours) >= 100_000:
                self._hours.clear()
            day, hh = divmod(hour, 24)
            h = self._hours[hour] = f"{dt.date.fromordinal(_EPOCH_DAY + day).isoformat()}T{hh:02d}:"
        return h + self._mmss[sec]


@dataclass(slots=True)
class Summary:
    """What a replay did: attaches by verdict/reason, events by type, subscribers, bad rows, speed."""

    rows: int = 0
    bad_rows: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    warned: set[int] = field(default_factory=set)
    denied: set[int] = field(default_factory=set)
    seconds: float = 0.0

    @property
    def rows_per_second(self) -> float:
        """Decided rows per second of wall time."""
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def by_verdict(self) -> dict[str, int]:
        """Attaches per verdict."""
        out = {v.name: 0 for v in Verdict}
        for reason, n in self.by_reason.items():
            out[_VERDICT_NAME[reason]] += n
        return out

    def to_dict(self) -> dict[str, Any]:
        """Machine-readable form (``--summary-json``)."""
        return {
            "rows": self.rows, "bad_rows": self.bad_rows, "by_verdict": self.by_verdict(),
            "by_reason": {str(r): n for r, n in self.by_reason.most_common()},
            "events": dict(self.events.most_common()),
            "subscribers_warned": len(self.warned), "subscribers_denied": len(self.denied),
            "seconds": round(self.seconds, 3), "rows_per_second": round(self.rows_per_second),
        }

    def render(self) -> str:
        """The human summary table printed at the end of a replay."""
        lines = [f"{'attaches':<28}{self.rows:>12,}"]
        for verdict, n in self.by_verdict().items():
            lines.append(f"  {verdict:<26}{n:>12,}  {_pct(n, self.rows)}")
            for reason, m in self.by_reason.most_common():
                if _VERDICT_NAME[reason] == verdict:
                    lines.append(f"    {reason:<24}{m:>12,}  {_pct(m, self.rows)}")
        lines.append(f"{'events':<28}{sum(self.events.values()):>12,}")
        for typ, n in self.events.most_common():
            lines.append(f"  {typ:<26}{n:>12,}")
        lines.append(f"{'subscribers warned':<28}{len(self.warned):>12,}")
        lines.append(f"{'subscribers denied':<28}{len(self.denied):>12,}")
        lines.append(f"{'bad rows':<28}{self.bad_rows:>12,}")
        lines.append(f"{'rows/s':<28}{round(self.rows_per_second):>12,}  ({self.seconds:.2f} s)")
        return "\n".join(lines)


def _pct(n: int, total: int) -> str:
    return f"{100 * n / total:6.2f}%" if total else ""


_VERDICT_NAME: Final = {r.value: d.verdict.name for r, d in CONST.items()}


OnBad = Callable[[BadRow], None]
Parsed = tuple[int, Any, Query]  # line, imei as given, query


RowParser = Callable[[int, Any, Any, Any, Any, Any], "Query | None"]


def row_parser(engine: Engine, on_bad: OnBad, ptime: Callable[[Any], int] | None = None) -> RowParser:
    """``(n, time, imei, msisdn, slot, imsi)`` -> the row's Query against the engine's current index and
    rules, or None after reporting it to ``on_bad``. ``ptime`` reads the time (default: a TimeParser)."""
    b = engine.bundle
    index, rules = b.index, b.rules
    read_time = ptime if ptime is not None else TimeParser()

    def parse(n: int, t: Any, imei: Any, msisdn: Any, slot: Any, imsi: Any) -> Query | None:
        try:
            return build_query(index, rules, read_time(t), imei, msisdn, slot, imsi)
        except RequestError as e:
            on_bad(BadRow(n, str(e)))
            return None

    return parse


def parse_rows(rows: Iterator[RawRow | BadRow], engine: Engine, on_bad: OnBad) -> Iterator[Parsed]:
    """Turn raw rows into queries against the engine's current index and rules."""
    parse = row_parser(engine, on_bad)
    for row in rows:
        if isinstance(row, BadRow):
            on_bad(row)
            continue
        q = parse(*row)
        if q is not None:
            yield row[0], row[2], q


def tail_head(reason: Reason) -> str:
    """The part of a decision line that depends on the reason alone, up to ``"deadline":``."""
    verdict = VERDICT_OF[reason]
    return f',"verdict":"{verdict.name}","status":"{verdict.status}","reason":"{reason.value}","deadline":'


class DecisionWriter:
    """Writes one JSON object per decided row (``--out``).

    The line is assembled from cached pieces (one tail per reason for deadline-free decisions) rather
    than a dict per row, and lines are written in chunks of ``CHUNK_ROWS``: this writer runs once per
    attach of a replay. :meth:`flush` (or leaving the ``with`` block) writes what is pending.
    """

    CHUNK_ROWS: Final = 4096

    __slots__ = ("_f", "_iso", "_pending", "_tails")

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f
        self._iso = IsoFormatter()
        self._tails: dict[Reason, str] = {}
        self._pending: list[str] = []

    def __enter__(self) -> DecisionWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()

    @property
    def file(self) -> IO[bytes]:
        """The file the lines go to."""
        return self._f

    def _tail(self, d: Decision) -> str:
        if d.deadline is None:
            tail = self._tails.get(d.reason)
            if tail is None:
                tail = self._tails[d.reason] = f"{tail_head(d.reason)}null}}\n"
            return tail
        return f'{tail_head(d.reason)}"{self._iso(d.deadline)}"}}\n'

    def line(self, imei_raw: Any, q: Query, d: Decision) -> str:
        """The JSON line of one decided row (the reference form; eir/_replayio.c writes the same)."""
        # Letters and digits need no JSON escaping; anything else (quotes, prefixes, numbers) goes
        # through orjson.
        imei = (f'"{imei_raw}"' if imei_raw.__class__ is str and imei_raw.isalnum()
                else orjson.dumps(imei_raw).decode())
        msisdn = f'"{q.msisdn}"' if q.msisdn else "null"
        return f'{{"time":"{self._iso(q.time)}","imei":{imei},"msisdn":{msisdn},"slot":{q.slot}{self._tail(d)}'

    def write(self, imei_raw: Any, q: Query, d: Decision) -> None:
        """Queue the line of one decided row."""
        pending = self._pending
        pending.append(self.line(imei_raw, q, d))
        if len(pending) >= self.CHUNK_ROWS:
            self.flush()

    def flush(self) -> None:
        """Write the pending lines."""
        if self._pending:
            self._f.write("".join(self._pending).encode())
            self._pending = []


def replay(parsed: Iterator[Parsed], engine: Engine, summary: Summary,
           out: DecisionWriter | None = None, progress: Callable[[int], None] | None = None) -> Summary:
    """Decide every parsed row in order, counting into ``summary``."""
    started = _time.perf_counter()
    by_reason = summary.by_reason
    warned, denied = summary.warned, summary.denied
    check = engine.check
    write = out.write if out is not None else None
    allow, warn = Verdict.ALLOW, Verdict.WARN
    n = 0
    try:
        for _, imei_raw, q in parsed:
            d = check(q)
            n += 1
            by_reason[d.reason] += 1  # Reason is a StrEnum: counts under the same keys as its value
            if d.verdict is not allow and q.msisdn:
                (warned if d.verdict is warn else denied).add(q.msisdn)
            if write is not None:
                write(imei_raw, q, d)
            if progress is not None and n & 0xFFF == 0:
                progress(n)
    finally:
        if out is not None:
            out.flush()  # the rows decided so far, also when a bad row stops a --strict run
    summary.rows += n
    summary.seconds += _time.perf_counter() - started
    return summary


def event_writer(f: IO[bytes], summary: Summary) -> Callable[[Event], None]:
    """An engine event sink writing JSON Lines and counting events by type."""
    counts = summary.events

    def sink(ev: Event) -> None:
        counts[ev.type] += 1
        f.write(orjson.dumps(ev.to_dict()))
        f.write(b"\n")

    return sink


def event_counter(summary: Summary) -> Callable[[Event], None]:
    """An engine event sink that only counts events by type."""
    counts = summary.events

    def sink(ev: Event) -> None:
        counts[ev.type] += 1

    return sink
