"""The attach-log side of the demo data: diurnal times, identifier variety, per-scene traffic, day buckets.

See :mod:`eir.demo` for the populations. Everything here draws from its own ``random.Random`` (the
*traffic* stream). Rows go to :class:`AttachBuckets`, one bucket per UTC day, each sorted on output: an
external sort that keeps memory bounded when the buckets spill to files.
"""

from __future__ import annotations

import random
from bisect import bisect
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Final

from eir.demo_plan import BASE_EPOCH, DAY, PERIOD, PERIOD_DAYS, DemoMix, Kind, day_text, time_of_day_table
from eir.demo_registry import Scene
from eir.demo_tacs import TACS, Person
from eir.identifiers import luhn_check_digit

CSV_HEADER: Final = "time,imei,msisdn,slot,imsi\n"
#: Asia/Tehran is UTC+03:30 all year (no daylight saving since 2022).
TEHRAN_OFFSET: Final = 12_600
_BASE_DAY: Final = BASE_EPOCH // DAY
#: Relative attach traffic per hour of the day, Tehran time: evening peak, a trough at 3-5 am.
HOUR_WEIGHTS: Final = (
    4.0, 2.5, 1.5, 0.8, 0.7, 1.0, 2.0, 4.0, 5.5, 6.0, 6.0, 6.0,
    5.5, 5.5, 5.0, 5.0, 5.5, 6.0, 7.0, 8.0, 8.5, 8.5, 7.5, 6.0,
)  # fmt: skip
#: Kinds whose first attach is exactly at the scene's start (it starts an activation grace / allowance).
_ANCHORED: Final = frozenset(
    {Kind.UNACTIVATED_IN_GRACE, Kind.UNACTIVATED_OVERDUE, Kind.TRAVELER_RECENT, Kind.TRAVELER_OVERDUE}
)
_LETTERS: Final = "OIAXBSo"


class AttachBuckets:
    """Attach rows bucketed by UTC day of the period, in memory or spilled to ``spill_dir``.

    A bucket line is ``HH:MM:SSZ,imei,msisdn,slot,imsi``: sorting the lines of a day sorts them by time.
    """

    def __init__(self, spill_dir: Path | None = None, flush_at: int = 8192) -> None:
        #: Pending lines per day (a producer may append to ``days[d]`` and call :meth:`spill` itself).
        self.days: list[list[str]] = [[] for _ in range(PERIOD_DAYS)]
        #: ``"HH:MM:SSZ,"`` per second of the day.
        self.time_prefix = tuple(tod + "," for tod in time_of_day_table())
        #: Spill a day's lines to disk from this many on (never without ``spill_dir``).
        self.flush_at = flush_at if spill_dir is not None else 1 << 62
        self._dir = spill_dir
        self._spilled_days: set[int] = set()

    def put(self, t: int, rest: str) -> None:
        """Add one row at ``t`` seconds after the period start; ``rest`` is ``imei,msisdn,slot,imsi\n``."""
        if not 0 <= t < PERIOD:
            raise ValueError(f"attach time outside the demo period: {t}")
        day, sec = divmod(t, DAY)
        bucket = self.days[day]
        bucket.append(self.time_prefix[sec] + rest)
        if len(bucket) >= self.flush_at:
            self.spill(day)

    def spill(self, day: int) -> None:
        """Append a day's pending lines to its spill file."""
        with open(self._path(day), "a", encoding="ascii", newline="") as f:
            f.write("".join(self.days[day]))
        self._spilled_days.add(day)
        self.days[day] = []

    def _path(self, day: int) -> Path:
        assert self._dir is not None
        return self._dir / f"attaches-day-{day:02d}.part"

    def _day_lines(self, day: int) -> list[str]:
        lines = self.days[day]
        self.days[day] = []
        if day in self._spilled_days:
            self._spilled_days.discard(day)
            path = self._path(day)
            with open(path, encoding="ascii", newline="") as spilled:
                lines.extend(spilled)
            path.unlink()
        lines.sort()
        return lines

    def iter_days(self) -> Iterator[tuple[str, list[str]]]:
        """``("YYYY-MM-DDT", sorted bucket lines)`` per day, emptying the buckets."""
        for day in range(PERIOD_DAYS):
            yield f"{day_text(_BASE_DAY + day)}T", self._day_lines(day)

    def write_csv(self, out: IO[str]) -> None:
        """Write the header and every row, sorted by time, emptying the buckets."""
        out.write(CSV_HEADER)
        for prefix, lines in self.iter_days():
            if lines:
                out.write(prefix + prefix.join(lines))


