"""Snapshot benchmark: registry build time, index load time and resident memory per IMEI.

    python -m benchmarks.snapshot_bench --devices 1000000 --seed 1 --out results.json

The registry comes from ``eir.demo.write_demo`` when that module exists, otherwise from a small
built-in generator with similar proportions. Load time and RSS are measured in fresh subprocesses so
that the numbers are what a service process pays (Python baseline included).
"""

from __future__ import annotations

import argparse
import importlib
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from eir.identifiers import imei15

# Run inside a fresh interpreter: import, load, measure, print one JSON line.
_LOAD_PROBE = """
import json, os, sys, time
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
def hwm():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0
from eir.index import Index
base = rss()
t0, c0 = time.perf_counter(), time.process_time()
ix = Index.from_snapshot(sys.argv[1])
t1, c1 = time.perf_counter(), time.process_time()
out = {"load_s": t1 - t0, "load_cpu_s": c1 - c0, "rss": rss(), "hwm": hwm(), "baseline_rss": base, "imeis": ix.n_imeis}
cores = [ix.device_key(d) for d in range(0, ix.n_devices, max(1, ix.n_devices // 200000))]
lookup = ix.lookup
t0 = time.perf_counter()
for c in cores:
    lookup(c)
out["lookup_ns"] = (time.perf_counter() - t0) / max(1, len(cores)) * 1e9
print(json.dumps(out))
"""

_BUILD_PROBE = """
import json, sys, time
from pathlib import Path
from eir.snapshot import build_snapshot
t0, c0 = time.perf_counter(), time.process_time()
r = build_snapshot([Path(sys.argv[1])], Path(sys.argv[2]), skip_invalid=False)
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
with open("/proc/self/status") as f:
    hwm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
print(json.dumps({"build_s": wall, "build_cpu_s": cpu, "hwm": hwm, "counts": dict(r.meta.counts), "size": r.meta.size}))
"""


