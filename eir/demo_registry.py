"""The registry side of the demo data: TAC table, identifier allocators, people and registry records.

See :mod:`eir.demo` for the populations and the public API. Everything here draws from one
``random.Random`` (the *world* stream), so the registry of a seed does not depend on the number of attach
rows asked for. A :class:`World` turns one planned entity (a :class:`Kind`) into its registry records and a
:class:`Scene`: what the attach generator (:mod:`eir.demo_attaches`) needs to make that entity's traffic.
"""

from __future__ import annotations

import random
from bisect import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from enum import IntEnum
from functools import cache
from itertools import accumulate
from typing import Any, Final

#: 2026-10-01T00:00:00Z: the attach log covers ``BASE_EPOCH .. BASE_EPOCH + PERIOD``.
BASE_EPOCH: Final = 1_790_812_800
DAY: Final = 86_400
PERIOD_DAYS: Final = 50
#: 2026-10-01T00:00Z .. 2026-11-20T00:00Z.
PERIOD: Final = PERIOD_DAYS * DAY
_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()

Record = dict[str, Any]
RecordSink = Callable[[Record], None]


class Kind(IntEnum):
    """One planned entity of the demo world: a registry device (first 11) or an off-registry actor."""

    OWNED = 0
    NON_OWNER = 1
    FLAGGED_CLONE = 2
    SIMULTANEOUS_CLONE = 3
    LEND_AND_RETURN = 4
    PRE_REGISTRY = 5
    PRE_REGISTRY_CLONED = 6
    UNACTIVATED_IN_GRACE = 7
    UNACTIVATED_OVERDUE = 8
    BLOCKED = 9
    BLACKLISTED_DEVICE = 10
    TRAVELER_RECENT = 11
    TRAVELER_OVERDUE = 12
    UNREGISTERED = 13
    BLACKLISTED_UNREGISTERED = 14
    ROAMER = 15

    @property
    def label(self) -> str:
        """The population's name in summaries (``simultaneous_clone``)."""
        return self.name.lower()

    @property
    def is_device(self) -> bool:
        """Whether the entity is a registry ``device`` record."""
        return self <= Kind.BLACKLISTED_DEVICE


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

BLOCK_REASONS: Final = (("stolen", 55), ("lost", 35), ("illegal", 5), ("court_order", 5))
BLACKLIST_REASONS: Final = (("stolen", 40), ("illegal", 35), ("lost", 15), ("court_order", 10))
_ORIGINS_UNACTIVATED: Final = (("import", 60), ("traveler", 25), ("repair", 15))

_SERIAL_UNITS: Final = 500_000  # a device takes two consecutive serials: 2u and 2u + 1
_BASE_DAY: Final = BASE_EPOCH // DAY
#: Subscriber ``since``: 2009-10 .. 40 days before the log; ``owner_since``: 2019-01-01 (pre-registry
#: devices; the registry's first months) or the last four years (imports) .. the day before the log.
_SINCE_DAYS: Final = (_BASE_DAY - 17 * 365, _BASE_DAY - 40)
_OWNER_SINCE_DAYS: Final = {True: (17_897, _BASE_DAY - 1), False: (_BASE_DAY - 4 * 365, _BASE_DAY - 1)}


