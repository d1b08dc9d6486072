"""The in-memory registry index that the decision hot path reads.

The index is read-only for the decision core. The control plane (eir.control) changes it in place with
the ``set_*`` methods, synchronously on the event loop between two requests: the per-device columns
(flags, owner, owner_since) are mutable arrays, the IMEI map is a mutable PreshMap, and what the
columns cannot express (moved IMEIs, block-list changes, consumed codes, pending transfers) lives in
small overlay dicts consulted only by the rare paths.

Memory is the constraint (SPEC §1: the whole registry in RAM, < 200 B per IMEI): per-device and
per-subscriber data stay in the snapshot's ``array.array`` columns (no Python object per record), the
IMEI map is a preshed ``PreshMap`` (16 B/cell), and only rare per-device data become dicts.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from itertools import chain, repeat
from operator import sub
from pathlib import Path
from typing import Final

from preshed.maps import PreshMap

from eir.registry import (
    BLOCKED,
    CLONED,
    CODE_HASH_BYTES,
    HAS_ACTIVATION_CODE,
    HAS_OPERATOR_SIMS,
    HAS_PRE_REGISTRY_USERS,
    KEY_MASK,
    KEY_MIX,
    ORIGIN_MASK,
    ORIGINS,
)
from eir.snapshot import Snapshot, SnapshotMeta, decode_snapshot, read_snapshot

__all__ = [
    "BLOCKED",
    "CLONED",
    "HAS_ACTIVATION_CODE",
    "HAS_OPERATOR_SIMS",
    "HAS_PRE_REGISTRY_USERS",
    "ORIGINS",
    "ORIGIN_MASK",
    "Index",
    "PendingTransfer",
    "Subscriber",
    "imei_key",
]

_BLACKLISTED: Final = 1


def imei_key(core: int) -> int:
    """The PreshMap key of an IMEI core (see ``eir.registry.KEY_MIX``: a bijection that never yields 0 or 1)."""
    return ((core + 2) * KEY_MIX) & KEY_MASK


@dataclass(frozen=True, slots=True)
class Subscriber:
    """A subscriber record of the snapshot."""

    msisdn: int
    imsi: int | None
    national_id: str | None
    since: int | None
    expired: bool


@dataclass(frozen=True, slots=True)
class PendingTransfer:
    """A sale in progress (eir.control): ``buyer`` becomes the owner by activating with the code whose
    keyed hash is ``code_hash`` before ``expires``; until then the seller keeps every right."""

    buyer: int
    code_hash: bytes
    issued: int
    expires: int


def _nid_int(national_id: str | None) -> int:
    # Same encoding as the snapshot: int("1" + digits) keeps leading zeros; 0 means "no national id".
    if not national_id or len(national_id) > 18 or not (national_id.isascii() and national_id.isdigit()):
        return 0
    return int("1" + national_id)


def _entry_between(keys: array[int], times: array[int], key: int, t_from: int, t_to: int) -> bool:
    # keys/times are sorted by (key, time): find the key's run, then the first time >= t_from in it.
    lo = bisect_left(keys, key)
    hi = bisect_right(keys, key, lo)
    if lo == hi:
        return False
    i = bisect_left(times, t_from, lo, hi)
    return i < hi and times[i] <= t_to


class Index:
    """Read-only registry index; build it with :meth:`from_snapshot` or :meth:`from_bytes`."""

    __slots__ = (
        "_bl_imei", "_bl_reason", "_block", "_code_dev", "_code_hash", "_imeis", "_imsi_key", "_imsi_msisdn", "_map",
        "_model", "_models", "_msisdn_key", "_msisdn_row", "_offsets", "_opsims", "_ov_bl", "_ov_codes", "_ov_imeis",
        "_prereg_dev", "_prereg_msisdn", "_reasons", "_sealed", "_sub_expired", "_sub_imsi", "_sub_nid",
        "_sub_since", "_tac", "_tac_brand", "_tac_model", "_tac_strings", "_trav_msisdn", "_trav_msisdn_t",
        "_trav_nid", "_trav_nid_t", "data", "flags", "meta", "n_devices", "n_imeis", "owner", "owner_since",
        "transfers",
    )  # fmt: skip

    flags: array[int]
    owner: array[int]
    owner_since: array[int]
    meta: SnapshotMeta
    n_devices: int
    n_imeis: int

    def __init__(self, snapshot: Snapshot) -> None:
        c, s = snapshot.data.columns, snapshot.data.strings
        self.meta = snapshot.meta
        #: The loaded columns (the same arrays: flags/owner/owner_since include control-plane changes,
        #: the overlay dicts below hold the rest; eir.control_export merges both).
        self.data = snapshot.data
        self.flags, self.owner, self.owner_since = c["dev_flags"], c["dev_owner"], c["dev_owner_since"]
        self.n_devices, self.n_imeis = len(c["dev_flags"]), len(c["imeis"])
        self._model, self._offsets, self._imeis = c["dev_model"], c["dev_imei_offsets"], c["imeis"]
        self._models, self._reasons = tuple(s["models"]), tuple(s["reasons"])
        self._bl_imei, self._bl_reason = c["blacklist_imei"], c["blacklist_reason"]
        self._code_dev, self._code_hash = c["code_dev"], c["code_hash"].tobytes()
        self._tac, self._tac_brand, self._tac_model = c["tac"], c["tac_brand"], c["tac_model"]
        self._tac_strings = tuple(s["tac_strings"])
        self._msisdn_key, self._msisdn_row = c["msisdn_key"], c["msisdn_row"]
        self._sub_imsi, self._sub_nid = c["sub_imsi"], c["sub_national_id"]
        self._sub_since, self._sub_expired = c["sub_since"], c["sub_expired"]
        self._imsi_key, self._imsi_msisdn = c["imsi_key"], c["imsi_msisdn"]
        self._trav_msisdn, self._trav_msisdn_t = c["trav_msisdn"], c["trav_msisdn_entered"]
        self._trav_nid, self._trav_nid_t = c["trav_nid"], c["trav_nid_entered"]
        # Rare per-device data (operator SIMs, blocks: < 1% of devices) become dicts keyed by device id;
        # operator SIMs as a tuple indexed by slot - 1, with 0 for a slot without one.
        opsims: dict[int, tuple[int, ...]] = {}
        for dev, slot, msisdn in zip(c["opsim_dev"], c["opsim_slot"], c["opsim_msisdn"], strict=True):
            sims = list(opsims.get(dev, ()))
            sims.extend([0] * (slot - len(sims)))
            sims[slot - 1] = msisdn
            opsims[dev] = tuple(sims)
        self._opsims = opsims
        # Pre-registry users are not rare (13% of devices in the demo registry): they stay columns, sorted
        # by (device, MSISDN), and are found by bisect (a dict of tuples would cost ~7 B per IMEI more).
        self._prereg_dev, self._prereg_msisdn = c["prereg_dev"], c["prereg_msisdn"]
        reasons = self._reasons
        self._block = {dev: reasons[r] for dev, r in zip(c["block_dev"], c["block_reason"], strict=True)}
        self._map = self._build_map(c)
        # Control-plane overlay (rare paths only): device -> its IMEIs when changed, IMEI -> block-list
        # reason when changed (None = removed), device -> code hash when changed (None = consumed),
        # device -> pending transfer.
        self._ov_imeis: dict[int, tuple[int, ...]] = {}
        self._ov_bl: dict[int, str | None] = {}
        self._ov_codes: dict[int, bytes | None] = {}
        self.transfers: dict[int, PendingTransfer] = {}
        for key, buyer, code_hash, issued, expires in snapshot.data.transfers:
            dev = self.device_of(key)
            if dev >= 0:
                self.transfers[dev] = PendingTransfer(buyer, code_hash, issued, expires)
        self._sealed = True

    def __setattr__(self, name: str, value: object) -> None:
        # Read-only once built: the hot path shares one Index between concurrent requests.
        if hasattr(self, "_sealed"):
            raise AttributeError(f"Index is read-only (cannot set {name})")
        object.__setattr__(self, name, value)

    @staticmethod
    def _build_map(c: dict[str, array[int]]) -> PreshMap:
        imeis, offsets, blacklist = c["imeis"], c["dev_imei_offsets"], c["blacklist_imei"]
        # Size once for <= 50% load: preshed never resizes then (it grows at 60%) and probes stay short.
        capacity = 8
        while capacity < 2 * (len(imeis) + len(blacklist)):
            capacity *= 2
        pmap = PreshMap(capacity)
        # Per-IMEI codes ((device id + 1) << 1) generated in C from the offsets: one Python-level loop
        # over the IMEIs instead of a nested loop per device (about 20% faster on 1.6M IMEIs).
        codes = chain.from_iterable(map(repeat, range(2, 2 * len(offsets), 2), map(sub, offsets[1:], offsets)))
        for core, code in zip(imeis, codes, strict=True):
            pmap[((core + 2) * KEY_MIX) & KEY_MASK] = code
        for core in blacklist:
            key = ((core + 2) * KEY_MIX) & KEY_MASK
            pmap[key] = (pmap[key] or 0) | _BLACKLISTED
        return pmap

    @classmethod
    def from_snapshot(cls, path: Path | str) -> Index:
        """Load and verify a snapshot file (raises :class:`~eir.snapshot.SnapshotError`)."""
        return cls(read_snapshot(Path(path)))

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> Index:
        """Load and verify a snapshot held in memory."""
        return cls(decode_snapshot(data))

    # -- devices ---------------------------------------------------------------------------------------
    def lookup(self, core: int) -> int:
        """0 = unknown IMEI; else ``(code >> 1) - 1`` is the device id (-1: none), ``code & 1`` blacklisted."""
        code: int | None = self._map[((core + 2) * KEY_MIX) & KEY_MASK]
        return 0 if code is None else code

    def imei_table(self) -> PreshMap:
        """The IMEI map itself (``imei_key(core)`` -> the code of :meth:`lookup`), for the C accelerator of
        eir.engine (eir/_fastpath.c), which reads it as lookup does. Never to be written through."""
        return self._map

    def device_key_columns(self) -> tuple[array[int], array[int], dict[int, tuple[int, ...]]]:
        """What :meth:`device_key` reads (IMEI offsets per device, the IMEIs, the control plane's moved
        IMEIs), for the C accelerator (eir/_outcomes.h), which reads them as device_key does. Never to be
        written through."""
        return self._offsets, self._imeis, self._ov_imeis

    def exception_data(self) -> tuple[dict[int, tuple[int, ...]], array[int], array[int]]:
        """What :meth:`operator_sim` and :meth:`is_pre_registry_user` read (the operator SIMs, which the
        control plane changes in place, and the pre-registry users' columns), for the C accelerator
        (eir/_allowed.h), which reads them as those methods do. Never to be written through."""
        return self._opsims, self._prereg_dev, self._prereg_msisdn

    def national_id_columns(self) -> tuple[array[int], array[int], array[int]]:
        """What :meth:`national_id` reads (MSISDNs sorted, their subscriber rows, the rows' national ids),
        for the C accelerator (eir/_unregistered.h), which reads them as national_id does. Never to be
        written through."""
        return self._msisdn_key, self._msisdn_row, self._sub_nid

    def imsi_columns(self) -> tuple[array[int], array[int]]:
        """What :meth:`msisdn_for_imsi` reads (the sorted IMSIs, each one's MSISDN), for the C accelerator,
        which bisects them as it does. Never to be written through."""
        return self._imsi_key, self._imsi_msisdn

    def device_of(self, core: int) -> int:
        """The device id of an IMEI core, or -1."""
        return (self.lookup(core) >> 1) - 1

    def device_imeis(self, dev: int) -> tuple[int, ...]:
        """The device's IMEI cores in slot order."""
        if self._ov_imeis:
            moved = self._ov_imeis.get(dev)
            if moved is not None:
                return moved
        return tuple(self._imeis[self._offsets[dev] : self._offsets[dev + 1]])

    def device_key(self, dev: int) -> int:
        """Stable device key: its slot-1 IMEI core (durable state is keyed by this, never by ``dev``)."""
        if self._ov_imeis:
            moved = self._ov_imeis.get(dev)
            if moved is not None:
                return moved[0]
        return self._imeis[self._offsets[dev]]

    def model(self, dev: int) -> str:
        """The device's model text ("" when the registry gave none)."""
        return self._models[self._model[dev]]

    def origin(self, dev: int) -> str:
        """``import``, ``pre_registry``, ``traveler`` or ``repair``."""
        return ORIGINS[self.flags[dev] & ORIGIN_MASK]

    def operator_sim(self, dev: int, slot: int) -> int:
        """The operator SIM MSISDN designated for ``slot`` of the device, or 0."""
        sims = self._opsims.get(dev)
        if sims is None or not 1 <= slot <= len(sims):
            return 0
        return sims[slot - 1]

    def operator_sims(self, dev: int) -> dict[int, int]:
        """All operator SIMs of the device, slot -> MSISDN."""
        return {slot: m for slot, m in enumerate(self._opsims.get(dev, ()), 1) if m}

    def _prereg(self, dev: int) -> tuple[int, int]:
        lo = bisect_left(self._prereg_dev, dev)
        return lo, bisect_right(self._prereg_dev, dev, lo)

    def is_pre_registry_user(self, dev: int, msisdn: int) -> bool:
        """Whether ``msisdn`` is one of the device's pre-registry users."""
        if not self.flags[dev] & HAS_PRE_REGISTRY_USERS:
            return False
        lo, hi = self._prereg(dev)
        i = bisect_left(self._prereg_msisdn, msisdn, lo, hi)
        return i < hi and self._prereg_msisdn[i] == msisdn

    def pre_registry_users(self, dev: int) -> frozenset[int]:
        """The device's pre-registry users."""
        lo, hi = self._prereg(dev)
        return frozenset(self._prereg_msisdn[lo:hi])

    def block_reason(self, dev: int) -> str | None:
        """The device's block reason, or None."""
        return self._block.get(dev)

    def code_hash(self, dev: int) -> bytes | None:
        """HMAC-SHA256 of the device's activation code (see ``activation_code_hash``), or None."""
        if dev in self._ov_codes:
            return self._ov_codes[dev]
        i = bisect_left(self._code_dev, dev)
        if i == len(self._code_dev) or self._code_dev[i] != dev:
            return None
        return self._code_hash[i * CODE_HASH_BYTES : (i + 1) * CODE_HASH_BYTES]

    def blacklist_reason(self, core: int) -> str | None:
        """The block-list reason of an IMEI core, or None."""
        if core in self._ov_bl:
            return self._ov_bl[core]
        i = bisect_left(self._bl_imei, core)
        if i == len(self._bl_imei) or self._bl_imei[i] != core:
            return None
        return self._reasons[self._bl_reason[i]]

    def tac_info(self, tac: int) -> tuple[str, str] | None:
        """(brand, model) of a TAC from the snapshot's TAC table, or None."""
        i = bisect_left(self._tac, tac)
        if i == len(self._tac) or self._tac[i] != tac:
            return None
        return self._tac_strings[self._tac_brand[i]], self._tac_strings[self._tac_model[i]]

    def code_hashes(self) -> dict[int, bytes]:
        """Every device's activation code hash (device id -> hash), control-plane changes included."""
        n = CODE_HASH_BYTES
        out = {dev: self._code_hash[i * n : (i + 1) * n] for i, dev in enumerate(self._code_dev)}
        for dev, h in self._ov_codes.items():
            if h is None:
                out.pop(dev, None)
            else:
                out[dev] = h
        return out

    def blocks(self) -> dict[int, str]:
        """Every device block (device id -> reason)."""
        return dict(self._block)

    def all_operator_sims(self) -> dict[int, dict[int, int]]:
        """Every device's operator SIMs (device id -> slot -> MSISDN)."""
        return {dev: self.operator_sims(dev) for dev in sorted(self._opsims)}

    def blacklist(self) -> dict[int, str]:
        """The whole block list (IMEI core -> reason), control-plane changes included."""
        out = {core: self._reasons[r] for core, r in zip(self._bl_imei, self._bl_reason, strict=True)}
        for core, reason in self._ov_bl.items():
            if reason is None:
                out.pop(core, None)
            else:
                out[core] = reason
        return out

    # -- control-plane changes (eir.control; on the event loop, between requests) ---------------------
    def set_owner(self, dev: int, msisdn: int, since: int) -> None:
        """The device's definitive owner (0 = none) and since when."""
        self.owner[dev] = msisdn
        self.owner_since[dev] = since if msisdn else 0

    def set_flag(self, dev: int, bit: int, on: bool) -> None:
        """Set or clear one flag bit (CLONED, ...) of a device."""
        self.flags[dev] = self.flags[dev] | bit if on else self.flags[dev] & ~bit

    def set_origin(self, dev: int, origin: int) -> None:
        """The device's origin code (index into ORIGINS)."""
        self.flags[dev] = (self.flags[dev] & ~ORIGIN_MASK) | origin

    def set_block(self, dev: int, reason: str | None) -> None:
        """Block the device (all its IMEIs) with a reason, or lift its block (None)."""
        if reason is None:
            self._block.pop(dev, None)
        else:
            self._block[dev] = reason
        self.set_flag(dev, BLOCKED, reason is not None)

    def set_blacklist(self, core: int, reason: str | None) -> None:
        """Put one IMEI on the block list with a reason, or take it off (None)."""
        key = ((core + 2) * KEY_MIX) & KEY_MASK
        code = self._map[key] or 0
        self._map[key] = code | _BLACKLISTED if reason is not None else code & ~_BLACKLISTED
        self._ov_bl[core] = reason

    def set_operator_sim(self, dev: int, slot: int, msisdn: int) -> None:
        """Designate (or with 0 remove) the operator SIM of a slot."""
        sims = list(self._opsims.get(dev, ()))
        sims.extend([0] * (slot - len(sims)))
        sims[slot - 1] = msisdn
        while sims and not sims[-1]:
            sims.pop()
        if sims:
            self._opsims[dev] = tuple(sims)
        else:
            self._opsims.pop(dev, None)
        self.set_flag(dev, HAS_OPERATOR_SIMS, bool(sims))

    def set_imeis(self, dev: int, cores: tuple[int, ...]) -> None:
        """Replace the device's IMEIs (correction, repair). The caller checked the new ones are free;
        an IMEI keeps its own block-list entry whichever device it belongs to."""
        pmap = self._map
        for core in self.device_imeis(dev):
            if core not in cores:
                key = ((core + 2) * KEY_MIX) & KEY_MASK
                pmap[key] = (pmap[key] or 0) & _BLACKLISTED
        code = (dev + 1) << 1
        for core in cores:
            key = ((core + 2) * KEY_MIX) & KEY_MASK
            pmap[key] = code | ((pmap[key] or 0) & _BLACKLISTED)
        self._ov_imeis[dev] = tuple(cores)
        # Operator SIMs are per slot: a slot the device no longer has loses its operator SIM.
        sims = self._opsims.get(dev, ())
        for slot in range(len(cores) + 1, len(sims) + 1):
            self.set_operator_sim(dev, slot, 0)

    def set_code(self, dev: int, code_hash: bytes | None) -> None:
        """The device's activation code hash (None: consumed, no code any more)."""
        self._ov_codes[dev] = code_hash
        self.set_flag(dev, HAS_ACTIVATION_CODE, code_hash is not None)

    def set_transfer(self, dev: int, transfer: PendingTransfer | None) -> None:
        """Start (or with None end) a pending transfer of the device."""
        if transfer is None:
            self.transfers.pop(dev, None)
        else:
            self.transfers[dev] = transfer

    # -- subscribers -----------------------------------------------------------------------------------
    def _sub(self, msisdn: int) -> int:
        """The subscriber row of ``msisdn`` (rows are in registry order; msisdn_key is sorted), or -1."""
        i = bisect_left(self._msisdn_key, msisdn)
        return self._msisdn_row[i] if i < len(self._msisdn_key) and self._msisdn_key[i] == msisdn else -1

    def msisdn_for_imsi(self, imsi: int) -> int:
        """The MSISDN of a subscriber record with this IMSI, or 0."""
        i = bisect_left(self._imsi_key, imsi)
        if i == len(self._imsi_key) or self._imsi_key[i] != imsi:
            return 0
        return self._imsi_msisdn[i]

    def national_id(self, msisdn: int) -> str | None:
        """The subscriber's national id (leading zeros kept), or None."""
        i = self._sub(msisdn)
        nid = self._sub_nid[i] if i >= 0 else 0
        return str(nid)[1:] if nid else None

    def subscriber(self, msisdn: int) -> Subscriber | None:
        """The subscriber record of ``msisdn``, or None."""
        i = self._sub(msisdn)
        if i < 0:
            return None
        imsi, nid, since = self._sub_imsi[i], self._sub_nid[i], self._sub_since[i]
        return Subscriber(
            msisdn=msisdn,
            imsi=imsi or None,
            national_id=str(nid)[1:] if nid else None,
            since=since or None,
            expired=bool(self._sub_expired[i]),
        )

    def has_traveler_entry(self, msisdn: int, national_id: str | None, t_from: int, t_to: int) -> bool:
        """Whether a traveler entry by ``msisdn`` or ``national_id`` has ``t_from <= entered <= t_to``."""
        if msisdn and _entry_between(self._trav_msisdn, self._trav_msisdn_t, msisdn, t_from, t_to):
            return True
        nid = _nid_int(national_id)
        return bool(nid) and _entry_between(self._trav_nid, self._trav_nid_t, nid, t_from, t_to)

    def counts(self) -> dict[str, int]:
        """The snapshot's counts (devices, imeis, owned, cloned, subscribers, ...)."""
        return dict(self.meta.counts)
