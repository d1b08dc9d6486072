"""Control-plane benchmark: durable operations/s, journal replay speed, snapshot export time.

    python -m benchmarks.control_bench --devices 200000 --ops 2000 --out bench-out/control.json

On the seeded demo registry:

1. **Operations/s** with the SQLite state (synchronous=FULL): ``--ops`` clone-flag set/clear operations
   one after the other (each answer waits for its own commit), then the same number issued concurrently
   in groups of ``--concurrency`` (group commit). The in-memory state is measured for reference.
2. **Journal replay**: the changes journaled above replayed onto a freshly loaded index (what a
   start-up or a reload does before the swap), in changes/s.
3. **Export**: ``eir snapshot export`` of the registry with that journal (seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from eir.control import Control, ControlConfig
from eir.control_export import export_snapshot
from eir.control_ops import replay
from eir.demo import write_demo
from eir.engine import Bundle, Engine
from eir.index import Index
from eir.rules import load_rules
from eir.snapshot import build_snapshot
from eir.state import MemoryState
from eir.store import SqliteState

ROOT = Path(__file__).resolve().parent.parent


async def _ops(control: Control, imeis: list[int], n: int, concurrency: int) -> float:
    """Seconds for ``n`` clone-flag operations (alternating set / clear over ``imeis``)."""
    started = time.perf_counter()
    if concurrency <= 1:
        for i in range(n):
            await control.clone_flag(imeis[i % len(imeis)], (i // len(imeis)) % 2 == 0)
    else:
        for base in range(0, n, concurrency):
            await asyncio.gather(*(control.clone_flag(imeis[i % len(imeis)], (i // len(imeis)) % 2 == 0)
                                   for i in range(base, min(n, base + concurrency))))
    return time.perf_counter() - started


async def _measure(snap: Path, rules: Path, work: Path, n: int, concurrency: int) -> dict[str, Any]:
    index = Index.from_snapshot(snap)
    ruleset = load_rules(rules)
    # Devices not cloned in the demo registry: each operation changes something (nothing is "unchanged").
    imeis = [index.device_key(d) for d in range(min(index.n_devices, 5_000)) if not index.flags[d] & 4][:1_000]
    out: dict[str, Any] = {}
    mem = Control(Engine(Bundle.of(index, ruleset), MemoryState()), clock=lambda: 1, config=ControlConfig())
    out["memory_ops_per_s"] = round(n / await _ops(mem, imeis, n, 1))
    index = Index.from_snapshot(snap)
    db = work / "state.db"
    store = await SqliteState.open(db)
    try:
        ctl = Control(Engine(Bundle.of(index, ruleset), store), clock=lambda: 1, config=ControlConfig())
        out["sqlite_sequential_ops_per_s"] = round(n / await _ops(ctl, imeis, n, 1))
        out["sqlite_concurrent_ops_per_s"] = round(n / await _ops(ctl, imeis, n, concurrency))
        changes, journal_id = list(store.changes), store.journal_id
    finally:
        await store.close()
    fresh = Index.from_snapshot(snap)
    started = time.perf_counter()
    report = replay(fresh, changes, journal_id)
    elapsed = time.perf_counter() - started
    out["journal_changes"] = report.applied
    out["replay_changes_per_s"] = round(report.applied / elapsed)
    started = time.perf_counter()
    export_snapshot(snap, db, work / "rolled.eirsnap")
    out["export_seconds"] = round(time.perf_counter() - started, 3)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=200_000)
    ap.add_argument("--ops", type=int, default=2_000)
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--rules", type=Path, default=ROOT / "rules" / "default.toml")
    ap.add_argument("--data", type=Path, default=ROOT / "bench-out")
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out" / "control.json")
    a = ap.parse_args(argv)
    data = a.data / f"control-{a.devices}-{a.seed}"
    snap = data / "registry.eirsnap"
    if not snap.exists():
        data.mkdir(parents=True, exist_ok=True)
        write_demo(data, a.devices, 1_000, a.seed)
        build_snapshot([data / "registry.jsonl"], snap, skip_invalid=False)
    work = data / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    result = {"devices": a.devices, "ops": a.ops, "concurrency": a.concurrency,
              **asyncio.run(_measure(snap, a.rules, work, a.ops, a.concurrency))}
    text = json.dumps(result, indent=2)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(text + "\n", encoding="utf-8")
    sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
