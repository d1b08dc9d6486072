"""`eir replay` of a CSV log through the optional C edge (``eir/_replayio.c``).

The C edge reads the file in large chunks, splits the common well-formed line itself, parses the
canonical UTC time, and hands the fields to the engine's C accelerator (``FastCheck.decide_raw``): it
decides the common attach itself (no Query) and returns the Query of any other, which
:meth:`eir.engine.Engine.check` decides. The edge then writes and counts each decision. Whatever it does
not handle goes back to the pure-Python replay of :mod:`eir.replay` (the reference): values the
accelerator does not parse (:func:`eir.query.build_query`), lines with other bytes, lines with quotes
(from there on, the csv module reads the rest), other time forms, lines that need JSON escaping.
:func:`replay_file` uses the C edge when it is built and enabled (``EIR_PURE_PYTHON=1`` disables it) and
the input is CSV; otherwise the pure-Python replay. tests/test_replay_fast.py checks that both write the
same bytes.
"""

from __future__ import annotations

import csv
import io
import time as _time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import IO, Any, Final

from eir.engine import Engine
from eir.model import Decision, Query, Verdict
from eir.native import REPLAYIO_ABI, load
from eir.query import MAX_EPOCH, MIN_EPOCH
from eir.replay import (
    BadRow,
    Columns,
    DecisionWriter,
    OnBad,
    RawRow,
    ReplayError,
    Summary,
    TimeParser,
    csv_columns,
    csv_rows,
    parse_rows,
    read_rows,
    replay,
    row_parser,
    tail_head,
)

CHUNK_BYTES: Final = 1 << 20
#: Wider headers go to the Python path (the C edge splits at most this many columns).
MAX_COLUMNS: Final = 64


def _load() -> ModuleType | None:
    mod, _ = load("eir._replayio", REPLAYIO_ABI)
    if mod is not None and (mod.MIN_EPOCH, mod.MAX_EPOCH) != (MIN_EPOCH, MAX_EPOCH):
        return None  # built from another version of eir.query's range: not usable
    return mod


_MODULE = _load()


def available() -> bool:
    """Whether the C replay edge is built and enabled in this process."""
    return _MODULE is not None


def replay_file(path: Path, engine: Engine, summary: Summary, out: DecisionWriter | None, on_bad: OnBad,
                progress: Callable[[int], None] | None = None, accelerate: bool = True,
                chunk_bytes: int = CHUNK_BYTES) -> Summary:
    """Replay the attach log at ``path`` (CSV or JSON Lines): decisions to ``out``, counts to ``summary``.

    ``accelerate=False`` (or no C edge) runs the pure-Python replay; ``chunk_bytes`` is the read size.
    """
    if accelerate and _MODULE is not None:
        try:
            f = path.open("rb")
        except OSError as e:
            raise ReplayError(f"{path}: cannot read: {e.strerror}") from e
        with f:
            header = _read(f.readline, -1, path)
            # JSON Lines, an empty file, a quoted header: the Python path reads them.
            if header[:1] not in (b"{", b"") and b'"' not in header and b"\r" not in header.rstrip(b"\r\n"):
                pos, width = csv_columns(next(csv.reader([header.decode("utf-8", "replace")]), []), path)
                if width <= MAX_COLUMNS:
                    _replay_csv(_MODULE, f, len(header), pos, width, path, engine, summary, out, on_bad,
                                progress, chunk_bytes)
                    return summary
    return replay(parse_rows(read_rows(path), engine, on_bad), engine, summary, out, progress)


def _read(read: Callable[[int], bytes], n: int, path: Path) -> bytes:
    try:
        return read(n)
    except OSError as e:
        raise ReplayError(f"{path}: cannot read: {e.strerror}") from e