def _generate(out_dir: Path, devices: int, seed: int) -> Path:
    """Fallback registry generator (used only while ``eir.demo`` is not available)."""
    rng = random.Random(seed)
    tacs = sorted({rng.choice(("35", "86", "01")) + f"{rng.randrange(10**6):06d}" for _ in range(3000)})
    used: set[int] = set()
    path = out_dir / "registry.jsonl"

    def new_imei() -> str:
        while True:
            core = int(rng.choice(tacs)) * 10**6 + rng.randrange(10**6)
            if core not in used and len(set(f"{core:014d}")) > 1:
                used.add(core)
                return imei15(core)

    def msisdn(i: int) -> str:
        return f"09{100000000 + i:09d}"

    t_base = 1_500_000_000
    with path.open("wb") as f:
        for tac in tacs:
            f.write(orjson.dumps({"type": "tac", "tac": tac, "brand": "Brand" + tac[:3], "model": "M" + tac}) + b"\n")
        for d in range(devices):
            n = 2 if rng.random() < 0.4 else 1
            origin = rng.choices(("import", "pre_registry", "traveler", "repair"), (60, 35, 3, 2))[0]
            owned = rng.random() < 0.75
            rec: dict[str, Any] = {
                "type": "device",
                "imeis": [new_imei() for _ in range(n)],
                "model": f"Model {rng.randrange(400)}",
                "origin": origin,
                "owner": msisdn(d) if owned else None,
                "owner_since": t_base + rng.randrange(10**8) if owned else None,
                "cloned": rng.random() < 0.01,
            }
            if rec["cloned"] and owned and n == 2:
                rec["operator_sims"] = {"2": msisdn(devices + d)}
            if origin == "pre_registry" and rng.random() < 0.05:
                rec["pre_registry_users"] = [msisdn(2 * devices + d)]
            if rng.random() < 0.003:
                rec["block"] = rng.choice(("stolen", "lost", "court_order"))
            f.write(orjson.dumps(rec) + b"\n")
        for s in range(int(devices * 1.2)):
            sub: dict[str, Any] = {"type": "subscriber", "msisdn": msisdn(s), "imsi": f"432{11 * 10**9 + s:012d}"}
            if rng.random() < 0.9:
                sub["national_id"] = f"{rng.randrange(10**10):010d}"
            sub["since"] = t_base - rng.randrange(10**8)
            f.write(orjson.dumps(sub) + b"\n")
        for _ in range(devices // 200):
            f.write(orjson.dumps({"type": "blacklist", "imei": new_imei(), "reason": "stolen"}) + b"\n")
        for t in range(devices // 100):
            f.write(orjson.dumps({"type": "traveler_entry", "msisdn": msisdn(t), "entered": t_base + t}) + b"\n")
    return path


def _registry(work: Path, devices: int, seed: int) -> tuple[Path, str]:
    try:
        demo = importlib.import_module("eir.demo")
    except ImportError:
        return _generate(work, devices, seed), "builtin"
    demo.write_demo(work, devices, 0, seed)
    return work / "registry.jsonl", "eir.demo"


def _probe(code: str, *args: str) -> dict[str, Any]:
    env = dict(os.environ, PYTHONHASHSEED="0")
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"probe failed:\n{proc.stderr}")
    result: dict[str, Any] = orjson.loads(proc.stdout.strip().splitlines()[-1])
    return result


def run(devices: int, seed: int, work: Path, registry: Path | None = None) -> dict[str, Any]:
    """Generate (unless ``registry`` is given), build, load three times; return the measurements."""
    t0 = time.perf_counter()
    registry, source = (registry, "given") if registry else _registry(work, devices, seed)
    gen_s = time.perf_counter() - t0
    snap = work / "registry.eirsnap"
    built = _probe(_BUILD_PROBE, str(registry), str(snap))
    loads = [_probe(_LOAD_PROBE, str(snap)) for _ in range(3)]
    imeis = built["counts"]["imeis"]
    rss = int(statistics.median(x["rss"] for x in loads))
    return {
        "devices": devices,
        "seed": seed,
        "registry_source": source,
        "generate_s": round(gen_s, 3),
        "registry_bytes": registry.stat().st_size,
        "snapshot_bytes": built["size"],
        "counts": built["counts"],
        "build_s": round(built["build_s"], 3),
        "build_cpu_s": round(built["build_cpu_s"], 3),
        "build_peak_rss_bytes": built["hwm"],
        "load_s_median": round(statistics.median(x["load_s"] for x in loads), 3),
        "load_s_all": [round(x["load_s"], 3) for x in loads],
        "load_cpu_s_median": round(statistics.median(x["load_cpu_s"] for x in loads), 3),
        "load_average_1m": os.getloadavg()[0],
        "rss_after_load_bytes": rss,
        "baseline_rss_bytes": int(statistics.median(x["baseline_rss"] for x in loads)),
        "peak_rss_during_load_bytes": int(statistics.median(x["hwm"] for x in loads)),
        "rss_bytes_per_imei": round(rss / max(1, imeis), 1),
        "peak_bytes_per_imei": round(statistics.median(x["hwm"] for x in loads) / max(1, imeis), 1),
        "lookup_ns": round(statistics.median(x["lookup_ns"] for x in loads), 1),
        "python": sys.version.split()[0],
    }


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("snapshot_bench.json"))
    parser.add_argument("--workdir", type=Path, help="keep the generated files here (default: a temp dir)")
    parser.add_argument("--registry", type=Path, help="use this registry JSONL instead of generating one")
    args = parser.parse_args(argv)
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        result = run(args.devices, args.seed, args.workdir, args.registry)
    else:
        with tempfile.TemporaryDirectory(prefix="eir-snapbench-") as tmp:
            result = run(args.devices, args.seed, Path(tmp), args.registry)
    args.out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
