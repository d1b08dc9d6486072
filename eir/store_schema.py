"""SQLite side of the durable state (SPEC §7): schema, connection setup, one batch write, loading.

Everything here is synchronous and works on a plain :class:`sqlite3.Connection`; :mod:`eir.store` runs
it on a dedicated writer thread (the service) or inline (``eir replay --state``). Layout and the reasons
behind it are in ``docs/state.md``. Every statement is a constant with ``?`` parameters: no SQL is ever
built from values.
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

import msgpack
import orjson

from eir.events import Event

#: ``PRAGMA user_version`` of the layout written by this code. Older versions are migrated at open;
#: a newer one (written by a later release) is refused rather than misread.
SCHEMA_VERSION: Final = 1

SYNCHRONOUS_MODES: Final = ("FULL", "NORMAL")

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
    subscribers BLOB NOT NULL
);
CREATE TABLE switchback (
    imei  INTEGER PRIMARY KEY,
    last  INTEGER NOT NULL,
    times BLOB NOT NULL
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
CREATE TABLE observation (
    imei   INTEGER NOT NULL,
    msisdn INTEGER NOT NULL,
    slot   INTEGER NOT NULL,
    first  INTEGER NOT NULL,
    last   INTEGER NOT NULL,
    count  INTEGER NOT NULL,
    PRIMARY KEY (imei, msisdn, slot)
) WITHOUT ROWID;
CREATE INDEX observation_last ON observation (last);
"""

# --- statements ------------------------------------------------------------------------------------

PUT_GRACE: Final = "INSERT OR REPLACE INTO grace (imei, msisdn, kind, start, deadline) VALUES (?, ?, ?, ?, ?)"
DEL_GRACE: Final = "DELETE FROM grace WHERE imei = ? AND msisdn = ? AND kind = ?"
PUT_ACTIVATION: Final = "INSERT OR REPLACE INTO activation (device_key, first_seen, deadline) VALUES (?, ?, ?)"
DEL_ACTIVATION: Final = "DELETE FROM activation WHERE device_key = ?"
PUT_WINDOW: Final = ("INSERT OR REPLACE INTO traveler_window (imei, start, deadline, period_end, identity, msisdn)"
                     " VALUES (?, ?, ?, ?, ?, ?)")
DEL_WINDOW: Final = "DELETE FROM traveler_window WHERE imei = ?"
PUT_QUOTA: Final = "INSERT OR REPLACE INTO quota (identity, start) VALUES (?, ?)"
DEL_QUOTA: Final = "DELETE FROM quota WHERE identity = ?"
PUT_DETECTION: Final = ("INSERT OR REPLACE INTO detection (imei, time, enforced, subscribers) "
                        "VALUES (?, ?, ?, ?)")
DEL_DETECTION: Final = "DELETE FROM detection WHERE imei = ?"
PUT_SWITCHBACK: Final = "INSERT OR REPLACE INTO switchback (imei, last, times) VALUES (?, ?, ?)"
DEL_SWITCHBACK: Final = "DELETE FROM switchback WHERE imei = ?"
PUT_MARK_KIND: Final = "INSERT OR IGNORE INTO mark_kind (id, name) VALUES (?, ?)"
PUT_MARK: Final = "INSERT OR REPLACE INTO mark (kind, subject, msisdn, extra, time) VALUES (?, ?, ?, ?, ?)"
DEL_MARK: Final = "DELETE FROM mark WHERE kind = ? AND subject = ? AND msisdn = ? AND extra = ?"
PUT_EVENT: Final = "INSERT INTO outbox (seq, time, body) VALUES (?, ?, ?)"
PUT_META: Final = "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)"
PUT_CONSUMER: Final = "INSERT OR REPLACE INTO consumer (name, seq) VALUES (?, ?)"
# Observation counts are merged, never overwritten: a batch carries the deltas since the last flush.
UPSERT_OBSERVATION: Final = (
    "INSERT INTO observation (imei, msisdn, slot, first, last, count) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (imei, msisdn, slot) DO UPDATE SET first = min(first, excluded.first), "
    "last = max(last, excluded.last), count = count + excluded.count"
)
# Keep the newest ``?2`` (subscriber, slot) rows of an IMEI. The sub-select is NULL while the IMEI has
# no more rows than that, and then nothing is deleted; ties on ``last`` at the boundary go too.
TRIM_OBSERVATIONS: Final = (
    "DELETE FROM observation WHERE imei = ?1 AND last <= "
    "(SELECT last FROM observation WHERE imei = ?1 ORDER BY last DESC LIMIT 1 OFFSET ?2)"
)
PRUNE_OUTBOX: Final = "DELETE FROM outbox WHERE seq <= ? AND time < ?"
PRUNE_OBSERVATIONS: Final = "DELETE FROM observation WHERE last < ?"

