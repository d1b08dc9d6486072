"""Value objects that flow through the engine: queries in, decisions (with their effects) out.

``Query`` is built at the edge (:mod:`eir.query`); ``decide`` turns it into a ``Decision`` whose
``effects`` describe the state changes and notices the decision implies. The engine applies them.
Decisions without a deadline or effects are shared constants, so the common path allocates nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Final


class Verdict(IntEnum):
    """The three 3GPP equipment states; the int value is the S13 Equipment-Status code."""

    ALLOW = 0
    DENY = 1
    WARN = 2

    @property
    def status(self) -> str:
        """N5g-eir EquipmentStatus (TS 29.511)."""
        return _STATUS[self]


_STATUS: Final = {Verdict.ALLOW: "WHITELISTED", Verdict.DENY: "BLACKLISTED", Verdict.WARN: "GREYLISTED"}


class Reason(StrEnum):
    """Why a decision was taken (SPEC §4.2)."""

    OWNER = "OWNER"
    OPERATOR_SIM = "OPERATOR_SIM"
    PRE_REGISTRY_USER = "PRE_REGISTRY_USER"
    REGISTERED = "REGISTERED"
    ROAMER_EXEMPT = "ROAMER_EXEMPT"
    ACTIVATION_GRACE = "ACTIVATION_GRACE"
    CLONE_GRACE = "CLONE_GRACE"
    OWNERSHIP_GRACE = "OWNERSHIP_GRACE"
    TRAVELER_ALLOWANCE = "TRAVELER_ALLOWANCE"
    MALFORMED_IMEI = "MALFORMED_IMEI"
    BLACKLISTED = "BLACKLISTED"
    NOT_ACTIVATED = "NOT_ACTIVATED"
    CLONE_BLOCKED = "CLONE_BLOCKED"
    OWNERSHIP_BLOCKED = "OWNERSHIP_BLOCKED"
    UNREGISTERED = "UNREGISTERED"
    ALLOWANCE_EXPIRED = "ALLOWANCE_EXPIRED"


VERDICT_OF: Final[dict[Reason, Verdict]] = {
    **{r: Verdict.ALLOW for r in (Reason.OWNER, Reason.OPERATOR_SIM, Reason.PRE_REGISTRY_USER,
                                  Reason.REGISTERED, Reason.ROAMER_EXEMPT)},
    **{r: Verdict.WARN for r in (Reason.ACTIVATION_GRACE, Reason.CLONE_GRACE, Reason.OWNERSHIP_GRACE,
                                 Reason.TRAVELER_ALLOWANCE)},
    **{r: Verdict.DENY for r in (Reason.MALFORMED_IMEI, Reason.BLACKLISTED, Reason.NOT_ACTIVATED,
                                 Reason.CLONE_BLOCKED, Reason.OWNERSHIP_BLOCKED, Reason.UNREGISTERED,
                                 Reason.ALLOWANCE_EXPIRED)},
}


class Query:
    """One attach, parsed: ``(time, imei core, msisdn, slot)`` plus where the subscriber comes from.

    ``imei`` is the 14-digit core or -1 (malformed); ``msisdn`` is 0 for an unknown subscriber;
    ``roamer`` is True for an inbound roamer (foreign country code or MCC).
    """

    __slots__ = ("imei", "imsi", "msisdn", "roamer", "slot", "time")

    def __init__(self, time: int, imei: int, msisdn: int, slot: int = 1, roamer: bool = False,
                 imsi: int = 0) -> None:
        self.time = time
        self.imei = imei
        self.msisdn = msisdn
        self.slot = slot
        self.roamer = roamer
        self.imsi = imsi

    def __repr__(self) -> str:
        return (f"Query(time={self.time}, imei={self.imei}, msisdn={self.msisdn}, slot={self.slot}, "
                f"roamer={self.roamer}, imsi={self.imsi})")


# --- effects: what a decision asks the engine to change or announce -----------------------------------


class GraceKind(IntEnum):
    """Per-(IMEI, subscriber) grace records; each kind keeps its own deadline."""

    CLONE = 1
    OWNERSHIP = 2


@dataclass(frozen=True, slots=True)
class GraceStart:
    """A grace for (IMEI, subscriber) starts now; its deadline is a promise."""

    kind: GraceKind
    imei: int
    msisdn: int
    start: int
    deadline: int


@dataclass(frozen=True, slots=True)
class GracesDrop:
    """The subscriber is allowed again on this IMEI: its grace records there are dropped."""

    imei: int
    msisdn: int


@dataclass(frozen=True, slots=True)
class ActivationStart:
    """First attach of an unactivated device: one activation grace for the whole device."""

    device_key: int
    first_seen: int
    deadline: int


@dataclass(frozen=True, slots=True)
class WindowStart:
    """A traveler allowance window opens on an unregistered IMEI, using ``identity``'s quota."""

    imei: int
    identity: str
    msisdn: int
    start: int
    deadline: int
    period_end: int


@dataclass(frozen=True, slots=True)
class Switchback:
    """An A..B..A switch-back on a registered IMEI (clone detection input)."""

    imei: int
    time: int


@dataclass(frozen=True, slots=True)
class CloneDetect:
    """Clone detection fired at ``time``; ``enforced`` is False when the safety brake withheld it."""

    imei: int
    time: int
    subscribers: tuple[int, ...]
    enforced: bool


@dataclass(frozen=True, slots=True)
class Notice:
    """An event to emit (SPEC §5). ``mark`` is its de-duplication key, recorded when emitted."""

    type: str
    imei: int
    msisdn: int
    slot: int
    reason: Reason | None
    deadline: int | None
    mark: tuple[str, int, int, int]
    subscribers: tuple[int, ...] = ()
    device: int = -1


Effect = GraceStart | GracesDrop | ActivationStart | WindowStart | Switchback | CloneDetect | Notice
NO_EFFECTS: Final[tuple[Effect, ...]] = ()


class Decision:
    """A verdict with its reason, the deadline (epoch seconds) for warnings, and the effects."""

    __slots__ = ("deadline", "effects", "reason", "verdict")

    def __init__(self, reason: Reason, deadline: int | None = None,
                 effects: tuple[Effect, ...] = NO_EFFECTS) -> None:
        self.verdict = VERDICT_OF[reason]
        self.reason = reason
        self.deadline = deadline
        self.effects = effects

    @property
    def creates_state(self) -> bool:
        """Whether applying this decision creates durable state or events (it must wait for disk)."""
        return bool(self.effects)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Decision) and self.reason is other.reason
                and self.deadline == other.deadline)

    def __hash__(self) -> int:
        return hash((self.reason, self.deadline))

    def __repr__(self) -> str:
        return f"Decision({self.verdict.name} {self.reason.value} deadline={self.deadline})"


#: Shared decisions for the common, effect-free outcomes.
CONST: Final = {r: Decision(r) for r in Reason}
