"""The decision: SPEC §4 rules in order, first match wins. Pure and synchronous.

``decide`` reads the snapshot index, the compiled rule set and a read-only view of the dynamic state,
and returns a :class:`~eir.model.Decision` carrying the reason, the deadline and the *effects* (state
changes and notices) the engine must apply. It performs no I/O, logs nothing and mutates nothing; the
common outcomes are shared constants, so the usual attach allocates nothing here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from eir.index import BLOCKED, CLONED, HAS_OPERATOR_SIMS, HAS_PRE_REGISTRY_USERS, ORIGIN_MASK
from eir.model import (
    CONST,
    ActivationStart,
    CloneDetect,
    Decision,
    Effect,
    GraceKind,
    GracesDrop,
    GraceStart,
    Notice,
    Query,
    Reason,
    Switchback,
    WindowStart,
)
from eir.state import SLOT_BITS, History, StateView

if TYPE_CHECKING:
    from eir.index import Index
    from eir.rules import RuleSet

ORIGIN_PRE_REGISTRY: Final = 1
HOUR: Final = 3_600

_MALFORMED: Final = CONST[Reason.MALFORMED_IMEI]
_BLACKLISTED: Final = CONST[Reason.BLACKLISTED]
_ROAMER: Final = CONST[Reason.ROAMER_EXEMPT]
_OWNER: Final = CONST[Reason.OWNER]
_OPERATOR_SIM: Final = CONST[Reason.OPERATOR_SIM]
_PRE_REGISTRY_USER: Final = CONST[Reason.PRE_REGISTRY_USER]
_REGISTERED: Final = CONST[Reason.REGISTERED]
# The common path allocates no effect list; this shared one is only ever read.
_NO_FX: Final[list[Effect]] = []

# Per grace kind: (WARN reason, DENY reason, started event, blocked event).
_GRACE: Final = {
    GraceKind.CLONE: (Reason.CLONE_GRACE, Reason.CLONE_BLOCKED, "CLONE_GRACE_STARTED", "CLONE_BLOCKED"),
    GraceKind.OWNERSHIP: (Reason.OWNERSHIP_GRACE, Reason.OWNERSHIP_BLOCKED, "OWNERSHIP_GRACE_STARTED",
                          "OWNERSHIP_BLOCKED"),
}


def decide(q: Query, idx: Index, r: RuleSet, st: StateView) -> Decision:
    """Decide one attach (SPEC §4)."""
    imei = q.imei
    if imei < 0:
        return _MALFORMED
    code = idx.lookup(imei)
    if not code:
        return _ROAMER if q.roamer and r.roamers_exempt else _traveler(q, idx, r, st)
    dev = (code >> 1) - 1  # -1: only on the block list (code 1)
    flags = idx.flags[dev] if dev >= 0 else 0
    if code & 1 or flags & BLOCKED:
        return _blocked(q, st)
    if q.roamer and r.roamers_exempt:
        return _ROAMER

    sub = q.msisdn
    fx: list[Effect] = _NO_FX
    cloned = flags & CLONED
    if not cloned:
        det = st.detections.get(imei)
        if det is not None and det.enforced:
            cloned = True
        elif r.clone_detect and sub and not q.roamer:
            h = st.histories.get(imei)
            # Only an attach by someone other than the previous subscriber can be a switch-back, and only
            # on an IMEI that has seen more than one (subscriber, slot): the packed int form of a history
            # has a single one, the previous subscriber's, so the attach cannot be a switch-back.
            if isinstance(h, History) and h.last_msisdn and h.last_msisdn != sub:
                fx = []
                cloned = _detect_clone(q, h, r, st, fx)

    owner = idx.owner[dev]
    if cloned:
        if sub and sub == owner:
            return _allowed(_OWNER, q, st, fx)
        if sub and flags & HAS_OPERATOR_SIMS and idx.operator_sim(dev, q.slot) == sub:
            return _allowed(_OPERATOR_SIM, q, st, fx)
        if (not owner and flags & ORIGIN_MASK == ORIGIN_PRE_REGISTRY and flags & HAS_PRE_REGISTRY_USERS
                and sub and idx.is_pre_registry_user(dev, sub)):
            return _allowed(_PRE_REGISTRY_USER, q, st, fx)
        return _grace(GraceKind.CLONE, r.clone_grace_s, q, r, st, _writable(fx))
    if owner:
        if sub == owner or not r.restrict_non_owner:
            d = _OWNER if sub == owner else _REGISTERED
            # The common attach: nothing to drop, no effects - answered without another call.
            return d if fx is _NO_FX and imei not in st.grace_imeis else _allowed(d, q, st, fx)
        if sub and flags & HAS_OPERATOR_SIMS and idx.operator_sim(dev, q.slot) == sub:
            return _allowed(_OPERATOR_SIM, q, st, fx)
        return _grace(GraceKind.OWNERSHIP, r.ownership_grace_s, q, r, st, _writable(fx))
    if flags & ORIGIN_MASK == ORIGIN_PRE_REGISTRY:
        return _allowed(_REGISTERED, q, st, fx)
    return _activation(q, idx.device_key(dev), r, st, _writable(fx))


def _writable(fx: list[Effect]) -> list[Effect]:
    # The shared empty list must never be appended to: rare paths get their own.
    return [] if fx is _NO_FX else fx


def _blocked(q: Query, st: StateView) -> Decision:
    """Rule 2. The first attach of a blocked IMEI with each subscriber is reported (stolen-device tracing)."""
    if q.msisdn:
        mark = ("BLACKLISTED_DEVICE_SEEN", q.imei, q.msisdn, 0)
        if st.mark(mark) is None:
            n = Notice("BLACKLISTED_DEVICE_SEEN", q.imei, q.msisdn, q.slot, Reason.BLACKLISTED, None, mark)
            return Decision(Reason.BLACKLISTED, None, (n,))
    return _BLACKLISTED


def _allowed(d: Decision, q: Query, st: StateView, fx: list[Effect]) -> Decision:
    """An ALLOW; drops the subscriber's grace records on this IMEI (a later restriction starts afresh)."""
    sub = q.msisdn
    if sub and q.imei in st.grace_imeis and (st.grace(q.imei, sub, GraceKind.CLONE) is not None
                                             or st.grace(q.imei, sub, GraceKind.OWNERSHIP) is not None):
        return Decision(d.reason, None, (*fx, GracesDrop(q.imei, sub)))
    if fx:
        return Decision(d.reason, None, tuple(fx))
    return d


