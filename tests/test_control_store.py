"""The control plane's durability: the journal in the SQLite store, restart and hot reload with journal
replay, and ``eir snapshot export`` (watermark: nothing applied twice)."""

from __future__ import annotations

import re
import sqlite3
from dataclasses import replace
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from eir.cli import main
from eir.control_export import export_snapshot
from eir.control_ops import JournalMismatch, replay
from eir.index import Index
from eir.model import GraceKind, Reason
from eir.rules import RuleSet
from eir.snapshot import read_snapshot
from eir.state import MemoryState
from eir.store import SqliteState
from eir.store_schema import _DDL
from tests.control_fixtures import (
    BUYER,
    CLONED_1,
    CODE,
    CODE_KEY,
    FREE_SAME_TAC,
    NEW,
    OPSIM,
    OTHER,
    OWNED_1,
    OWNED_2,
    OWNER,
    T0,
    Plane,
    build,
    c,
    canonical,
    registry,
)
from tests.svc_fixtures import FixedClock, make_config, start


@pytest.fixture
def snap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("EIR_CODE_KEY", CODE_KEY.decode())
    return build(tmp_path, registry())


async def changes_made(plane: Plane) -> None:
    """A mix of operations (the seller keeps a pending transfer at the end)."""
    ctl = plane.control
    await ctl.activate(NEW, BUYER, CODE)
    await ctl.add_operator_sim(CLONED_1, OWNER, 2, OPSIM)
    await ctl.block(OWNED_1, "stolen")
    await ctl.unblock(OWNED_1)
    await ctl.block(FREE_SAME_TAC, "lost")
    await ctl.clone_flag(OWNED_1, True)
    await ctl.transfer(OWNED_1, OWNER, OTHER)


