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

from eir.demo_registry import (
    DAY,
    PERIOD,
    PERIOD_DAYS,
    TACS,
    DemoMix,
    Kind,
    Person,
    Scene,
    day_text,
    time_of_day_table,
)
from eir.identifiers import luhn_check_digit

CSV_HEADER: Final = "time,imei,msisdn,slot,imsi\n"
#: Asia/Tehran is UTC+03:30 all year (no daylight saving since 2022).
TEHRAN_OFFSET: Final = 12_600
_BASE_DAY: Final = 1_790_812_800 // DAY
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
        self._lines: list[list[str]] = [[] for _ in range(PERIOD_DAYS)]
        self._dir = spill_dir
        self._files: dict[int, IO[str]] = {}
        self._flush_at = flush_at
        self._tod = time_of_day_table()
        self.rows = 0

    def add(self, t: int, imei: str, msisdn: str, slot: str, imsi: str) -> None:
        """Add one row at ``t`` seconds after the period start."""
        if not 0 <= t < PERIOD:
            raise ValueError(f"attach time outside the demo period: {t}")
        day, sec = divmod(t, DAY)
        bucket = self._lines[day]
        bucket.append(f"{self._tod[sec]},{imei},{msisdn},{slot},{imsi}\n")
        self.rows += 1
        if self._dir is not None and len(bucket) >= self._flush_at:
            self._spill(day)

    def _spill(self, day: int) -> None:
        assert self._dir is not None
        f = self._files.get(day)
        if f is None:
            f = self._files[day] = open(self._dir / f"day-{day:02d}.part", "w", encoding="ascii", newline="")
        f.write("".join(self._lines[day]))
        self._lines[day] = []

    def _day_lines(self, day: int) -> list[str]:
        lines = self._lines[day]
        self._lines[day] = []
        f = self._files.pop(day, None)
        if f is not None:
            f.close()
            path = Path(f.name)
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

    def close(self) -> None:
        """Close (and leave for the caller to delete) any spill file still open."""
        for f in self._files.values():
            f.close()
        self._files.clear()


