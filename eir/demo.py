"""Demo data: a realistic registry (``registry.jsonl``) and attach log (``attaches.csv``) for a seed.

``eir demo-data --devices N --attaches M --seed S -o DIR`` (and :func:`write_demo`) writes

* ``DIR/registry.jsonl``: SPEC §3 records grouped by type: ``tac`` (the demo TAC table, real-looking
  8-digit TACs with brand and model), ``device``, ``blacklist``, ``subscriber``, ``traveler_entry``;
* ``DIR/attaches.csv``: exactly M rows ``time,imei,msisdn,slot,imsi`` sorted by time, ISO 8601 UTC
  with ``Z``, over 2026-10-01T00:00Z .. 2026-11-20T00:00Z with a diurnal pattern (Tehran time: evening
  peak, a trough at 3-5 am, quieter Fridays).

The same seed gives the same bytes (``random.Random`` streams seeded from the seed, a fixed base epoch,
never the clock); the registry does not depend on M. Memory stays bounded (~140 MB at 1M devices):
records stream to the file (types written after ``device`` wait in part files), attach rows go to per-day
buckets that spill to files and are sorted one day at a time. 1M devices / 5M rows: ~40 s of CPU.

Populations (:class:`DemoMix` defaults; fractions of the devices unless said otherwise). Expected
outcomes are under the default rule set:

==========================  =======  ==============================================================
population                  default  what it is / what the engine should answer
==========================  =======  ==============================================================
dual_imei                   60 %     devices with 2 IMEIs (consecutive serials, same TAC)
owned (the rest)            ~77 %    owner on slot 1, the owner's second SIM on slot 2 (45 % of
                                     dual devices): ALLOW OWNER / ALLOW REGISTERED; 8 % never attach,
                                     6 % of owners own several devices; origin import, 8 %
                                     pre_registry, 4 % traveler, 1.5 % repair
non_owner_users             8 %      owned, used by a family member or a buyer without transfer,
                                     sometimes after the owner: ALLOW REGISTERED (strict: OWNERSHIP_*)
flagged_clones              1.5 %    ``cloned: true``; owner + 1-3 forgers all along (forgers' clones
                                     report IMEI 1 on either slot), operator SIM on slot 2 for 40 %:
                                     ALLOW OWNER / OPERATOR_SIM, WARN CLONE_GRACE, DENY CLONE_BLOCKED
simultaneous_clones         0.8 %    not flagged: owner alone, then A B A B... within 20 h (switch-back
                                     detection fires), then both: CLONE_DETECTED, CLONE_GRACE
lend_and_return             1.5 %    owner lends the phone once for hours (A B A): must NOT be detected
pre_registry                6 %      unowned, 1-3 ``pre_registry_users`` taking turns, sometimes an
                                     unlisted user after them: ALLOW REGISTERED
pre_registry_cloned         0.8 %    same, ``cloned: true``, with forgers: PRE_REGISTRY_USER, CLONE_*
unactivated                 3.5 %    owner null, origin import/traveler/repair; half first attach in
                                     days 0-12 and keep attaching past 30 days (WARN
                                     ACTIVATION_GRACE then DENY NOT_ACTIVATED), half start after day
                                     21 (WARN only); a shop's test SIM attaches first for 25 %;
                                     ``activation_code`` only with ``activation_codes`` (--with-codes)
blocked / blacklisted_dev.  0.6/0.3% ``block`` on the device / a ``blacklist`` record for its IMEIs;
                                     40 % used by a thief: DENY BLACKLISTED
travelers                   2 %      residents back with a phone bought abroad (not in the registry);
                                     80 % have a ``traveler_entry`` (by msisdn, or national_id); half
                                     arrive in days 0-12 and stay past 30 days (WARN
                                     TRAVELER_ALLOWANCE then DENY ALLOWANCE_EXPIRED); some with their
                                     foreign SIM on slot 2 or a family member later
unregistered                0.6 %    smuggled phones, no entry; 35 % share the previous smuggler's
                                     national id (quota used: DENY UNREGISTERED)
blacklisted_unregistered    0.3 %    ``blacklist`` records of IMEIs outside the registry, 40 % attach
roamers                     1.5 %    foreign MSISDN/IMSI (90/286, 964/418, 93/412, 971/424, 44/234,
                                     49/262), visits of 4-21 days: ALLOW ROAMER_EXEMPT; some with a
                                     local tourist SIM on slot 2
malformed_rows              0.2 %    of rows: bad Luhn, short, all zeros, letters, too long, empty
imsi_only_rows              3 %      of rows: empty msisdn, the subscriber's IMSI instead
subscriber_coverage         99 %     home MSISDNs with a ``subscriber`` record; 0.5 % ``expired``
==========================  =======  ==============================================================

Identifier spellings in the attach log: IMEIs 15-digit (84 %), 14-digit, 16-digit IMEISV, ``imei-`` /
``imeisv-`` prefixed; home MSISDNs as ``98…`` (~60 %), ``09…``, ``9…``, ``+98…``, ``0098…``; empty slot
on some single-SIM rows. National ids are valid 10-digit codes (leading zeros possible), shared by a
person's SIMs. Attach rows are shared out in proportion to per-entity weights (about 4 per device), so a
scenario needs M to be at least ~3 x N to play out fully (a burst needs 4 rows, a lend 3).

Replayed under ``rules/default.toml`` (100k devices, 500k rows) this gives ALLOW ~85 %, WARN ~11 %,
DENY ~4 %, every reason of SPEC §4.2 except the strict-only OWNERSHIP_* ones, and exactly one
CLONE_DETECTED per simultaneous clone; ``rules/strict.toml`` turns the owners' second SIMs, family
members and buyers without transfer into OWNERSHIP_GRACE / OWNERSHIP_BLOCKED.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import tempfile
from array import array
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import IO, Final, NamedTuple

import orjson

from eir.demo_attaches import AttachBuckets, Traffic
from eir.demo_plan import DemoMix, Kind, Record, RecordSink
from eir.demo_registry import World

__all__ = [
    "REGISTRY_ORDER",
    "AttachRow",
    "DemoMix",
    "DemoSummary",
    "Kind",
    "generate_attaches",
    "generate_registry",
    "plan_counts",
    "write_demo",
]

#: Record types in the order ``registry.jsonl`` groups them.
REGISTRY_ORDER: Final = ("tac", "device", "blacklist", "subscriber", "traveler_entry")
_KINDS: Final = tuple(Kind)
#: Relative attach weight of an entity (owned/shared: drawn from a heavy-tailed distribution).
_WEIGHTS: Final = {
    Kind.FLAGGED_CLONE: 12,
    Kind.SIMULTANEOUS_CLONE: 12,
    Kind.LEND_AND_RETURN: 6,
    Kind.PRE_REGISTRY: 4,
    Kind.PRE_REGISTRY_CLONED: 10,
    Kind.UNACTIVATED_IN_GRACE: 4,
    Kind.UNACTIVATED_OVERDUE: 8,
    Kind.BLOCKED: 4,
    Kind.BLACKLISTED_DEVICE: 4,
    Kind.TRAVELER_RECENT: 6,
    Kind.TRAVELER_OVERDUE: 10,
    Kind.UNREGISTERED: 5,
    Kind.BLACKLISTED_UNREGISTERED: 3,
    Kind.ROAMER: 4,
}
_SILENT_MOSTLY: Final = frozenset({Kind.BLOCKED, Kind.BLACKLISTED_DEVICE, Kind.BLACKLISTED_UNREGISTERED})


@dataclass(frozen=True, slots=True)
class DemoSummary:
    """What :func:`write_demo` wrote: paths and the size of every population."""

    registry_path: Path
    attaches_path: Path
    seed: int
    devices: int
    dual_imei_devices: int
    imeis: int
    owned_devices: int
    operator_sims: int
    activation_codes: int
    tac_records: int
    subscribers: int
    expired_subscribers: int
    blacklist_records: int
    traveler_entries: int
    attach_rows: int
    malformed_rows: int
    imsi_only_rows: int
    #: Entities per population (:attr:`Kind.label`).
    populations: Mapping[str, int]
    #: Attach rows per population (plus ``malformed``).
    rows_by_population: Mapping[str, int]

    def as_dict(self) -> dict[str, object]:
        """A JSON-friendly dict (paths as strings)."""
        out: dict[str, object] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            out[name] = str(value) if isinstance(value, Path) else dict(value) if name in _MAPS else value
        return out


_MAPS: Final = frozenset({"populations", "rows_by_population"})


class AttachRow(NamedTuple):
    """One attach-log row, as the CSV has it (all text; empty strings for absent fields)."""

    time: str
    imei: str
    msisdn: str
    slot: str
    imsi: str


def plan_counts(devices: int, mix: DemoMix) -> dict[Kind, int]:
    """How many entities of each kind ``devices`` devices make (devices add up to ``devices``)."""
    counts = {kind: round(frac * devices) for kind, frac in mix.device_fractions().items()}
    carved = sum(counts.values())
    if carved > devices:  # rounding up of many small populations on a tiny registry
        for kind in sorted(counts, key=counts.__getitem__, reverse=True)[: carved - devices]:
            counts[kind] -= 1
    counts[Kind.OWNED] = devices - sum(counts.values())
    counts.update({kind: round(frac * devices) for kind, frac in mix.entity_fractions().items()})
    return dict(sorted(counts.items()))


def _plan(devices: int, seed: int, mix: DemoMix) -> tuple[array[int], array[int]]:
    """Entity kinds in a shuffled order and their attach weights (0: never attaches)."""
    rng = random.Random(f"eir-demo/plan/{seed}")
    kinds: array[int] = array("B")
    for kind, n in plan_counts(devices, mix).items():
        kinds.frombytes(bytes([kind]) * n)
    rng.shuffle(kinds)
    rand = rng.random
    weights: array[int] = array("H", bytes(2 * len(kinds)))
    for j, k in enumerate(kinds):
        kind = _KINDS[k]
        if kind in (Kind.OWNED, Kind.NON_OWNER):
            weight = 0 if rand() < mix.idle_devices else 1 + min(40, int(-2.8 * math.log(1.0 - rand())))
        elif kind in _SILENT_MOSTLY and rand() >= mix.blocked_attaching:
            weight = 0
        else:
            base = _WEIGHTS[kind]
            weight = base - base // 4 + int(rand() * (base // 2 + 1))
        weights[j] = weight
    return kinds, weights


@dataclass(slots=True)
class _Run:
    world: World
    traffic: Traffic | None
    #: Entities to build, and built so far.
    entities: int
    done: int = 0


def _run(
    devices: int, attaches: int, seed: int, mix: DemoMix, sink: RecordSink, buckets: AttachBuckets | None
) -> Iterator[_Run]:
    """The one generation pass; yields after each entity so callers can stream the records out.

    Attach rows are shared out in proportion to the weights: entity j gets
    ``floor(W_j * R / W) - floor(W_(j-1) * R / W)`` rows (W_j the running weight), summing to exactly R.
    """
    _check_sizes(devices, attaches)
    kinds, weights = _plan(devices, seed, mix)
    world = World(seed, mix, sink)
    traffic = Traffic(seed, mix, buckets) if buckets is not None else None
    run = _Run(world, traffic, len(kinds))
    world.write_tacs()
    yield run
    total = sum(weights)
    malformed = round(attaches * mix.malformed_rows) if total else attaches
    rows = attaches - malformed if traffic is not None else 0
    running = given = 0
    for j, k in enumerate(kinds):
        weight = weights[j]
        scene = world.build(_KINDS[k], weight > 0)
        if weight and rows:
            running += weight
            n = running * rows // total - given
            given += n
            assert traffic is not None
            traffic.generate(scene, n)
        run.done = j + 1
        yield run
    if traffic is not None:
        traffic.malformed(malformed, world.people.recent)


def _check_sizes(devices: int, attaches: int) -> None:
    if devices < 1:
        raise ValueError("devices must be at least 1")
    if attaches < 0:
        raise ValueError("attaches must not be negative")


def generate_registry(devices: int, seed: int, mix: DemoMix | None = None) -> Iterator[Record]:
    """The registry records of :func:`write_demo`, streamed in generation order (the file groups them
    by type, in :data:`REGISTRY_ORDER`)."""
    pending: list[Record] = []
    for _ in _run(devices, 0, seed, mix or DemoMix(), pending.append, None):
        yield from pending
        pending.clear()


def generate_attaches(
    devices: int, attaches: int, seed: int, mix: DemoMix | None = None, spill_dir: Path | None = None
) -> Iterator[AttachRow]:
    """The attach rows of :func:`write_demo`, sorted by time.

    Rows are held in memory until sorted unless ``spill_dir`` (an existing, empty directory) is given.
    """
    buckets = AttachBuckets(spill_dir)
    deque(_run(devices, attaches, seed, mix or DemoMix(), _discard, buckets), maxlen=0)
    for prefix, lines in buckets.iter_days():
        for line in lines:
            t, imei, msisdn, slot, imsi = line.rstrip("\n").split(",")
            yield AttachRow(prefix + t, imei, msisdn, slot, imsi)


def _discard(record: Record) -> None:
    pass


class _RegistryWriter:
    """Writes registry records grouped by type in :data:`REGISTRY_ORDER`.

    ``tac`` and ``device`` records (generated in that order) go straight to ``out``; the other types wait
    in part files under ``tmp`` and are appended by :meth:`finish`.
    """

    _DIRECT: Final = frozenset({"tac", "device"})

    def __init__(self, out: IO[bytes], tmp: Path, flush_at: int = 4096) -> None:
        self._out = out
        self._paths = {t: tmp / f"registry-{t}.part" for t in REGISTRY_ORDER if t not in self._DIRECT}
        self._pending: dict[str, list[bytes]] = {t: [] for t in REGISTRY_ORDER}
        self._flush_at = flush_at
        self.counts = dict.fromkeys(REGISTRY_ORDER, 0)

    def write(self, record: Record) -> None:
        """Take one record (its ``type`` must be one of :data:`REGISTRY_ORDER`)."""
        kind = record["type"]
        self.counts[kind] += 1
        pending = self._pending[kind]
        pending.append(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
        if len(pending) >= self._flush_at:
            self._flush(kind)

    def _flush(self, kind: str) -> None:
        data = b"".join(self._pending[kind])
        self._pending[kind] = []
        if kind in self._DIRECT:
            self._out.write(data)
        elif data:
            with open(self._paths[kind], "ab") as part:
                part.write(data)

    def finish(self) -> None:
        """Write everything still pending, in :data:`REGISTRY_ORDER`."""
        for kind in REGISTRY_ORDER:
            self._flush(kind)
            path = self._paths.get(kind)
            if path is not None and path.exists():
                with open(path, "rb") as part:
                    shutil.copyfileobj(part, self._out, 1 << 20)
                path.unlink()


def write_demo(
    out_dir: Path,
    devices: int,
    attaches: int,
    seed: int,
    mix: DemoMix | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> DemoSummary:
    """Write ``out_dir/registry.jsonl`` and ``out_dir/attaches.csv`` (exactly ``attaches`` rows).

    ``progress(done, total)`` is called now and then during generation (entities built / to build).
    Both files are written under temporary names and renamed into place at the end.
    """
    mix = mix or DemoMix()
    _check_sizes(devices, attaches)
    out_dir.mkdir(parents=True, exist_ok=True)
    registry_path, attaches_path = out_dir / "registry.jsonl", out_dir / "attaches.csv"
    with tempfile.TemporaryDirectory(prefix=".demo-data-", dir=out_dir) as tmp_dir:
        tmp = Path(tmp_dir)
        with open(tmp / "registry.jsonl", "wb") as registry:
            writer = _RegistryWriter(registry, tmp)
            buckets = AttachBuckets(tmp)
            run = _drain(_run(devices, attaches, seed, mix, writer.write, buckets), progress)
            writer.finish()
        with open(tmp / "attaches.csv", "w", encoding="ascii", newline="") as csv_out:
            buckets.write_csv(csv_out)
        os.replace(tmp / "registry.jsonl", registry_path)
        os.replace(tmp / "attaches.csv", attaches_path)
    assert run.traffic is not None
    return _summary(registry_path, attaches_path, seed, writer.counts, run.world, run.traffic)


def _drain(runs: Iterator[_Run], progress: Callable[[int, int], None] | None) -> _Run:
    if progress is None:
        return deque(runs, maxlen=1)[0]
    for run in runs:
        if run.done & 0xFFFF == 0:
            progress(run.done, run.entities)
    progress(run.done, run.entities)
    return run


def _summary(
    registry_path: Path,
    attaches_path: Path,
    seed: int,
    counts: Mapping[str, int],
    world: World,
    traffic: Traffic,
) -> DemoSummary:
    stats = world.stats
    return DemoSummary(
        registry_path=registry_path,
        attaches_path=attaches_path,
        seed=seed,
        devices=stats.devices,
        dual_imei_devices=stats.dual_imei_devices,
        imeis=stats.imeis,
        owned_devices=stats.owned,
        operator_sims=stats.operator_sims,
        activation_codes=stats.activation_codes,
        tac_records=counts["tac"],
        subscribers=world.people.subscribers,
        expired_subscribers=world.people.expired,
        blacklist_records=stats.blacklist_records,
        traveler_entries=stats.traveler_entries,
        attach_rows=sum(traffic.rows_by_kind) + traffic.malformed_rows,
        malformed_rows=traffic.malformed_rows,
        imsi_only_rows=traffic.imsi_only_rows,
        populations=MappingProxyType(stats.populations()),
        rows_by_population=MappingProxyType(traffic.rows_by_population()),
    )
