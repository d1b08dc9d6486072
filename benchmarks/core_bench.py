"""Decision-core benchmark: in-process decisions/s and `eir replay` rows/s on the seeded demo mix.

    python -m benchmarks.core_bench --devices 1000000 --attaches 3000000 --seed 7 --out bench-out/core.json

Data comes from `eir demo-data` (seeded, cached under bench-out/). Each measurement runs ``--repeat``
times; the JSON reports every run and the median. One core: the process pins itself to CPU 0 when it can.
``--check`` also replays with ``--out`` and ``--events`` with and without the C code (EIR_PURE_PYTHON=1)
and reports whether both files are byte-identical.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from eir.engine import Bundle, Engine
from eir.index import Index
from eir.model import Query
from eir.replay import BadRow, parse_rows, read_rows
from eir.rules import load_rules
from eir.runtime import tune_gc_after_load
from eir.state import MemoryState

ROOT = Path(__file__).resolve().parent.parent


def pin(cpu: int) -> bool:
    """Pin this process to one CPU (the targets are per core)."""
    try:
        os.sched_setaffinity(0, {cpu})
        return True
    except (AttributeError, OSError):
        return False


def demo_data(devices: int, attaches: int, seed: int, base: Path) -> tuple[Path, Path]:
    """Seeded demo registry + attach log, and its snapshot, generated once and cached."""
    d = base / f"demo-{devices}-{attaches}-{seed}"
    snap = d / "registry.eirsnap"
    if not snap.exists():
        d.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "eir.cli", "demo-data", "--devices", str(devices),
                        "--attaches", str(attaches), "--seed", str(seed), "-o", str(d)], check=True)
        subprocess.run([sys.executable, "-m", "eir.cli", "snapshot", "build", str(d / "registry.jsonl"),
                        "-o", str(snap)], check=True)
    return d / "attaches.csv", snap


def decisions_per_second(index: Index, rules_path: Path, queries: list[Query]) -> tuple[float, float]:
    """Engine.check over pre-parsed queries with a fresh in-memory state: (wall-clock, CPU-time) rates.

    The CPU-time rate leaves out the time the process waited for its core: on a shared VM it is the
    steadier figure to compare two versions with (the wall-clock one is the target's)."""
    engine = Engine(Bundle.of(index, load_rules(rules_path)), MemoryState(keep_outbox=False))
    check = engine.check
    t0, c0 = time.perf_counter(), time.process_time()
    for q in queries:
        check(q)
    return len(queries) / (time.perf_counter() - t0), len(queries) / (time.process_time() - c0)


def parse_per_second(index: Index, rules_path: Path, log: Path) -> tuple[float, list[Query]]:
    """Edge parsing (CSV -> Query) alone."""
    engine = Engine(Bundle.of(index, load_rules(rules_path)), MemoryState(keep_outbox=False))
    bad: list[BadRow] = []
    t0 = time.perf_counter()
    queries = [q for _, _, q in parse_rows(read_rows(log), engine, bad.append)]
    return len(queries) / (time.perf_counter() - t0), queries


def replay_rows_per_second(log: Path, snap: Path, rules_path: Path, out: Path) -> dict[str, Any]:
    """`eir replay` end to end in a fresh process (CSV in, JSONL decisions out)."""
    summary = out.with_suffix(".summary.json")
    cmd = [sys.executable, "-m", "eir.cli", "replay", str(log), "--snapshot", str(snap), "--rules",
           str(rules_path), "--out", str(out), "--no-progress", "--summary-json", str(summary)]
    t0 = time.perf_counter()
    subprocess.run(["taskset", "-c", "0", *cmd] if _has_taskset() else cmd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    s = json.loads(summary.read_bytes())
    return {"rows": s["rows"], "wall_s": wall, "rows_per_s_wall": s["rows"] / wall,
            "rows_per_s_loop": s["rows_per_second"]}


def replay_matches_pure_python(log: Path, snap: Path, rules_path: Path, out_dir: Path) -> dict[str, Any]:
    """`eir replay --out --events` with the C edge and accelerator and with EIR_PURE_PYTHON=1 (the reference
    path, the code before the accelerators): are both files byte-identical?"""
    files = {}
    for name, extra_env in (("accelerated", {}), ("pure_python", {"EIR_PURE_PYTHON": "1"})):
        out, events = out_dir / f"check-{name}.jsonl", out_dir / f"check-{name}-events.jsonl"
        subprocess.run([sys.executable, "-m", "eir.cli", "replay", str(log), "--snapshot", str(snap), "--rules",
                        str(rules_path), "--out", str(out), "--events", str(events), "--no-progress"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       env={**os.environ, **extra_env})
        files[name] = (out, events)
    (a_out, a_ev), (b_out, b_ev) = files["accelerated"], files["pure_python"]
    result = {"decisions_identical": _same_bytes(a_out, b_out), "events_identical": _same_bytes(a_ev, b_ev),
              "decisions": _lines(a_out), "events": _lines(a_ev)}
    for path in (a_out, a_ev, b_out, b_ev):
        path.unlink()
    return result


def _same_bytes(a: Path, b: Path) -> bool:
    with a.open("rb") as fa, b.open("rb") as fb:
        while True:
            ca, cb = fa.read(1 << 20), fb.read(1 << 20)
            if ca != cb:
                return False
            if not ca:
                return True


def _lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


def _has_taskset() -> bool:
    return subprocess.run(["which", "taskset"], capture_output=True).returncode == 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--devices", type=int, default=1_000_000)
    ap.add_argument("--attaches", type=int, default=3_000_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--rules", type=Path, default=ROOT / "rules" / "default.toml")
    ap.add_argument("--data", type=Path, default=ROOT / "bench-out")
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out" / "core.json")
    ap.add_argument("--check", action="store_true",
                    help="also check that the replay's --out and --events equal the pure-Python path's")
    a = ap.parse_args(argv)
    log, snap = demo_data(a.devices, a.attaches, a.seed, a.data)
    pinned = pin(0)
    index = Index.from_snapshot(snap)
    tune_gc_after_load()  # as `eir replay` does
    parse_rate, queries = parse_per_second(index, a.rules, log)
    decide = [decisions_per_second(index, a.rules, queries) for _ in range(a.repeat)]
    del queries
    replays = [replay_rows_per_second(log, snap, a.rules, a.data / "replay-out.jsonl") for _ in range(a.repeat)]
    result = {
        "benchmark": "core", "devices": a.devices, "attaches": a.attaches, "seed": a.seed, "pinned": pinned,
        "imeis": index.n_imeis, "rules": str(a.rules.name),
        "parse_rows_per_s": round(parse_rate),
        "decisions_per_s": {"runs": [round(w) for w, _ in decide],
                            "median": round(statistics.median(w for w, _ in decide)),
                            "cpu_runs": [round(c) for _, c in decide],
                            "cpu_median": round(statistics.median(c for _, c in decide))},
        "replay": {"runs": replays,
                   "median_rows_per_s_wall": round(statistics.median(r["rows_per_s_wall"] for r in replays)),
                   "median_rows_per_s_loop": round(statistics.median(r["rows_per_s_loop"] for r in replays))},
        "targets": {"decisions_per_s": 400_000, "replay_rows_per_s": 150_000},
    }
    if a.check:
        result["replay_check"] = replay_matches_pure_python(log, snap, a.rules, a.data)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