def _detect_clone(q: Query, h: History, r: RuleSet, st: StateView, fx: list[Effect]) -> bool:
    """§4.1: is this attach (by someone other than the previous subscriber) a switch-back, and does it
    reach the detection threshold?"""
    sub, t = q.msisdn, q.time
    since = t - r.clone_window_s
    mine = h.last_seen(sub)
    if not mine or mine <= since:
        return False
    fx.append(Switchback(q.imei, t))
    count = 1 + sum(1 for x in (h.switchbacks or ()) if x > since)
    if count < r.clone_min_switchbacks:
        return False
    subs = sorted({k >> SLOT_BITS for k, rec in h.seen.items() if rec[1] > since} | {sub})
    cap = r.max_new_restrictions_per_hour
    enforced = cap == 0 or st.enforced_since(t - HOUR) < cap
    fx.append(CloneDetect(q.imei, t, tuple(subs), enforced))
    if enforced:
        fx.append(Notice("CLONE_DETECTED", q.imei, sub, q.slot, None, None,
                         ("CLONE_DETECTED", q.imei, 0, t), tuple(subs)))
        return True
    mark = ("SAFETY_BRAKE", q.imei, 0, 0)
    last = st.mark(mark)
    if last is None or t - last >= HOUR:
        fx.append(Notice("SAFETY_BRAKE", q.imei, sub, q.slot, None, None, mark, tuple(subs)))
    return False


def _deny_notice(kind: str, subject: int, q: Query, reason: Reason, deadline: int | None, r: RuleSet,
                 st: StateView, fx: list[Effect], device: int = -1) -> None:
    """A DENY notice, at most once per ``events.repeat_deny_notice_days`` per (subject, subscriber)."""
    if not q.msisdn:
        return
    mark = (kind, subject, q.msisdn, deadline or 0)
    last = st.mark(mark)
    if last is None or q.time - last >= r.repeat_deny_notice_s:
        fx.append(Notice(kind, q.imei, q.msisdn, q.slot, reason, deadline, mark, device=device))


def _reminder(subject: int, q: Query, reason: Reason, deadline: int, r: RuleSet, st: StateView,
              fx: list[Effect]) -> None:
    """GRACE_REMINDER on the first attach within ``events.reminder_days_before`` of the deadline."""
    if q.msisdn and r.reminder_before_s and q.time >= deadline - r.reminder_before_s:
        mark = ("GRACE_REMINDER", subject, q.msisdn, deadline)
        if st.mark(mark) is None:
            fx.append(Notice("GRACE_REMINDER", q.imei, q.msisdn, q.slot, reason, deadline, mark))


