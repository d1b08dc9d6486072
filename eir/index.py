"""The in-memory, read-only registry index that the decision hot path reads.

Memory is the constraint (SPEC §1: the whole registry in RAM, < 200 B per IMEI): per-device and
per-subscriber data stay in the snapshot's ``array.array`` columns (no Python object per record), the
IMEI map is a preshed ``PreshMap`` (16 B/cell), and only rare per-device data become dicts.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from preshed.maps import PreshMap

from eir.registry import (
    BLOCKED,
    CLONED,
    CODE_HASH_BYTES,
    HAS_ACTIVATION_CODE,
    HAS_OPERATOR_SIMS,
    HAS_PRE_REGISTRY_USERS,
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
    "Subscriber",
    "imei_key",
]

# PreshMap does not hash: it probes from ``key & mask``. Multiplying by an odd constant is a bijection
# on 64-bit ints (no two cores share a key) that spreads consecutive serials across the table; the +2
# keeps the reserved keys 0 (empty) and 1 (deleted) out of reach for every 14-digit core.
_MIX: Final = 0x9E3779B97F4A7C15
_MASK: Final = 0xFFFFFFFFFFFFFFFF
_BLACKLISTED: Final = 1


def imei_key(core: int) -> int:
    """The PreshMap key of an IMEI core (exposed for tests and tools)."""
    return ((core + 2) * _MIX) & _MASK


@dataclass(frozen=True, slots=True)
class Subscriber:
    """A subscriber record of the snapshot."""

    msisdn: int
    imsi: int | None
    national_id: str | None
    since: int | None
    expired: bool


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
        "_block",
        "_bl_imei",
        "_bl_reason",
        "_code_dev",
        "_code_hash",
        "_imeis",
        "_imsi_key",
        "_imsi_msisdn",
        "_map",
        "_model",
        "_models",
        "_offsets",
        "_opsims",
        "_prereg",
        "_reasons",
        "_sub_expired",
        "_sub_imsi",
        "_sub_msisdn",
        "_sub_nid",
        "_sub_since",
        "_tac",
        "_tac_brand",
        "_tac_model",
        "_tac_strings",
        "_trav_msisdn",
        "_trav_msisdn_t",
        "_trav_nid",
        "_trav_nid_t",
        "flags",
        "meta",
        "n_devices",
        "n_imeis",
        "owner",
        "owner_since",
    )

    flags: array[int]
    owner: array[int]
    owner_since: array[int]
    meta: SnapshotMeta
    n_devices: int
    n_imeis: int

    def __init__(self, snapshot: Snapshot) -> None:
        c, s = snapshot.data.columns, snapshot.data.strings
        put = self._put
        put("meta", snapshot.meta)
        put("flags", c["dev_flags"])
        put("owner", c["dev_owner"])
        put("owner_since", c["dev_owner_since"])
        put("n_devices", len(c["dev_flags"]))
        put("n_imeis", len(c["imeis"]))
        for slot, name in (
            ("_model", "dev_model"), ("_offsets", "dev_imei_offsets"), ("_imeis", "imeis"),
            ("_bl_imei", "blacklist_imei"), ("_bl_reason", "blacklist_reason"),
            ("_code_dev", "code_dev"), ("_tac", "tac"), ("_tac_brand", "tac_brand"),
            ("_tac_model", "tac_model"), ("_sub_msisdn", "sub_msisdn"), ("_sub_imsi", "sub_imsi"),
            ("_sub_nid", "sub_national_id"), ("_sub_since", "sub_since"), ("_sub_expired", "sub_expired"),
            ("_imsi_key", "imsi_key"), ("_imsi_msisdn", "imsi_msisdn"),
            ("_trav_msisdn", "trav_msisdn"), ("_trav_msisdn_t", "trav_msisdn_entered"),
            ("_trav_nid", "trav_nid"), ("_trav_nid_t", "trav_nid_entered"),
        ):  # fmt: skip
            put(slot, c[name])
        put("_code_hash", c["code_hash"].tobytes())
        put("_models", tuple(s["models"]))
        put("_reasons", tuple(s["reasons"]))
        put("_tac_strings", tuple(s["tac_strings"]))
        put("_map", self._build_map(c))
        # Rare per-device data: dicts keyed by device id. Values are tuples (far smaller than dicts or
        # frozensets); operator SIMs are indexed by slot - 1 with 0 for a slot without one.
        opsims: dict[int, tuple[int, ...]] = {}
        for dev, slot, msisdn in zip(c["opsim_dev"], c["opsim_slot"], c["opsim_msisdn"], strict=True):
            sims = list(opsims.get(dev, ()))
            sims.extend([0] * (slot - len(sims)))
            sims[slot - 1] = msisdn
            opsims[dev] = tuple(sims)
        put("_opsims", opsims)
        prereg: dict[int, tuple[int, ...]] = {}
        for dev, msisdn in zip(c["prereg_dev"], c["prereg_msisdn"], strict=True):
            prereg[dev] = (*prereg.get(dev, ()), msisdn)
        put("_prereg", prereg)
        reasons = self._reasons
        put("_block", {dev: reasons[r] for dev, r in zip(c["block_dev"], c["block_reason"], strict=True)})

    def _put(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Index is read-only (cannot set {name})")

    @staticmethod
    def _build_map(c: dict[str, array[int]]) -> Any:
        imeis, offsets, blacklist = c["imeis"], c["dev_imei_offsets"], c["blacklist_imei"]
        # Size once for <= 50% load: preshed never resizes then (it grows at 60%) and probes stay short.
        capacity = 8
        while capacity < 2 * (len(imeis) + len(blacklist)):
            capacity *= 2
        pmap = PreshMap(capacity)
        mix, mask = _MIX, _MASK
        start = 0
        for code, end in enumerate(offsets[1:], 1):
            code <<= 1  # (device id + 1) << 1, low bit = blacklisted
            for i in range(start, end):
                pmap[((imeis[i] + 2) * mix) & mask] = code
            start = end
        for core in blacklist:
            key = ((core + 2) * mix) & mask
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
        code = self._map[((core + 2) * _MIX) & _MASK]
        return 0 if code is None else code  # type: ignore[no-any-return]

    def device_imeis(self, dev: int) -> tuple[int, ...]:
        """The device's IMEI cores in slot order."""
        return tuple(self._imeis[self._offsets[dev] : self._offsets[dev + 1]])

    def device_key(self, dev: int) -> int:
        """Stable device key: its slot-1 IMEI core (durable state is keyed by this, never by ``dev``)."""
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

    def is_pre_registry_user(self, dev: int, msisdn: int) -> bool:
        """Whether ``msisdn`` is one of the device's pre-registry users."""
        users = self._prereg.get(dev)
        return users is not None and msisdn in users

    def pre_registry_users(self, dev: int) -> frozenset[int]:
        """The device's pre-registry users."""
        return frozenset(self._prereg.get(dev, ()))

    def block_reason(self, dev: int) -> str | None:
        """The device's block reason, or None."""
        return self._block.get(dev)

    def code_hash(self, dev: int) -> bytes | None:
        """HMAC-SHA256 of the device's activation code (see ``activation_code_hash``), or None."""
        i = bisect_left(self._code_dev, dev)
        if i == len(self._code_dev) or self._code_dev[i] != dev:
            return None
        return self._code_hash[i * CODE_HASH_BYTES : (i + 1) * CODE_HASH_BYTES]

    def blacklist_reason(self, core: int) -> str | None:
        """The block-list reason of an IMEI core, or None."""
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

    # -- subscribers -----------------------------------------------------------------------------------
    def _sub(self, msisdn: int) -> int:
        i = bisect_left(self._sub_msisdn, msisdn)
        return i if i < len(self._sub_msisdn) and self._sub_msisdn[i] == msisdn else -1

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