@dataclass(frozen=True, slots=True)
class DemoMix:
    """Population proportions of the demo data (fractions of ``devices`` unless said otherwise).

    The device kinds (``non_owner_users`` .. ``blacklisted_devices``) are carved out of the devices; the
    rest are plain owned devices. Travelers, unregistered phones and roamers are extra, off-registry
    entities counted in fractions of ``devices`` too. Row rates are fractions of the attach rows.
    """

    dual_imei: float = 0.60
    idle_devices: float = 0.08
    multi_device_owners: float = 0.06
    owner_second_sim: float = 0.45
    non_owner_users: float = 0.08
    flagged_clones: float = 0.015
    operator_sims: float = 0.4
    simultaneous_clones: float = 0.008
    lend_and_return: float = 0.015
    pre_registry: float = 0.06
    pre_registry_cloned: float = 0.008
    unactivated: float = 0.035
    unactivated_overdue: float = 0.5
    activation_codes: bool = False
    blocked: float = 0.006
    blacklisted_devices: float = 0.003
    blocked_attaching: float = 0.4
    travelers: float = 0.02
    traveler_entries: float = 0.8
    travelers_overdue: float = 0.5
    unregistered: float = 0.006
    blacklisted_unregistered: float = 0.003
    roamers: float = 0.015
    malformed_rows: float = 0.002
    imsi_only_rows: float = 0.03
    subscriber_coverage: float = 0.99
    expired_subscribers: float = 0.005

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if not isinstance(value, bool) and not 0.0 <= value <= 1.0:
                raise ValueError(f"DemoMix.{name} must be within 0..1, got {value!r}")
        if sum(self.device_fractions().values()) > 1.0:
            raise ValueError("DemoMix: the device populations add up to more than all devices")

    def device_fractions(self) -> dict[Kind, float]:
        """Fraction of the devices for each device kind except :attr:`Kind.OWNED` (the remainder)."""
        unact = self.unactivated
        return {
            Kind.NON_OWNER: self.non_owner_users,
            Kind.FLAGGED_CLONE: self.flagged_clones,
            Kind.SIMULTANEOUS_CLONE: self.simultaneous_clones,
            Kind.LEND_AND_RETURN: self.lend_and_return,
            Kind.PRE_REGISTRY: self.pre_registry,
            Kind.PRE_REGISTRY_CLONED: self.pre_registry_cloned,
            Kind.UNACTIVATED_IN_GRACE: unact * (1.0 - self.unactivated_overdue),
            Kind.UNACTIVATED_OVERDUE: unact * self.unactivated_overdue,
            Kind.BLOCKED: self.blocked,
            Kind.BLACKLISTED_DEVICE: self.blacklisted_devices,
        }

    def entity_fractions(self) -> dict[Kind, float]:
        """Fraction of ``devices`` for each off-registry kind."""
        return {
            Kind.TRAVELER_RECENT: self.travelers * (1.0 - self.travelers_overdue),
            Kind.TRAVELER_OVERDUE: self.travelers * self.travelers_overdue,
            Kind.UNREGISTERED: self.unregistered,
            Kind.BLACKLISTED_UNREGISTERED: self.blacklisted_unregistered,
            Kind.ROAMER: self.roamers,
        }


@cache
def time_of_day_table() -> tuple[str, ...]:
    """``"HH:MM:SSZ"`` for every second of a day (sorts like the seconds)."""
    return tuple(f"{h:02d}:{m:02d}:{s:02d}Z" for h in range(24) for m in range(60) for s in range(60))


@cache
def day_text(day: int) -> str:
    """``YYYY-MM-DD`` of a day number (days since 1970-01-01)."""
    return date.fromordinal(_EPOCH_ORDINAL + day).isoformat()


def iso_utc(epoch: int) -> str:
    """ISO 8601 UTC text with ``Z`` of epoch seconds."""
    day, sec = divmod(epoch, DAY)
    return f"{day_text(day)}T{time_of_day_table()[sec]}"


@cache
def midnights(first_day: int, last_day: int) -> tuple[str, ...]:
    """``YYYY-MM-DDT00:00:00Z`` of the days ``first_day .. last_day - 1`` (days since 1970-01-01)."""
    return tuple(f"{day_text(day)}T00:00:00Z" for day in range(first_day, last_day))


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


def _cumulative(weights: Sequence[float]) -> list[float]:
    cum = list(accumulate(weights))
    total = cum[-1]
    out = [c / total for c in cum]
    out[-1] = 1.0
    return out


def _weighted(rand: Callable[[], float], cum: list[float]) -> int:
    return bisect(cum, rand())


