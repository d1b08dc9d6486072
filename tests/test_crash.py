"""kill -9 under load (issue 4 §2): every answered deadline and every emitted event survives.

``eir serve --state DB`` runs as a subprocess on a demo registry. Several msgpack-RPC connections
replay the demo attach log against it (pipelined, log times), recording every answer. The service is
killed with SIGKILL in the middle of the load and restarted on the same database. Then:

* every deadline that was answered is unchanged: the same (IMEI, subscriber) asked again gets the same
  deadline (a lost grace, activation or window would give a new one, counted from the new query time);
* the outbox holds seqs 1..N without a gap, and every answered decision that started or announced a
  promise has its event there (CLONE_GRACE_STARTED, ACTIVATION_REQUIRED, TRAVELER_ALLOWANCE_STARTED...).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import orjson
import pytest

from eir.demo import write_demo
from eir.index import Index
from eir.model import Query
from eir.query import RequestError, build_query, parse_time
from eir.rules import RuleSet
from eir.snapshot import build_snapshot
from tests.conftest import RULES_DIR

pytestmark = pytest.mark.slow

CONNECTIONS = 8
WINDOW = 64  # outstanding requests per connection
KILL_AFTER_ANSWERS = 30_000
KILL_AFTER_S = 8.0

FAMILY = {
    "CLONE_GRACE": "clone", "CLONE_BLOCKED": "clone", "OWNERSHIP_GRACE": "ownership",
    "OWNERSHIP_BLOCKED": "ownership", "ACTIVATION_GRACE": "activation", "NOT_ACTIVATED": "activation",
    "TRAVELER_ALLOWANCE": "traveler", "ALLOWANCE_EXPIRED": "traveler",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Sent:
    """One request of the load and its answer (None: never answered)."""

    row: tuple[str, str, str, str, str]
    query: Query
    sent: bool = False
    answer: dict[str, Any] | None = None


class Server:
    """``eir serve --state`` as a subprocess."""

    def __init__(self, snapshot: Path, state: Path, log: Path) -> None:
        self.snapshot, self.state, self.log = snapshot, state, log
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = [sys.executable, "-m", "eir", "serve", "--snapshot", str(self.snapshot),
               "--rules", str(RULES_DIR / "default.toml"), "--state", str(self.state),
               "--rpc", f"127.0.0.1:{self.port}", "--http", "off"]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the store loads and the snapshot is read: then it answers
            assert self.proc.poll() is None, f"eir serve exited: {self.log.read_text()[-3000:]}"
            with contextlib.suppress(OSError, EOFError):
                if self._ready():
                    return
            time.sleep(0.1)
        raise AssertionError(f"eir serve not ready: {self.log.read_text()[-3000:]}")

    def _ready(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            s.sendall(msgpack.packb([0, 1, "check", ["35693803000001", "989121111111", 1, None, None]]))
            u = msgpack.Unpacker(raw=False)
            while True:
                data = s.recv(65536)
                if not data:
                    raise EOFError
                u.feed(data)
                for msg in u:
                    return bool(msg[2] is None)

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


async def drive(port: int, work: list[Sent], answered: list[int]) -> None:
    """Send ``work`` in order on one connection, pipelined; record answers until the link breaks."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    window = asyncio.Semaphore(WINDOW)
    by_id: dict[int, Sent] = {}
    finished = asyncio.Event()  # everything sent and answered
    sending = [True]

    async def receive() -> None:
        u = msgpack.Unpacker(raw=False)
        try:
            while True:
                try:
                    data = await reader.read(65536)
                except ConnectionError:
                    return
                if not data:
                    return
                u.feed(data)
                for _, msgid, err, result in u:
                    assert err is None, err
                    by_id.pop(msgid).answer = result
                    answered[0] += 1
                    window.release()
                if not sending[0] and not by_id:
                    finished.set()
                    return
        finally:
            for _ in range(WINDOW):  # wake the sender: it sees the link is gone
                window.release()

    rx = asyncio.ensure_future(receive())
    try:
        for i, s in enumerate(work):
            await window.acquire()
            if rx.done() or writer.is_closing():
                break
            by_id[i] = s
            s.sent = True
            t, imei, msisdn, slot, imsi = s.row
            writer.write(msgpack.packb([0, i, "check", [imei, msisdn or None, int(slot) if slot else None, t,
                                                         imsi or None]]))
            with contextlib.suppress(ConnectionError):
                await writer.drain()
        sending[0] = False
        if not by_id:
            finished.set()
        await asyncio.wait_for(asyncio.wait((rx, asyncio.ensure_future(finished.wait())),
                                            return_when=asyncio.FIRST_COMPLETED), 60)
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        rx.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await rx
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def load(port: int, parts: list[list[Sent]], server: Server | None) -> None:
    """All connections at once; SIGKILL the server mid-load when ``server`` is given."""
    answered = [0]
    tasks = [asyncio.ensure_future(drive(port, p, answered)) for p in parts]
    if server is not None:
        started = time.monotonic()
        while answered[0] < KILL_AFTER_ANSWERS and time.monotonic() - started < KILL_AFTER_S:
            await asyncio.sleep(0.005)
        server.kill9()
    await asyncio.gather(*tasks)


def parsed_rows(csv: Path, index: Index, rules: RuleSet) -> Iterator[Sent]:
    with csv.open() as f:
        next(f)
        for line in f:
            t, imei, msisdn, slot, imsi = line.rstrip("\n").split(",")
            try:
                q = build_query(index, rules, parse_time(t), imei, msisdn or None, slot or None, imsi or None)
            except RequestError:
                continue
            if q.imei < 0:
                continue
            yield Sent((t, imei, msisdn, slot, imsi), q)