class Traffic:
    """Generates the attach rows of scenes, with the identifier variety of real attach logs."""

    def __init__(self, seed: int, mix: DemoMix, buckets: AttachBuckets) -> None:
        rng = random.Random(f"eir-demo/traffic/{seed}")
        self._rand = rng.random
        self._put = buckets.put
        self._days = buckets.days
        self._time_prefix = buckets.time_prefix
        self._flush_at = buckets.flush_at
        self._spill = buckets.spill
        self._imsi_only = mix.imsi_only_rows
        total = sum(HOUR_WEIGHTS)
        self._hour_cum = [sum(HOUR_WEIGHTS[: h + 1]) / total for h in range(24)]
        self._hour_cum[-1] = 1.0
        #: Rows generated, indexed by :class:`Kind`.
        self.rows_by_kind = [0] * len(Kind)
        self.malformed_rows = 0
        self.imsi_only_rows = 0
        self._scenarios: dict[Kind, Callable[[Scene, int], None]] = {
            Kind.OWNED: self._owned,
            Kind.FLAGGED_CLONE: self._mixed,
            Kind.PRE_REGISTRY_CLONED: self._mixed,
            Kind.SIMULTANEOUS_CLONE: self._simultaneous_clone,
            Kind.LEND_AND_RETURN: self._lend_and_return,
        }

    def generate(self, scene: Scene, count: int) -> None:
        """Exactly ``count`` attach rows of one scene."""
        if count <= 0:
            return
        if not scene.users:
            raise ValueError(f"{scene.kind.label} scene without users cannot attach")
        self._scenarios.get(scene.kind, self._sequential)(scene, count)
        self.rows_by_kind[scene.kind] += count

    def rows_by_population(self) -> dict[str, int]:
        """Rows generated per population label, and ``malformed``."""
        return {**{kind.label: self.rows_by_kind[kind] for kind in Kind}, "malformed": self.malformed_rows}

    # -- time ----------------------------------------------------------------------------------------

    def at(self, lo: int, hi: int) -> int:
        """An instant in ``[lo, hi)`` following the diurnal pattern (uniform for short intervals)."""
        rand = self._rand
        if hi - lo < 6 * 3600:
            return lo + int(rand() * (hi - lo))
        first = (lo + TEHRAN_OFFSET) // DAY
        days = (hi - 1 + TEHRAN_OFFSET) // DAY - first + 1
        cum = self._hour_cum
        for _ in range(8):
            u = rand() * days
            day = int(u)
            if (first + day) % 7 == 1 and rand() < 0.2:  # local day 0 is a Thursday: Fridays are quieter
                continue
            t = (first + day) * DAY + bisect(cum, u - day) * 3600 + int(rand() * 3600) - TEHRAN_OFFSET
            if lo <= t < hi:
                return t
        return lo + int(rand() * (hi - lo))

    def spread(self, n: int, lo: int, hi: int) -> list[int]:
        """``n`` sorted diurnal instants in ``[lo, hi)`` (:meth:`at`, inlined for speed)."""
        if hi - lo < 6 * 3600:
            return sorted([self.at(lo, hi) for _ in range(n)])
        rand, cum, at = self._rand, self._hour_cum, self.at
        first = (lo + TEHRAN_OFFSET) // DAY
        days = (hi - 1 + TEHRAN_OFFSET) // DAY - first + 1
        base = first * DAY - TEHRAN_OFFSET
        out = []
        for _ in range(n):
            u = rand() * days
            day = int(u)
            t = base + day * DAY + bisect(cum, u - day) * 3600 + int(rand() * 3600)
            if lo <= t < hi and ((first + day) % 7 != 1 or rand() >= 0.2):
                out.append(t)
            else:
                out.append(at(lo, hi))
        out.sort()
        return out

    # -- identifiers ---------------------------------------------------------------------------------

    def _imei(self, r: float, imei15: str) -> str:
        """The IMEI as some network element spells it (``r`` uniform in 0.84 .. 1)."""
        if r < 0.89:
            return imei15[:14]
        sv = str(int(imei15[11:14]) % 37 + 1).zfill(2)  # a device's software version number, stable
        if r < 0.955:
            return imei15[:14] + sv
        if r < 0.985:
            return "imei-" + imei15
        return "imeisv-" + imei15[:14] + sv

    def emit(self, t: int, imei15: str, person: Person, slot: str) -> None:
        """One row of ``person`` on ``imei15``; the identifiers in one of their real-world spellings.

        ``slot`` empty means slot 1 of a single-IMEI device (written as ``1`` or left empty).
        """
        if not 0 <= t < PERIOD:
            raise ValueError(f"attach time outside the demo period: {t}")
        rand = self._rand
        r = rand()
        imei = imei15 if r < 0.84 else self._imei(r, imei15)
        if not slot and r < 0.42:  # single-SIM devices: some network elements say slot 1, some nothing
            slot = "1"
        r = rand()
        if person.home:
            if r < self._imsi_only and person.has_record:
                msisdn, imsi = "", person.imsi
                self.imsi_only_rows += 1
            else:
                msisdn, imsi = _home_spelling(r, person.nsn), ""
        elif r < 0.1:
            msisdn, imsi = "", person.imsi
            self.imsi_only_rows += 1
        else:
            msisdn, imsi = _foreign_spelling(rand(), person.nsn), person.imsi if r < 0.55 else ""
        day, sec = divmod(t, DAY)
        bucket = self._days[day]
        bucket.append(f"{self._time_prefix[sec]}{imei},{msisdn},{slot},{imsi}\n")
        if len(bucket) >= self._flush_at:
            self._spill(day)

    # -- scenarios -----------------------------------------------------------------------------------

    def _owned(self, scene: Scene, n: int) -> None:
        """The owner on slot 1; their second SIM (if any) on slot 2 with the second IMEI."""
        rand = self._rand
        owner, second, imei1 = scene.users[0], scene.second, scene.imeis[0]
        s1 = _slot1(scene)
        for t in self.spread(n, 0, PERIOD):
            if second is not None and rand() < 0.35:
                self.emit(t, scene.imeis[1], second, "2")
            else:
                self.emit(t, imei1, owner, s1)

    def _times(self, scene: Scene, n: int) -> list[int]:
        lo, hi = scene.start, scene.end
        if scene.kind not in _ANCHORED:
            return self.spread(n, lo, hi)
        if scene.overdue and n >= 2:  # one attach well after the 30-day grace/allowance
            late = self.at(min(lo + 31 * DAY, hi - 1), hi)
            return [lo, *sorted([*self.spread(n - 2, lo + 1, hi), late])]
        return [lo, *self.spread(n - 1, lo + 1, hi)]

    def _sequential(self, scene: Scene, n: int) -> None:
        """Users take turns (``users[i]`` from ``marks[i-1]`` on); a foreign/second SIM on slot 2."""
        rand = self._rand
        users, marks, second, imei1 = scene.users, scene.marks, scene.second, scene.imeis[0]
        s1 = _slot1(scene)
        for t in self._times(scene, n):
            if second is not None and rand() < 0.3:
                self.emit(t, scene.imeis[1], second, "2")
            else:
                self.emit(t, imei1, users[bisect(marks, t)], s1)

    def _mixed(self, scene: Scene, n: int) -> None:
        """A registry-flagged clone: legitimate users and forgers all along; forgers' cheap clones report
        the first IMEI on either slot."""
        rand = self._rand
        legit, forgers, second, imei1 = scene.users, scene.others, scene.second, scene.imeis[0]
        s1 = _slot1(scene)
        dual = len(scene.imeis) > 1
        for t in self.spread(n, 0, PERIOD):
            r = rand()
            if second is not None and r < 0.2:
                self.emit(t, scene.imeis[1], second, "2")
            elif r < 0.55:
                self.emit(t, imei1, legit[int(rand() * len(legit))], s1)
            else:
                slot = "2" if dual and rand() < 0.3 else s1
                self.emit(t, imei1, forgers[int(rand() * len(forgers))], slot)

    def _simultaneous_clone(self, scene: Scene, n: int) -> None:
        """Owner alone, then a burst A B A B ... within 20 hours (two switch-backs), then both."""
        rand = self._rand
        owner, forgers, imei1 = scene.users[0], scene.others, scene.imeis[0]
        s1 = _slot1(scene)
        burst_n = min(n, 4 + int(rand() * 3))
        offsets = sorted(int(rand() * 20 * 3600) for _ in range(burst_n))
        burst = [scene.mark + off + i for i, off in enumerate(offsets)]
        for i, t in enumerate(burst):
            self.emit(t, imei1, owner if i % 2 == 0 else forgers[0], s1)
        rest = n - burst_n
        before = round(rest * scene.mark / PERIOD)
        for t in self.spread(before, 0, scene.mark - 3600):
            self.emit(t, imei1, owner, s1)
        for t in self.spread(rest - before, burst[-1] + 60, PERIOD):
            user = owner if rand() < 0.45 else forgers[int(rand() * len(forgers))]
            self.emit(t, imei1, user, s1)

    def _lend_and_return(self, scene: Scene, n: int) -> None:
        """The owner lends the phone once for a few hours (A B A: one switch-back, not a clone)."""
        owner, imei1 = scene.users[0], scene.imeis[0]
        s1 = _slot1(scene)
        if n >= 3:
            back = 1200 + int(self._rand() * 5 * 3600)
            self.emit(scene.mark - 1200 - int(self._rand() * 5 * 3600), imei1, owner, s1)
            self.emit(scene.mark, imei1, scene.others[0], s1)
            self.emit(scene.mark + back, imei1, owner, s1)
            n -= 3
        for t in self.spread(n, 0, PERIOD):
            self.emit(t, imei1, owner, s1)

    def malformed(self, n: int, people: list[Person]) -> None:
        """``n`` rows with a malformed IMEI (bad Luhn, short, all zeros, letters, too long, empty)."""
        rand = self._rand
        for _ in range(n):
            core = f"{TACS[int(rand() * len(TACS))].tac}{int(rand() * 10**6):06d}"
            r = rand()
            if r < 0.4:
                imei = core + str((luhn_check_digit(core) + 1 + int(rand() * 9)) % 10)
            elif r < 0.6:
                imei = core[: 8 + int(rand() * 6)]
            elif r < 0.75:
                imei = "0" * (14 if rand() < 0.3 else 15)
            elif r < 0.9:
                pos = int(rand() * 14)
                imei = core[:pos] + _LETTERS[int(rand() * len(_LETTERS))] + core[pos + 1 :] + "0"
            else:
                imei = "" if rand() < 0.3 else core + f"{int(rand() * 1000):03d}"
            person = people[int(rand() * len(people))]
            self._put(self.at(0, PERIOD), f"{imei},{_home_spelling(rand(), person.nsn)},,\n")
        self.malformed_rows += n


def _slot1(scene: Scene) -> str:
    """Slot text of slot 1: ``1`` on dual-IMEI devices, empty (written either way) on single ones."""
    return "1" if len(scene.imeis) > 1 else ""


def _home_spelling(r: float, nsn: str) -> str:
    if r < 0.62:
        return "98" + nsn
    if r < 0.77:
        return "0" + nsn
    if r < 0.82:
        return nsn
    if r < 0.93:
        return "+98" + nsn
    return "0098" + nsn


def _foreign_spelling(r: float, e164: str) -> str:
    if r < 0.45:
        return "+" + e164
    if r < 0.85:
        return e164
    return "00" + e164