SELECT_EVENTS: Final = "SELECT seq, body FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?"
SELECT_OBSERVATIONS: Final = (
    "SELECT msisdn, slot, first, last, count FROM observation WHERE imei = ? ORDER BY last DESC"
)


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
    activation_del: list[tuple[int]] = field(default_factory=list)
    window_put: list[tuple[int, int, int, int, str, int]] = field(default_factory=list)
    window_del: list[tuple[int]] = field(default_factory=list)
    quota_put: list[tuple[str, int]] = field(default_factory=list)
    quota_del: list[tuple[str]] = field(default_factory=list)
    detection_put: list[tuple[int, int, int, bytes]] = field(default_factory=list)
    detection_del: list[tuple[int]] = field(default_factory=list)
    switchback_put: list[tuple[int, int, bytes]] = field(default_factory=list)
    switchback_del: list[tuple[int]] = field(default_factory=list)
    mark_kinds: list[tuple[int, str]] = field(default_factory=list)
    mark_put: list[tuple[int, int, int, int, int]] = field(default_factory=list)
    mark_del: list[tuple[int, int, int, int]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    meta: list[tuple[str, int]] = field(default_factory=list)
    consumers: list[tuple[str, int]] = field(default_factory=list)
    # Soft part: observation deltas and the IMEIs whose history may have grown past the bound.
    observations: list[tuple[int, int, int, int, int, int]] = field(default_factory=list)
    trim: list[tuple[int, int]] = field(default_factory=list)
    # Maintenance (pruning): run as plain parameterised statements.
    maintenance: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)

    @property
    def promises(self) -> int:
        """Rows that some answer may be waiting for."""
        return (len(self.grace_put) + len(self.grace_del) + len(self.activation_put) + len(self.activation_del)
                + len(self.window_put) + len(self.window_del) + len(self.quota_put) + len(self.quota_del)
                + len(self.detection_put) + len(self.detection_del) + len(self.switchback_put)
                + len(self.switchback_del) + len(self.mark_put) + len(self.mark_del) + len(self.events)
                + len(self.consumers))

    def __len__(self) -> int:
        return self.promises + len(self.observations) + len(self.trim) + len(self.maintenance)


def pack_ints(values: tuple[int, ...] | list[int]) -> bytes:
    """A short list of integers as a msgpack blob (detection subscribers, switch-back times)."""
    out: bytes = msgpack.packb(list(values))
    return out


def unpack_ints(blob: bytes) -> list[int]:
    """Inverse of :func:`pack_ints`."""
    values = msgpack.unpackb(blob)
    if not isinstance(values, list):
        raise StoreError("corrupt integer list in the state database")
    return [int(v) for v in values]


def event_row(ev: Event) -> tuple[int, int, bytes]:
    """The outbox row of an event: its JSON form is what every delivery path sends as is."""
    return ev.seq, ev.time, orjson.dumps(ev.to_dict())


