"""``eir snapshot export``: a snapshot that includes the control plane's journaled changes.

The operator rolls the registry forward: load the serving snapshot, replay the state's registry-change
journal onto it (eir.control_ops), and write the result as a new snapshot whose meta records the
journal's id and the last change it includes (the *watermark*). Loading that snapshot with the same
state replays only the changes after the watermark, so nothing is applied twice.
"""

from __future__ import annotations

import time
from array import array
from pathlib import Path

from eir.control_ops import ReplayReport, replay
from eir.index import Index
from eir.registry import COLUMNS, RegistryData
from eir.snapshot import SnapshotMeta, write_snapshot
from eir.state import Change
from eir.store_schema import connect_reader, read_changes


def export_data(index: Index) -> RegistryData:
    """The registry columns of the live index: the loaded columns merged with the overlay."""
    src = index.data.columns
    cols: dict[str, array[int]] = {name: array(tc) for name, tc in COLUMNS.items()}
    # Columns the control plane never changes are shared as they are; the device columns are copied.
    for name in ("dev_model", "prereg_dev", "prereg_msisdn", "tac", "tac_brand", "tac_model", "sub_imsi",
                 "sub_national_id", "sub_since", "sub_expired", "msisdn_key", "msisdn_row", "imsi_key",
                 "imsi_msisdn", "trav_msisdn", "trav_msisdn_entered", "trav_nid", "trav_nid_entered"):
        cols[name] = src[name]
    cols["dev_flags"] = array("B", index.flags)
    cols["dev_owner"] = array("q", index.owner)
    cols["dev_owner_since"] = array("q", index.owner_since)
    offsets, imeis = cols["dev_imei_offsets"], cols["imeis"]
    offsets.append(0)
    for dev in range(index.n_devices):
        imeis.extend(index.device_imeis(dev))
        offsets.append(len(imeis))
    for dev, sims in index.all_operator_sims().items():
        for slot, msisdn in sorted(sims.items()):
            cols["opsim_dev"].append(dev)
            cols["opsim_slot"].append(slot)
            cols["opsim_msisdn"].append(msisdn)
    reasons = list(index.data.strings["reasons"])
    ids = {r: i for i, r in enumerate(reasons)}

    def intern(reason: str) -> int:
        if reason not in ids:
            ids[reason] = len(reasons)
            reasons.append(reason)
        return ids[reason]

    for dev, reason in sorted(index.blocks().items()):
        cols["block_dev"].append(dev)
        cols["block_reason"].append(intern(reason))
    for dev, code_hash in sorted(index.code_hashes().items()):
        cols["code_dev"].append(dev)
        cols["code_hash"].frombytes(code_hash)
    for core, reason in sorted(index.blacklist().items()):
        cols["blacklist_imei"].append(core)
        cols["blacklist_reason"].append(intern(reason))
    strings = {name: list(v) for name, v in index.data.strings.items()}
    strings["reasons"] = reasons
    counts = dict(index.data.counts)
    counts["blacklisted_unregistered"] = sum(1 for core in cols["blacklist_imei"] if index.device_of(core) < 0)
    transfers = [(index.device_key(dev), t.buyer, t.code_hash, t.issued, t.expires)
                 for dev, t in sorted(index.transfers.items())]
    return RegistryData(columns=cols, strings=strings, counts=counts, transfers=transfers)


def read_journal(state: Path) -> tuple[int, list[Change]]:
    """``(journal id, changes)`` of a state database (read-only; the service may be running)."""
    conn = connect_reader(state)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'journal_id'").fetchone()
        return (int(row[0]) if row else 0), read_changes(conn)
    finally:
        conn.close()


def export_snapshot(snapshot: Path, state: Path, out: Path) -> tuple[SnapshotMeta, ReplayReport]:
    """Write ``out``: ``snapshot`` with the journal of ``state`` applied, and its watermark.

    Raises SnapshotError (unreadable snapshot), StoreError (unreadable state) or
    eir.control_ops.JournalMismatch (the snapshot includes changes of another journal).
    """
    index = Index.from_snapshot(snapshot)
    journal_id, changes = read_journal(state)
    report = replay(index, changes, journal_id)
    data = export_data(index)
    sources = [*index.meta.sources, f"{state}#journal:{report.last_seq}"]
    meta = write_snapshot(data, out, created=int(time.time()), sources=sources, skipped=index.meta.skipped,
                          journal=(journal_id if report.last_seq else 0, report.last_seq))
    return meta, report
