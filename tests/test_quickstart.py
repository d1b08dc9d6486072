"""``eir demo`` — the first quick-start command — as a process: it generates the demo, serves it with
SQLite state, answers the query it prints, and drains on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import orjson

from tests.test_serve_cli import Serve


def test_demo_serves_what_it_prints(tmp_path: Path) -> None:
    work, state = tmp_path / "demo", tmp_path / "state.db"
    srv = Serve("--dir", str(work), "--devices", "300", "--state", str(state), "--rpc", "127.0.0.1:0",
                "--http", "127.0.0.1:0", command="demo")
    try:
        port = srv.port("http")
        srv.wait_for(lambda d: d["msg"] == "listening" and d.get("transport") == "rpc")
    finally:
        srv.proc.send_signal(signal.SIGTERM)
    assert srv.finish() == 0
    printed = srv.stdout
    # The printed curl line, pointed at the port the test server really took, gives a decision.
    curl = next(line for line in printed.splitlines() if "equipment-status" in line)
    query = curl.split("'")[1].split("/", 3)[3]
    srv = Serve("--dir", str(work), "--state", str(state), "--http", "127.0.0.1:0", "--rpc", "127.0.0.1:0",
                command="demo")
    try:
        port = srv.port("http")
        srv.wait_for(lambda d: d["msg"] == "bundle loaded")  # listening comes first, ready after the load
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/{query}", timeout=10) as r:
            assert r.status == 200 and orjson.loads(r.read()) == {"status": "WHITELISTED"}
    finally:
        srv.proc.send_signal(signal.SIGTERM)
    assert srv.finish() == 0
    assert (work / "registry.eirsnap").is_file() and state.is_file()
    assert "import socket, msgpack" in printed and "eir replay" in printed and "eir admin" in printed


def test_demo_without_rules_says_how_to_fix_it(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "eir", "demo", "--dir", str(tmp_path), "--rules",
                          str(tmp_path / "none.toml"), "--state", str(tmp_path / "s.db")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--rules" in out.stderr and not (tmp_path / "registry.jsonl").exists()