def write_batch(conn: sqlite3.Connection, b: Batch) -> None:
    """Apply one batch in one transaction (all or nothing)."""
    ex = conn.executemany
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Deletes before puts: within a batch a key is either deleted or put (the batch is built from
        # the final in-memory value), so the order only matters for readability.
        if b.grace_del:
            ex(DEL_GRACE, b.grace_del)
        if b.grace_put:
            ex(PUT_GRACE, b.grace_put)
        if b.activation_del:
            ex(DEL_ACTIVATION, b.activation_del)
        if b.activation_put:
            ex(PUT_ACTIVATION, b.activation_put)
        if b.window_del:
            ex(DEL_WINDOW, b.window_del)
        if b.window_put:
            ex(PUT_WINDOW, b.window_put)
        if b.quota_del:
            ex(DEL_QUOTA, b.quota_del)
        if b.quota_put:
            ex(PUT_QUOTA, b.quota_put)
        if b.detection_del:
            ex(DEL_DETECTION, b.detection_del)
        if b.detection_put:
            ex(PUT_DETECTION, b.detection_put)
        if b.switchback_del:
            ex(DEL_SWITCHBACK, b.switchback_del)
        if b.switchback_put:
            ex(PUT_SWITCHBACK, b.switchback_put)
        if b.mark_kinds:
            ex(PUT_MARK_KIND, b.mark_kinds)
        if b.mark_del:
            ex(DEL_MARK, b.mark_del)
        if b.mark_put:
            ex(PUT_MARK, b.mark_put)
        if b.events:
            ex(PUT_EVENT, map(event_row, b.events))
        if b.meta:
            ex(PUT_META, b.meta)
        if b.consumers:
            ex(PUT_CONSUMER, b.consumers)
        if b.observations:
            ex(UPSERT_OBSERVATION, b.observations)
        if b.trim:
            ex(TRIM_OBSERVATIONS, b.trim)
        for sql, params in b.maintenance:
            conn.execute(sql, params)
        conn.execute("COMMIT")
    except BaseException:
        # Rolled back as a whole: the caller keeps the batch's content and retries it later.
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


def connect(path: Path, synchronous: str = "FULL", *, check_same_thread: bool = True) -> sqlite3.Connection:
    """Open (creating if needed) the state database for writing and bring its schema up to date."""
    if synchronous not in SYNCHRONOUS_MODES:
        raise StoreError(f"synchronous must be one of {', '.join(SYNCHRONOUS_MODES)}, not {synchronous!r}")
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves (one explicit transaction per batch).
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
        _migrate(conn, path)
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


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return
    if version > SCHEMA_VERSION:
        raise StoreError(f"{path}: state schema version {version} is newer than this eir ({SCHEMA_VERSION})")
    if version == 0:
        has_tables = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
        if has_tables:
            raise StoreError(f"{path}: not an eir state database (tables but no schema version)")
        # executescript commits first; the DDL and the version are then one transaction.
        conn.executescript(f"BEGIN;\n{_DDL}\nPRAGMA user_version = {SCHEMA_VERSION};\nCOMMIT;")
        return
    # Future versions: one step per version, each in its own transaction, e.g.
    #   if version == 1: conn.executescript("BEGIN; ALTER TABLE ...; PRAGMA user_version = 2; COMMIT;")
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


def last_committed_seq(conn: sqlite3.Connection) -> int:
    """The highest ``seq`` ever committed (kept in ``meta`` so that pruning the outbox cannot lower it)."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
    top = conn.execute("SELECT max(seq) FROM outbox").fetchone()[0]
    return max(int(row[0]) if row else 0, int(top) if top is not None else 0)


def database_bytes(path: Path) -> int:
    """Size on disk of the database and its WAL."""
    total = 0
    for suffix in ("", "-wal"):
        with contextlib.suppress(FileNotFoundError):
            total += os.stat(f"{path}{suffix}").st_size
    return total
