"""Registry JSON Lines reader and validator (SPEC §3).

The reader streams one or more JSONL files and appends every valid record straight into typed columns
(``array.array``): nothing per record outlives the line it was parsed from, which keeps a 1M-device
build lean, and the snapshot writer only has to dump the columns.
"""

from __future__ import annotations

import hmac
import math
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import orjson

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
    "sub_msisdn": "q", "sub_imsi": "q", "sub_national_id": "q", "sub_since": "q", "sub_expired": "B",
    "imsi_key": "q", "imsi_msisdn": "q",
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
    """The validated registry as columns (see :data:`COLUMNS`), string tables and counts."""

    columns: dict[str, array[int]]
    strings: dict[str, list[str]]
    counts: dict[str, int]


def parse_time(value: object) -> int:
    """ISO 8601 with offset, or epoch seconds (int/float) -> int epoch seconds (floor, UTC)."""
    if type(value) is int:
        t = value
    elif type(value) is float:
        if not math.isfinite(value):
            raise ValueError(f"not a finite number: {value!r}")
        t = math.floor(value)
    elif type(value) is str:
        dt = datetime.fromisoformat(value)
        if dt.utcoffset() is None:
            raise ValueError(f"no UTC offset: {value!r}")
        t = (dt - _EPOCH) // _SECOND  # exact integer floor, no float rounding
    else:
        raise ValueError(f"expected ISO 8601 text or epoch seconds, got {type(value).__name__}")
    if not MIN_TIME <= t <= MAX_TIME:
        raise ValueError(f"outside 1970-01-01T00:00:01Z..9999-12-31T23:59:59Z: {value!r}")
    return t


def activation_code_hash(key: bytes, device_key: int, code: str) -> bytes:
    """HMAC-SHA256(key, core14 + ":" + code): the only form in which an activation code is stored."""
    return hmac.digest(key, f"{device_key:014d}:{code}".encode("ascii"), "sha256")


def _show(value: object) -> str:
    # Echo offending values, bounded: a bad line must not turn into a megabyte error message.
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


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
    try:
        return parse_time(value)
    except ValueError as exc:
        raise _Invalid(f"{name}: bad time: {exc}") from None


def _opt_bool(value: object, name: str) -> bool:
    if value is None or type(value) is bool:
        return bool(value)
    raise _Invalid(f"{name}: expected true/false, got {_show(value)}")


def _reason(value: object, name: str) -> str:
    if type(value) is not str or not value.strip():
        raise _Invalid(f"{name}: expected a non-empty reason string, got {_show(value)}")
    return value


