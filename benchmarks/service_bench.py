"""Service benchmark: the service and its ceilings measured in one run, machine-readable JSON out.

    .venv/bin/python benchmarks/service_bench.py [--runs 3] [--seconds 5] [--out bench-out/service_bench.json]

Data: the seeded demo registry (eir.demo) built into a snapshot; queries are the demo attach log's rows
(those the service accepts), sent without a time (the service clock decides). Servers run pinned to one
CPU (os.sched_setaffinity), the load generators on another. Each run measures:

1. ``echo_batch``: pipelined ``check_batch`` against a bare msgpack-RPC echo server (benchmarks/echo_server.py)
   = the ceiling; ``service_batch``: the same load against ``eir serve``. Target: >= 150 000 decisions/s
   and >= 0.25 x the echo server.
2. ``check_max``: ``check`` one request per round trip from 64 connections, flat out; ``check_latency``:
   the same at half that rate, open loop (latency from the scheduled send time). Target: p99 <= 2 ms.
3. ``http_bare``: N5g-eir GETs over HTTP/1.1 keep-alive against a bare aiohttp handler
   (benchmarks/bare_http.py); ``http_service``: against the service. Target: >= 0.6 x bare. The load
   generator is wrk when installed (installed with apt-get when missing and allowed), else a Python
   keep-alive client; the JSON says which.

The summary reports the median of the runs for every figure and the ratios of the medians.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import loadgen  # noqa: E402
from benchmarks.bench_data import prepare  # noqa: E402

TARGETS = {"service_batch_per_s": 150_000, "batch_ratio_to_echo": 0.25, "check_p99_ms": 2.0,
           "http_ratio_to_bare": 0.6}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pin(cpu: int | None) -> Any:
    return (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None


@contextmanager
def server(cmd: list[str], cpu: int | None, ready: Any, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Start a server process pinned to ``cpu``; ``ready()`` polls until it answers."""
    with open(log, "ab") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, preexec_fn=_pin(cpu), cwd=ROOT)
    try:
        deadline = time.monotonic() + 120
        while not ready():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{cmd[:3]} did not start; see {log}")
            time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def tcp_ready(port: int) -> Any:
    def check() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            return False

    return check


def http_ready(port: int, path: str) -> Any:
    def check() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    return check


def find_wrk(install: bool) -> str | None:
    wrk = shutil.which("wrk")
    if wrk is None and install and shutil.which("apt-get") and os.geteuid() == 0:
        print("wrk not found: apt-get install -y wrk", file=sys.stderr)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False, capture_output=True)
        wrk = shutil.which("wrk")
    return wrk


def run_wrk(wrk: str, cpu: int | None, port: int, paths_file: Path, seconds: float, warmup: float) -> dict[str, Any]:
    script = Path(tempfile.mkdtemp()) / "paths.lua"
    script.write_text(
        'local paths = {}\nfor line in io.lines(os.getenv("EIR_WRK_PATHS")) do paths[#paths + 1] = line end\n'
        "local i = 0\nrequest = function()\n  i = i % #paths + 1\n  return wrk.format(\"GET\", paths[i])\nend\n")
    env = {**os.environ, "EIR_WRK_PATHS": str(paths_file)}
    base = [wrk, "-t1", "-c64", "--latency", "-s", str(script), f"http://127.0.0.1:{port}"]
    subprocess.run([*base[:3], f"-d{max(1, int(warmup))}s", *base[3:]], env=env, capture_output=True,
                   preexec_fn=_pin(cpu), check=True)
    out = subprocess.run([*base[:3], f"-d{int(seconds)}s", *base[3:]], env=env, capture_output=True, text=True,
                         preexec_fn=_pin(cpu), check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    p99 = re.search(r"\s99%\s+([\d.]+)(us|ms|s)", out)
    p99_ms = float(p99.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)] if p99 else None
    return {"requests_per_s": rps, "errors": int(non2xx.group(1)) if non2xx else 0, "p99_ms": p99_ms}


def one_run(args: argparse.Namespace, data: dict[str, Any], cpus: tuple[int | None, int | None],
            wrk: str | None, out_dir: Path) -> dict[str, Any]:
    server_cpu, _ = cpus
    res: dict[str, Any] = {"loadavg_before": os.getloadavg()[0]}
    secs, warm = args.seconds, args.warmup
    port = free_port()
    echo = [sys.executable, str(ROOT / "benchmarks" / "echo_server.py"), "127.0.0.1", str(port)]
    with server(echo, server_cpu, tcp_ready(port), out_dir / "echo.log"):
        res["echo_batch"] = uvloop.run(loadgen.batch_load("127.0.0.1", port, data["batches"], secs, warm))
    rpc, http = free_port(), free_port()
    serve = [sys.executable, "-m", "eir", "serve", "--snapshot", str(data["snapshot"]), "--rules",
             str(ROOT / "rules" / "default.toml"), "--rpc", f"127.0.0.1:{rpc}", "--http", f"127.0.0.1:{http}",
             "--state", "memory", "--log-level", "warning"]
    with server(serve, server_cpu, http_ready(http, "/readyz"), out_dir / "serve.log"):
        res["service_batch"] = uvloop.run(loadgen.batch_load("127.0.0.1", rpc, data["batches"], secs, warm))
        res["check_max"] = uvloop.run(loadgen.closed_loop("127.0.0.1", rpc, data["queries"], secs, warm))
        half = res["check_max"]["requests_per_s"] / 2
        res["check_latency"] = uvloop.run(loadgen.open_loop("127.0.0.1", rpc, data["queries"], half, secs, warm))
        res["http_service"] = _http_load(wrk, cpus[1], http, data, secs, warm)
    port = free_port()
    bare = [sys.executable, str(ROOT / "benchmarks" / "bare_http.py"), "127.0.0.1", str(port)]
    with server(bare, server_cpu, tcp_ready(port), out_dir / "bare_http.log"):
        res["http_bare"] = _http_load(wrk, cpus[1], port, data, secs, warm)
    # The benchmark itself keeps ~2 CPUs busy: a 1-minute load average well above 2 means other work
    # shared the machine during the run and its figures are suspect.
    res["loadavg_after"] = os.getloadavg()[0]
    return res