class Traffic:
    """Generates the attach rows of scenes, with the identifier variety of real attach logs."""

    def __init__(self, seed: int, mix: DemoMix, buckets: AttachBuckets) -> None:
        rng = random.Random(f"eir-demo/traffic/{seed}")
        self._rand = rng.random
        self._add = buckets.add
        self._imsi_only = mix.imsi_only_rows
        total = sum(HOUR_WEIGHTS)
        self._hour_cum = [sum(HOUR_WEIGHTS[: h + 1]) / total for h in range(24)]
        self._hour_cum[-1] = 1.0
        self.rows_by_population: dict[str, int] = {k.label: 0 for k in Kind}
        self.rows_by_population["malformed"] = 0
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
        self.rows_by_population[scene.kind.label] += count

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
            day = first + int(rand() * days)
            if day % 7 == 1 and rand() < 0.2:  # local day 0 is a Thursday: Fridays are quieter
                continue
            t = day * DAY + bisect(cum, rand()) * 3600 + int(rand() * 3600) - TEHRAN_OFFSET
            if lo <= t < hi:
                return t
        return lo + int(rand() * (hi - lo))

    def spread(self, n: int, lo: int, hi: int) -> list[int]:
        """``n`` sorted diurnal instants in ``[lo, hi)``."""
        at = self.at
        return sorted([at(lo, hi) for _ in range(n)])

    # -- identifiers ---------------------------------------------------------------------------------

    def _imei(self, imei15: str) -> str:
        r = self._rand()
        if r < 0.84:
            return imei15
        if r < 0.89:
            return imei15[:14]
        sv = f"{int(imei15[11:14]) % 37 + 1:02d}"  # a device's software version number, stable
        if r < 0.955:
            return imei15[:14] + sv
        if r < 0.985:
            return "imei-" + imei15
        return "imeisv-" + imei15[:14] + sv

    def emit(self, t: int, imei15: str, person: Person, slot: str) -> None:
        """One row of ``person`` on ``imei15``; the identifiers in one of their real-world spellings."""
        rand = self._rand
        r = rand()
        if person.home:
            if person.has_record and r < self._imsi_only:
                msisdn, imsi = "", person.imsi
                self.imsi_only_rows += 1
            else:
                msisdn, imsi = _home_spelling(rand(), person.nsn), ""
        elif r < 0.1:
            msisdn, imsi = "", person.imsi
            self.imsi_only_rows += 1
        else:
            msisdn = _foreign_spelling(rand(), person.nsn)
            imsi = person.imsi if r < 0.55 else ""
        self._add(t, self._imei(imei15), msisdn, slot, imsi)

    def _slot1(self, scene: Scene) -> str:
        if len(scene.imeis) > 1:
            return "1"
        return "" if self._rand() < 0.5 else "1"

    # -- scenarios -----------------------------------------------------------------------------------

    def _owned(self, scene: Scene, n: int) -> None:
        """The owner on slot 1; their second SIM (if any) on slot 2 with the second IMEI."""
        rand = self._rand
        owner, second, imei1 = scene.users[0], scene.second, scene.imeis[0]
        for t in self.spread(n, 0, PERIOD):
            if second is not None and rand() < 0.35:
                self.emit(t, scene.imeis[1], second, "2")
            else:
                self.emit(t, imei1, owner, self._slot1(scene))

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
        for t in self._times(scene, n):
            if second is not None and rand() < 0.3:
                self.emit(t, scene.imeis[1], second, "2")
            else:
                self.emit(t, imei1, users[bisect(marks, t)], self._slot1(scene))

    def _mixed(self, scene: Scene, n: int) -> None:
        """A registry-flagged clone: legitimate users and forgers all along; forgers' cheap clones report
        the first IMEI on either slot."""
        rand = self._rand
        legit, forgers, second, imei1 = scene.users, scene.others, scene.second, scene.imeis[0]
        dual = len(scene.imeis) > 1
        for t in self.spread(n, 0, PERIOD):
            r = rand()
            if second is not None and r < 0.2:
                self.emit(t, scene.imeis[1], second, "2")
            elif r < 0.55:
                self.emit(t, imei1, legit[int(rand() * len(legit))], self._slot1(scene))
            else:
                slot = "2" if dual and rand() < 0.3 else self._slot1(scene)
                self.emit(t, imei1, forgers[int(rand() * len(forgers))], slot)

    def _simultaneous_clone(self, scene: Scene, n: int) -> None:
        """Owner alone, then a burst A B A B ... within 20 hours (two switch-backs), then both."""
        rand = self._rand
        owner, forgers, imei1 = scene.users[0], scene.others, scene.imeis[0]
        burst_n = min(n, 4 + int(rand() * 3))
        offsets = sorted(int(rand() * 20 * 3600) for _ in range(burst_n))
        burst = [scene.mark + off + i for i, off in enumerate(offsets)]
        for i, t in enumerate(burst):
            self.emit(t, imei1, owner if i % 2 == 0 else forgers[0], self._slot1(scene))
        rest = n - burst_n
        before = round(rest * scene.mark / PERIOD)
        for t in self.spread(before, 0, scene.mark - 3600):
            self.emit(t, imei1, owner, self._slot1(scene))
        for t in self.spread(rest - before, burst[-1] + 60, PERIOD):
            user = owner if rand() < 0.45 else forgers[int(rand() * len(forgers))]
            self.emit(t, imei1, user, self._slot1(scene))

    def _lend_and_return(self, scene: Scene, n: int) -> None:
        """The owner lends the phone once for a few hours (A B A: one switch-back, not a clone)."""
        owner, imei1 = scene.users[0], scene.imeis[0]
        if n >= 3:
            back = 1200 + int(self._rand() * 5 * 3600)
            self.emit(scene.mark - 1200 - int(self._rand() * 5 * 3600), imei1, owner, self._slot1(scene))
            self.emit(scene.mark, imei1, scene.others[0], self._slot1(scene))
            self.emit(scene.mark + back, imei1, owner, self._slot1(scene))
            n -= 3
        for t in self.spread(n, 0, PERIOD):
            self.emit(t, imei1, owner, self._slot1(scene))

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
            self._add(self.at(0, PERIOD), imei, _home_spelling(rand(), person.nsn), "", "")
        self.rows_by_population["malformed"] += n


def _home_spelling(r: float, nsn: str) -> str:
    if r < 0.60:
        return "98" + nsn
    if r < 0.75:
        return "0" + nsn
    if r < 0.80:
        return nsn
    if r < 0.92:
        return "+98" + nsn
    return "0098" + nsn


def _foreign_spelling(r: float, e164: str) -> str:
    if r < 0.45:
        return "+" + e164
    if r < 0.85:
        return e164
    return "00" + e164
