"""Durable-state benchmark: throughput with SqliteState vs MemoryState, DB growth, restart time.

    python -m benchmarks.state_bench --devices 300000 --attaches 1000000 --out bench-out/state.json

Three measurements, machine-readable JSON on stdout and in ``--out``:

1. **Service throughput** (issue 4 target: with the SQLite store >= 0.8 x the in-memory state, in the
   same run): ``eir serve`` is started once without and once with ``--state`` (alternating,
   ``--repeat`` times), and ``--rpc-connections`` pipelined msgpack-RPC connections send the first
   ``--rpc-rows`` rows of the demo log as ``check`` calls (log times, pre-encoded); answers/s until the
   last answer. The client runs on the same machine (same cost in both modes).
1b. **In-process throughput**, the same comparison without RPC (a lower bound of the ratio). The service's
   pattern in process, on uvloop: decisions are taken in turns of ``--budget`` (the RPC transport's
   per-turn budget); a turn whose decisions need the store's barrier (``needs_barrier``) holds its
   answers until the group commit, while the next turns go on. Throughput counts until the last held
   answer is released. MemoryState runs the same loop without barriers. Runs alternate
   memory/sqlite ``--repeat`` times; medians and their ratio are reported. No RPC decode/encode is
   included, so the ratio is a lower bound of the service's ratio (the store's cost is per decision,
   RPC work only adds to both sides).
2. **DB growth**: bytes of the state database (after a checkpoint) per million attaches of the demo mix,
   with the per-table split (``dbstat``).
3. **Restart**: ``SqliteState.open`` (schema check + load of the hot state) on a state of
   ``--restart-attaches`` attaches' worth. ``--restart-mode synthetic`` (default, fast) replays
   ``--attaches`` once and then copies every table ``restart-attaches / attaches`` times with disjoint
   keys (IMEIs, device keys, subjects and identities offset per copy; times kept, so the same share of
   it is "hot"); ``replay`` replays a demo log of ``--restart-attaches`` rows for real (slow).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgpack
import uvloop

from eir.demo import write_demo
from eir.engine import Bundle, Engine
from eir.index import Index
from eir.model import Query
from eir.replay import BadRow, parse_rows, read_rows
from eir.rules import RuleSet, load_rules
from eir.snapshot import build_snapshot
from eir.state import MemoryState
from eir.store import SqliteState, StoreConfig
from eir.store_schema import database_bytes, history_path
from eir.store_sync import SyncSqliteState

ROOT = Path(__file__).resolve().parent.parent
#: Key offset per synthetic copy: above every 14-digit IMEI core, so copies never collide.
COPY_OFFSET = 10**14


def demo_data(devices: int, attaches: int, seed: int, base: Path) -> tuple[Path, Path]:
    """Seeded demo data and its snapshot, cached under ``base`` (same layout as core_bench)."""
    d = base / f"demo-{devices}-{attaches}-{seed}"
    snap = d / "registry.eirsnap"
    if not snap.exists():
        write_demo(d, devices, attaches, seed)
        build_snapshot([d / "registry.jsonl"], snap, skip_invalid=False)
    return d / "attaches.csv", snap


def rm_db(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", ".lock", "-history", "-history-wal", "-history-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def load_queries(index: Index, rules: RuleSet, log: Path) -> list[Query]:
    engine = Engine(Bundle.of(index, rules), MemoryState(keep_outbox=False))
    bad: list[BadRow] = []
    return [q for _, _, q in parse_rows(read_rows(log), engine, bad.append)]


async def serve_like(bundle: Bundle, queries: list[Query], store: SqliteState | None, budget: int) -> dict[str, Any]:
    """Decide in loop turns of ``budget``; with a store, hold a turn's answers until its barrier."""
    state: MemoryState = store if store is not None else MemoryState(keep_outbox=False)
    check = Engine(bundle, state).check
    held: list[asyncio.Future[Any]] = []
    waits = 0
    started = time.perf_counter()
    for i in range(0, len(queries), budget):
        need = False
        for q in queries[i:i + budget]:
            d = check(q)
            if store is not None and not need and store.needs_barrier(d):
                need = True
        if need and store is not None:
            held.append(asyncio.ensure_future(store.barrier()))
            waits += 1
        await asyncio.sleep(0)  # the next turn: the writer task and other connections run here
    await asyncio.gather(*held)
    elapsed = time.perf_counter() - started
    return {"decisions_per_s": len(queries) / elapsed, "seconds": elapsed, "held_turns": waits}


