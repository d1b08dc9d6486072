"""Connection helpers shared by the durable stores (:mod:`eir.store`, :mod:`eir.store_sync`).

The observation-history connection, the committed-history read (merged with writes still pending), and
the clean close that checkpoints the WAL.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Final

from eir.state import MAX_OBSERVATIONS_PER_IMEI, SLOT_BITS
from eir.store_schema import SELECT_OBSERVATIONS, connect, history_path

HistoryRow = tuple[int, int, int, int, int]  # msisdn, slot, first, last, count
SLOT_MASK: Final = (1 << SLOT_BITS) - 1


def connect_history(path: Path) -> sqlite3.Connection:
    """The observation-history database beside ``path`` (synchronous NORMAL)."""
    # Soft data: NORMAL is enough (kill -9 loses nothing committed; a power cut may lose the last
    # writes of counts, never a promise). The service loads through it on the state thread, then hands
    # it to the history thread: one user at a time.
    return connect(history_path(path), "NORMAL", history=True, check_same_thread=False)


def observations(conn: sqlite3.Connection, imei: int) -> list[HistoryRow]:
    """The committed history rows of an IMEI, most recent first."""
    return [(int(m), int(s), int(f), int(la), int(c)) for m, s, f, la, c in conn.execute(SELECT_OBSERVATIONS, (imei,))]


def merge_pending(rows: list[HistoryRow], imei: int,
                  pending: Iterable[tuple[int, int, int]]) -> list[HistoryRow]:
    """``rows`` with the not yet written observations ``(imei, key, time)`` of ``imei`` folded in."""
    merged: dict[tuple[int, int], list[int]] = {(m, s): [f, la, c] for m, s, f, la, c in rows}
    for i, key, t in pending:
        if i != imei:
            continue
        m, s = key >> SLOT_BITS, key & SLOT_MASK
        rec = merged.get((m, s))
        if rec is None:
            merged[(m, s)] = [t, t, 1]
        else:
            rec[0], rec[1], rec[2] = min(rec[0], t), max(rec[1], t), rec[2] + 1
    out = [(m, s, r[0], r[1], r[2]) for (m, s), r in merged.items()]
    out.sort(key=lambda r: -r[3])
    return out[:MAX_OBSERVATIONS_PER_IMEI]


def closer(conn: sqlite3.Connection) -> Callable[[], None]:
    """A close function for ``conn`` that checkpoints the WAL first."""
    def close() -> None:
        # A clean close checkpoints the WAL into the database file, so the next open reads one file.
        with contextlib.suppress(sqlite3.Error):
            conn.execute("PRAGMA optimize")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()

    return close
