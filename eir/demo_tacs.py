"""Identifiers of the demo data: the TAC table, numbering plans, IMEI and subscriber allocators.

Everything here draws from the *world* stream handed in by :class:`eir.demo_registry.World`. An
:class:`ImeiAllocator` hands out unique, Luhn-valid IMEIs of the demo TACs; :class:`People` hands out home
subscribers (unique MSISDN, IMSI, valid national id; writes their ``subscriber`` records) and roamers.
"""

from __future__ import annotations

import random
from bisect import bisect
from dataclasses import dataclass
from functools import cache
from typing import Final

from eir.demo_plan import BASE_EPOCH, DAY, DemoMix, Record, RecordSink, cumulative, midnights, weighted


@dataclass(frozen=True, slots=True)
class TacInfo:
    """One type allocation code of the demo TAC table (real-looking, not an authoritative GSMA entry)."""

    tac: str
    brand: str
    model: str
    dual: bool
    #: Relative frequency among devices sold in Iran (registry devices, smuggled phones).
    local: int
    #: Relative frequency among phones bought abroad (travelers, roamers).
    foreign: int


def _t(tac: str, brand: str, model: str, dual: bool, local: int, foreign: int) -> TacInfo:
    return TacInfo(tac, brand, f"{brand} {model}", dual, local, foreign)


#: The demo TAC table, written to the registry as ``tac`` records.
TACS: Final[tuple[TacInfo, ...]] = (
    _t("35693803", "Samsung", "SM-J700F", True, 3, 0),
    _t("35260110", "Samsung", "SM-A055F/DS", True, 8, 1),
    _t("35887113", "Samsung", "SM-A057F/DS", True, 7, 1),
    _t("35455391", "Samsung", "SM-A145F/DS", True, 7, 1),
    _t("35412812", "Samsung", "SM-A155F/DS", True, 8, 2),
    _t("35006517", "Samsung", "SM-A256E/DS", True, 6, 2),
    _t("35577610", "Samsung", "SM-A346E/DS", True, 5, 2),
    _t("35118422", "Samsung", "SM-A356E/DS", True, 5, 2),
    _t("35734262", "Samsung", "SM-A546E/DS", True, 4, 2),
    _t("35299665", "Samsung", "SM-A556E/DS", True, 4, 2),
    _t("35086943", "Samsung", "SM-S921B/DS", True, 2, 5),
    _t("35320817", "Samsung", "SM-S928B/DS", True, 2, 5),
    _t("35412911", "Samsung", "SM-A155F", False, 5, 1),
    _t("35461011", "Samsung", "SM-G991B", False, 2, 3),
    _t("86457206", "Xiaomi", "Redmi Note 13 (23129RAA4G)", True, 8, 2),
    _t("86914106", "Xiaomi", "Redmi 13C (23108RN04Y)", True, 7, 1),
    _t("86112407", "Xiaomi", "Redmi Note 12 (23021RAAEG)", True, 5, 1),
    _t("86778905", "Xiaomi", "POCO X6 Pro (2311DRK48G)", True, 3, 2),
    _t("86030807", "Xiaomi", "Redmi A3 (23129RN51X)", True, 4, 1),
    _t("86288806", "Xiaomi", "14T (2407FPN8EG)", True, 2, 3),
    _t("86671204", "Honor", "X8b (LLY-LX1)", True, 3, 1),
    _t("86538605", "Honor", "X7b (CLK-LX1)", True, 3, 1),
    _t("86906903", "Huawei", "nova 11i (MAO-LX9)", True, 2, 2),
    _t("86233105", "Huawei", "Y9 Prime 2019 (STK-L21)", False, 2, 1),
    _t("86725206", "Realme", "C55 (RMX3710)", True, 2, 1),
    _t("86054605", "OnePlus", "Nord CE3 Lite (CPH2465)", True, 1, 2),
    _t("35198573", "Tecno", "Spark 20 (KJ5)", True, 2, 1),
    _t("35702147", "Infinix", "Hot 40i (X6528B)", True, 2, 1),
    _t("35468720", "Motorola", "moto g54 (XT2343-2)", True, 1, 2),
    _t("35397010", "Apple", "iPhone 11 (A2221)", True, 3, 4),
    _t("35391311", "Apple", "iPhone 13 (A2633)", True, 3, 6),
    _t("35685834", "Apple", "iPhone 14 Pro Max (A2894)", True, 1, 7),
    _t("35320178", "Apple", "iPhone 15 Pro (A3102)", True, 1, 8),
    _t("35118296", "Apple", "iPhone 16 Pro Max (A3296)", True, 1, 8),
    _t("35244509", "Apple", "iPhone X (A1901)", False, 2, 2),
    _t("35287617", "Apple", "iPhone 8 Plus (A1897)", False, 2, 2),
    _t("35942388", "Google", "Pixel 8 (GKWS6)", False, 0, 4),
    _t("35488512", "Google", "Pixel 7a (GWKK3)", False, 0, 3),
    _t("35164210", "Nokia", "105 (TA-1203)", False, 6, 1),
    _t("35290611", "Nokia", "106 (TA-1564)", True, 4, 1),
    _t("35932706", "Nokia", "6300 4G (TA-1286)", False, 2, 0),
    _t("86720904", "GLX", "2690 Mini", False, 3, 0),
)

