"""The C replay edge (eir/_replayio.c via eir.replay_fast) against the pure-Python replay (the reference).

Each test replays the same bytes both ways, each with a fresh engine, and compares the decision file
byte for byte, the events, the bad rows (line and reason) and the summary. CI requires the extension
(``EIR_REQUIRE_FASTPATH=1`` in .ci/run); elsewhere these tests are skipped when it is not built.
"""

from __future__ import annotations

import datetime as dt
import io
import os
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eir import fastpath, replay_fast
from eir.demo import write_demo
from eir.engine import Bundle, Engine
from eir.events import Event, iso_utc
from eir.index import Index
from eir.model import Decision, Query
from eir.query import MAX_EPOCH, MIN_EPOCH, RequestError, build_query, parse_time
from eir.replay import BadRow, DecisionWriter, ReplayError, Summary
from eir.rules import load_rules
from eir.snapshot import build_snapshot
from eir.state import MemoryState
from tests.conftest import RULES_DIR, write_jsonl
from tests.test_decide import CLONED_1, OTHER, OWNED_1, OWNER, REGISTRY, UNREG

needs_edge = pytest.mark.skipif(not replay_fast.available(), reason="eir._replayio is not built")
RULES = load_rules(RULES_DIR / "default.toml")


def test_the_edge_is_built_where_required() -> None:
    if os.environ.get("EIR_REQUIRE_FASTPATH"):
        assert replay_fast.available(), "EIR_REQUIRE_FASTPATH=1 but eir._replayio is not built"


def run(log: Path, index: Index, accelerate: bool, chunk: int = replay_fast.CHUNK_BYTES,
        strict: bool = False) -> tuple[Any, ...]:
    """Replay ``log``; everything the replay produces, for comparison."""
    summary = Summary()
    events: list[Event] = []
    bad: list[BadRow] = []
    # The reference is pure Python throughout: no C edge and no C accelerator in the engine.
    engine = Engine(Bundle.of(index, RULES), MemoryState(keep_outbox=False), (events.append,), accelerate=accelerate)
    buf = io.BytesIO()

    def on_bad(b: BadRow) -> None:
        bad.append(b)
        if strict:
            raise ReplayError(f"{b.line}: {b.reason}")

    error = None
    with DecisionWriter(buf) as w:
        try:
            replay_fast.replay_file(log, engine, summary, w, on_bad, accelerate=accelerate, chunk_bytes=chunk)
        except ReplayError as e:
            error = str(e)
    s = summary.to_dict()
    del s["seconds"], s["rows_per_second"]
    return buf.getvalue(), [e.to_dict() for e in events], bad, s, list(s["by_reason"]), error


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Index:
    d = tmp_path_factory.mktemp("idx")
    snap = d / "s.snap"
    build_snapshot([write_jsonl(d / "r.jsonl", REGISTRY)], snap, skip_invalid=False)
    return Index.from_snapshot(snap)


# --- CSV made of the forms the edge handles and the ones it hands back ---------------------------------

T = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
times = st.one_of(
    st.integers(0, 86400 * 60).map(lambda s: (T + dt.timedelta(seconds=s)).strftime("%Y-%m-%dT%H:%M:%SZ")),
    st.sampled_from(["2026-02-29T00:00:00Z", "2028-02-29T23:59:59Z", "2026-11-01T24:00:00Z",
                     "2026-11-01T00:60:00Z", "2026-11-01T00:00:60Z", "2026-13-01T00:00:00Z",
                     "1999-12-31T23:59:59Z", "2100-01-01T00:00:00Z", "2100-01-01T00:00:01Z",
                     "2026-11-01t00:00:00Z", "2026-11-01T00:00:00z", "2026-11-01T00:00:00+03:30",
                     "1793491800", "1793491800.5", "not-a-time", "", " 2026-11-01T00:00:00Z",
                     "2026-11-01T0a:00:00Z", "0000-01-01T00:00:00Z"]))
imeis = st.sampled_from([OWNED_1, CLONED_1, UNREG, "imei-" + OWNED_1, OWNED_1[:14], "1234", "",
                         "35693803564380\\9", "3569380356438\u06f09", "imei\t" + OWNED_1, OWNED_1 + " "])
msisdns = st.sampled_from([OWNER, OTHER, "989121111111", "+989122222222", "9121111111", "", "12ab",
                           "00441234567890", "0912\u06f01111111"])
slots = st.sampled_from(["", "1", "2", "16", "17", "0", "x", " 1"])
imsis = st.sampled_from(["", "432119999999999", "310150123456789", "abc"])
HEADERS = {"time,imei,msisdn,slot,imsi": (0, 1, 2, 3, 4), "time,imei,msisdn,slot": (0, 1, 2, 3, None),
           "imei,slot,time,imsi,msisdn": (2, 0, 4, 1, 3), "Time , IMEI,imsi": (0, 1, None, None, 2)}