def _pick(rand: Callable[[], float], table: Sequence[tuple[str, int]]) -> str:
    return table[_weighted(rand, _cumulative([w for _, w in table]))][0]


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
                self._cums[foreign, dual] = (idx, _cumulative(weights))

    def pick_tac(self, dual: bool, foreign: bool) -> int:
        """A TAC index by market share among the models with one (or two) IMEIs."""
        idx, cum = self._cums[foreign, dual]
        return idx[_weighted(self._rand, cum)]

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
        self._prefix_cum = _cumulative([w for _, _, w in HOME_PREFIXES])
        self._prefix_next = [0] * len(HOME_PREFIXES)
        self._prefix_add = [rng.randrange(10**7) for _ in HOME_PREFIXES]
        self._foreign_cum = _cumulative([n[5] for n in FOREIGN_NETWORKS])
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
        cc, mcc, mncs, prefixes, digits, _ = FOREIGN_NETWORKS[_weighted(rand, self._foreign_cum)]
        number = f"{cc}{prefixes[int(rand() * len(prefixes))]}{int(rand() * 10**digits):0{digits}d}"
        mnc = mncs[int(rand() * len(mncs))]
        imsi = f"{mcc}{mnc}{int(rand() * 10**10):010d}"
        return Person(number, imsi, "", False, False)


@dataclass(slots=True)
class Scene:
    """What the attach generator needs of one entity (see :mod:`eir.demo_attaches` for the use of each).

    ``users`` take turns in time: ``users[i]`` is active from ``marks[i-1]`` (sequential kinds) or are the
    legitimate users (clone kinds, where ``others`` are the forgers / borrower).
    """

    kind: Kind
    imeis: list[str]
    users: list[Person]
    marks: list[int] = field(default_factory=list)
    others: list[Person] = field(default_factory=list)
    #: The SIM in slot 2 (on the second IMEI): the owner's second SIM, an operator SIM, a foreign SIM.
    second: Person | None = None
    start: int = 0
    end: int = PERIOD
    #: The instant of a burst (simultaneous clone) or of a lend (lend-and-return).
    mark: int = 0
    #: An attach must come after ``start`` + 31 days (overdue activation / traveler allowance).
    overdue: bool = False


@dataclass(slots=True)
class WorldStats:
    """Counts of what a :class:`World` wrote."""

    devices: int = 0
    dual_imei_devices: int = 0
    imeis: int = 0
    owned: int = 0
    operator_sims: int = 0
    activation_codes: int = 0
    blacklist_records: int = 0
    traveler_entries: int = 0
    #: Entities built, indexed by :class:`Kind`.
    by_kind: list[int] = field(default_factory=lambda: [0] * len(Kind))

    def populations(self) -> dict[str, int]:
        """Entities built per population label."""
        return {kind.label: self.by_kind[kind] for kind in Kind}