def _finish(reason: Reason, deadline: int | None, fx: list[Effect]) -> Decision:
    return Decision(reason, deadline, tuple(fx)) if fx or deadline is not None else CONST[reason]


def _grace(kind: GraceKind, grace_s: int, q: Query, r: RuleSet, st: StateView, fx: list[Effect]) -> Decision:
    """Rules 5a/5b for a restricted subscriber: grace per (IMEI, subscriber), then DENY."""
    warn, deny, started_ev, blocked_ev = _GRACE[kind]
    sub, t = q.msisdn, q.time
    if not sub:
        # An unknown subscriber cannot be warned or tracked: no grace to give.
        return _finish(deny, None, fx)
    g = st.grace(q.imei, sub, kind)
    if g is None:
        deadline = t + grace_s
        fx.append(GraceStart(kind, q.imei, sub, t, deadline))
        if t < deadline:
            fx.append(Notice(started_ev, q.imei, sub, q.slot, warn, deadline, (started_ev, q.imei, sub, deadline)))
            return _finish(warn, deadline, fx)
    else:
        deadline = g.deadline
    if t < deadline:
        _reminder(q.imei, q, warn, deadline, r, st, fx)
        return _finish(warn, deadline, fx)
    _deny_notice(blocked_ev, q.imei, q, deny, deadline, r, st, fx)
    return _finish(deny, deadline, fx)


def _activation(q: Query, device_key: int, r: RuleSet, st: StateView, fx: list[Effect]) -> Decision:
    """Rule 5d: one activation grace per unowned device, from its first attach."""
    t, sub = q.time, q.msisdn
    a = st.activation(device_key)
    if a is None:
        deadline = t + r.activation_grace_s
        fx.append(ActivationStart(device_key, t, deadline))
    else:
        deadline = a.deadline
    if t < deadline:
        if sub:
            mark = ("ACTIVATION_REQUIRED", device_key, sub, deadline)
            if st.mark(mark) is None:
                fx.append(Notice("ACTIVATION_REQUIRED", q.imei, sub, q.slot, Reason.ACTIVATION_GRACE, deadline,
                                 mark, device=device_key))
            else:
                _reminder(device_key, q, Reason.ACTIVATION_GRACE, deadline, r, st, fx)
        return _finish(Reason.ACTIVATION_GRACE, deadline, fx)
    _deny_notice("NOT_ACTIVATED", device_key, q, Reason.NOT_ACTIVATED, deadline, r, st, fx, device=device_key)
    return _finish(Reason.NOT_ACTIVATED, deadline, fx)


def _traveler(q: Query, idx: Index, r: RuleSet, st: StateView) -> Decision:
    """Rule 6: an unregistered IMEI and the traveler allowance."""
    t, sub, imei = q.time, q.msisdn, q.imei
    fx: list[Effect] = []
    w = st.window(imei)
    if w is not None and t < w.period_end:
        if t < w.deadline:
            _reminder(imei, q, Reason.TRAVELER_ALLOWANCE, w.deadline, r, st, fx)
            return _finish(Reason.TRAVELER_ALLOWANCE, w.deadline, fx)
        _deny_notice("ALLOWANCE_EXPIRED", imei, q, Reason.ALLOWANCE_EXPIRED, w.deadline, r, st, fx)
        return _finish(Reason.ALLOWANCE_EXPIRED, w.deadline, fx)
    if sub:
        nid = idx.national_id(sub)
        identity = f"nid:{nid}" if nid is not None else f"msisdn:{sub}"
        last = st.quota(identity)
        if (last is None or t - last >= r.traveler_period_s) and (
            not r.traveler_require_entry
            or idx.has_traveler_entry(sub, nid, t - r.traveler_entry_window_s, t)
        ):
            deadline = t + r.traveler_allowance_s
            fx.append(WindowStart(imei, identity, sub, t, deadline, t + r.traveler_period_s))
            if t < deadline:
                fx.append(Notice("TRAVELER_ALLOWANCE_STARTED", imei, sub, q.slot, Reason.TRAVELER_ALLOWANCE,
                                 deadline, ("TRAVELER_ALLOWANCE_STARTED", imei, sub, deadline)))
                return _finish(Reason.TRAVELER_ALLOWANCE, deadline, fx)
            _deny_notice("ALLOWANCE_EXPIRED", imei, q, Reason.ALLOWANCE_EXPIRED, deadline, r, st, fx)
            return _finish(Reason.ALLOWANCE_EXPIRED, deadline, fx)
    _deny_notice("UNREGISTERED_DEVICE", imei, q, Reason.UNREGISTERED, None, r, st, fx)
    return _finish(Reason.UNREGISTERED, None, fx)
