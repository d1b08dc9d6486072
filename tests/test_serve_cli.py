"""``eir serve`` as a process: JSON logs without secrets, SIGHUP reload, admin reload, SIGTERM drain."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import msgpack
import orjson
from click.testing import CliRunner

from eir.cli import main
from tests.svc_fixtures import DEFAULT_RULES, OTHER, OWNED, OWNER, UNOWNED, UNREGISTERED, build, registry

TOKEN = "Xy7-admin-secret"


class Serve:
    """An ``eir serve`` subprocess whose stderr (JSON lines) is collected by a thread."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, command: str = "serve") -> None:
        # Without --state the service would write ./var/eir-state.db: tests always name their state.
        assert "--state" in args, "pass --state memory or a tmp path"
        self.proc = subprocess.Popen([sys.executable, "-m", "eir", command, *args], stderr=subprocess.PIPE,
                                     stdout=subprocess.PIPE if command == "demo" else subprocess.DEVNULL,
                                     env={**os.environ, **(env or {})})
        # `eir demo` also says what it is doing in plain words on stderr; `eir serve` writes only JSON lines.
        self._plain_ok = command == "demo"
        self.lines: list[str] = []
        self.stdout = ""
        self._q: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        with self.proc.stderr:
            for raw in self.proc.stderr:
                self._q.put(raw.decode())
        self._q.put(None)

    def wait_for(self, pred: Any, timeout: float = 30.0) -> dict[str, Any]:
        """The first log record (parsed) satisfying ``pred``."""
        deadline = time.monotonic() + timeout
        for line in self.lines:
            doc = self._record(line)
            if doc is not None and pred(doc):
                return doc  # type: ignore[no-any-return]
        while time.monotonic() < deadline:
            try:
                line = self._q.get(timeout=0.1)
            except queue.Empty:
                continue
            if line is None:
                break
            self.lines.append(line)
            doc = self._record(line)
            if doc is not None and pred(doc):
                return doc  # type: ignore[no-any-return]
        raise AssertionError("log record not seen; got:\n" + "".join(self.lines))

    def _record(self, line: str) -> dict[str, Any] | None:
        if self._plain_ok and not line.startswith("{"):
            return None
        doc: dict[str, Any] = orjson.loads(line)
        return doc

    def port(self, transport: str) -> int:
        rec = self.wait_for(lambda d: d["msg"] == "listening" and d.get("transport") == transport)
        return int(rec["port"])

    def finish(self, timeout: float = 30.0) -> int:
        rc = self.proc.wait(timeout)
        if self.proc.stdout is not None:  # `eir demo` prints how to query it (a few hundred bytes)
            with self.proc.stdout:
                self.stdout = self.proc.stdout.read().decode()
        while (line := self._q.get(timeout=5)) is not None:
            self.lines.append(line)
        return rc