def test_kill9_under_load_loses_no_answered_deadline_and_no_event(tmp_path: Path, default_rules: RuleSet) -> None:
    demo = tmp_path / "demo"
    write_demo(demo, 6_000, 60_000, 5)
    snap = demo / "snap.eirsnap"
    build_snapshot([demo / "registry.jsonl"], snap, skip_invalid=False)
    index = Index.from_snapshot(snap)
    rows = list(parsed_rows(demo / "attaches.csv", index, default_rules))
    # One IMEI always on the same connection: its attaches are decided in log order.
    parts: list[list[Sent]] = [[] for _ in range(CONNECTIONS)]
    for s in rows:
        parts[s.query.imei % CONNECTIONS].append(s)

    state = tmp_path / "state.db"
    server = Server(snap, state, tmp_path / "serve.log")
    try:
        server.start()
        asyncio.run(load(server.port, parts, server))
        answered = [s for s in rows if s.answer is not None]
        sent = sum(s.sent for s in rows)
        print(f"crash test: {len(rows)} attaches, {sent} sent, {len(answered)} answered before kill -9")
        assert KILL_AFTER_ANSWERS // 2 <= len(answered) < sent, "the kill did not land mid-load"
        server.start()  # same database
        check_deadlines(server.port, parts)
        check_outbox(state, answered, default_rules)
    finally:
        server.stop()


def check_deadlines(port: int, parts: list[list[Sent]]) -> None:
    """Ask every answered (IMEI, subscriber) again, 1 s after its last answer: same deadline."""
    requery: list[list[Sent]] = [[] for _ in range(CONNECTIONS)]
    expected: list[tuple[Sent, Sent]] = []
    for c, part in enumerate(parts):
        last: dict[tuple[int, int], int] = {}
        for i, s in enumerate(part):
            if s.sent and s.query.msisdn:
                last[(s.query.imei, s.query.msisdn)] = i
        unanswered_imeis = {s.query.imei for s in part if s.sent and s.answer is None}
        for (imei, _), i in last.items():
            s = part[i]
            if s.answer is None or s.answer.get("deadline") is None:
                continue  # the last word for this subscriber was never heard, or carried no deadline
            fam = FAMILY[s.answer["reason"]]
            if fam in ("activation", "ownership") and imei in unanswered_imeis:
                continue  # a decided-but-unanswered detection may have made the device a clone since
            t, imei_raw, msisdn, slot, imsi = s.row
            again = Sent((str(parse_time(t) + 1), imei_raw, msisdn, slot, imsi), s.query)
            requery[c].append(again)
            expected.append((s, again))
    assert len(expected) > 100, "too few answered deadlines to prove anything"
    asyncio.run(load(port, requery, None))
    lost, changed_family = [], 0
    for old, new in expected:
        assert new.answer is not None and old.answer is not None
        if FAMILY.get(new.answer["reason"]) != FAMILY[old.answer["reason"]]:
            changed_family += 1  # e.g. a re-query's own switch-back made the device a detected clone
            continue
        if new.answer["deadline"] != old.answer["deadline"]:
            lost.append((old.row, old.answer, new.answer))
    assert not lost, f"{len(lost)} answered deadlines changed after kill -9, e.g. {lost[:3]}"
    assert changed_family < len(expected) // 20
    print(f"crash test: {len(expected)} answered deadlines asked again, all unchanged "
          f"({changed_family} changed kind through the re-queries' own attaches)")


def check_outbox(state: Path, answered: list[Sent], rules: RuleSet) -> None:
    conn = sqlite3.connect(f"file:{state}?mode=ro", uri=True)
    try:
        seqs = [s for (s,) in conn.execute("SELECT seq FROM outbox ORDER BY seq")]
        events = [orjson.loads(b) for (b,) in conn.execute("SELECT body FROM outbox ORDER BY seq")]
    finally:
        conn.close()
    assert seqs == list(range(1, len(seqs) + 1)), "gap or duplicate in the committed seqs"
    have = {(e["type"], e["msisdn"], e["deadline"]) for e in events}
    have_imei = {(e["type"], int(e["imei"]), e["msisdn"], e["deadline"]) for e in events}
    grace = {"CLONE_GRACE": ("CLONE_GRACE_STARTED", rules.clone_grace_s),
             "OWNERSHIP_GRACE": ("OWNERSHIP_GRACE_STARTED", rules.ownership_grace_s),
             "TRAVELER_ALLOWANCE": ("TRAVELER_ALLOWANCE_STARTED", rules.traveler_allowance_s)}
    missing, checked = [], 0
    for s in answered:
        assert s.answer is not None
        reason, deadline, q = s.answer["reason"], s.answer.get("deadline"), s.query
        if deadline is None or not q.msisdn:
            continue
        iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(deadline))
        if reason in grace and deadline == q.time + grace[reason][1]:
            # This answer started the grace/window: the event announcing it must be in the outbox.
            checked += 1
            if (grace[reason][0], q.imei, str(q.msisdn), iso) not in have_imei:
                missing.append((s.row, s.answer))
        elif reason == "ACTIVATION_GRACE":
            # Each subscriber's first attach in the activation grace is announced, once.
            checked += 1
            if ("ACTIVATION_REQUIRED", str(q.msisdn), iso) not in have:
                missing.append((s.row, s.answer))
    assert checked > 100
    assert not missing, f"{len(missing)} answered promises without their event, e.g. {missing[:3]}"
    print(f"crash test: outbox seqs 1..{len(seqs)} contiguous; {checked} answered promises have their event")
