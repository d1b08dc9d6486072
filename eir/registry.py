"""Registry JSON Lines reader and validator (SPEC §3).

The reader streams one or more JSONL files and appends every valid record straight into typed columns
(``array.array``): nothing per record outlives the line it was parsed from, which keeps a 1M-device
build lean, and the snapshot writer only has to dump the columns.
"""

from __future__ import annotations

import hmac
import math
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import count, repeat
from operator import itemgetter
from pathlib import Path
from typing import Any, Final

import orjson
from preshed.maps import PreshMap

from eir.identifiers import MALFORMED, IdentifierError, ImeiPolicy, NumberingPlan, parse_imei, parse_imsi, parse_msisdn

#: Device origins, in the order of their 2-bit code in the flags column.
ORIGINS: Final = ("import", "pre_registry", "traveler", "repair")
ORIGIN_MASK: Final = 3
CLONED: Final = 4
BLOCKED: Final = 8
HAS_OPERATOR_SIMS: Final = 16
HAS_PRE_REGISTRY_USERS: Final = 32
HAS_ACTIVATION_CODE: Final = 64

MAX_IMEIS_PER_DEVICE: Final = 4
MAX_LINE_BYTES: Final = 1 << 20
MAX_REPORTED_ERRORS: Final = 1000
#: Accepted instants: after the epoch (0 is the "unknown" sentinel of time columns) up to year 9999.
MIN_TIME: Final = 1
MAX_TIME: Final = 253_402_300_799
CODE_HASH_BYTES: Final = 32
#: PreshMap keys (here and in eir.index): ((n + 2) * KEY_MIX) mod 2**64. preshed does not hash, it probes
#: from ``key & mask``; an odd multiplier is a bijection (no two numbers share a key) that spreads
#: consecutive serials over the table, and +2 keeps the reserved keys 0 and 1 out of reach.
KEY_MIX: Final = 0x9E3779B97F4A7C15
KEY_MASK: Final = 0xFFFFFFFFFFFFFFFF

#: Every column a snapshot carries: name -> array typecode ('B' u8, 'I' u32, 'q' i64). Writer, reader
#: and docs/snapshot-format.md all follow this one table.
COLUMNS: Final[dict[str, str]] = {
    "dev_flags": "B", "dev_owner": "q", "dev_owner_since": "q", "dev_model": "I",
    "dev_imei_offsets": "I", "imeis": "q",
    "opsim_dev": "I", "opsim_slot": "B", "opsim_msisdn": "q",
    "prereg_dev": "I", "prereg_msisdn": "q",
    "block_dev": "I", "block_reason": "I",
    "code_dev": "I", "code_hash": "B",
    "blacklist_imei": "q", "blacklist_reason": "I",
    "tac": "I", "tac_brand": "I", "tac_model": "I",
    "sub_imsi": "q", "sub_national_id": "q", "sub_since": "q", "sub_expired": "B",
    "msisdn_key": "q", "msisdn_row": "I", "imsi_key": "q", "imsi_msisdn": "q",
    "trav_msisdn": "q", "trav_msisdn_entered": "q", "trav_nid": "q", "trav_nid_entered": "q",
}  # fmt: skip
STRING_TABLES: Final = ("models", "reasons", "tac_strings")

_POLICY: Final = ImeiPolicy(deny_invalid_check_digit=True, deny_test_imeis=True)
_PLAN: Final = NumberingPlan()
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND: Final = timedelta(seconds=1)
_ORIGIN_CODE: Final = {name: i for i, name in enumerate(ORIGINS)}
_LINE_BITS: Final = 40  # a source ref packs (file index << 40) | line number into one u64


class RegistryError(Exception):
    """The registry cannot be turned into a snapshot; ``errors`` holds up to 1000 located reasons."""

    def __init__(self, message: str, errors: list[str] | None = None, n_errors: int = 0) -> None:
        super().__init__(message)
        self.errors = errors or []
        self.n_errors = n_errors


class _Invalid(Exception):
    """One record breaks a rule; caught per line and turned into ``file:line: reason``."""