def _http(port: int, path: str, method: str = "GET", token: str | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, orjson.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, orjson.loads(e.read())


def test_help_and_usage_errors() -> None:
    r = CliRunner().invoke(main, ["serve", "--help"])
    assert r.exit_code == 0 and "SIGHUP" in r.output and "--snapshot" in r.output
    r = CliRunner().invoke(main, ["serve", "--snapshot", "s", "--rules", "r", "--rpc", "nonsense"])
    assert r.exit_code == 2 and "--rpc" in r.output


def test_first_load_failure_exits_1(tmp_path: Path) -> None:
    s = Serve("--snapshot", str(tmp_path / "missing"), "--rules", str(DEFAULT_RULES), "--state", "memory",
              "--rpc", "127.0.0.1:0",
              "--http", "127.0.0.1:0")
    assert s.finish() == 1
    s.wait_for(lambda d: d["msg"].startswith("cannot start") and d["level"] == "error")


def test_serve_reload_and_drain(tmp_path: Path) -> None:
    snap = build(tmp_path, "reg", registry())
    s = Serve("--snapshot", str(snap), "--rules", str(DEFAULT_RULES), "--state", "memory", "--rpc", "127.0.0.1:0",
              "--http", "127.0.0.1:0", "--max-batch", "5000", env={"EIR_ADMIN_TOKEN": TOKEN})
    try:
        rpc, http = s.port("rpc"), s.port("http")
        s.wait_for(lambda d: d["msg"] == "bundle loaded")
        assert _http(http, "/readyz")[0] == 200
        # SIGHUP reloads (never forced); the admin route too.
        s.proc.send_signal(signal.SIGHUP)
        s.wait_for(lambda d: d["msg"] == "reload requested (SIGHUP)")
        s.wait_for(lambda d: d["msg"] == "bundle loaded" and d["forced"] is False)
        assert _http(http, "/v1/admin/reload", "POST", "wrong")[0] == 401
        status, doc = _http(http, "/v1/admin/reload", "POST", TOKEN)
        assert status == 200 and doc["result"] == "ok"
        # SIGTERM with a pipeline of batches in flight: every one is answered, then exit 0.
        sock = socket.create_connection(("127.0.0.1", rpc))
        n = 20
        batch = [[OWNED, OWNER], [UNOWNED, OTHER]] * 2_500
        sock.sendall(b"".join(msgpack.packb([0, i, "check_batch", [batch]]) for i in range(n)))
        unpacker = msgpack.Unpacker()
        answers: list[Any] = []
        while not answers:
            unpacker.feed(sock.recv(1 << 16))
            answers.extend(unpacker)
        s.proc.send_signal(signal.SIGTERM)
        while True:
            data = sock.recv(1 << 16)
            if not data:
                break
            unpacker.feed(data)
            answers.extend(unpacker)
        sock.close()
        assert sorted(a[1] for a in answers) == list(range(n))
        assert all(a[2] is None and len(a[3]) == 5_000 for a in answers)
        assert s.finish() == 0
    finally:
        if s.proc.poll() is None:
            s.proc.kill()
            s.finish()
    s.wait_for(lambda d: d["msg"] == "stopped")
    records = [orjson.loads(line) for line in s.lines]  # every line is one JSON object
    starting = next(r for r in records if r["msg"] == "starting")
    assert starting["admin_token_set"] is True
    assert all(TOKEN not in line for line in s.lines)
    assert not [r for r in records if r["level"] == "error"]


def test_sigint_also_drains(tmp_path: Path) -> None:
    snap = build(tmp_path, "reg", registry())
    s = Serve("--snapshot", str(snap), "--rules", str(DEFAULT_RULES), "--state", "memory", "--rpc", "127.0.0.1:0",
              "--http", "off")
    s.wait_for(lambda d: d["msg"] == "bundle loaded")
    s.proc.send_signal(signal.SIGINT)
    assert s.finish() == 0


def test_serve_with_durable_state_survives_kill_9(tmp_path: Path) -> None:
    snap = build(tmp_path, "reg", registry())
    db = tmp_path / "state.db"
    s = Serve("--snapshot", str(snap), "--rules", str(DEFAULT_RULES), "--state", str(db), "--rpc", "127.0.0.1:0",
              "--http", "off")
    rpc = s.port("rpc")
    s.wait_for(lambda d: d["msg"] == "bundle loaded")
    sock = socket.create_connection(("127.0.0.1", rpc))
    sock.sendall(msgpack.packb([0, 1, "check", [UNOWNED, OTHER]]))
    u = msgpack.Unpacker()
    while not (msgs := list(u)):
        u.feed(sock.recv(4096))
    deadline = msgs[0][3]["deadline"]
    sock.close()
    s.proc.kill()  # kill -9: the announced deadline must survive
    s.finish()
    s2 = Serve("--snapshot", str(snap), "--rules", str(DEFAULT_RULES), "--state", str(db), "--rpc", "127.0.0.1:0",
               "--http", "off")
    rpc = s2.port("rpc")
    s2.wait_for(lambda d: d["msg"] == "bundle loaded")
    sock = socket.create_connection(("127.0.0.1", rpc))
    sock.sendall(msgpack.packb([0, 1, "check", [UNOWNED, OTHER]]))
    u = msgpack.Unpacker()
    while not (msgs := list(u)):
        u.feed(sock.recv(4096))
    assert msgs[0][3]["deadline"] == deadline
    sock.close()
    s2.proc.send_signal(signal.SIGTERM)
    assert s2.finish() == 0


async def test_serve_webhook_delivers_committed_events(tmp_path: Path) -> None:
    """``--webhook``: an attach that creates an event is POSTed to the receiver with its outbox seq."""
    import asyncio
    import sqlite3

    from aiohttp import web

    got: list[tuple[dict[str, str], dict[str, Any]]] = []
    arrived = asyncio.Event()

    async def hook(request: web.Request) -> web.Response:
        got.append((dict(request.headers), orjson.loads(await request.read())))
        arrived.set()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    snap = build(tmp_path, "reg", registry())
    db = tmp_path / "sub" / "state.db"  # the parent directory is created by the service
    s = Serve("--snapshot", str(snap), "--rules", str(DEFAULT_RULES), "--state", str(db), "--rpc", "127.0.0.1:0",
              "--http", "off", "--webhook", f"http://127.0.0.1:{port}/hook")
    try:
        rpc = await asyncio.to_thread(s.port, "rpc")
        await asyncio.to_thread(s.wait_for, lambda d: d["msg"] == "bundle loaded")
        reader, writer = await asyncio.open_connection("127.0.0.1", rpc)
        writer.write(msgpack.packb([0, 1, "check", [UNREGISTERED, OTHER, 1]]))
        unpacker = msgpack.Unpacker()
        while not (answers := list(unpacker)):
            unpacker.feed(await asyncio.wait_for(reader.read(1 << 16), 10))
        assert answers[0][2] is None and answers[0][3]["reason"] == "TRAVELER_ALLOWANCE", answers
        writer.close()
        await asyncio.wait_for(arrived.wait(), 15)
        s.proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(s.finish) == 0
    finally:
        if s.proc.poll() is None:
            s.proc.kill()
            s.finish()
        await runner.cleanup()
    with sqlite3.connect(db) as conn:
        outbox = {seq: orjson.loads(body) for seq, body in conn.execute("SELECT seq, body FROM outbox")}
        acked = conn.execute("SELECT seq FROM consumer WHERE name = 'webhook'").fetchone()
    started = [seq for seq, ev in outbox.items() if ev["type"] == "TRAVELER_ALLOWANCE_STARTED"]
    assert len(started) == 1
    headers, body = got[0]
    delivered = {ev["seq"]: ev for _, b in got for ev in b["events"]}
    assert started[0] in delivered and delivered[started[0]]["type"] == "TRAVELER_ALLOWANCE_STARTED"
    assert headers["Idempotency-Key"] == f"eir-{body['events'][0]['seq']}-{body['events'][-1]['seq']}"
    assert acked is not None and acked[0] >= started[0]  # the acknowledgement was stored durably
    assert any(orjson.loads(line)["msg"] == "webhook delivery started" for line in s.lines)


def test_webhook_usage_errors() -> None:
    base = ["serve", "--snapshot", "s", "--rules", "r"]
    r = CliRunner().invoke(main, [*base, "--state", "memory", "--webhook", "http://127.0.0.1:9/hook"])
    assert r.exit_code == 2 and "--webhook" in r.output and "memory" in r.output
    r = CliRunner().invoke(main, [*base, "--state", "x.db", "--webhook", "ftp://host/hook"])
    assert r.exit_code == 2 and "--webhook" in r.output