async def sqlite_run(bundle: Bundle, queries: list[Query], path: Path, cfg: StoreConfig, budget: int) -> dict[str, Any]:
    rm_db(path)
    store = await SqliteState.open(path, cfg, rules=lambda: bundle.rules)
    try:
        r = await serve_like(bundle, queries, store, budget)
        flush_started = time.perf_counter()
        await store.flush()
        r["final_flush_s"] = time.perf_counter() - flush_started
        st = store.stats
        r["commits"] = st["commits"]
        r["mean_commit_ms"] = round(1000 * st["commit_seconds_total"] / max(1, st["commits"]), 2)
        r["max_commit_ms"] = round(1000 * st["commit_seconds_max"], 2)
        r["history_writes"] = st["history_writes"]
        r["mean_history_write_ms"] = round(1000 * st["history_seconds_total"] / max(1, st["history_writes"]), 1)
        r["events"] = store.committed_seq
    finally:
        await store.close()
    return r


def throughput(bundle: Bundle, queries: list[Query], work: Path, repeat: int, budget: int,
               cfg: StoreConfig) -> dict[str, Any]:
    mem: list[dict[str, Any]] = []
    sql: list[dict[str, Any]] = []
    for _ in range(repeat):
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            mem.append(runner.run(serve_like(bundle, queries, None, budget)))
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            sql.append(runner.run(sqlite_run(bundle, queries, work / "throughput.db", cfg, budget)))
    m = statistics.median(r["decisions_per_s"] for r in mem)
    s = statistics.median(r["decisions_per_s"] for r in sql)
    return {"memory": {"runs": [round(r["decisions_per_s"]) for r in mem], "median": round(m)},
            "sqlite": {"runs": sql, "median": round(s)}, "ratio": round(s / m, 3), "target_ratio": 0.8,
            "budget": budget}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _requests(log: Path, rows: int) -> list[bytes]:
    out = []
    with log.open() as f:
        next(f)
        for i, line in enumerate(f):
            if i >= rows:
                break
            t, imei, msisdn, slot, imsi = line.rstrip("\n").split(",")
            params = [imei, msisdn or None, int(slot) if slot.isdigit() else None, t, imsi or None]
            out.append(msgpack.packb([0, i, "check", params]))
    return out


async def _drive(port: int, reqs: list[bytes], window: int) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    got = 0
    free = asyncio.Semaphore(window)

    async def receive() -> None:
        nonlocal got
        u = msgpack.Unpacker(raw=False)
        while got < len(reqs):
            data = await reader.read(1 << 16)
            if not data:
                return
            u.feed(data)
            for _ in u:
                got += 1
                free.release()

    rx = asyncio.ensure_future(receive())
    for r in reqs:
        await free.acquire()
        writer.write(r)
    await rx
    writer.close()
    return got