async def test_changes_survive_a_restart_of_the_sqlite_store(snap: Path, default_rules: RuleSet,
                                                             tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    store = await SqliteState.open(db)
    plane = Plane(Index.from_snapshot(snap), default_rules, state=store)
    assert plane.attach(NEW, BUYER).reason is Reason.ACTIVATION_GRACE
    await store.barrier()
    await changes_made(plane)
    assert not store.has_pending()  # every answer waited for its commit
    live = canonical(plane.index)
    journal_id = store.journal_id
    await store.close()

    again = await SqliteState.open(db)
    try:
        assert [s for s, _, _ in again.changes] == list(range(1, 8)) and again.journal_id == journal_id
        assert again.next_change_seq == 8
        assert not again.activations  # the activation grace ended, durably
        fresh = Index.from_snapshot(snap)
        report = replay(fresh, again.changes, again.journal_id)
        assert (report.applied, report.skipped, report.last_seq) == (7, 0, 7)
        assert canonical(fresh) == live
        rows = await again.read_events(0, 100)
        types = [orjson.loads(body)["type"] for _, body in rows]
        assert "DEVICE_ACTIVATED" in types and "TRANSFER_CODE_ISSUED" in types and "CLONE_FLAG_SET" in types
    finally:
        await again.close()


async def test_a_version_1_state_is_migrated(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.executescript(f"BEGIN;\n{_DDL}\nPRAGMA application_id = 1162433107;\nPRAGMA user_version = 1;\nCOMMIT;")
    conn.close()
    store = await SqliteState.open(db)
    try:
        store.append_change(T0, b'{"op": "x", "ops": []}')
        await store.barrier()
    finally:
        await store.close()
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    assert conn.execute("SELECT seq FROM registry_change").fetchall() == [(1,)]
    conn.close()


async def test_export_round_trip_applies_nothing_twice(snap: Path, default_rules: RuleSet, tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    store = await SqliteState.open(db)
    plane = Plane(Index.from_snapshot(snap), default_rules, state=store)
    await changes_made(plane)
    live = canonical(plane.index)
    out = tmp_path / "rolled.eirsnap"
    meta, report = export_snapshot(snap, db, out)
    assert (meta.journal_id, meta.journal_seq) == (store.journal_id, 7) and report.applied == 7
    rolled = Index.from_snapshot(out)
    assert canonical(rolled) == live
    assert replay(rolled, store.changes, store.journal_id).applied == 0  # the watermark
    # Newer changes on top of the exported snapshot: only they are replayed.
    await plane.control.clone_flag(OWNED_1, False)
    rep = replay(rolled, store.changes, store.journal_id)
    assert (rep.applied, rep.last_seq) == (1, 8)
    assert canonical(rolled) == canonical(plane.index)
    # The pending transfer went along: the buyer can still activate on the rolled snapshot.
    code = re.search(r"\b(\d{6})\b", plane.last("TRANSFER_CODE_ISSUED").text_en or "")
    assert code is not None
    await store.close()
    p2 = Plane(rolled, default_rules)
    assert (await p2.control.activate(OWNED_2, OTHER, code.group(1)))["transferred"] is True
    # Another state's journal cannot be replayed onto it.
    with pytest.raises(JournalMismatch):
        replay(Index.from_snapshot(out), MemoryState().changes, MemoryState().journal_id)


def test_snapshot_export_cli(snap: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(main, ["snapshot", "export", "--state", str(tmp_path / "missing.db"), "--snapshot", str(snap),
                               "-o", str(tmp_path / "x.eirsnap")])
    assert res.exit_code == 1 and "no such state database" in res.output


async def test_service_replays_the_journal_at_start_and_on_reload(snap: Path, tmp_path: Path) -> None:
    cfg = replace(make_config(snap), state=tmp_path / "state.db")
    svc = await start(cfg, FixedClock(T0))
    try:
        assert svc.control is not None and svc.engine is not None
        await svc.control.activate(NEW, BUYER, CODE)
        # A hot reload of the same snapshot file keeps the change (journal replayed onto the new index).
        outcome = await svc.reload(force=True)
        assert outcome.ok and outcome.detail["journal"]["applied"] == 1
        assert svc.engine.bundle.index.owner[svc.engine.bundle.index.device_of(NEW)] == BUYER
    finally:
        await svc.shutdown()
    svc = await start(cfg, FixedClock(T0 + 1))
    try:
        assert svc.engine is not None and svc.control is not None
        idx = svc.engine.bundle.index
        assert idx.owner[idx.device_of(NEW)] == BUYER
        # And the CLI rolls the registry forward from the running state.
        out = tmp_path / "rolled.eirsnap"
        res = CliRunner().invoke(main, ["snapshot", "export", "--state", str(cfg.state), "--snapshot", str(snap),
                                        "-o", str(out)])
        assert res.exit_code == 0, res.output
        assert "1 journaled change" in res.output
        meta = read_snapshot(out).meta
        assert meta.journal_seq == 1 and meta.counts["owned"] == read_snapshot(snap).meta.counts["owned"] + 1
    finally:
        await svc.shutdown()
    # Serving the exported snapshot with the same state applies nothing twice.
    svc = await start(replace(cfg, snapshot=out), FixedClock(T0 + 2))
    try:
        assert svc.last_reload["result"] == "ok"
        assert svc.engine is not None
        idx = svc.engine.bundle.index
        assert idx.owner[idx.device_of(NEW)] == BUYER
        rows = await svc.state.read_events(0, 100)  # type: ignore[attr-defined]
        assert any(orjson.loads(b)["type"] == "DEVICE_ACTIVATED" for _, b in rows)
    finally:
        await svc.shutdown()


async def test_events_hide_the_code_outside_the_sms(snap: Path, default_rules: RuleSet) -> None:
    """The JSON of every control event: the code only in the buyer's SMS texts."""
    plane = Plane(Index.from_snapshot(snap), default_rules)
    await plane.control.transfer(OWNED_1, OWNER, BUYER)
    sms, ops = plane.last("TRANSFER_CODE_ISSUED"), plane.last("TRANSFER_STARTED")
    code = re.search(r"\b(\d{6})\b", sms.text_en or "")
    assert code is not None
    assert code.group(1) not in orjson.dumps(ops.to_dict()).decode()
    d = sms.to_dict()
    assert code.group(1) not in orjson.dumps({k: v for k, v in d.items() if not k.startswith("text_")}).decode()
    assert c(OWNED_1) == d["imei"] and d["msisdn"] == str(BUYER)


async def test_replay_with_a_state_decides_with_its_registry_changes(snap: Path, default_rules: RuleSet,
                                                                      tmp_path: Path) -> None:
    """`eir replay --state DB` replays the journal onto the snapshot first, as the service does."""
    db = tmp_path / "state.db"
    store = await SqliteState.open(db)
    plane = Plane(Index.from_snapshot(snap), default_rules, state=store)
    await plane.control.activate(NEW, BUYER, CODE)
    await store.close()
    log = tmp_path / "a.csv"
    log.write_text(f"time,imei,msisdn,slot\n2026-11-02T00:00:00Z,{c(NEW)},{BUYER},1\n", encoding="utf-8")
    out = tmp_path / "d.jsonl"
    res = CliRunner().invoke(main, ["replay", str(log), "--snapshot", str(snap), "--rules",
                                    str(Path(__file__).resolve().parent.parent / "rules" / "default.toml"),
                                    "--state", str(db), "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert orjson.loads(out.read_bytes().splitlines()[0])["reason"] == "OWNER"
    assert "1 change(s) applied" in res.output


async def test_moot_state_is_dropped_durably(snap: Path, default_rules: RuleSet, tmp_path: Path) -> None:
    """Clearing a clone status forgets the detection, its switch-backs and the clone graces — after a restart too."""
    db = tmp_path / "state.db"
    store = await SqliteState.open(db)
    plane = Plane(Index.from_snapshot(snap), default_rules, state=store)
    for i, who in enumerate([OWNER, OTHER, OWNER, OTHER, OWNER, OTHER]):
        plane.attach(OWNED_1, who, t=T0 + i * 60)
    assert OWNED_1 in store.detections and store.grace(OWNED_1, OTHER, GraceKind.CLONE) is not None
    plane.clock.t = T0 + 600
    answer = await plane.control.clone_flag(OWNED_1, False)
    assert answer["detections_cleared"] is True and answer["graces_dropped"] == 1
    await store.close()
    again = await SqliteState.open(db)
    try:
        assert OWNED_1 not in again.detections and not again.graces
        h = again.histories.get(OWNED_1)
        assert h is None or not h.switchbacks
    finally:
        await again.close()


async def test_a_foreign_or_damaged_journal_refuses_the_load(snap: Path, tmp_path: Path,
                                                              default_rules: RuleSet) -> None:
    from eir.control_ops import JournalError
    from eir.service import StartupError

    # A snapshot exported from state A, served with state B: refused, the reason names the journal.
    db_a = tmp_path / "a.db"
    store = await SqliteState.open(db_a)
    plane = Plane(Index.from_snapshot(snap), default_rules, state=store)
    await plane.control.block(OWNED_1, "stolen")
    await store.close()
    rolled = tmp_path / "rolled.eirsnap"
    export_snapshot(snap, db_a, rolled)
    db_b = tmp_path / "b.db"
    store = await SqliteState.open(db_b)
    await Plane(Index.from_snapshot(snap), default_rules, state=store).control.block(OWNED_2, "lost")
    await store.close()
    with pytest.raises(StartupError, match="journal"):
        await start(replace(make_config(rolled), state=db_b), FixedClock(T0))
    # A damaged change cannot be applied: JournalError, not a half-applied registry.
    with pytest.raises(JournalError, match="registry change 1"):
        replay(Index.from_snapshot(snap), [(1, T0, f'{{"op": "x", "ops": [["nonsense", {OWNED_1}]]}}'.encode())], 5)