def _replay_csv(mod: ModuleType, f: IO[bytes], offset: int, pos: Columns, width: int, path: Path, engine: Engine,
                summary: Summary, out: DecisionWriter | None, on_bad: OnBad,
                progress: Callable[[int], None] | None, chunk_bytes: int) -> None:
    """The rows after the header (``offset`` bytes) through the C edge."""
    started = _time.perf_counter()
    row = _row_function(engine, on_bad)
    fast = engine.fast
    plan = engine.bundle.rules.plan
    rep = mod.Replayer(
        columns=pos, width=width, row=row, line_fallback=_line_function(row, pos, width, on_bad),
        bad_width=lambda n, got: on_bad(BadRow(n, f"expected {width} columns, got {got}")),
        format_line=out.line if out is not None else None, tail_of=lambda r: tail_head(r).encode(),
        write=out.file.write if out is not None else None, allow=Verdict.ALLOW, warn=Verdict.WARN,
        warned=summary.warned, denied=summary.denied,
        # The fields parsed once, in C, when the engine has the accelerator: the common attach decided
        # there (no Query), any other as the Query that Engine.check decides.
        decide_raw=fast.decide_raw if fast is not None else None, check=engine.check, query_type=Query,
        country_code=plan.country_code, national_mobile_length=plan.national_mobile_length)
    data = b""  # offset: where data[0] is in the file
    try:
        while True:
            chunk = _read(f.read, chunk_bytes, path)
            data = data + chunk if data else chunk
            used = rep.feed(data, not chunk)
            offset += used
            data = data[used:]
            if progress is not None:
                progress(rep.rows)
            if rep.stopped or not chunk:
                break
    finally:
        rep.flush()  # the rows decided so far, also when a bad row stops a --strict run
        for reason, n in rep.counts():
            summary.by_reason[reason] += n
    seconds = _time.perf_counter() - started
    if rep.stopped:
        # A quoted field (it may span lines) or a lone CR: the csv module reads the rest of the file.
        done = rep.rows
        replay(parse_rows(_rest_rows(f, offset, pos, width, rep.line, path), engine, on_bad), engine, summary,
               out, (lambda n: progress(done + n)) if progress is not None else None)
    # Counted when the whole log is done, as eir.replay.replay does (a --strict stop counts no rows).
    summary.rows += rep.rows
    summary.seconds += seconds


def _rest_rows(f: IO[bytes], offset: int, pos: Columns, width: int, base: int,
               path: Path) -> Iterator[RawRow | BadRow]:
    """The rows from ``offset`` on, read by the csv module (line numbers after ``base``)."""
    try:
        f.seek(offset)
        text = io.TextIOWrapper(f, encoding="utf-8", errors="replace", newline="")
        yield from csv_rows(csv.reader(text), pos, width, base)
        text.detach()
    except OSError as e:
        raise ReplayError(f"{path}: cannot read: {e.strerror}") from e


Row = Callable[[int, Any, Any, Any, Any, Any], "tuple[Query, Decision] | None"]


def _row_function(engine: Engine, on_bad: OnBad) -> Row:
    """One split row -> (query, decision), or None after reporting a bad row (as eir.replay.parse_rows)."""
    ptime = TimeParser()
    # The C edge hands canonical times over already parsed (epoch seconds, in range).
    parse = row_parser(engine, on_bad, lambda t: t if t.__class__ is int else ptime(t))
    check = engine.check

    def row(n: int, t: Any, imei: Any, msisdn: Any, slot: Any, imsi: Any) -> tuple[Query, Decision] | None:
        q = parse(n, t, imei, msisdn, slot, imsi)
        return None if q is None else (q, check(q))

    return row


def _line_function(row: Row, pos: Columns, width: int,
                   on_bad: OnBad) -> Callable[[int, bytes], tuple[str, Query, Decision] | None]:
    """A line the C edge does not split (other bytes, over 4 KiB): the csv module splits it."""
    it, ii, im, isl, iimsi = pos

    def line(n: int, raw: bytes) -> tuple[str, Query, Decision] | None:
        # No quote or CR in it (the C edge checked): one line is one record, as in the file.
        try:
            fields = next(csv.reader([raw.decode("utf-8", "replace")]), [])
        except csv.Error as e:
            on_bad(BadRow(n, f"bad CSV: {e}"))
            return None
        if len(fields) != width:
            if fields:
                on_bad(BadRow(n, f"expected {width} columns, got {len(fields)}"))
            return None
        imei = fields[ii]
        got = row(n, fields[it], imei, fields[im] if im >= 0 else None, fields[isl] if isl >= 0 else None,
                  fields[iimsi] if iimsi >= 0 else None)
        return None if got is None else (imei, *got)

    return line