def _serve(snap: Path, rules: Path, state: Path | None, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    cmd = [sys.executable, "-m", "eir", "serve", "--snapshot", str(snap), "--rules", str(rules),
           "--rpc", f"127.0.0.1:{port}", "--http", "off"]
    cmd += ["--state", str(state) if state is not None else "memory"]
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    probe = msgpack.packb([0, 0, "check", ["35693803000001", "989121111111", 1, None, None]])
    for _ in range(600):
        time.sleep(0.1)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                sock.sendall(probe)
                u = msgpack.Unpacker(raw=False)
                u.feed(sock.recv(65536))
                if next(u)[2] is None:
                    return proc, port
        except (OSError, StopIteration):
            continue
    proc.kill()
    raise SystemExit(f"eir serve did not become ready (see {log})")


def rpc_run(snap: Path, rules: Path, reqs: list[bytes], state: Path | None, conns: int, window: int,
            work: Path) -> dict[str, Any]:
    if state is not None:
        rm_db(state)
    proc, port = _serve(snap, rules, state, work / "serve.log")
    try:
        parts = [reqs[i::conns] for i in range(conns)]
        started = time.perf_counter()
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            got = runner.run(_gather(port, parts, window))
        elapsed = time.perf_counter() - started
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    return {"answers": got, "seconds": round(elapsed, 3), "answers_per_s": round(got / elapsed)}


async def _gather(port: int, parts: list[list[bytes]], window: int) -> int:
    return sum(await asyncio.gather(*(_drive(port, p, window) for p in parts)))


def rpc_throughput(snap: Path, rules: Path, log: Path, rows: int, conns: int, window: int, repeat: int,
                   work: Path) -> dict[str, Any]:
    reqs = _requests(log, rows)
    mem, sql = [], []
    for _ in range(repeat):
        mem.append(rpc_run(snap, rules, reqs, None, conns, window, work))
        sql.append(rpc_run(snap, rules, reqs, work / "rpc-state.db", conns, window, work))
    m = statistics.median(r["answers_per_s"] for r in mem)
    s = statistics.median(r["answers_per_s"] for r in sql)
    return {"rows": len(reqs), "connections": conns, "window": window,
            "memory": {"runs": mem, "median": round(m)}, "sqlite": {"runs": sql, "median": round(s)},
            "ratio": round(s / m, 3), "target_ratio": 0.8}


def table_bytes(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for p, tag in ((path, ""), (history_path(path), "history.")):
        conn = sqlite3.connect(p)
        try:
            rows = conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC").fetchall()
            out.update({tag + str(n): int(b) for n, b in rows})
        finally:
            conn.close()
    return out


def row_counts(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for p, tag in ((path, ""), (history_path(path), "history.")):
        conn = sqlite3.connect(p)
        try:
            names = [n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            # Table names come from sqlite_master of our own schema, not from input.
            out.update({tag + n: conn.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0]  # noqa: S608
                        for n in names})
        finally:
            conn.close()
    return out


def state_bytes(path: Path) -> dict[str, int]:
    """Both files (after a clean close the WALs are checkpointed and empty)."""
    return {"state": os.path.getsize(path), "history": os.path.getsize(history_path(path)),
            "total": database_bytes(path)}


def replay_state(bundle: Bundle, queries: list[Query], path: Path) -> float:
    """Build a state by replaying ``queries`` (SyncSqliteState); returns rows/s."""
    rm_db(path)
    started = time.perf_counter()
    with SyncSqliteState.open(path, rules=lambda: bundle.rules) as st:
        check = Engine(bundle, st).check
        for q in queries:
            check(q)
    return len(queries) / (time.perf_counter() - started)


# Per table: the INSERT ... SELECT that makes copy k (parameters :off = k * COPY_OFFSET, :k = k).
_COPY = {
    "grace": "INSERT INTO grace SELECT imei + :off, msisdn, kind, start, deadline FROM src.grace",
    "activation": "INSERT INTO activation SELECT device_key + :off, first_seen, deadline FROM src.activation",
    "traveler_window": ("INSERT INTO traveler_window SELECT imei + :off, start, deadline, period_end, "
                        "identity || '#' || :k, msisdn FROM src.traveler_window"),
    "quota": "INSERT INTO quota SELECT identity || '#' || :k, start FROM src.quota",
    "detection": "INSERT INTO detection SELECT imei + :off, time, enforced, subscribers FROM src.detection",
    "switchback": "INSERT INTO switchback SELECT imei + :off, last, times FROM src.switchback",
    "mark": "INSERT INTO mark SELECT kind, subject + :off, msisdn, extra, time FROM src.mark",
    "outbox": "INSERT INTO outbox SELECT seq + :k * (SELECT max(seq) FROM src.outbox), time, body FROM src.outbox",
}
_COPY_HISTORY = ("INSERT INTO observation SELECT imei + :off, msisdn, slot, first, last, count, ord + :k * "
                 "(SELECT max(ord) + 1 FROM src.observation) FROM src.observation")


def synthesize(src: Path, dst: Path, copies: int) -> float:
    """``copies`` disjoint copies of the state in ``src`` (see the module docstring)."""
    rm_db(dst)
    started = time.perf_counter()
    SyncSqliteState.open(dst).close()  # the schemas
    for target, source, statements in ((dst, src, list(_COPY.values())),
                                       (history_path(dst), history_path(src), [_COPY_HISTORY])):
        conn = sqlite3.connect(target, isolation_level=None)
        try:
            conn.execute("ATTACH DATABASE ? AS src", (str(source),))
            conn.execute("BEGIN")
            conn.execute("INSERT OR REPLACE INTO meta SELECT key, value FROM src.meta")
            if target == dst:
                conn.execute("INSERT INTO mark_kind SELECT id, name FROM src.mark_kind")
            for k in range(copies):
                for sql in statements:
                    conn.execute(sql, {"off": k * COPY_OFFSET, "k": k})
            if target == dst:
                conn.execute("INSERT OR REPLACE INTO meta SELECT 'last_seq', max(seq) FROM outbox")
            else:
                conn.execute("INSERT OR REPLACE INTO meta SELECT 'attach_ord', max(ord) + 1 FROM observation")
            conn.execute("COMMIT")
            conn.execute("DETACH DATABASE src")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
    return time.perf_counter() - started


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def open_once(path: Path, rules: RuleSet) -> dict[str, Any]:
    started = time.perf_counter()
    store = await SqliteState.open(path, StoreConfig(prune_interval_s=0), rules=lambda: rules)
    elapsed = time.perf_counter() - started
    stats = store.load_stats
    await store.close()
    return {"open_s": elapsed, "loaded": {k: v for k, v in vars_of(stats).items() if not k.startswith("expired")}}


def vars_of(obj: Any) -> dict[str, Any]:
    return {k: getattr(obj, k) for k in obj.__slots__}


def restart(path: Path, rules: RuleSet, repeat: int) -> dict[str, Any]:
    runs = []
    rss_before = rss_mb()
    for _ in range(repeat):
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runs.append(runner.run(open_once(path, rules)))
    return {"open_s_runs": [round(r["open_s"], 3) for r in runs],
            "open_s_median": round(statistics.median(r["open_s"] for r in runs), 3),
            "loaded": runs[-1]["loaded"], "bytes": state_bytes(path),
            "rows": row_counts(path), "peak_rss_growth_mb": round(rss_mb() - rss_before, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=300_000)
    ap.add_argument("--attaches", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--budget", type=int, default=1_000, help="decisions per loop turn (RPC loop_budget)")
    ap.add_argument("--rpc-rows", type=int, default=300_000, help="service throughput: rows sent (0 = skip)")
    ap.add_argument("--rpc-connections", type=int, default=8)
    ap.add_argument("--rpc-window", type=int, default=256, help="outstanding requests per connection")
    ap.add_argument("--synchronous", choices=("FULL", "NORMAL"), default="FULL")
    ap.add_argument("--restart-attaches", type=int, default=10_000_000)
    ap.add_argument("--restart-mode", choices=("synthetic", "replay"), default="synthetic")
    ap.add_argument("--restart-devices", type=int, default=3_000_000, help="replay mode: demo devices")
    ap.add_argument("--rules", type=Path, default=ROOT / "rules" / "default.toml")
    ap.add_argument("--data", type=Path, default=ROOT / "bench-out")
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out" / "state.json")
    a = ap.parse_args(argv)

    work = a.data / "state-bench"
    work.mkdir(parents=True, exist_ok=True)
    log, snap = demo_data(a.devices, a.attaches, a.seed, a.data)
    rules = load_rules(a.rules)
    bundle = Bundle.of(Index.from_snapshot(snap), rules)
    queries = load_queries(bundle.index, rules, log)
    cfg = StoreConfig(synchronous=a.synchronous)
    result: dict[str, Any] = {"benchmark": "state", "devices": a.devices, "attaches": a.attaches,
                              "queries": len(queries), "seed": a.seed, "synchronous": a.synchronous,
                              "cpus": os.cpu_count()}
    if a.rpc_rows:
        result["service_throughput"] = rpc_throughput(snap, a.rules, log, a.rpc_rows, a.rpc_connections,
                                                      a.rpc_window, a.repeat, work)
    result["throughput"] = throughput(bundle, queries, work, a.repeat, a.budget, cfg)

    grown = work / "growth.db"
    replay_rate = replay_state(bundle, queries, grown)
    sizes = state_bytes(grown)
    result["replay_with_state_rows_per_s"] = round(replay_rate)
    result["growth"] = {"bytes": sizes, "bytes_per_million_attaches": {
        k: round(v * 1_000_000 / len(queries)) for k, v in sizes.items()},
        "tables_bytes": table_bytes(grown), "rows": row_counts(grown)}

    big = work / "restart.db"
    if a.restart_mode == "synthetic":
        copies = max(1, round(a.restart_attaches / len(queries)))
        built = synthesize(grown, big, copies)
        how = f"{copies} disjoint copies of the {len(queries)}-attach state (SQL INSERT ... SELECT)"
    else:
        rlog, rsnap = demo_data(a.restart_devices, a.restart_attaches, a.seed, a.data)
        rbundle = Bundle.of(Index.from_snapshot(rsnap), rules)
        started = time.perf_counter()
        replay_state(rbundle, load_queries(rbundle.index, rules, rlog), big)
        built = time.perf_counter() - started
        how = f"replay of a {a.restart_attaches}-row demo log"
    result["restart"] = {"attaches_worth": a.restart_attaches, "built_by": how, "build_s": round(built, 1),
                         **restart(big, rules, a.repeat)}
    shutil.rmtree(work / "tmp", ignore_errors=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
