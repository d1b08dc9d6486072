"""The registry side of the demo data: one planned entity at a time, its registry records and its scene.

See :mod:`eir.demo` for the populations and the public API. Everything here draws from one
``random.Random`` (the *world* stream), so the registry of a seed does not depend on the number of attach
rows asked for. A :class:`World` turns one planned entity (a :class:`Kind`) into its registry records and a
:class:`Scene`: what the attach generator (:mod:`eir.demo_attaches`) needs to make that entity's traffic.
The identifiers come from :mod:`eir.demo_tacs` (TAC table, IMEI and subscriber allocators).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from eir.demo_plan import BASE_EPOCH, DAY, PERIOD, DemoMix, Kind, Record, RecordSink, iso_utc, midnights, pick
from eir.demo_tacs import TACS, ImeiAllocator, People, Person

BLOCK_REASONS: Final = (("stolen", 55), ("lost", 35), ("illegal", 5), ("court_order", 5))
BLACKLIST_REASONS: Final = (("stolen", 40), ("illegal", 35), ("lost", 15), ("court_order", 10))
_ORIGINS_UNACTIVATED: Final = (("import", 60), ("traveler", 25), ("repair", 15))

_BASE_DAY: Final = BASE_EPOCH // DAY
#: ``owner_since``: 2019-01-01 (pre-registry devices; the registry's first months) or the last four years
#: (imports) .. the day before the log.
_OWNER_SINCE_DAYS: Final = {True: (17_897, _BASE_DAY - 1), False: (_BASE_DAY - 4 * 365, _BASE_DAY - 1)}


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
        origin = pick(self._rand, _ORIGINS_UNACTIVATED)
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
        reason = pick(self._rand, BLOCK_REASONS)
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
        reason = pick(self._rand, BLACKLIST_REASONS)
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