@dataclass(slots=True)
class RegistryData:
    """The validated registry: columns (see :data:`COLUMNS`), string tables and counts."""

    columns: dict[str, array[int]]
    strings: dict[str, list[str]]
    counts: dict[str, int]
    #: Pending transfers carried by an exported snapshot (eir.control_export):
    #: ``(device key, buyer, code hash, issued, expires)``. A registry build has none.
    transfers: list[tuple[int, int, bytes, int, int]] = field(default_factory=list)


def parse_time(value: object) -> int:
    """ISO 8601 with offset, or epoch seconds (int/float) -> int epoch seconds (floor, UTC)."""
    try:
        return _time(value, "time")
    except _Invalid as exc:
        raise ValueError(str(exc).removeprefix("time: bad time: ")) from None


def activation_code_hash(key: bytes, device_key: int, code: str) -> bytes:
    """HMAC-SHA256(key, core14 + ":" + code): the only form in which an activation code is stored."""
    return hmac.digest(key, f"{device_key:014d}:{code}".encode("ascii"), "sha256")


def _show(value: object) -> str:
    # Echo offending values, bounded: a bad line must not turn into a megabyte error message.
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _digits(value: object, lo: int, hi: int) -> bool:
    # str.isdigit() alone accepts Persian and superscript digits; identifiers are ASCII.
    return type(value) is str and lo <= len(value) <= hi and value.isascii() and value.isdigit()


def _luhn_part(digits: str, pos: int) -> int:
    """Luhn sum of ``digits`` whose first digit sits ``pos`` places from the right of the 14-digit core."""
    total = 0
    for i, ch in enumerate(digits):
        d = ord(ch) - 48
        total += (2 * d - 9 if d > 4 else 2 * d) if (pos - i) % 2 == 0 else d
    return total


def _msisdn(value: object, name: str) -> int:
    # Fast path for the two common forms (international digits, national 0 + 10 digits); it gives the
    # same result as parse_msisdn, which handles everything else (+, 00, msisdn- prefixes, errors).
    if type(value) is str and value.isdigit() and value.isascii():
        n = len(value)
        if value[0] != "0":
            if 8 <= n <= 15 and n != _PLAN.national_mobile_length:
                return int(value)
        elif n == 11 and value[1] != "0":
            return int(_PLAN.country_code + value[1:])
    if type(value) is not str:
        raise _Invalid(f"{name}: expected an MSISDN string, got {_show(value)}")
    try:
        return parse_msisdn(value, _PLAN)[0]
    except IdentifierError:
        raise _Invalid(f"{name}: malformed MSISDN {_show(value)}") from None


def _time(value: object, name: str) -> int:
    # The implementation of parse_time, raising the builder's error directly (one call per field, hot).
    if type(value) is str:
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            raise _Invalid(f"{name}: bad time: not ISO 8601: {_show(value)}") from None
        if dt.utcoffset() is None:
            raise _Invalid(f"{name}: bad time: no UTC offset: {_show(value)}")
        # timestamp() is exact for whole seconds; with a fraction, floor on exact integer arithmetic.
        t = int(dt.timestamp()) if not dt.microsecond else (dt - _EPOCH) // _SECOND
    elif type(value) is int:
        t = value
    elif type(value) is float and math.isfinite(value):
        t = math.floor(value)
    else:
        raise _Invalid(f"{name}: bad time: expected ISO 8601 text or epoch seconds, got {_show(value)}")
    if not MIN_TIME <= t <= MAX_TIME:
        raise _Invalid(f"{name}: bad time: outside 1970-01-01T00:00:01Z..9999-12-31T23:59:59Z: {_show(value)}")
    return t


def _flag(value: object, name: str) -> bool:
    if value is None or type(value) is bool:
        return bool(value)
    raise _Invalid(f"{name}: expected true/false, got {_show(value)}")


def _reason(value: object, name: str) -> str:
    if type(value) is not str or not value.strip():
        raise _Invalid(f"{name}: expected a non-empty reason string, got {_show(value)}")
    return value


def _national_id(value: object, name: str) -> int:
    if not _digits(value, 1, 18):
        raise _Invalid(f"{name}: expected 1-18 ASCII digits as a string, got {_show(value)}")
    return int("1" + str(value))  # the leading 1 keeps leading zeros; 0 stays free for "none"


def _gather(values: list[int], order: list[int]) -> tuple[int, ...]:
    """``values`` in ``order``; itemgetter does the gather in C (about 2x a list comprehension)."""
    if len(order) < 2:
        return tuple(values[i] for i in order)  # itemgetter returns a bare item for one index
    return itemgetter(*order)(values)  # type: ignore[no-any-return]