#: Home mobile prefixes after the trunk 0 (``0912`` -> ``912``), the operator's MNC, relative share.
HOME_PREFIXES: Final[tuple[tuple[str, str, int], ...]] = (
    ("912", "11", 18), ("919", "11", 8), ("913", "11", 6), ("915", "11", 5), ("910", "11", 3),
    ("911", "11", 3), ("914", "11", 3), ("916", "11", 2), ("917", "11", 2), ("918", "11", 2),
    ("990", "11", 2), ("991", "11", 1), ("935", "35", 12), ("901", "35", 8), ("936", "35", 5),
    ("937", "35", 4), ("939", "35", 4), ("902", "35", 4), ("903", "35", 3), ("938", "35", 3),
    ("930", "35", 2), ("933", "35", 2), ("905", "35", 1), ("921", "20", 2), ("922", "20", 1),
    ("920", "20", 1),
)  # fmt: skip

#: Inbound roamers: country code, MCC, MNCs, mobile number prefixes, digits after the prefix, share.
FOREIGN_NETWORKS: Final[tuple[tuple[str, str, tuple[str, ...], tuple[str, ...], int, int], ...]] = (
    ("90", "286", ("01", "02", "03"), ("53", "54", "55"), 8, 24),
    ("964", "418", ("05", "20", "30", "40"), ("77", "78", "75"), 8, 22),
    ("93", "412", ("01", "20", "40", "50"), ("70", "79", "78"), 7, 14),
    ("971", "424", ("02", "03"), ("50", "55", "56"), 7, 14),
    ("44", "234", ("10", "15", "20", "30"), ("77", "78", "79"), 8, 14),
    ("49", "262", ("01", "02", "03"), ("151", "160", "176"), 8, 12),
)

_SERIAL_UNITS: Final = 500_000  # a device takes two consecutive serials: 2u and 2u + 1
_BASE_DAY: Final = BASE_EPOCH // DAY
#: Subscriber ``since``: 2009-10 .. 40 days before the log.
_SINCE_DAYS: Final = (_BASE_DAY - 17 * 365, _BASE_DAY - 40)