class World:
    """Builds each planned entity's registry records (to ``sink``) and its :class:`Scene`."""

    def __init__(self, seed: int, mix: DemoMix, sink: RecordSink) -> None:
        rng = random.Random(f"eir-demo/world/{seed}")
        self._rand = rng.random
        self._mix = mix
        self._sink = sink
        self.imeis = ImeiAllocator(rng)
        self.people = People(rng, mix, sink)
        self.stats = WorldStats()
        self._owners: list[Person] = []
        self._last_owner: Person | None = None
        self._shops: list[Person] = []
        self._smuggler: Person | None = None
        self._builders: dict[Kind, Callable[[bool], Scene]] = {
            Kind.OWNED: self._owned,
            Kind.NON_OWNER: self._non_owner,
            Kind.FLAGGED_CLONE: self._flagged_clone,
            Kind.SIMULTANEOUS_CLONE: self._simultaneous_clone,
            Kind.LEND_AND_RETURN: self._lend_and_return,
            Kind.PRE_REGISTRY: self._pre_registry,
            Kind.PRE_REGISTRY_CLONED: self._pre_registry_cloned,
            Kind.UNACTIVATED_IN_GRACE: self._unactivated,
            Kind.UNACTIVATED_OVERDUE: self._unactivated,
            Kind.BLOCKED: self._blocked,
            Kind.BLACKLISTED_DEVICE: self._blocked,
            Kind.TRAVELER_RECENT: self._traveler,
            Kind.TRAVELER_OVERDUE: self._traveler,
            Kind.UNREGISTERED: self._unregistered,
            Kind.BLACKLISTED_UNREGISTERED: self._blacklisted_unregistered,
            Kind.ROAMER: self._roamer,
        }
        self._kind = Kind.OWNED

    def write_tacs(self) -> None:
        """Write the ``tac`` records."""
        for t in TACS:
            self._sink({"type": "tac", "tac": t.tac, "brand": t.brand, "model": t.model})

    def build(self, kind: Kind, attaching: bool) -> Scene:
        """Write the registry records of one entity and return its scene.

        ``attaching`` tells the kinds that mostly stay silent (blocked phones) whether this one is used.
        """
        self._kind = kind
        self.stats.by_kind[kind] += 1
        return self._builders[kind](attaching)

    # -- helpers ------------------------------------------------------------------------------------

    def _between(self, lo: int, hi: int) -> int:
        return lo + int(self._rand() * (hi - lo))

    def _phone(self, foreign: bool = False, dual: bool | None = None) -> tuple[int, list[str]]:
        if dual is None:
            dual = self._rand() < self._mix.dual_imei
        tac = self.imeis.pick_tac(dual, foreign)
        return self.imeis.allocate(tac, 2 if dual else 1)

    def _owner(self) -> Person:
        owners = self._owners
        if owners and self._rand() < self._mix.multi_device_owners:
            return owners[int(self._rand() * len(owners))]
        prev = self._last_owner
        # Several SIMs under one national id: a new owner is sometimes the previous owner's other SIM.
        person = self.people.home(prev.national_id if prev and self._rand() < 0.12 else None)
        self._last_owner = person
        if len(owners) < 512:
            owners.append(person)
        else:
            owners[int(self._rand() * 512)] = person
        return person

    def _device(
        self,
        *,
        origin: str = "import",
        owner: Person | None = None,
        cloned: bool = False,
        operator_sim: Person | None = None,
        pre_users: Sequence[Person] = (),
        block: str | None = None,
        dual: bool | None = None,
        foreign: bool = False,
    ) -> list[str]:
        tac, imeis = self._phone(foreign, dual)
        owner_since = None
        if owner is not None:
            days = midnights(*_OWNER_SINCE_DAYS[origin == "pre_registry"])
            owner_since = days[int(self._rand() * len(days))]
            self.stats.owned += 1
        rec: Record = {
            "type": "device",
            "imeis": imeis,
            "model": TACS[tac].model,
            "origin": origin,
            "owner": owner.national if owner else None,
            "owner_since": owner_since,
            "cloned": cloned,
            "operator_sims": {"2": operator_sim.national} if operator_sim else {},
            "pre_registry_users": [p.national for p in pre_users],
            "block": block,
        }
        if owner is None and origin != "pre_registry" and self._mix.activation_codes and self._rand() < 0.7:
            rec["activation_code"] = str(self._between(100_000, 1_000_000))
            self.stats.activation_codes += 1
        self.stats.devices += 1
        self.stats.imeis += len(imeis)
        self.stats.dual_imei_devices += len(imeis) > 1
        self.stats.operator_sims += operator_sim is not None
        self._sink(rec)
        return imeis

    def _blacklist(self, imei15: str, reason: str) -> None:
        self.stats.blacklist_records += 1
        self._sink({"type": "blacklist", "imei": imei15[:14], "reason": reason})

    def _second_sim(self, owner: Person, dual: bool) -> Person | None:
        if dual and self._rand() < self._mix.owner_second_sim:
            return self.people.home(owner.national_id)
        return None

    def _household(self, anchor: Person, same_id: float) -> Person:
        return self.people.home(anchor.national_id if self._rand() < same_id else None)

    # -- registry devices ---------------------------------------------------------------------------

    def _owned(self, attaching: bool) -> Scene:
        owner = self._owner()
        r = self._rand()
        origin = "pre_registry" if r < 0.08 else "traveler" if r < 0.12 else "repair" if r < 0.135 else "import"
        imeis = self._device(origin=origin, owner=owner, foreign=origin == "traveler")
        return Scene(self._kind, imeis, [owner], second=self._second_sim(owner, len(imeis) > 1))

    def _non_owner(self, attaching: bool) -> Scene:
        """A device used by someone else than its owner: a family member, or bought without transfer."""
        owner = self._owner()
        imeis = self._device(owner=owner)
        user = self._household(owner, 0.4)
        if self._rand() < 0.5:  # the owner used it first, then handed it over
            return Scene(self._kind, imeis, [owner, user], marks=[self._between(2 * DAY, PERIOD - 5 * DAY)])
        return Scene(self._kind, imeis, [user])

    def _flagged_clone(self, attaching: bool) -> Scene:
        owner = self._owner()
        dual = self._rand() < self._mix.dual_imei
        operator = None
        if dual and self._rand() < self._mix.operator_sims:
            operator = self._household(owner, 0.6)
        imeis = self._device(owner=owner, cloned=True, operator_sim=operator, dual=dual)
        forgers = [self.people.home() for _ in range(1 + int(self._rand() * 3))]
        return Scene(self._kind, imeis, [owner], others=forgers, second=operator)

    def _simultaneous_clone(self, attaching: bool) -> Scene:
        owner = self._owner()
        imeis = self._device(owner=owner)
        forgers = [self.people.home() for _ in range(1 if self._rand() < 0.8 else 2)]
        burst = self._between(DAY, 40 * DAY)
        return Scene(self._kind, imeis, [owner], others=forgers, mark=burst)

    def _lend_and_return(self, attaching: bool) -> Scene:
        owner = self._owner()
        imeis = self._device(owner=owner)
        borrower = self._household(owner, 0.3)
        return Scene(self._kind, imeis, [owner], others=[borrower], mark=self._between(DAY, PERIOD - DAY))

    def _pre_registry(self, attaching: bool) -> Scene:
        """Unowned pre-registry device: its listed users take turns, sometimes an unlisted one follows."""
        listed = [self.people.home()]
        for _ in range(int(self._rand() * 3)):
            listed.append(self._household(listed[0], 0.5))
        imeis = self._device(origin="pre_registry", pre_users=listed)
        active = listed[-1 - int(self._rand() * len(listed)) :]
        if self._rand() < 0.3:
            active.append(self.people.home())
        marks = sorted(self._between(DAY, PERIOD - DAY) for _ in active[1:])
        return Scene(self._kind, imeis, active, marks=marks)

    def _pre_registry_cloned(self, attaching: bool) -> Scene:
        listed = [self.people.home() for _ in range(1 + (self._rand() < 0.4))]
        imeis = self._device(origin="pre_registry", cloned=True, pre_users=listed)
        others = [self.people.home() for _ in range(1 + (self._rand() < 0.4))]
        return Scene(self._kind, imeis, listed, others=others)

    def _unactivated(self, attaching: bool) -> Scene:
        """Unowned import/traveler/repair device; first used by its buyer (or a shop's test SIM)."""
        origin = _pick(self._rand, _ORIGINS_UNACTIVATED)
        imeis = self._device(origin=origin, foreign=origin == "traveler")
        overdue = self._kind == Kind.UNACTIVATED_OVERDUE
        start = self._between(0, 12 * DAY) if overdue else self._between(21 * DAY, 48 * DAY)
        buyer = self.people.home()
        if self._rand() < 0.25:
            return Scene(self._kind, imeis, [self._shop(), buyer], marks=[start + 1], start=start, overdue=overdue)
        return Scene(self._kind, imeis, [buyer], start=start, overdue=overdue)

    def _shop(self) -> Person:
        if len(self._shops) < 64 and (not self._shops or self._rand() < 0.05):
            self._shops.append(self.people.home())
        return self._shops[int(self._rand() * len(self._shops))]

    def _blocked(self, attaching: bool) -> Scene:
        """A stolen/lost device: ``block`` on the record, or a separate ``blacklist`` record."""
        owner = self._owner()
        reason = _pick(self._rand, BLOCK_REASONS)
        if self._kind == Kind.BLOCKED:
            imeis = self._device(owner=owner, block=reason)
        else:
            imeis = self._device(owner=owner)
            for imei in imeis:
                self._blacklist(imei, reason)
        return self._thieves(imeis, attaching)

    def _thieves(self, imeis: list[str], attaching: bool) -> Scene:
        if not attaching:
            return Scene(self._kind, imeis, [])
        thieves = [self.people.home() for _ in range(1 + (self._rand() < 0.3))]
        marks = [self._between(5 * DAY, PERIOD - DAY)] if len(thieves) > 1 else []
        return Scene(self._kind, imeis, thieves, marks=marks, start=self._between(0, PERIOD - 5 * DAY))

    # -- off-registry actors ------------------------------------------------------------------------

    def _traveler(self, attaching: bool) -> Scene:
        """A resident back from abroad with a phone bought there (not in the registry)."""
        _, imeis = self._phone(foreign=True)
        overdue = self._kind == Kind.TRAVELER_OVERDUE
        start = self._between(0, 12 * DAY) if overdue else self._between(21 * DAY, 48 * DAY)
        person = self.people.home()
        if self._rand() < self._mix.traveler_entries:
            entered = iso_utc(BASE_EPOCH + start - self._between(3600, 3 * DAY))
            self.stats.traveler_entries += 1
            if self._rand() < 0.85:
                self._sink({"type": "traveler_entry", "msisdn": person.e164, "entered": entered})
            else:
                self._sink({"type": "traveler_entry", "national_id": person.national_id, "entered": entered})
        users = [person]
        marks: list[int] = []
        if self._rand() < 0.1:  # a family member takes the phone later
            users.append(self._household(person, 0.5))
            marks.append(self._between(start + DAY, PERIOD))
        second = self.people.foreign() if len(imeis) > 1 and self._rand() < 0.2 else None
        return Scene(self._kind, imeis, users, marks=marks, second=second, start=start, overdue=overdue)

    def _unregistered(self, attaching: bool) -> Scene:
        """A smuggled phone; some smugglers try one phone per SIM under the same national id."""
        _, imeis = self._phone()
        prev = self._smuggler
        person = self.people.home(prev.national_id if prev and self._rand() < 0.35 else None)
        self._smuggler = person
        return Scene(self._kind, imeis, [person], start=self._between(0, PERIOD - 3 * DAY))

    def _blacklisted_unregistered(self, attaching: bool) -> Scene:
        _, imeis = self._phone()
        reason = _pick(self._rand, BLACKLIST_REASONS)
        for imei in imeis:
            self._blacklist(imei, reason)
        return self._thieves(imeis, attaching)

    def _roamer(self, attaching: bool) -> Scene:
        """A visitor on a foreign SIM; sometimes with a local tourist SIM in slot 2."""
        _, imeis = self._phone(foreign=True)
        start = self._between(-3 * DAY, PERIOD - DAY)
        end = min(PERIOD, start + self._between(4 * DAY, 21 * DAY))
        second = self.people.home() if len(imeis) > 1 and self._rand() < 0.15 else None
        return Scene(self._kind, imeis, [self.people.foreign()], second=second, start=max(0, start), end=end)