@st.composite
def csv_logs(draw: st.DrawFn) -> bytes:
    header = draw(st.sampled_from(sorted(HEADERS)))
    cols = HEADERS[header]
    width = header.count(",") + 1
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    lines = [header]
    for _ in range(draw(st.integers(0, 25))):
        kind = draw(st.sampled_from(["row"] * 8 + ["blank", "short", "long", "quoted", "cr", "bytes"]))
        values = [draw(times), draw(imeis), draw(msisdns), draw(slots), draw(imsis)]
        fields = [""] * width
        for value, col in zip(values, cols, strict=True):
            if col is not None:
                fields[col] = value
        line = ",".join(fields)
        if kind == "blank":
            line = ""
        elif kind == "short":
            line = ",".join(fields[:-1])
        elif kind == "long":
            line += ",x"
        elif kind == "quoted":
            line = ",".join(f'"{f}"' for f in fields[:-1]) + ',"a\nb"'
        elif kind == "cr":
            line = line.replace(",", ",\r", 1)
        lines.append(line)
    body = eol.join(lines) + draw(st.sampled_from(["", eol]))
    raw = body.encode()
    if draw(st.booleans()):
        raw = raw.replace(b"\xdb\xb0", b"\xff", 1)  # an invalid UTF-8 byte, where a Persian digit was
    return raw


@needs_edge
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(csv_logs(), st.sampled_from([1, 7, 64, replay_fast.CHUNK_BYTES]), st.booleans())
def test_edge_equals_python(tmp_path: Path, index: Index, log: bytes, chunk: int, strict: bool) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(log)
    assert run(path, index, True, chunk, strict) == run(path, index, False, strict=strict)


@needs_edge
@pytest.mark.parametrize("body", [b"", b"time,imei\n", b"when,imei\n1,2\n", b"time,imei,msisdn\n",
                                  b"time,imei,msisdn", b'"time","imei","msisdn"\n1793491800,1,2\n',
                                  b"\n1793491800,1,2\n", b"time,imei,msisdn\n" + b"1," * 70 + b"\n",
                                  b"time,imei,msisdn" + b",x" * 70 + b"\n2026-11-01T00:00:00Z,1,2" + b"," * 70 + b"\n"])
def test_edge_equals_python_on_odd_files(tmp_path: Path, index: Index, body: bytes) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(body)
    assert run(path, index, True) == run(path, index, False)


@needs_edge
def test_edge_equals_python_on_the_demo_mix(tmp_path: Path) -> None:
    write_demo(tmp_path, 600, 6000, 11)
    snap = tmp_path / "s.snap"
    build_snapshot([tmp_path / "registry.jsonl"], snap, skip_invalid=False)
    index = Index.from_snapshot(snap)
    fast, slow = run(tmp_path / "attaches.csv", index, True), run(tmp_path / "attaches.csv", index, False)
    assert fast == slow
    decisions, events = fast[0].splitlines(), fast[1]
    assert len(decisions) > 5000 and len(events) > 100
    assert {orjson.loads(x)["verdict"] for x in decisions} == {"ALLOW", "WARN", "DENY"}


# --- the pieces ---------------------------------------------------------------------------------------

@needs_edge
@given(st.one_of(st.integers(MIN_EPOCH - 86400, MAX_EPOCH + 86400).map(
    lambda t: dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")),
    st.from_regex(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z\Z"), st.text(max_size=22)))
def test_canonical_time_equals_parse_time(raw: str) -> None:
    from eir import _replayio  # type: ignore[attr-defined]

    try:
        expected: int | None = parse_time(raw)
    except RequestError:
        expected = None
    got = _replayio.parse_canonical(raw.encode())
    # The C edge answers only the canonical form; everything else goes to parse_time.
    assert got == expected or (got is None and not (len(raw) == 20 and raw.endswith("Z") and raw[10] == "T"))


@needs_edge
@given(st.integers(0, 253402300799))
def test_iso_format_equals_iso_utc(t: int) -> None:
    from eir import _replayio

    assert _replayio.format_iso(t) == iso_utc(t)


# --- the accelerator's decide_raw: check_raw, or the Query build_query makes ----------------------------

needs_fastpath = pytest.mark.skipif(not fastpath.available(), reason="eir._fastpath is not built")


@needs_fastpath
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(imeis, msisdns, slots, st.integers(0, 86400 * 60),
                          st.sampled_from([None, "", "432119999999999"])), max_size=30))
def test_decide_raw_is_check_raw_or_build_query(index: Index, rows: list[tuple[str, str, str, int, Any]]) -> None:
    # Two engines on the same attaches: one through decide_raw, one through check_raw + build_query.
    a = Engine(Bundle.of(index, RULES), MemoryState(keep_outbox=False))
    b = Engine(Bundle.of(index, RULES), MemoryState(keep_outbox=False))
    fa, fb = a.fast, b.fast
    assert fa is not None and fb is not None
    t0 = int(T.timestamp())
    for imei, msisdn, slot, dt_s, imsi in rows:
        got = fa.decide_raw(imei, msisdn, slot, t0 + dt_s, imsi)
        ref = fb.check_raw(imei, msisdn, slot, t0 + dt_s, imsi)
        if ref is not None and imsi:
            # check_raw takes an IMSI, decide_raw leaves it to Python (the C edge would write the row's
            # msisdn field, not the subscriber decided on): the same decision through build_query
            assert got is None
            assert a.check(build_query(index, RULES, t0 + dt_s, imei, msisdn, slot, imsi)) == ref
            continue
        if ref is not None:
            # the same Decision (the shared one, or one with the deadline the state held), recorded in
            # both histories
            assert isinstance(got, Decision) and got == ref and not got.effects
            continue
        try:
            q = build_query(index, RULES, t0 + dt_s, imei, msisdn, slot, imsi)
        except RequestError:
            assert got is None
            continue
        if isinstance(got, Query):
            assert repr(got) == repr(q) and got.imsi == q.imsi
            assert a.check(got) == b.check(q)
        else:
            assert got is None  # a form the C parser leaves to Python
            a.check(q)
            b.check(q)
    assert a.state.histories == b.state.histories
