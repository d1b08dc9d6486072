"""The plan of the demo world: its time frame, its populations and their proportions.

The attach log covers ``BASE_EPOCH .. BASE_EPOCH + PERIOD``; :class:`Kind` names the planned entities and
:class:`DemoMix` their shares (see :mod:`eir.demo`). Also the timestamp text and the weighted draws shared
by the registry side (:mod:`eir.demo_tacs`, :mod:`eir.demo_registry`) and the attach side
(:mod:`eir.demo_attaches`).
"""

from __future__ import annotations

from bisect import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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


def cumulative(weights: Sequence[float]) -> list[float]:
    """Cumulative shares of ``weights`` (the last one exactly 1.0), for :func:`weighted`."""
    cum = list(accumulate(weights))
    total = cum[-1]
    out = [c / total for c in cum]
    out[-1] = 1.0
    return out


def weighted(rand: Callable[[], float], cum: list[float]) -> int:
    """An index drawn by the cumulative shares ``cum``."""
    return bisect(cum, rand())


def pick(rand: Callable[[], float], table: Sequence[tuple[str, int]]) -> str:
    """A name drawn from ``(name, weight)`` pairs."""
    return table[weighted(rand, cumulative([w for _, w in table]))][0]
