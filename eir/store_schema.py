"""SQLite side of the durable state (SPEC §7): schemas, connections, batch writes, readers.

A state is two SQLite files (both WAL): ``DB`` holds the promises (graces, activations, windows,
quotas, detections, switch-backs, de-dup marks, the event outbox, delivery cursors) and is written in
small, frequent group commits that answers wait for; ``DB-history`` holds the observation history
(per IMEI, subscriber and slot: first/last seen, count), written in large background batches that
nothing waits for. Apart, a big history write never delays a promise commit (SQLite has one writer per
file), and the promise file stays small.

Everything here is synchronous and works on plain :class:`sqlite3.Connection` objects; :mod:`eir.store`
runs it on dedicated writer threads (the service) or inline (``eir replay --state``). Layout and reasons:
``docs/state.md``. Every statement is a constant with ``?`` parameters: no SQL is built from values.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final

import orjson

from eir.events import Event
from eir.state import MAX_OBSERVATIONS_PER_IMEI

#: ``PRAGMA user_version`` of the layout written by this code. Older versions are migrated at open;
#: a newer one (written by a later release) is refused rather than misread.
SCHEMA_VERSION: Final = 2
#: ``PRAGMA application_id`` of the two files ("EIRS", "EIRH"): a swapped or foreign file is refused.
STATE_APP_ID: Final = 0x45495253
HISTORY_APP_ID: Final = 0x45495248

SYNCHRONOUS_MODES: Final = ("FULL", "NORMAL")
#: JSON ``->>`` (3.38) and MATERIALIZED common table expressions (3.35).
MIN_SQLITE: Final = (3, 38, 0)
#: Most attaches in one batch: their index in the batch takes the low 20 bits of ``time << 20 | index``.
MAX_CHUNK: Final = 1 << 20

_DDL: Final = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE grace (
    imei     INTEGER NOT NULL,
    msisdn   INTEGER NOT NULL,
    kind     INTEGER NOT NULL,
    start    INTEGER NOT NULL,
    deadline INTEGER NOT NULL,
    PRIMARY KEY (imei, msisdn, kind)
) WITHOUT ROWID;
CREATE TABLE activation (
    device_key INTEGER PRIMARY KEY,
    first_seen INTEGER NOT NULL,
    deadline   INTEGER NOT NULL
);
CREATE TABLE traveler_window (
    imei       INTEGER PRIMARY KEY,
    start      INTEGER NOT NULL,
    deadline   INTEGER NOT NULL,
    period_end INTEGER NOT NULL,
    identity   TEXT NOT NULL,
    msisdn     INTEGER NOT NULL
);
CREATE TABLE quota (
    identity TEXT PRIMARY KEY,
    start    INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE detection (
    imei        INTEGER PRIMARY KEY,
    time        INTEGER NOT NULL,
    enforced    INTEGER NOT NULL,
    subscribers TEXT NOT NULL
);
CREATE TABLE switchback (
    imei  INTEGER PRIMARY KEY,
    last  INTEGER NOT NULL,
    times TEXT NOT NULL
);
CREATE TABLE mark_kind (
    id   INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
CREATE TABLE mark (
    kind    INTEGER NOT NULL,
    subject INTEGER NOT NULL,
    msisdn  INTEGER NOT NULL,
    extra   INTEGER NOT NULL,
    time    INTEGER NOT NULL,
    PRIMARY KEY (kind, subject, msisdn, extra)
) WITHOUT ROWID;
CREATE TABLE outbox (
    seq  INTEGER PRIMARY KEY,
    time INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE TABLE consumer (
    name TEXT PRIMARY KEY,
    seq  INTEGER NOT NULL
) WITHOUT ROWID;
"""
#: Version 2: the control plane's registry-change journal (eir.control_ops), one row per change.
_REGISTRY_CHANGE_DDL: Final = """
CREATE TABLE registry_change (
    seq  INTEGER PRIMARY KEY,
    time INTEGER NOT NULL,
    body BLOB NOT NULL
);
"""

