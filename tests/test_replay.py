"""`eir replay` / `eir check` end to end: rows in, one decision per row out, bad rows reported."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from eir.cli import main
from eir.model import CONST, Query, Reason
from eir.query import MAX_EPOCH, MIN_EPOCH, RequestError, parse_time
from eir.replay import DecisionWriter, TimeParser
from eir.snapshot import build_snapshot
from tests.conftest import RULES_DIR, write_jsonl
from tests.test_decide import CLONED_1, OTHER, OWNED_1, OWNER, REGISTRY, UNREG

CSV = f"""time,imei,msisdn,slot,imsi
2026-11-01T00:00:00Z,{OWNED_1},{OWNER},1,
2026-11-01T00:10:00+03:30,{OWNED_1},+989122222222,,
1793491800,{CLONED_1},{OTHER},2,
not-a-time,{OWNED_1},{OWNER},1,
2026-11-01T01:00:00Z,{OWNED_1},12ab,1,
2026-11-01T01:00:00Z,1234,{OWNER},1,
2026-11-01T01:00:00Z,{OWNED_1},,1,432119999999999
2026-11-01T02:00:00Z,{UNREG},{OTHER},1,
2026-12-01T02:00:00Z,{UNREG},{OTHER},1,
"""


@pytest.fixture
def snap(tmp_path: Path) -> Path:
    out = tmp_path / "s.snap"
    build_snapshot([write_jsonl(tmp_path / "r.jsonl", REGISTRY)], out, skip_invalid=False)
    return out


def run(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def rows(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_replay_csv(tmp_path: Path, snap: Path) -> None:
    log = tmp_path / "a.csv"
    log.write_text(CSV, encoding="utf-8")
    out, events = tmp_path / "d.jsonl", tmp_path / "e.jsonl"
    r = run("replay", str(log), "--snapshot", str(snap), "--rules", str(RULES_DIR / "default.toml"),
            "--out", str(out), "--events", str(events), "--no-progress", "--summary-json", str(tmp_path / "s.json"))
    assert r.exit_code == 0, r.output
    summary = orjson.loads((tmp_path / "s.json").read_bytes())
    assert summary["rows"] == 7 and summary["bad_rows"] == 2 and summary["by_reason"]["OWNER"] == 2
    assert summary["by_verdict"] == {"ALLOW": 3, "DENY": 2, "WARN": 2} and summary["events"]["CLONE_GRACE_STARTED"] == 1
    d = rows(out)
    assert [x["reason"] for x in d] == ["OWNER", "REGISTERED", "CLONE_GRACE", "MALFORMED_IMEI", "OWNER",
                                        "TRAVELER_ALLOWANCE", "ALLOWANCE_EXPIRED"]
    assert d[0] == {"time": "2026-11-01T00:00:00Z", "imei": OWNED_1, "msisdn": "989121111111", "slot": 1,
                    "verdict": "ALLOW", "status": "WHITELISTED", "reason": "OWNER", "deadline": None}
    assert d[1]["time"] == "2026-10-31T20:40:00Z" and d[1]["slot"] == 1
    assert d[2]["deadline"] == "2026-12-01T00:10:00Z" and d[2]["status"] == "GREYLISTED"
    assert d[3]["imei"] == "1234" and d[3]["status"] == "BLACKLISTED"
    assert d[4]["msisdn"] == "989121111111"  # from the IMSI
    assert [e["type"] for e in rows(events)] == ["CLONE_GRACE_STARTED", "TRAVELER_ALLOWANCE_STARTED",
                                                  "ALLOWANCE_EXPIRED"]
    assert f"{log}:5: time: not ISO 8601" in r.stderr and f"{log}:6: msisdn" in r.stderr
    assert "bad rows" in r.stdout and "CLONE_GRACE" in r.stdout and "subscribers warned" in r.stdout


def test_replay_jsonl_and_strict(tmp_path: Path, snap: Path) -> None:
    log = tmp_path / "a.jsonl"
    log.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in [
        {"time": "2026-11-01T00:00:00Z", "imei": OWNED_1, "msisdn": OWNER, "slot": 2},
        {"time": 1793491800, "imei": OWNED_1},
        {"imei": OWNED_1, "msisdn": OWNER},
        [1, 2],
    ]) + b"{not json\n")
    out = tmp_path / "d.jsonl"
    rules = str(RULES_DIR / "default.toml")
    r = run("replay", str(log), "--snapshot", str(snap), "--rules", rules, "--out", str(out))
    assert r.exit_code == 0
    assert [(x["reason"], x["slot"], x["msisdn"]) for x in rows(out)] == [("OWNER", 2, "989121111111"),
                                                                        ("REGISTERED", 1, None)]
    assert ":3: missing time" in r.stderr and ":4: not a JSON object" in r.stderr and ":5: not JSON" in r.stderr
    r = run("replay", str(log), "--snapshot", str(snap), "--rules", rules, "--strict")
    assert r.exit_code == 1 and ":3: missing time (--strict)" in r.stderr


def test_replay_refuses_bad_inputs(tmp_path: Path, snap: Path) -> None:
    log = tmp_path / "a.csv"
    log.write_text("when,imei\n1,2\n", encoding="utf-8")
    rules = str(RULES_DIR / "default.toml")
    r = run("replay", str(log), "--snapshot", str(snap), "--rules", rules)
    assert r.exit_code == 1 and "lacks column 'time'" in r.stderr
    bad_snap = tmp_path / "bad.snap"
    bad_snap.write_bytes(snap.read_bytes()[:-10])
    log.write_text(CSV, encoding="utf-8")
    r = run("replay", str(log), "--snapshot", str(bad_snap), "--rules", rules)
    assert r.exit_code == 1 and "Error" in r.stderr


def test_compare_reports_what_changes(tmp_path: Path, snap: Path) -> None:
    log = tmp_path / "a.csv"
    log.write_text(CSV, encoding="utf-8")
    js = tmp_path / "cmp.json"
    r = run("replay", str(log), "--snapshot", str(snap), "--rules", str(RULES_DIR / "default.toml"),
            "--compare", str(RULES_DIR / "strict.toml"), "--summary-json", str(js))
    assert r.exit_code == 0, r.output
    assert "| REGISTERED | OWNERSHIP_GRACE | 1 | 1 |" in r.stdout
    c = orjson.loads(js.read_bytes())
    assert c["changed_attaches"] == 1 and c["changed_subscribers"] == 1 and c["attaches"] == 7
    assert c["transitions"] == [{"from": "REGISTERED", "to": "OWNERSHIP_GRACE", "attaches": 1, "subscribers": 1}]


def test_check_command(snap: Path) -> None:
    r = run("check", "--snapshot", str(snap), "--rules", str(RULES_DIR / "strict.toml"), "--imei", OWNED_1,
            "--msisdn", OTHER, "--time", "2026-11-01T00:00:00Z")
    assert r.exit_code == 0
    d = orjson.loads(r.stdout)
    assert (d["verdict"], d["reason"], d["deadline"]) == ("WARN", "OWNERSHIP_GRACE", "2026-12-01T00:00:00Z")
    assert d["events"][0]["type"] == "OWNERSHIP_GRACE_STARTED"
    r = run("check", "--snapshot", str(snap), "--rules", str(RULES_DIR / "strict.toml"), "--imei", OWNED_1,
            "--msisdn", "abc")
    assert r.exit_code == 2 and "msisdn" in r.stderr




def test_replay_in_two_halves_with_state_equals_one_replay(tmp_path: Path) -> None:
    from eir.demo import write_demo

    write_demo(tmp_path, 400, 3000, 5)
    snapshot = tmp_path / "s.snap"
    build_snapshot([tmp_path / "registry.jsonl"], snapshot, skip_invalid=False)
    lines = (tmp_path / "attaches.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    halves = [lines[:1] + lines[1:1500], lines[:1] + lines[1500:]]
    rules = str(RULES_DIR / "default.toml")

    def replay(name: str, body: list[str], state: Path | None) -> tuple[list[Any], list[Any]]:
        log = tmp_path / f"{name}.csv"
        log.write_text("".join(body), encoding="utf-8")
        args = ["replay", str(log), "--snapshot", str(snapshot), "--rules", rules, "--out", str(tmp_path / f"{name}.d"),
                "--events", str(tmp_path / f"{name}.e"), "--no-progress"]
        r = run(*args, *(["--state", str(state)] if state else []))
        assert r.exit_code == 0, r.output
        return rows(tmp_path / f"{name}.d"), rows(tmp_path / f"{name}.e")

    whole_d, whole_e = replay("whole", lines, None)
    db = tmp_path / "state.db"
    d1, e1 = replay("h1", halves[0], db)
    d2, e2 = replay("h2", halves[1], db)
    assert d1 + d2 == whole_d
    assert e1 + e2 == whole_e and len(whole_e) > 10
    assert [e["seq"] for e in e1 + e2] == list(range(1, len(whole_e) + 1))


# --- the replay's fast paths equal the general ones ---------------------------------------------------

@given(st.integers(MIN_EPOCH, MAX_EPOCH - 61), st.sampled_from(["", "Z", "z", "+00:00"]),
       st.sampled_from(["", "x", "60", "5x", "0\u0663", " "]))
def test_time_parser_fast_path_equals_parse_time(t: int, suffix: str, garbage: str) -> None:
    canonical = dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S") + suffix
    tp = TimeParser()
    for raw in (canonical, canonical, canonical[:17] + garbage + canonical[19:]):
        try:
            expected: int | str = parse_time(raw)
        except RequestError as e:
            expected = str(e)
        try:
            got: int | str = tp(raw)
        except RequestError as e:
            got = str(e)
        assert got == expected


def test_decision_writer_writes_in_chunks_and_flushes(tmp_path: Path) -> None:
    out = tmp_path / "d.jsonl"
    n = DecisionWriter.CHUNK_ROWS + 5
    with out.open("wb") as f:
        w = DecisionWriter(f)
        for i in range(n):
            w.write("35693803564380" + str(i % 10), Query(1_793_491_200 + i, 1, 989121234567), CONST[Reason.OWNER])
        f.flush()
        assert out.read_bytes().count(b"\n") == DecisionWriter.CHUNK_ROWS  # one chunk so far
        w.flush()
    lines = out.read_bytes().splitlines()
    assert len(lines) == n
    assert orjson.loads(lines[-1]) == {"time": "2026-11-01T01:08:20Z", "imei": "356938035643800",
                                       "msisdn": "989121234567", "slot": 1, "verdict": "ALLOW",
                                       "status": "WHITELISTED", "reason": "OWNER", "deadline": None}


def test_strict_replay_keeps_the_rows_decided_before_the_bad_one(tmp_path: Path, snap: Path) -> None:
    log = tmp_path / "a.csv"
    log.write_text(CSV)
    out = tmp_path / "d.jsonl"
    r = run("replay", str(log), "--snapshot", str(snap), "--rules", str(RULES_DIR / "default.toml"),
            "--out", str(out), "--strict")
    assert r.exit_code == 1
    assert len(out.read_bytes().splitlines()) == 3  # the rows before line 5 (not-a-time)


def test_events_without_texts_are_the_same_events(tmp_path: Path, snap: Path) -> None:
    # Without --events the replay does not render texts (nobody reads them): same decisions, same counts.
    log = tmp_path / "a.csv"
    log.write_text(CSV)
    rules = str(RULES_DIR / "default.toml")
    sums = []
    for extra in (["--events", str(tmp_path / "e.jsonl")], []):
        out, js = tmp_path / f"d{len(extra)}.jsonl", tmp_path / f"s{len(extra)}.json"
        r = run("replay", str(log), "--snapshot", str(snap), "--rules", rules, "--out", str(out),
                "--summary-json", str(js), *extra)
        assert r.exit_code == 0
        s = orjson.loads(js.read_bytes())
        del s["seconds"], s["rows_per_second"]
        sums.append((out.read_bytes(), s))
    assert sums[0] == sums[1] and sums[0][1]["events"]
    assert all(e["text_fa"] for e in map(orjson.loads, (tmp_path / "e.jsonl").read_bytes().splitlines())
               if "text_fa" in e)