class RegistryBuilder:
    """Streams registry files into columns; collects every invalid record as a located error."""

    def __init__(self, code_key: bytes | None) -> None:
        self._code_key = code_key
        self.cols: dict[str, array[int]] = {name: array(tc) for name, tc in COLUMNS.items()}
        self.cols["dev_imei_offsets"].append(0)  # offsets has n_devices + 1 entries
        self._strings: dict[str, dict[str, int]] = {name: {} for name in STRING_TABLES}
        self._dev_src: array[int] = array("Q")
        self._sub_src: array[int] = array("Q")
        self._imei_dev: dict[int, int] = {}  # duplicate detection across devices; freed by finish()
        self._blacklisted: dict[int, int] = {}  # core -> source ref
        self._tacs: dict[int, int] = {}  # tac -> source ref
        self._trav: list[tuple[int, int, int]] = []  # (msisdn, national id, entered)
        self._files: list[str] = []
        self._errors: list[tuple[int, str]] = []
        self.n_errors = 0
        self.n_lines = 0
        self.n_records = 0
        self._src = 0
        triples = [f"{i:03d}" for i in range(1000)]
        self._luhn_mid = {t: _luhn_part(t, 5) for t in triples}
        self._luhn_low = {t: _luhn_part(t, 2) for t in triples}
        self._luhn_tac: dict[str, int] = {}
        self._handlers: dict[str, Callable[[dict[str, Any]], None]] = {
            "device": self._device, "subscriber": self._subscriber, "blacklist": self._blacklist,
            "traveler_entry": self._traveler_entry, "tac": self._tac,
        }  # fmt: skip

    # -- reading ---------------------------------------------------------------------------------------
    def read(self, path: Path) -> None:
        """Validate and append every record of one JSONL file (streamed line by line)."""
        file_idx = len(self._files)
        self._files.append(str(path))
        base = file_idx << _LINE_BITS
        handle = self._handle
        try:
            f = path.open("rb")
        except OSError as exc:
            raise RegistryError(f"cannot read {path}: {exc.strerror or exc}") from None
        with f:
            lineno = 0
            while line := f.readline(MAX_LINE_BYTES + 1):
                lineno += 1
                self._src = base | lineno
                try:
                    if len(line) > MAX_LINE_BYTES:
                        while (rest := f.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                            pass  # discard the rest of the over-long line without holding it
                        raise _Invalid(f"line longer than {MAX_LINE_BYTES} bytes")
                    if lineno == 1 and line.startswith(b"\xef\xbb\xbf"):
                        line = line[3:]  # UTF-8 BOM written by some editors
                    handle(line)
                except _Invalid as exc:
                    self._error(self._src, str(exc))
            self.n_lines += lineno

    def _handle(self, line: bytes) -> None:
        if not line.strip():
            return
        try:
            rec = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise _Invalid(f"invalid JSON: {exc}") from None
        if type(rec) is not dict:
            raise _Invalid("expected a JSON object")
        kind = rec.get("type")
        handler = self._handlers.get(kind) if type(kind) is str else None
        if handler is None:
            raise _Invalid("missing 'type'" if kind is None else f"unknown record type {_show(kind)}")
        handler(rec)
        self.n_records += 1

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

    # -- record types ----------------------------------------------------------------------------------
    def _imei(self, raw: object, name: str) -> int:
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
            raise _Invalid(f"{name}: malformed IMEI {_show(raw)}")
        return core

    def _device(self, rec: dict[str, Any]) -> None:
        raw_imeis = rec.get("imeis")
        if type(raw_imeis) is not list or not 1 <= len(raw_imeis) <= MAX_IMEIS_PER_DEVICE:
            raise _Invalid(f"device.imeis: expected a list of 1-{MAX_IMEIS_PER_DEVICE} IMEIs")
        cores = [self._imei(raw, f"device.imeis[{i}]") for i, raw in enumerate(raw_imeis)]
        if len(set(cores)) != len(cores):
            i = next(i for i, c in enumerate(cores) if c in cores[:i])
            raise _Invalid(f"device.imeis[{i}]: IMEI {cores[i]:014d} listed twice")
        model = rec.get("model")
        if model is None:
            model = ""
        elif type(model) is not str:
            raise _Invalid(f"device.model: expected a string, got {_show(model)}")
        origin = rec.get("origin")
        flags = 0 if origin is None else _ORIGIN_CODE.get(origin, -1) if type(origin) is str else -1
        if flags < 0:
            raise _Invalid(f"device.origin: expected one of {', '.join(ORIGINS)}, got {_show(origin)}")
        owner = rec.get("owner")
        owner = 0 if owner is None else _msisdn(owner, "device.owner")
        since = rec.get("owner_since")
        since = 0 if since is None else _time(since, "device.owner_since")
        if _opt_bool(rec.get("cloned"), "device.cloned"):
            flags |= CLONED
        sims = self._operator_sims(rec.get("operator_sims"), len(cores))
        users = self._pre_registry_users(rec.get("pre_registry_users"))
        block = rec.get("block")
        if block is not None:
            block = _reason(block, "device.block")
            flags |= BLOCKED
        code = rec.get("activation_code")
        code_hash = None if code is None else self._code_hash(code, cores[0])
        # Uniqueness last: a record rejected for another reason must not claim its IMEIs.
        seen = self._imei_dev
        for i, core in enumerate(cores):
            prev = seen.get(core)
            if prev is not None:
                raise _Invalid(
                    f"device.imeis[{i}]: IMEI {core:014d} already belongs to the device at "
                    f"{self.where(self._dev_src[prev])}"
                )
        # Commit: from here on nothing can fail, so a device is appended whole or not at all.
        c = self.cols
        dev = len(self._dev_src)
        self._dev_src.append(self._src)
        for core in cores:
            seen[core] = dev
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
        if value is None:
            return []
        if type(value) is not dict:
            raise _Invalid(f"device.operator_sims: expected an object slot -> MSISDN, got {_show(value)}")
        sims = []
        for key, msisdn in value.items():
            slot = int(key) if key.isascii() and key.isdigit() and len(key) <= 2 else 0
            if not 1 <= slot <= n_slots:
                raise _Invalid(f"device.operator_sims: slot {_show(key)} outside 1..{n_slots}")
            sims.append((slot, _msisdn(msisdn, f"device.operator_sims[{key}]")))
        sims.sort()
        return sims

    def _pre_registry_users(self, value: object) -> list[int]:
        if value is None:
            return []
        if type(value) is not list:
            raise _Invalid(f"device.pre_registry_users: expected a list of MSISDNs, got {_show(value)}")
        return sorted({_msisdn(v, f"device.pre_registry_users[{i}]") for i, v in enumerate(value)})

    def _code_hash(self, code: object, device_key: int) -> bytes:
        # Never echo the code itself: the message may end up in a log.
        text = str(code) if type(code) is int else code
        if type(text) is not str or len(text) != 6 or not text.isascii() or not text.isdigit() or text[0] == "0":
            raise _Invalid("device.activation_code: expected 6 digits not starting with 0")
        if not self._code_key:
            raise RegistryError(
                f"{self.where(self._src)}: the registry carries activation codes but EIR_CODE_KEY is not "
                "set; export the code key (the same one the service uses) and build again"
            )
        return activation_code_hash(self._code_key, device_key, text)

    def _subscriber(self, rec: dict[str, Any]) -> None:
        msisdn = _msisdn(rec.get("msisdn"), "subscriber.msisdn")
        imsi = rec.get("imsi")
        if imsi is not None:
            try:
                imsi = parse_imsi(imsi) if type(imsi) is str else -1
            except IdentifierError:
                imsi = -1
            if imsi < 0:
                raise _Invalid(f"subscriber.imsi: expected 6-15 digits, got {_show(rec.get('imsi'))}")
        nid = self._national_id(rec.get("national_id"), "subscriber.national_id")
        since = rec.get("since")
        since = 0 if since is None else _time(since, "subscriber.since")
        expired = _opt_bool(rec.get("expired"), "subscriber.expired")
        c = self.cols
        c["sub_msisdn"].append(msisdn)
        c["sub_imsi"].append(imsi or 0)
        c["sub_national_id"].append(nid)
        c["sub_since"].append(since)
        c["sub_expired"].append(expired)
        self._sub_src.append(self._src)

    @staticmethod
    def _national_id(value: object, name: str) -> int:
        if value is None:
            return 0
        if type(value) is not str or not 1 <= len(value) <= 18 or not value.isascii() or not value.isdigit():
            raise _Invalid(f"{name}: expected 1-18 ASCII digits as a string, got {_show(value)}")
        return int("1" + value)  # the leading 1 keeps leading zeros; 0 stays free for "none"

    def _blacklist(self, rec: dict[str, Any]) -> None:
        core = self._imei(rec.get("imei"), "blacklist.imei")
        reason = _reason(rec.get("reason"), "blacklist.reason")
        prev = self._blacklisted.get(core)
        if prev is not None:
            raise _Invalid(f"blacklist.imei: IMEI {core:014d} already listed at {self.where(prev)}")
        self._blacklisted[core] = self._src
        self.cols["blacklist_imei"].append(core)
        self.cols["blacklist_reason"].append(self._intern("reasons", reason))

    def _traveler_entry(self, rec: dict[str, Any]) -> None:
        msisdn, nid = rec.get("msisdn"), rec.get("national_id")
        if msisdn is None and nid is None:
            raise _Invalid("traveler_entry: needs msisdn or national_id")
        msisdn = 0 if msisdn is None else _msisdn(msisdn, "traveler_entry.msisdn")
        nid = self._national_id(nid, "traveler_entry.national_id")
        self._trav.append((msisdn, nid, _time(rec.get("entered"), "traveler_entry.entered")))

    def _tac(self, rec: dict[str, Any]) -> None:
        tac = rec.get("tac")
        if type(tac) is not str or len(tac) != 8 or not tac.isascii() or not tac.isdigit():
            raise _Invalid(f"tac.tac: expected 8 digits as a string, got {_show(tac)}")
        brand, model = rec.get("brand") or "", rec.get("model") or ""
        if type(brand) is not str or type(model) is not str:
            raise _Invalid("tac: brand and model must be strings")
        prev = self._tacs.get(int(tac))
        if prev is not None:
            raise _Invalid(f"tac.tac: TAC {tac} already listed at {self.where(prev)}")
        self._tacs[int(tac)] = self._src
        self.cols["tac"].append(int(tac))
        self.cols["tac_brand"].append(self._intern("tac_strings", brand))
        self.cols["tac_model"].append(self._intern("tac_strings", model))

    # -- finishing -------------------------------------------------------------------------------------
    def _sorted(self, names: tuple[str, ...], order: list[int]) -> None:
        for name in names:
            col = self.cols[name]
            self.cols[name] = array(col.typecode, map(col.__getitem__, order))

    def _dedupe(self, key: array[int], order: list[int], field: str) -> list[int]:
        """Drop later duplicates of ``key`` from ``order`` (sorted by key, then line), reporting them."""
        kept: list[int] = []
        prev_key, prev_i, src = 0, -1, self._sub_src
        for i in order:
            k = key[i]
            if k and k == prev_key:
                self._error(src[i], f"{field}: duplicate {k} (first at {self.where(src[prev_i])})")
            else:
                kept.append(i)
                prev_key, prev_i = k, i
        return kept

    def finish(self) -> RegistryData:
        """Sort the lookup columns, report duplicate subscribers and compute the counts."""
        c = self.cols
        # Subscribers sorted by MSISDN for bisect; of duplicates the earliest line stays (stable sorts).
        msisdns, imsis = c["sub_msisdn"], c["sub_imsi"]
        order = self._dedupe(msisdns, sorted(range(len(msisdns)), key=msisdns.__getitem__), "subscriber.msisdn")
        by_imsi = self._dedupe(imsis, sorted(order, key=lambda i: (imsis[i], i)), "subscriber.imsi")
        if len(by_imsi) < len(order):
            keep = set(by_imsi)
            order = [i for i in order if i in keep]
        self._sorted(("sub_msisdn", "sub_imsi", "sub_national_id", "sub_since", "sub_expired"), order)
        pairs = sorted((imsi, m) for imsi, m in zip(c["sub_imsi"], c["sub_msisdn"], strict=True) if imsi)
        c["imsi_key"], c["imsi_msisdn"] = array("q", [p[0] for p in pairs]), array("q", [p[1] for p in pairs])
        for pos, key_col, time_col in ((0, "trav_msisdn", "trav_msisdn_entered"), (1, "trav_nid", "trav_nid_entered")):
            entries = sorted((e[pos], e[2]) for e in self._trav if e[pos])
            c[key_col], c[time_col] = array("q", [e[0] for e in entries]), array("q", [e[1] for e in entries])
        bl, tac = c["blacklist_imei"], c["tac"]
        self._sorted(("blacklist_imei", "blacklist_reason"), sorted(range(len(bl)), key=bl.__getitem__))
        self._sorted(("tac", "tac_brand", "tac_model"), sorted(range(len(tac)), key=tac.__getitem__))
        counts = self._counts()
        self._imei_dev = {}
        return RegistryData(columns=c, strings={k: list(v) for k, v in self._strings.items()}, counts=counts)

    def _counts(self) -> dict[str, int]:
        c = self.cols
        by_flags = Counter(zip(c["dev_flags"], map(bool, c["dev_owner"]), strict=True))

        def devices(test: Callable[[int, bool], object]) -> int:
            return sum(n for (flags, owned), n in by_flags.items() if test(flags, owned))

        counts = {
            "devices": len(c["dev_flags"]), "imeis": len(c["imeis"]),
            "owned": devices(lambda f, owned: owned), "cloned": devices(lambda f, owned: f & CLONED),
            "blocked_devices": len(c["block_dev"]), "blacklisted_imeis": len(c["blacklist_imei"]),
            "blacklisted_unregistered": sum(1 for core in c["blacklist_imei"] if core not in self._imei_dev),
        }  # fmt: skip
        for code, origin in enumerate(ORIGINS):
            counts[f"origin_{origin}"] = devices(lambda f, owned, o=code: f & ORIGIN_MASK == o)
        counts["pre_registry"] = counts["origin_pre_registry"]
        for code, origin in enumerate(ORIGINS):
            name = "unowned_pre_registry" if code == 1 else f"not_activated_{origin}"
            counts[name] = devices(lambda f, owned, o=code: f & ORIGIN_MASK == o and not owned)
        counts.update({
            "operator_sims": len(c["opsim_dev"]), "pre_registry_users": len(c["prereg_dev"]),
            "devices_with_operator_sims": devices(lambda f, owned: f & HAS_OPERATOR_SIMS),
            "activation_codes": len(c["code_dev"]), "models": len(self._strings["models"]),
            "subscribers": len(c["sub_msisdn"]), "subscribers_with_imsi": len(c["imsi_key"]),
            "subscribers_with_national_id": sum(1 for nid in c["sub_national_id"] if nid),
            "subscribers_expired": sum(c["sub_expired"]),
            "traveler_entries": len(self._trav), "tacs": len(c["tac"]),
        })  # fmt: skip
        return counts