_HISTORY_DDL: Final = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE observation (
    imei   INTEGER NOT NULL,
    msisdn INTEGER NOT NULL,
    slot   INTEGER NOT NULL,
    first  INTEGER NOT NULL,
    last   INTEGER NOT NULL,
    count  INTEGER NOT NULL,
    ord    INTEGER NOT NULL,  -- attach ordinal of `last`: orders same-second attaches (last attach wins)
    PRIMARY KEY (imei, msisdn, slot)
) WITHOUT ROWID;
"""

# --- statements ------------------------------------------------------------------------------------
#
# A whole batch is written by ONE statement: ``INSERT INTO temp.apply_batch VALUES (?, ...)`` with one
# JSON array of rows per column, which an INSTEAD OF trigger spreads over the tables (json_each). One
# statement is atomic on its own (autocommit), and it is one call into SQLite: the writer thread gives
# the GIL up once while SQLite works and takes it back once. With a statement per table (or executemany,
# a step per row) each take-back waits for the busy event loop to yield the GIL, up to the interpreter's
# switch interval (5 ms) every time: measured 75 ms per group commit that way, under 5 ms this way.

#: Columns of ``temp.apply_batch``, in the order the trigger applies them.
BATCH_COLUMNS: Final = (
    "grace_del", "grace_put", "activation_del", "activation_put", "window_del", "window_put", "quota_del",
    "quota_put", "detection_del", "detection_put", "switchback_del", "switchback_put", "mark_kinds",
    "mark_del", "mark_put", "events", "meta", "consumers", "changes",
)

_APPLY_BATCH: Final = """
CREATE TEMP VIEW apply_batch (
    grace_del, grace_put, activation_del, activation_put, window_del, window_put, quota_del, quota_put,
    detection_del, detection_put, switchback_del, switchback_put, mark_kinds, mark_del, mark_put, events,
    meta, consumers, changes
) AS SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
            NULL, NULL, NULL;