@cache
def _luhn_tables() -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Luhn sums of the serial's high and low 3 digits (core positions 5-3 and 2-0 from the right)."""
    dbl = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)
    high = tuple(x // 100 + dbl[x // 10 % 10] + x % 10 for x in range(1000))
    low = tuple(dbl[x // 100] + x // 10 % 10 + dbl[x % 10] for x in range(1000))
    return high, low


def _tac_luhn_sum(tac: str) -> int:
    """Luhn sum of a TAC's digits at core positions 13-6 from the right (position 6 is doubled)."""
    dbl = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)
    return sum(dbl[int(ch)] if i % 2 == 0 else int(ch) for i, ch in enumerate(reversed(tac)))


class ImeiAllocator:
    """Hands out unique IMEIs: per TAC, serial pairs ``2u, 2u+1`` for a scrambled unit counter ``u``."""

    def __init__(self, rng: random.Random) -> None:
        self._rand = rng.random
        self._next = [0] * len(TACS)
        # Unit permutations u -> (a*u + b) mod 500000 with a coprime to 500000.
        self._mul = [rng.randrange(100_000, 499_999) // 10 * 10 + rng.choice((1, 3, 7, 9)) for _ in TACS]
        self._add = [rng.randrange(_SERIAL_UNITS) for _ in TACS]
        self._tac_sum = [_tac_luhn_sum(t.tac) for t in TACS]
        self._tacs = [t.tac for t in TACS]
        self._cums: dict[tuple[bool, bool], tuple[list[int], list[float]]] = {}
        for foreign in (False, True):
            for dual in (False, True):
                idx = [i for i, t in enumerate(TACS) if t.dual == dual and (t.foreign if foreign else t.local)]
                weights = [TACS[i].foreign if foreign else TACS[i].local for i in idx]
                self._cums[foreign, dual] = (idx, cumulative(weights))

    def pick_tac(self, dual: bool, foreign: bool) -> int:
        """A TAC index by market share among the models with one (or two) IMEIs."""
        idx, cum = self._cums[foreign, dual]
        return idx[weighted(self._rand, cum)]

    def imei15(self, tac_index: int, serial: int) -> str:
        """The 15-digit IMEI (with its Luhn check digit) of a TAC and a serial."""
        high, low = _luhn_tables()
        total = self._tac_sum[tac_index] + high[serial // 1000] + low[serial % 1000]
        return self._tacs[tac_index] + str(serial).zfill(6) + str((10 - total % 10) % 10)

    def allocate(self, tac_index: int, count: int) -> tuple[int, list[str]]:
        """``count`` (1 or 2) IMEIs with consecutive serials; moves to the next TAC when one is full."""
        for step in range(len(TACS)):
            t = (tac_index + step) % len(TACS)
            unit = self._next[t]
            if unit < _SERIAL_UNITS:
                self._next[t] = unit + 1
                base = 2 * ((self._mul[t] * unit + self._add[t]) % _SERIAL_UNITS)
                if count == 1:
                    return t, [self.imei15(t, base + (unit & 1))]
                return t, [self.imei15(t, base), self.imei15(t, base + 1)]
        raise ValueError("demo TAC table exhausted: too many devices for the demo generator")


def national_id_check_digit(body9: str) -> int:
    """Check digit of an Iranian national code (کد ملی) from its first 9 digits."""
    r = sum(int(ch) * (10 - i) for i, ch in enumerate(body9)) % 11
    return r if r < 2 else 11 - r


@cache
def _national_id_tables() -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """Weighted digit sums of the 3-digit groups of a national code body (weights 10..2)."""

    def table(w: int) -> tuple[int, ...]:
        return tuple(w * (x // 100) + (w - 1) * (x // 10 % 10) + (w - 2) * (x % 10) for x in range(1000))

    return table(10), table(7), table(4)


class Person:
    """A subscriber: home (``nsn`` = 10-digit national number) or roamer (``nsn`` = E.164 digits)."""

    __slots__ = ("has_record", "home", "imsi", "national_id", "nsn")

    def __init__(self, nsn: str, imsi: str, national_id: str, home: bool, has_record: bool) -> None:
        self.nsn = nsn
        self.imsi = imsi
        self.national_id = national_id
        self.home = home
        self.has_record = has_record

    def __repr__(self) -> str:
        return f"Person({self.e164}, imsi={self.imsi}, national_id={self.national_id})"

    @property
    def e164(self) -> str:
        """E.164 digits (``989121234567``)."""
        return "98" + self.nsn if self.home else self.nsn

    @property
    def national(self) -> str:
        """The registry's own form of a home number (``09121234567``)."""
        return "0" + self.nsn


class People:
    """Allocates unique home MSISDNs, IMSIs and national ids; writes their ``subscriber`` records."""

    def __init__(self, rng: random.Random, mix: DemoMix, sink: RecordSink) -> None:
        self._rand = rng.random
        self._mix = mix
        self._sink = sink
        self._since = midnights(*_SINCE_DAYS)
        self._prefix_cum = cumulative([w for _, _, w in HOME_PREFIXES])
        self._prefix_next = [0] * len(HOME_PREFIXES)
        self._prefix_add = [rng.randrange(10**7) for _ in HOME_PREFIXES]
        self._foreign_cum = cumulative([n[5] for n in FOREIGN_NETWORKS])
        self._imsi_next = 0
        self._imsi_add = rng.randrange(10**10)
        self._nid_next = 0
        self._nid_add = rng.randrange(10**9)
        #: The last 1024 home subscribers (a pool for rows that need "some subscriber").
        self.recent: list[Person] = []
        self.subscribers = 0
        self.expired = 0

    def new_national_id(self) -> str:
        """A fresh, valid 10-digit national code (leading zeros possible)."""
        high, mid, low = _national_id_tables()
        while True:
            body = (self._nid_next * 387_420_489 + self._nid_add) % 10**9
            self._nid_next += 1
            if body % 111_111_111:  # not nine times the same digit
                r = (high[body // 1_000_000] + mid[body // 1000 % 1000] + low[body % 1000]) % 11
                return str(body).zfill(9) + str(r if r < 2 else 11 - r)

    def home(self, national_id: str | None = None) -> Person:
        """A new home subscriber (with a new national id unless one is given)."""
        rand = self._rand
        p = bisect(self._prefix_cum, rand())
        prefix, mnc, _ = HOME_PREFIXES[p]
        k = self._prefix_next[p]
        if k >= 10**7:
            raise ValueError(f"demo numbering plan exhausted for prefix 0{prefix}")
        self._prefix_next[p] = k + 1
        local = str((k * 3_863_477 + self._prefix_add[p]) % 10**7).zfill(7)[::-1]
        n = self._imsi_next
        self._imsi_next = n + 1
        imsi = "432" + mnc + str((n * 7_368_787_397 + self._imsi_add) % 10**10).zfill(10)
        if national_id is None:
            national_id = self.new_national_id()
        person = Person(prefix + local, imsi, national_id, True, rand() < self._mix.subscriber_coverage)
        if person.has_record:
            self._write(person)
        if n < 1024:
            self.recent.append(person)
        else:
            self.recent[n % 1024] = person
        return person

    def _write(self, person: Person) -> None:
        rand = self._rand
        rec: Record = {
            "type": "subscriber",
            "msisdn": "98" + person.nsn,
            "imsi": person.imsi,
            "national_id": person.national_id,
            "since": self._since[int(rand() * len(self._since))],
        }
        if rand() < self._mix.expired_subscribers:
            rec["expired"] = True
            self.expired += 1
        self.subscribers += 1
        self._sink(rec)

    def foreign(self) -> Person:
        """An inbound roamer: foreign MSISDN and IMSI (no subscriber record)."""
        rand = self._rand
        cc, mcc, mncs, prefixes, digits, _ = FOREIGN_NETWORKS[weighted(rand, self._foreign_cum)]
        number = f"{cc}{prefixes[int(rand() * len(prefixes))]}{int(rand() * 10**digits):0{digits}d}"
        mnc = mncs[int(rand() * len(mncs))]
        imsi = f"{mcc}{mnc}{int(rand() * 10**10):010d}"
        return Person(number, imsi, "", False, False)