def _http_load(wrk: str | None, cpu: int | None, port: int, data: dict[str, Any], secs: float,
               warm: float) -> dict[str, Any]:
    if wrk is not None:
        return run_wrk(wrk, cpu, port, data["paths_file"], secs, warm)
    return uvloop.run(loadgen.http_closed_loop("127.0.0.1", port, data["paths"], secs, warm))


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def med(phase: str, key: str) -> float:
        return statistics.median(r[phase][key] for r in runs)

    m = {
        "echo_batch_per_s": med("echo_batch", "items_per_s"),
        "service_batch_per_s": med("service_batch", "items_per_s"),
        "check_max_per_s": med("check_max", "requests_per_s"),
        "check_latency_rate_per_s": med("check_latency", "rate"),
        "check_p50_ms": med("check_latency", "p50_ms"),
        "check_p99_ms": med("check_latency", "p99_ms"),
        "check_p999_ms": med("check_latency", "p999_ms"),
        "http_bare_per_s": med("http_bare", "requests_per_s"),
        "http_service_per_s": med("http_service", "requests_per_s"),
    }
    ratios = {"batch_ratio_to_echo": m["service_batch_per_s"] / m["echo_batch_per_s"],
              "http_ratio_to_bare": m["http_service_per_s"] / m["http_bare_per_s"]}
    checks = {
        "service_batch_per_s": m["service_batch_per_s"] >= TARGETS["service_batch_per_s"],
        "batch_ratio_to_echo": ratios["batch_ratio_to_echo"] >= TARGETS["batch_ratio_to_echo"],
        "check_p99_ms": m["check_p99_ms"] <= TARGETS["check_p99_ms"],
        "http_ratio_to_bare": ratios["http_ratio_to_bare"] >= TARGETS["http_ratio_to_bare"],
    }
    errors = sum(r[p].get("errors", 0) for r in runs for p in r if isinstance(r[p], dict))
    return {"medians": m, "ratios": ratios, "targets": TARGETS, "pass": checks, "errors": errors}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=50_000)
    ap.add_argument("--attaches", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--batch-size", type=int, default=1_000)
    ap.add_argument("--no-install", action="store_true", help="never apt-get install wrk")
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out" / "service_bench.json")
    args = ap.parse_args()
    out_dir = args.out.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    cpus_avail = sorted(os.sched_getaffinity(0))
    cpus: tuple[int | None, int | None] = (cpus_avail[0], cpus_avail[1]) if len(cpus_avail) >= 2 else (None, None)
    if cpus[1] is not None:
        os.sched_setaffinity(0, {cpus[1]})  # this process generates the msgpack load
    data = prepare(ROOT / "bench-out" / "data", args.devices, args.attaches, args.seed, args.batch_size)
    gc.collect()
    gc.freeze()  # the prepared requests are long-lived: no collector pauses in the load generator
    wrk = find_wrk(install=not args.no_install)
    runs = []
    for i in range(args.runs):
        print(f"run {i + 1}/{args.runs} ...", file=sys.stderr)
        runs.append(one_run(args, data, cpus, wrk, out_dir))
        print(json.dumps(runs[-1]), file=sys.stderr)
    wrk_version = subprocess.run([wrk, "-v"], capture_output=True, text=True).stdout.split("\n")[0] if wrk else None
    doc = {
        "benchmark": "eir service", "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "cpu": _cpu_model(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "pinning": {"server_cpu": cpus[0], "load_cpu": cpus[1]} if cpus[0] is not None else "none (one CPU)",
        "load_generators": {"msgpack": "benchmarks/loadgen.py (Python, uvloop, raw protocols)",
                            "http": wrk_version or "benchmarks/loadgen.py http_closed_loop (wrk not installed)"},
        "params": {"devices": args.devices, "attaches": args.attaches, "seed": args.seed, "runs": args.runs,
                   "seconds": args.seconds, "warmup": args.warmup, "batch_size": args.batch_size,
                   "queries": len(data["queries"]), "rpc_connections_batch": 2, "batch_window": 4,
                   "check_connections": 64, "http_connections": 64},
        "runs": runs,
        **summarize(runs),
    }
    args.out.write_text(json.dumps(doc, indent=2))
    print(json.dumps({k: doc[k] for k in ("medians", "ratios", "pass", "errors", "load_generators")}, indent=2))
    return 0


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    sys.exit(main())