CREATE TEMP TRIGGER apply_batch_rows INSTEAD OF INSERT ON apply_batch BEGIN
    -- Within a batch a key is either deleted or put (rows come from the final in-memory value).
    DELETE FROM grace WHERE (imei, msisdn, kind) IN
        (SELECT value->>0, value->>1, value->>2 FROM json_each(NEW.grace_del));
    INSERT OR REPLACE INTO grace (imei, msisdn, kind, start, deadline)
        SELECT value->>0, value->>1, value->>2, value->>3, value->>4 FROM json_each(NEW.grace_put);
    DELETE FROM activation WHERE device_key IN (SELECT value FROM json_each(NEW.activation_del));
    INSERT OR REPLACE INTO activation (device_key, first_seen, deadline)
        SELECT value->>0, value->>1, value->>2 FROM json_each(NEW.activation_put);
    DELETE FROM traveler_window WHERE imei IN (SELECT value FROM json_each(NEW.window_del));
    INSERT OR REPLACE INTO traveler_window (imei, start, deadline, period_end, identity, msisdn)
        SELECT value->>0, value->>1, value->>2, value->>3, value->>4, value->>5 FROM json_each(NEW.window_put);
    DELETE FROM quota WHERE identity IN (SELECT value FROM json_each(NEW.quota_del));
    INSERT OR REPLACE INTO quota (identity, start) SELECT value->>0, value->>1 FROM json_each(NEW.quota_put);
    DELETE FROM detection WHERE imei IN (SELECT value FROM json_each(NEW.detection_del));
    INSERT OR REPLACE INTO detection (imei, time, enforced, subscribers)
        SELECT value->>0, value->>1, value->>2, value->3 FROM json_each(NEW.detection_put);
    DELETE FROM switchback WHERE imei IN (SELECT value FROM json_each(NEW.switchback_del));
    INSERT OR REPLACE INTO switchback (imei, last, times)
        SELECT value->>0, value->>1, value->2 FROM json_each(NEW.switchback_put);
    INSERT OR IGNORE INTO mark_kind (id, name) SELECT value->>0, value->>1 FROM json_each(NEW.mark_kinds);
    DELETE FROM mark WHERE (kind, subject, msisdn, extra) IN
        (SELECT value->>0, value->>1, value->>2, value->>3 FROM json_each(NEW.mark_del));
    INSERT OR REPLACE INTO mark (kind, subject, msisdn, extra, time)
        SELECT value->>0, value->>1, value->>2, value->>3, value->>4 FROM json_each(NEW.mark_put);
    -- The body is the event's JSON text, stored as a BLOB: delivery sends those bytes as they are.
    INSERT INTO outbox (seq, time, body)
        SELECT value->>0, value->>1, CAST(value->>2 AS BLOB) FROM json_each(NEW.events);
    INSERT OR REPLACE INTO meta (key, value) SELECT value->>0, value->>1 FROM json_each(NEW.meta);
    INSERT OR REPLACE INTO consumer (name, seq) SELECT value->>0, value->>1 FROM json_each(NEW.consumers);
    -- Registry changes of the control plane (the body is the change's JSON text).
    INSERT INTO registry_change (seq, time, body)
        SELECT value->>0, value->>1, CAST(value->>2 AS BLOB) FROM json_each(NEW.changes);
END;
"""
APPLY_BATCH: Final = ("INSERT INTO temp.apply_batch VALUES "
                      "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")  # len(BATCH_COLUMNS)
DEL_SWITCHBACK_BEFORE: Final = "DELETE FROM switchback WHERE last <= ?"
# Outbox retention, a bounded chunk per statement so that one prune never holds the writer for long.
PRUNE_OUTBOX: Final = (
    "DELETE FROM outbox WHERE seq IN "
    "(SELECT seq FROM outbox WHERE seq <= ? AND time < ? ORDER BY seq LIMIT ?)"
)

SELECT_CHANGES: Final = "SELECT seq, time, body FROM registry_change WHERE seq > ? ORDER BY seq"
SELECT_EVENTS: Final = "SELECT seq, body FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?"
SELECT_OBSERVATIONS: Final = (
    "SELECT msisdn, slot, first, last, count FROM observation WHERE imei = ? ORDER BY last DESC"
)


# History file (written by its own thread, in large batches that nothing waits for). One row per attach
# (imei, msisdn << 5 | slot, time) comes in, as a JSON array; each element is parsed once (the
# MATERIALIZED CTE: measured 30 % cheaper than extracting in the GROUP BY; the 5 and 31 below are
# eir.state.SLOT_BITS, checked by tests/test_store.py); SQLite groups and sorts them, so the upserts
# walk the table in key order and touch each page once per batch instead of once per attach (random-key
# upserts in small commits cost 25-50 us per attach here, mostly page writes; in one sorted batch ~8).
# An attach's ordinal is ?2 + its index in the batch: `time << 20 | index` picks the last attach of each
# group (index < 2^20 = MAX_CHUNK). `WHERE true` tells the parser that ON CONFLICT belongs to the
# INSERT; SET expressions read the row as it was before the update.
UPSERT_OBSERVATIONS: Final = """
WITH a AS MATERIALIZED (SELECT value->>0 AS imei, value->>1 AS sub, value->>2 AS t, key AS k FROM json_each(?1))
INSERT INTO observation (imei, msisdn, slot, first, last, count, ord)
    SELECT imei, sub >> 5, sub & 31, first, lastkey >> 20, n, ?2 + (lastkey & 1048575) FROM (
        SELECT imei, sub, min(t) AS first, max((t << 20) | k) AS lastkey, count(*) AS n FROM a
        GROUP BY imei, sub) WHERE true
    ON CONFLICT (imei, msisdn, slot) DO UPDATE SET first = min(first, excluded.first),
        last = max(last, excluded.last), count = count + excluded.count,
        ord = CASE WHEN excluded.last >= last THEN excluded.ord ELSE ord END
"""
# Keep the newest ?2 (subscriber, slot) rows of each IMEI in ?1. IMEIs within the bound are skipped by a
# count over the primary-key prefix; ties on `last` at the boundary go too.
TRIM_OBSERVATIONS: Final = """
DELETE FROM observation WHERE (imei, msisdn, slot) IN (
    SELECT o.imei, o.msisdn, o.slot FROM (
        SELECT t.imei AS imei, (SELECT last FROM observation AS p WHERE p.imei = t.imei
                                ORDER BY last DESC LIMIT 1 OFFSET ?2) AS last
        FROM (SELECT DISTINCT value AS imei FROM json_each(?1)) AS t
        WHERE (SELECT count(*) FROM observation AS c WHERE c.imei = t.imei) > ?2) AS cut
    JOIN observation AS o ON o.imei = cut.imei WHERE o.last <= cut.last)
"""
PUT_HISTORY_META: Final = "INSERT OR REPLACE INTO meta (key, value) SELECT value->>0, value->>1 FROM json_each(?)"


class StoreError(RuntimeError):
    """The state database cannot be used (locked by another process, newer schema, I/O failure)."""


@dataclass(slots=True)
class Batch:
    """The rows of one transaction, snapshotted on the event-loop thread before the write.

    ``*_put`` are complete rows (INSERT OR REPLACE), ``*_del`` primary keys. Events are passed as
    objects: they are immutable once sequenced, so the writer thread may serialise them.
    """

    grace_put: list[tuple[int, int, int, int, int]] = field(default_factory=list)
    grace_del: list[tuple[int, int, int]] = field(default_factory=list)
    activation_put: list[tuple[int, int, int]] = field(default_factory=list)
    activation_del: list[int] = field(default_factory=list)
    window_put: list[tuple[int, int, int, int, str, int]] = field(default_factory=list)
    window_del: list[int] = field(default_factory=list)
    quota_put: list[tuple[str, int]] = field(default_factory=list)
    quota_del: list[str] = field(default_factory=list)
    detection_put: list[tuple[int, int, int, list[int]]] = field(default_factory=list)
    detection_del: list[int] = field(default_factory=list)
    switchback_put: list[tuple[int, int, list[int]]] = field(default_factory=list)
    switchback_del: list[int] = field(default_factory=list)
    mark_kinds: list[tuple[int, str]] = field(default_factory=list)
    mark_put: list[tuple[int, int, int, int, int]] = field(default_factory=list)
    mark_del: list[tuple[int, int, int, int]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    meta: list[tuple[str, int]] = field(default_factory=list)
    consumers: list[tuple[str, int]] = field(default_factory=list)
    #: Registry changes of the control plane: (seq, time, JSON body).
    changes: list[tuple[int, int, bytes]] = field(default_factory=list)
    # Maintenance (pruning): run as plain parameterised statements.
    maintenance: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)

    @property
    def promises(self) -> int:
        """Rows that some answer may be waiting for."""
        return (len(self.grace_put) + len(self.grace_del) + len(self.activation_put) + len(self.activation_del)
                + len(self.window_put) + len(self.window_del) + len(self.quota_put) + len(self.quota_del)
                + len(self.detection_put) + len(self.detection_del) + len(self.switchback_put)
                + len(self.switchback_del) + len(self.mark_put) + len(self.mark_del) + len(self.events)
                + len(self.consumers) + len(self.changes))

    def __len__(self) -> int:
        return self.promises + len(self.maintenance)


@dataclass(slots=True)
class HistoryBatch:
    """One transaction of the history file: attaches numbered from ``ord_base``, IMEIs to trim."""

    observations: list[tuple[int, int, int]] = field(default_factory=list)  # imei, msisdn << 5 | slot, time
    ord_base: int = 0
    trim: list[int] = field(default_factory=list)
    meta: list[tuple[str, int]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.observations) + len(self.trim)


def unpack_ints(text: str | bytes) -> list[int]:
    """A JSON array of integers from the database (detection subscribers, switch-back times)."""
    values = orjson.loads(text)
    if not isinstance(values, list):
        raise StoreError("corrupt integer list in the state database")
    return [int(v) for v in values]


def event_row(ev: Event) -> tuple[int, int, str]:
    """The outbox row of an event: its JSON form is what every delivery path sends as is."""
    return ev.seq, ev.time, orjson.dumps(ev.to_dict()).decode()


def encode_batch(b: Batch) -> list[bytes | None]:
    """The parameters of :data:`APPLY_BATCH` for a batch (JSON arrays; None for an empty table).

    Called on the event-loop thread: a writer thread that runs Python code must take the GIL from the
    busy loop for it (up to a switch interval each time), so the writer only executes the statement.
    """
    dumps = orjson.dumps
    return [
        dumps(rows) if rows else None
        for rows in (
            b.grace_del, b.grace_put, b.activation_del, b.activation_put, b.window_del, b.window_put,
            b.quota_del, b.quota_put, b.detection_del, b.detection_put, b.switchback_del, b.switchback_put,
            b.mark_kinds, b.mark_del, b.mark_put, [event_row(ev) for ev in b.events], b.meta, b.consumers,
            [(seq, t, body.decode()) for seq, t, body in b.changes],
        )
    ]


def write_batch(conn: sqlite3.Connection, b: Batch, params: list[bytes | None] | None = None) -> None:
    """Apply one batch atomically: maintenance first, then every row in one statement (see above)."""
    if conn.in_transaction:  # a previous failure left one open: never write into it
        conn.execute("ROLLBACK")
    # Maintenance (idempotent deletes) in its own statements before the batch: if the batch then
    # fails, retrying both is harmless; if maintenance fails, nothing of the batch was written.
    for sql, values in b.maintenance:
        conn.execute(sql, values)
    if b.promises:
        conn.execute(APPLY_BATCH, params if params is not None else encode_batch(b))


def encode_history(hb: HistoryBatch) -> tuple[bytes | None, bytes | None, bytes | None]:
    """The JSON parameters of a history batch (observations, trims, meta), built on the loop thread."""
    dumps = orjson.dumps
    return (dumps(hb.observations) if hb.observations else None, dumps(hb.trim) if hb.trim else None,
            dumps(hb.meta) if hb.meta else None)


def write_history(conn: sqlite3.Connection, hb: HistoryBatch,
                  params: tuple[bytes | None, bytes | None, bytes | None] | None = None,
                  keep: int = MAX_OBSERVATIONS_PER_IMEI) -> None:
    """Apply one history batch in one transaction (all or nothing)."""
    observations, trim, meta = params if params is not None else encode_history(hb)
    if conn.in_transaction:
        conn.execute("ROLLBACK")
    conn.execute("BEGIN IMMEDIATE")
    try:
        if observations is not None:
            conn.execute(UPSERT_OBSERVATIONS, (observations, hb.ord_base))
        if trim is not None:
            # After the upserts that may have grown the histories.
            conn.execute(TRIM_OBSERVATIONS, (trim, keep))
        if meta is not None:
            conn.execute(PUT_HISTORY_META, (meta,))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


# --- opening ---------------------------------------------------------------------------------------


class DbLock:
    """An exclusive advisory lock beside the database: one engine process owns a state at a time.

    Two engines writing one state would each keep their own in-memory copy and hand out conflicting
    deadlines. ``flock`` locks die with the process (also on ``kill -9``), so a crash never leaves a
    stale lock behind.
    """

    def __init__(self, path: Path) -> None:
        self.path = path.with_name(path.name + ".lock")
        self._f: IO[bytes] | None = None

    def acquire(self) -> None:
        """Take the lock or raise :class:`StoreError` naming the state file."""
        f = self.path.open("ab")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            f.close()
            raise StoreError(f"{self.path.name[:-5]}: state database is in use by another eir process") from e
        self._f = f

    def release(self) -> None:
        """Drop the lock (idempotent)."""
        if self._f is not None:
            fcntl.flock(self._f.fileno(), fcntl.LOCK_UN)
            self._f.close()
            self._f = None


def history_path(path: Path) -> Path:
    """The history file beside a state file: ``DB`` -> ``DB-history``."""
    return path.with_name(path.name + "-history")


def connect(path: Path, synchronous: str = "FULL", *, history: bool = False,
            check_same_thread: bool = True) -> sqlite3.Connection:
    """Open (creating if needed) the state file (or, with ``history``, the history file) for writing
    and bring its schema up to date. ``check_same_thread=False`` for a connection handed from one
    thread to another (never used by two at once)."""
    if sqlite3.sqlite_version_info < MIN_SQLITE:
        raise StoreError(f"the state store needs SQLite >= 3.38 (this Python has {sqlite3.sqlite_version})")
    if synchronous not in SYNCHRONOUS_MODES:
        raise StoreError(f"synchronous must be one of {', '.join(SYNCHRONOUS_MODES)}, not {synchronous!r}")
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # isolation_level=None: transactions are explicit (or one statement each).
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=check_same_thread)
    except sqlite3.Error as e:
        raise StoreError(f"{path}: cannot open the state database: {e}") from e
    try:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"{path}: the state database needs WAL mode (got {mode})")
        # Constant pragma values only (chosen from SYNCHRONOUS_MODES above), see docs/state.md.
        conn.execute("PRAGMA synchronous = FULL" if synchronous == "FULL" else "PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = OFF")
        conn.execute("PRAGMA cache_size = -65536")  # 64 MiB page cache: load and upserts stay in memory
        conn.execute("PRAGMA temp_store = MEMORY")
        if history:
            # Big history batches each grow the WAL by the pages they touch: checkpoint per ~32 MiB
            # rather than per 4 MiB (measured 16 % cheaper writes).
            conn.execute("PRAGMA wal_autocheckpoint = 8192")
            _migrate(conn, path, HISTORY_APP_ID, _HISTORY_DDL, "PRAGMA application_id = 1162433096")
        else:
            _migrate(conn, path, STATE_APP_ID, _DDL, "PRAGMA application_id = 1162433107")
            conn.executescript(_APPLY_BATCH)
    except sqlite3.DatabaseError as e:
        conn.close()
        raise StoreError(f"{path}: not a usable state database: {e}") from e
    except StoreError:
        conn.close()
        raise
    return conn


def connect_reader(path: Path) -> sqlite3.Connection:
    """A read-only connection (``eir events tail``, lazy history reads) to an existing state database."""
    if not path.exists():
        raise StoreError(f"{path}: no such state database")
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.Error as e:
        raise StoreError(f"{path}: cannot read the state database: {e}") from e
    if version != SCHEMA_VERSION:
        conn.close()
        raise StoreError(f"{path}: state schema version {version}, this eir reads {SCHEMA_VERSION}")
    return conn


def _migrate(conn: sqlite3.Connection, path: Path, app_id: int, ddl: str, set_app_id: str) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    found = conn.execute("PRAGMA application_id").fetchone()[0]
    if version and found != app_id:
        raise StoreError(f"{path}: not an eir {'history' if app_id == HISTORY_APP_ID else 'state'} database")
    if version == SCHEMA_VERSION:
        return
    if version > SCHEMA_VERSION:
        raise StoreError(f"{path}: state schema version {version} is newer than this eir ({SCHEMA_VERSION})")
    if version == 0:
        has_tables = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
        if has_tables:
            raise StoreError(f"{path}: not an eir state database (tables but no schema version)")
        # executescript commits first; the DDL, the id and the version are then one transaction.
        extra = "" if app_id == HISTORY_APP_ID else _REGISTRY_CHANGE_DDL
        conn.executescript(
            f"BEGIN;\n{ddl}\n{extra}\n{set_app_id};\nPRAGMA user_version = {SCHEMA_VERSION};\nCOMMIT;")
        return
    # One step per version, each in its own transaction.
    if version == 1:
        # 1 -> 2: the control plane's registry-change journal (the history file gains nothing).
        extra = "" if app_id == HISTORY_APP_ID else _REGISTRY_CHANGE_DDL
        conn.executescript(f"BEGIN;\n{extra}\nPRAGMA user_version = 2;\nCOMMIT;")
        return
    raise StoreError(f"{path}: no migration from state schema version {version}")


# --- reading ---------------------------------------------------------------------------------------


def read_events(conn: sqlite3.Connection, after: int, limit: int) -> list[tuple[int, bytes]]:
    """Committed outbox rows ``(seq, JSON bytes)`` with ``seq > after``, oldest first."""
    return [(int(s), bytes(b)) for s, b in conn.execute(SELECT_EVENTS, (after, limit))]


def iter_events(conn: sqlite3.Connection, after: int, chunk: int = 1_000) -> Iterator[tuple[int, bytes]]:
    """Every committed outbox row after ``after`` (reads in chunks so the result set stays small)."""
    while True:
        rows = read_events(conn, after, chunk)
        yield from rows
        if len(rows) < chunk:
            return
        after = rows[-1][0]


def read_changes(conn: sqlite3.Connection, after: int = 0) -> list[tuple[int, int, bytes]]:
    """The registry-change journal ``(seq, time, JSON body)`` with ``seq > after``, in order."""
    return [(int(s), int(t), bytes(b)) for s, t, b in conn.execute(SELECT_CHANGES, (after,))]


def last_committed_seq(conn: sqlite3.Connection) -> int:
    """The highest ``seq`` ever committed (kept in ``meta`` so that pruning the outbox cannot lower it)."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
    top = conn.execute("SELECT max(seq) FROM outbox").fetchone()[0]
    return max(int(row[0]) if row else 0, int(top) if top is not None else 0)


def database_bytes(path: Path) -> int:
    """Size on disk of a state: both files and their WALs."""
    total = 0
    for suffix in ("", "-wal", "-history", "-history-wal"):
        with contextlib.suppress(FileNotFoundError):
            total += os.stat(f"{path}{suffix}").st_size
    return total