class RegistryBuilder:
    """Streams registry files into columns; collects every invalid record as a located error."""

    def __init__(self, code_key: bytes | None) -> None:
        self._code_key = code_key
        self.cols: dict[str, array[int]] = {name: array(tc) for name, tc in COLUMNS.items()}
        self.cols["dev_imei_offsets"].append(0)  # n_devices + 1 offsets into the flat IMEI column
        self._sub_msisdn: array[int] = array("q")  # per subscriber row; becomes msisdn_key/msisdn_row
        self._strings: dict[str, dict[str, int]] = {name: {} for name in STRING_TABLES}
        # Duplicate detection: key -> source ref of the record that claimed it. PreshMaps, because a
        # dict of 1.6M IMEIs and 1.4M MSISDNs would cost several hundred MB of int objects.
        self._seen = {kind: PreshMap() for kind in ("imei", "msisdn", "imsi", "blacklist", "tac")}
        self._trav: list[tuple[int, int, int]] = []  # (msisdn, national id, entered)
        self._files: list[str] = []
        self._errors: list[tuple[int, str]] = []
        self.n_errors = self.n_lines = self.n_records = self._src = 0
        triples = [f"{i:03d}" for i in range(1000)]
        self._luhn_mid = {t: _luhn_part(t, 5) for t in triples}
        self._luhn_low = {t: _luhn_part(t, 2) for t in triples}
        self._luhn_tac: dict[str, int] = {}
        self._handlers: dict[str, Callable[[dict[str, Any]], None]] = {
            "device": self._device, "subscriber": self._subscriber, "blacklist": self._blacklist,
            "traveler_entry": self._traveler_entry, "tac": self._tac,
        }  # fmt: skip

    def read(self, path: Path) -> None:
        """Validate and append every record of one JSONL file (streamed line by line)."""
        base = len(self._files) << _LINE_BITS
        self._files.append(str(path))
        try:
            f = path.open("rb")
        except OSError as exc:
            raise RegistryError(f"cannot read {path}: {exc.strerror or exc}") from None
        handlers, loads, lineno = self._handlers, orjson.loads, 0
        with f:
            while line := f.readline(MAX_LINE_BYTES + 1):
                lineno += 1
                self._src = base | lineno
                try:
                    try:
                        rec = loads(line)
                    except orjson.JSONDecodeError as exc:
                        rec = self._odd_line(f, line, lineno, exc)
                        if rec is None:
                            continue
                    if type(rec) is not dict:
                        raise _Invalid("expected a JSON object")
                    kind = rec.get("type")
                    handler = handlers.get(kind) if type(kind) is str else None
                    if handler is None:
                        raise _Invalid("missing 'type'" if kind is None else f"unknown record type {_show(kind)}")
                    handler(rec)
                    self.n_records += 1
                except _Invalid as exc:
                    self._error(self._src, str(exc))
        self.n_lines += lineno

    def _odd_line(self, f: Any, line: bytes, lineno: int, exc: Exception) -> Any:
        """The rare lines orjson refuses: blank, a leading BOM, too long, or really invalid JSON."""
        if len(line) > MAX_LINE_BYTES:
            while (rest := f.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                pass  # skip the rest of the over-long line without holding it
            raise _Invalid(f"line longer than {MAX_LINE_BYTES} bytes")
        if not line.strip():
            return None
        if lineno == 1 and line.startswith(b"\xef\xbb\xbf"):
            try:
                return orjson.loads(line[3:])  # UTF-8 BOM written by some editors
            except orjson.JSONDecodeError as again:
                exc = again
        raise _Invalid(f"invalid JSON: {exc}")

    def _error(self, src: int, reason: str) -> None:
        self.n_errors += 1
        if len(self._errors) < MAX_REPORTED_ERRORS:
            self._errors.append((src, reason))

    def where(self, src: int) -> str:
        """``file:line`` of a packed source ref."""
        return f"{self._files[src >> _LINE_BITS]}:{src & ((1 << _LINE_BITS) - 1)}"

    @property
    def errors(self) -> list[str]:
        """The reported errors (at most 1000), in file and line order."""
        return [f"{self.where(src)}: {reason}" for src, reason in sorted(self._errors)]

    def _intern(self, table: str, text: str) -> int:
        ids = self._strings[table]
        idx = ids.get(text)
        if idx is None:
            idx = ids[text] = len(ids)
        return idx

    def _first(self, kind: str, key: int) -> int | None:
        """Source ref of the record that already claimed ``key``, or None."""
        src: int | None = self._seen[kind][((key + 2) * KEY_MIX) & KEY_MASK]
        return src

    def _once(self, kind: str, key: int, shown: str) -> None:
        if (prev := self._first(kind, key)) is not None:
            raise _Invalid(f"{kind}: {shown} already listed at {self.where(prev)}")
        self._seen[kind][((key + 2) * KEY_MIX) & KEY_MASK] = self._src

    def _imei(self, raw: object, name: str, i: int = -1) -> int:
        # Fast path for the usual 15-digit form: the Luhn sum is additive over digit positions, so it is
        # looked up in three parts (TAC, serial digits 1-3, serial digits 4-6) instead of a 14-step loop.
        # Anything it does not accept goes through parse_imei, which decides (same results, tested).
        if type(raw) is str and len(raw) == 15 and raw.isdigit() and raw.isascii():
            tac = raw[:8]
            part = self._luhn_tac.get(tac)
            if part is None:
                if len(self._luhn_tac) > 100_000:
                    self._luhn_tac.clear()
                part = self._luhn_tac[tac] = _luhn_part(tac, 13)
            total = part + self._luhn_mid[raw[8:11]] + self._luhn_low[raw[11:14]]
            if (10 - total % 10) % 10 == ord(raw[14]) - 48 and raw.count(raw[0], 0, 14) != 14:
                return int(raw[:14])
        core = parse_imei(raw, _POLICY) if type(raw) is str else MALFORMED
        if core == MALFORMED:
            raise _Invalid(f"{name if i < 0 else f'{name}[{i}]'}: malformed IMEI {_show(raw)}")
        return core

    def _device(self, rec: dict[str, Any]) -> None:
        get = rec.get
        raw_imeis = get("imeis")
        if type(raw_imeis) is not list or not 1 <= len(raw_imeis) <= MAX_IMEIS_PER_DEVICE:
            raise _Invalid(f"device.imeis: expected a list of 1-{MAX_IMEIS_PER_DEVICE} IMEIs")
        cores = list(map(self._imei, raw_imeis, repeat("device.imeis"), count()))
        if len(cores) > 1 and len(set(cores)) < len(cores):
            i, core = next((i, c) for i, c in enumerate(cores) if cores.index(c) != i)
            raise _Invalid(f"device.imeis[{i}]: IMEI {core:014d} repeats device.imeis[{cores.index(core)}]")
        model = get("model")
        if type(model) is not str:
            if model is not None:
                raise _Invalid(f"device.model: expected a string, got {_show(model)}")
            model = ""
        origin = get("origin")
        flags = 0 if origin is None else _ORIGIN_CODE.get(origin, -1) if type(origin) is str else -1
        if flags < 0:
            raise _Invalid(f"device.origin: expected one of {', '.join(ORIGINS)}, got {_show(origin)}")
        owner, since = get("owner"), get("owner_since")
        owner = 0 if owner is None else _msisdn(owner, "device.owner")
        since = 0 if since is None else _time(since, "device.owner_since")
        cloned = get("cloned")
        if cloned is True:
            flags |= CLONED
        elif cloned is not None and cloned is not False:
            _flag(cloned, "device.cloned")
        sims = get("operator_sims")
        sims = self._operator_sims(sims, len(cores)) if sims or sims not in (None, {}) else ()
        users = get("pre_registry_users")
        if users or users not in (None, []):
            if type(users) is not list:
                raise _Invalid(f"device.pre_registry_users: expected a list of MSISDNs, got {_show(users)}")
            users = sorted({_msisdn(v, f"device.pre_registry_users[{i}]") for i, v in enumerate(users)})
        block = get("block")
        if block is not None:
            block = _reason(block, "device.block")
            flags |= BLOCKED
        code = get("activation_code")
        code_hash = None if code is None else self._code_hash(code, cores[0])
        # Uniqueness last: a record rejected for another reason must not claim its IMEIs.
        seen, keys = self._seen["imei"], [((core + 2) * KEY_MIX) & KEY_MASK for core in cores]
        for i, key in enumerate(keys):
            if (prev := seen[key]) is not None:
                where = self.where(prev)
                raise _Invalid(f"device.imeis[{i}]: IMEI {cores[i]:014d} already belongs to the device at {where}")
        # Commit: nothing below can fail, so a device is appended whole or not at all.
        c, dev = self.cols, len(self.cols["dev_flags"])
        for key in keys:
            seen[key] = self._src
        c["imeis"].extend(cores)
        c["dev_imei_offsets"].append(len(c["imeis"]))
        c["dev_owner"].append(owner)
        c["dev_owner_since"].append(since)
        c["dev_model"].append(self._intern("models", model))
        if sims:
            flags |= HAS_OPERATOR_SIMS
            for slot, msisdn in sims:
                c["opsim_dev"].append(dev)
                c["opsim_slot"].append(slot)
                c["opsim_msisdn"].append(msisdn)
        if users:
            flags |= HAS_PRE_REGISTRY_USERS
            c["prereg_dev"].extend([dev] * len(users))
            c["prereg_msisdn"].extend(users)
        if block is not None:
            c["block_dev"].append(dev)
            c["block_reason"].append(self._intern("reasons", block))
        if code_hash is not None:
            flags |= HAS_ACTIVATION_CODE
            c["code_dev"].append(dev)
            c["code_hash"].frombytes(code_hash)
        c["dev_flags"].append(flags)

    def _operator_sims(self, value: object, n_slots: int) -> list[tuple[int, int]]:
        if type(value) is not dict:
            raise _Invalid(f"device.operator_sims: expected an object slot -> MSISDN, got {_show(value)}")
        sims = []
        for key, msisdn in value.items():
            slot = int(key) if _digits(key, 1, 2) else 0
            if not 1 <= slot <= n_slots:
                raise _Invalid(f"device.operator_sims: slot {_show(key)} outside 1..{n_slots}")
            sims.append((slot, _msisdn(msisdn, f"device.operator_sims[{key}]")))
        return sorted(sims)

    def _code_hash(self, code: object, device_key: int) -> bytes:
        # Never echo the code itself: error messages end up in terminals and logs.
        text = str(code) if type(code) is int else code
        if not _digits(text, 6, 6) or str(text)[0] == "0":
            raise _Invalid("device.activation_code: expected 6 digits not starting with 0")
        if not self._code_key:
            raise RegistryError(
                f"{self.where(self._src)}: the registry carries activation codes but EIR_CODE_KEY is not "
                "set; export the code key (the one the service uses) and build again"
            )
        return activation_code_hash(self._code_key, device_key, str(text))

    def _subscriber(self, rec: dict[str, Any]) -> None:
        get = rec.get
        msisdn = _msisdn(get("msisdn"), "subscriber.msisdn")
        imsi = get("imsi")
        if imsi is None:
            imsi = 0
        elif type(imsi) is str and 6 <= len(imsi) <= 15 and imsi.isdigit() and imsi.isascii() and imsi[0] != "0":
            imsi = int(imsi)  # the usual form; parse_imsi below takes prefixes and says what is wrong
        else:
            try:
                imsi = parse_imsi(imsi) if type(imsi) is str else -1
            except IdentifierError:
                imsi = -1
            if imsi < 0:
                raise _Invalid(f"subscriber.imsi: expected 6-15 digits, got {_show(get('imsi'))}")
        nid, since = get("national_id"), get("since")
        if nid is None:
            nid = 0
        elif type(nid) is str and 0 < len(nid) <= 18 and nid.isdigit() and nid.isascii():
            nid = int("1" + nid)  # the leading 1 keeps leading zeros; 0 stays free for "none"
        else:
            _national_id(nid, "subscriber.national_id")
        since = 0 if since is None else _time(since, "subscriber.since")
        expired = _flag(get("expired"), "subscriber.expired")
        by_msisdn, by_imsi = self._seen["msisdn"], self._seen["imsi"]
        m_key, i_key = ((msisdn + 2) * KEY_MIX) & KEY_MASK, ((imsi + 2) * KEY_MIX) & KEY_MASK
        if (prev := by_msisdn[m_key]) is not None:
            raise _Invalid(f"subscriber.msisdn: duplicate {msisdn} (first at {self.where(prev)})")
        if imsi and (prev := by_imsi[i_key]) is not None:
            raise _Invalid(f"subscriber.imsi: duplicate {imsi} (first at {self.where(prev)})")
        by_msisdn[m_key] = self._src
        if imsi:
            by_imsi[i_key] = self._src
        c = self.cols
        self._sub_msisdn.append(msisdn)
        c["sub_imsi"].append(imsi)
        c["sub_national_id"].append(nid)
        c["sub_since"].append(since)
        c["sub_expired"].append(expired)

    def _blacklist(self, rec: dict[str, Any]) -> None:
        core = self._imei(rec.get("imei"), "blacklist.imei")
        reason = _reason(rec.get("reason"), "blacklist.reason")
        self._once("blacklist", core, f"IMEI {core:014d}")
        self.cols["blacklist_imei"].append(core)
        self.cols["blacklist_reason"].append(self._intern("reasons", reason))

    def _traveler_entry(self, rec: dict[str, Any]) -> None:
        msisdn, nid = rec.get("msisdn"), rec.get("national_id")
        if msisdn is None and nid is None:
            raise _Invalid("traveler_entry: needs msisdn or national_id")
        msisdn = 0 if msisdn is None else _msisdn(msisdn, "traveler_entry.msisdn")
        nid = 0 if nid is None else _national_id(nid, "traveler_entry.national_id")
        self._trav.append((msisdn, nid, _time(rec.get("entered"), "traveler_entry.entered")))

    def _tac(self, rec: dict[str, Any]) -> None:
        tac, brand, model = rec.get("tac"), rec.get("brand", ""), rec.get("model", "")
        if not _digits(tac, 8, 8):
            raise _Invalid(f"tac.tac: expected 8 digits as a string, got {_show(tac)}")
        if type(brand) is not str or type(model) is not str:
            raise _Invalid(f"tac: brand and model must be strings, got {_show(brand)}, {_show(model)}")
        self._once("tac", int(str(tac)), f"TAC {tac}")
        self.cols["tac"].append(int(str(tac)))
        self.cols["tac_brand"].append(self._intern("tac_strings", brand))
        self.cols["tac_model"].append(self._intern("tac_strings", model))

    def finish(self) -> RegistryData:
        """Build the sorted lookup columns and hand everything over; the builder is spent afterwards."""
        c = self.cols
        # Subscriber rows stay in file order; two sorted indexes point into them. Sorting 1.4M keys
        # once per index and gathering with itemgetter is the cheapest pure-Python way (no per-row
        # tuples), which keeps the 1M-device build inside its time budget.
        msisdns, imsis = self._sub_msisdn.tolist(), c["sub_imsi"].tolist()
        order = sorted(range(len(msisdns)), key=msisdns.__getitem__)
        c["msisdn_key"], c["msisdn_row"] = array("q", _gather(msisdns, order)), array("I", order)
        order = sorted((i for i, imsi in enumerate(imsis) if imsi), key=imsis.__getitem__)
        c["imsi_key"], c["imsi_msisdn"] = array("q", _gather(imsis, order)), array("q", _gather(msisdns, order))
        for pos, key_col, time_col in ((0, "trav_msisdn", "trav_msisdn_entered"), (1, "trav_nid", "trav_nid_entered")):
            entries = sorted((e[pos], e[2]) for e in self._trav if e[pos])
            c[key_col], c[time_col] = array("q", [e[0] for e in entries]), array("q", [e[1] for e in entries])
        for names in (("blacklist_imei", "blacklist_reason"), ("tac", "tac_brand", "tac_model")):
            keys = c[names[0]].tolist()
            order = sorted(range(len(keys)), key=keys.__getitem__)
            for name in names:
                c[name] = array(COLUMNS[name], _gather(c[name].tolist(), order))
        # Counts that need the builder's state; snapshot.py derives the rest from the columns.
        counts = {
            "blacklisted_unregistered": sum(1 for core in c["blacklist_imei"] if self._first("imei", core) is None),
            "traveler_entries": len(self._trav),
        }
        self._seen, self._trav, self._sub_msisdn = {}, [], array("q")
        return RegistryData(columns=c, strings={k: list(v) for k, v in self._strings.items()}, counts=counts)
