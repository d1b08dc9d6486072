"""Registry changes of the control plane as data: encoding, live application, journal replay.

A control operation (eir.control) turns into one *change*: a list of primitive, absolute mutations
("the owner of the device with IMEI X is now M since T", "the IMEIs of the device with IMEI X are now
[...]"). The same function applies them to the live index and replays the journal onto a freshly loaded
snapshot, so the live index and "snapshot + journal" cannot drift apart. Devices are named by one of
their IMEIs at the time of the change (never by a snapshot-local device id), and every mutation sets a
value instead of adjusting one: replaying a change twice leaves the index as replaying it once.

Wire form of a change body (JSON): ``{"op": "activate", "ops": [[kind, imei, ...], ...]}`` with kinds

=========== ====================================== ===============================================
kind        arguments                              effect
=========== ====================================== ===============================================
owner       imei, msisdn (0 = none), since         definitive owner of the device
flag        imei, "cloned", true/false             the registry's clone flag
origin      imei, origin name                      import / pre_registry / traveler / repair
block       imei, reason or null                   device block (all its IMEIs)
blacklist   imei, reason or null                   block-list entry of one IMEI
opsim       imei, slot, msisdn (0 = none)          operator SIM of a slot
imeis       imei, [cores]                          the device's IMEIs, in slot order
code        imei, hex hash or null                 the device's activation code hash (null: consumed)
transfer    imei, buyer, hex hash, issued, expires pending transfer (``imei, null``: none)
=========== ====================================== ===============================================
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import orjson

from eir.registry import CLONED, ORIGINS

if TYPE_CHECKING:
    from eir.index import Index
    from eir.snapshot import SnapshotMeta
    from eir.state import Change

log = logging.getLogger("eir.control")

Op = list[Any]
FLAG_BITS: Final = {"cloned": CLONED}
_ORIGIN_CODE: Final = {name: i for i, name in enumerate(ORIGINS)}


class JournalError(Exception):
    """The registry-change journal cannot be replayed onto this snapshot."""


class JournalMismatch(JournalError):
    """The snapshot was exported from another state's journal: replaying this one onto it is unsafe."""


def encode_change(op: str, ops: list[Op]) -> bytes:
    """The journal body of one change."""
    return orjson.dumps({"op": op, "ops": ops})


def decode_change(body: bytes) -> tuple[str, list[Op]]:
    """``(operation name, mutations)`` of a journal body."""
    doc = orjson.loads(body)
    return str(doc["op"]), list(doc["ops"])


def apply_op(index: Index, op: Op) -> bool:
    """Apply one mutation; False when it no longer applies (its device is gone, its IMEI is taken)."""
    from eir.index import PendingTransfer

    kind, imei = op[0], int(op[1])
    if kind == "blacklist":
        index.set_blacklist(imei, op[2])
        return True
    dev = index.device_of(imei)
    if dev < 0:
        return False
    if kind == "owner":
        index.set_owner(dev, int(op[2]), int(op[3]))
    elif kind == "flag":
        index.set_flag(dev, FLAG_BITS[op[2]], bool(op[3]))
    elif kind == "origin":
        index.set_origin(dev, _ORIGIN_CODE[op[2]])
    elif kind == "block":
        index.set_block(dev, op[2])
    elif kind == "opsim":
        index.set_operator_sim(dev, int(op[2]), int(op[3]))
    elif kind == "imeis":
        cores = tuple(int(c) for c in op[2])
        if any(index.device_of(c) not in (-1, dev) for c in cores):
            return False
        index.set_imeis(dev, cores)
    elif kind == "code":
        index.set_code(dev, None if op[2] is None else bytes.fromhex(op[2]))
    elif kind == "transfer":
        if op[2] is None:
            index.set_transfer(dev, None)
        else:
            index.set_transfer(dev, PendingTransfer(int(op[2]), bytes.fromhex(op[3]), int(op[4]), int(op[5])))
    else:
        raise ValueError(f"unknown registry mutation {kind!r}")
    return True


def apply_change(index: Index, body: bytes) -> int:
    """Apply one journaled change; returns how many of its mutations did not apply."""
    _, ops = decode_change(body)
    return sum(1 for op in ops if not apply_op(index, op))


@dataclass(slots=True)
class ReplayReport:
    """What a journal replay did: changes applied, mutations skipped, last ``seq`` applied."""

    applied: int = 0
    skipped: int = 0
    last_seq: int = 0


def watermark(meta: SnapshotMeta) -> tuple[int, int]:
    """``(journal id, seq)`` of the journal changes a snapshot already includes ((0, 0): none)."""
    return meta.journal_id, meta.journal_seq


def replay(index: Index, changes: list[Change], journal_id: int, report: ReplayReport | None = None) -> ReplayReport:
    """Apply the journal changes newer than the snapshot's watermark (and than ``report.last_seq``).

    Raises :class:`JournalMismatch` when the snapshot includes changes of another journal, and
    :class:`JournalError` for a change that cannot be read.
    """
    snap_id, snap_seq = watermark(index.meta)
    if snap_seq and snap_id != journal_id:
        raise JournalMismatch(
            f"the snapshot includes changes 1..{snap_seq} of registry journal {snap_id}, but this state's "
            f"journal is {journal_id}: export the snapshot from this state (eir snapshot export)")
    rep = report or ReplayReport(last_seq=snap_seq)
    after = max(snap_seq, rep.last_seq)
    for seq, _, body in changes:
        if seq <= after:
            continue
        try:
            rep.skipped += apply_change(index, body)
        except (ValueError, KeyError, TypeError, IndexError) as e:
            # A damaged row: refuse the load (the serving bundle stays) rather than serve a partial registry.
            raise JournalError(f"registry change {seq} cannot be applied: {type(e).__name__}: {e}") from e
        rep.applied += 1
        rep.last_seq = seq
    if rep.last_seq < snap_seq:
        rep.last_seq = snap_seq
    return rep
