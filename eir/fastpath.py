"""The optional C accelerator of the common attach (``eir/_fastpath.c``), bound to a bundle and a state.

About 80% of the demo mix's attaches end in a decision without effects or deadline (:data:`FAST_REASONS`):
a registered device that is not blocked, attached by its owner (even when cloned), or by anyone when
non-owners are unrestricted and the device is neither cloned nor possibly switched back to; an unowned
pre-registry device; an exempt roamer; a malformed IMEI - each only when the subscriber holds no grace
on the IMEI. :func:`accelerator` returns a callable that decides those in C (recording the attach in the
observation history as Engine.check does) and returns None for every other attach, which
:class:`eir.engine.Engine` then decides in Python. The Python path is the reference and the fallback:
when the extension was not built (no compiler or Python headers at install time), ``EIR_PURE_PYTHON=1``
is set, or its constants do not match :mod:`eir.state` / :mod:`eir.query`, there is no accelerator and
every attach takes the Python path. tests/test_fastpath.py checks that both paths give the same
decisions, events and state.

It also decides, with their shared Decisions, decide's exceptions for a restricted subscriber (an operator
SIM: OPERATOR_SIM; a pre-registry user of a cloned pre-registry device: PRE_REGISTRY_USER) and a blocked
device whose BLACKLISTED_DEVICE_SEEN notice was sent already (BLACKLISTED) - eir/_allowed.h - and an
unregistered IMEI's UNREGISTERED when no traveler window starts and its notice is not due
(eir/_unregistered.h).

Called with a Query (Engine.check), it also decides a running traveler allowance or activation grace
whose notice is not due (eir/_outcomes.h: TRAVELER_ALLOWANCE, ALLOWANCE_EXPIRED, ACTIVATION_GRACE,
NOT_ACTIVATED with their deadline, a new Decision each; another ~7% of the demo mix).

The accelerator also takes an attach's raw values (:meth:`FastCheck.check_raw`): the common forms of the
identifiers are parsed in C as :func:`eir.query.build_query` parses them (eir/_ident.h), so the common
attach needs no Query at all; any other form, every error and every other attach return None, and the
caller takes the Python path (tests/test_fastpath_raw.py holds the C parsing to eir.identifiers). An IMSI
is parsed there too, its MCC checked against the plan's home MCCs and, given without an MSISDN, its
subscriber looked up in the index's IMSI columns (:meth:`eir.index.Index.imsi_columns`) as
:meth:`~eir.index.Index.msisdn_for_imsi` does.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final, Protocol

from eir.decide import ORIGIN_PRE_REGISTRY
from eir.identifiers import MAX_SLOT
from eir.index import BLOCKED, CLONED, HAS_OPERATOR_SIMS, HAS_PRE_REGISTRY_USERS, ORIGIN_MASK
from eir.model import CONST, Decision, GraceKind, Query, Reason
from eir.native import FASTPATH_ABI, load
from eir.query import MAX_EPOCH, MAX_FIELD_CHARS, MIN_EPOCH
from eir.registry import KEY_MIX
from eir.state import KEY_SHIFT, SLOT_BITS, TIME_BITS, Activation, History, MemoryState, TravelerWindow

if TYPE_CHECKING:
    from eir.engine import Bundle



class FastCheck(Protocol):
    """The accelerator bound to a bundle and a state (``eir._fastpath.FastCheck``)."""

    def __call__(self, q: Query, /) -> Decision | None:
        """The shared Decision of a common attach (recorded in the history), else None (untouched)."""

    def check_raw(self, imei: object, msisdn: object, slot: object, time: object, imsi: object = None,
                  /) -> Decision | None:
        """As ``__call__`` on ``build_query(index, rules, time, imei, msisdn, slot, imsi)`` (``time``: epoch
        seconds, int or float): None also for every form it does not parse and every value that
        build_query would refuse, so the caller builds the Query (and gets its RequestError) itself."""

    def decide_raw(self, imei: object, msisdn: object, slot: object, time: object, imsi: object = None,
                   /) -> Decision | Query | None:
        """As :meth:`check_raw`, but where it parses the values and the attach is not the common one, the
        Query that build_query would make of them (nothing recorded: the caller runs Engine.check). Every
        attach with an IMSI is None (the replay's C edge writes a decided row with the row's own MSISDN)."""

    def parse_items(self, items: list[Any], start: int, end: int, now: int, buf: bytearray, /) -> int:
        """Parse ``check_batch`` items ``start..`` into ``buf`` (:data:`BATCH_ITEM_SIZE` bytes per item,
        zeroed) up to the first one left to Python; returns its index (``end`` when none was)."""

    def parse_wire_items(self, data: bytes, pos: int, start: int, end: int, now: int, buf: bytearray,
                         /) -> tuple[int, int, int]:
        """As :meth:`parse_items` for the items of a check_batch read from its bytes (``data[pos:]``, the
        items eir.transports.rpc_wire's scanner read): ``(i, pos, stop)``, item ``i < end`` (the first one
        left to Python) being ``data[pos:stop]``; ``i == end`` when all were parsed."""

    def decide_items(self, buf: bytearray, queries: list[Query | None], start: int, end: int,
                     parts: list[bytes], check_one: Callable[[Query], bytes], fast_parts: tuple[bytes, ...],
                     made_parts: tuple[dict[Reason, bytes], dict[Reason, int]] | None, /) -> tuple[int, ...]:
        """Decide parsed items ``start..end-1`` in order, appending each answer part: ``fast_parts[k]`` for
        an attach it decides with ``FAST_REASONS[k]``; for one it decides with a new Decision (a deadline;
        none when ``made_parts`` is None) ``prefixes[reason]`` + the packed deadline, counted in
        ``counts[reason]`` (``made_parts = (prefixes, counts)``); else ``check_one(query)`` (``queries[i]``
        where Python parsed the item, a Query built in C otherwise); returns how many it decided with each
        of FAST_REASONS."""


def _load() -> tuple[ModuleType | None, str]:
    mod, status = load("eir._fastpath", FASTPATH_ABI)
    if mod is None:
        return None, status
    built = (mod.KEY_SHIFT, mod.SLOT_BITS, mod.TIME_BITS, mod.MAX_FIELD_CHARS,
             mod.MAX_SLOT, mod.MIN_EPOCH, mod.MAX_EPOCH)
    if built != (KEY_SHIFT, SLOT_BITS, TIME_BITS, MAX_FIELD_CHARS, MAX_SLOT, MIN_EPOCH, MAX_EPOCH):
        # built from another version of the packed history or the request bounds: not usable
        return None, "off: built with other constants (packed history or request bounds): reinstall"
    return mod, status


_MODULE, _STATUS = _load()
#: The outcomes the accelerator decides (shared Decisions: no effects, no deadline), in its order.
FAST_REASONS: Final = (Reason.OWNER, Reason.REGISTERED, Reason.ROAMER_EXEMPT, Reason.MALFORMED_IMEI,
                       Reason.OPERATOR_SIM, Reason.PRE_REGISTRY_USER, Reason.BLACKLISTED, Reason.UNREGISTERED)
#: Bytes per item of the buffer of :meth:`FastCheck.parse_items` (0 without the accelerator).
BATCH_ITEM_SIZE: int = _MODULE.BATCH_ITEM_SIZE if _MODULE is not None else 0


def available() -> bool:
    """Whether the C accelerator is built and enabled in this process."""
    return _MODULE is not None


def wire_scanner() -> ModuleType | None:
    """The module whose ``wire_head``/``wire_scan`` read check_batch requests from their bytes
    (eir.transports.rpc_wire), or None without the accelerator."""
    return _MODULE


def status() -> str:
    """``"on"``, or why the accelerator is off (for the start-up log)."""
    return _STATUS


def _outcomes(bundle: Bundle, state: MemoryState) -> tuple[Any, ...] | None:
    """What the running-window / running-activation outcomes read (eir/_outcomes.h): MemoryState's own
    dicts, so only when the state reads them as MemoryState does."""
    cls = type(state)
    if any(getattr(cls, m) is not getattr(MemoryState, m) for m in ("mark", "window", "activation")):
        return None
    r = bundle.rules
    offsets, imeis, moved = bundle.index.device_key_columns()
    return (state.marks, state.windows, state.activations, Decision, TravelerWindow, Activation,
            Reason.TRAVELER_ALLOWANCE, Reason.ALLOWANCE_EXPIRED, Reason.ACTIVATION_GRACE, Reason.NOT_ACTIVATED,
            r.reminder_before_s, r.repeat_deny_notice_s, offsets, imeis, moved)


def _unregistered(bundle: Bundle, state: MemoryState) -> tuple[Any, ...] | None:
    """What an unregistered IMEI's UNREGISTERED reads (eir/_unregistered.h): MemoryState's quotas, so only
    when the state reads them as MemoryState does, and never where a window needs an entry record (the
    accelerator does not read those)."""
    r = bundle.rules
    if type(state).quota is not MemoryState.quota or r.traveler_require_entry:
        return None
    return (state.quotas, *bundle.index.national_id_columns(), r.traveler_period_s)


def accelerator(bundle: Bundle, state: MemoryState) -> FastCheck | None:
    """The accelerator for ``bundle`` and ``state``, or None (the Python path decides everything)."""
    if _MODULE is None:
        return None
    idx, r = bundle.index, bundle.rules
    # A state that records more than MemoryState (the SQLite journal) keeps its own observe; the packed
    # update is done in C only for MemoryState's.
    own_observe = type(state).observe is not MemoryState.observe
    fast: FastCheck = _MODULE.FastCheck(
        imei_map=idx.imei_table(), flags=idx.flags, owner=idx.owner, histories=state.histories,
        detections=state.detections, grace_imeis=state.grace_imeis,
        observe=state.observe if own_observe else None, memory_observe=state.observe,
        graces=state.graces, decisions=tuple(CONST[reason] for reason in FAST_REASONS), blocked_flag=BLOCKED,
        cloned_flag=CLONED, key_mix=KEY_MIX, restrict_non_owner=r.restrict_non_owner, clone_detect=r.clone_detect,
        clone_window_s=r.clone_window_s,
        roamers_exempt=r.roamers_exempt, deny_invalid_check_digit=r.imei.deny_invalid_check_digit,
        deny_test_imeis=r.imei.deny_test_imeis, country_code=r.plan.country_code,
        national_mobile_length=r.plan.national_mobile_length, query_type=Query, origin_mask=ORIGIN_MASK,
        pre_registry_origin=ORIGIN_PRE_REGISTRY, history_type=History, outcomes=_outcomes(bundle, state),
        restricted=(GraceKind.CLONE, GraceKind.OWNERSHIP, Reason.CLONE_GRACE, Reason.OWNERSHIP_GRACE,
                    CONST[Reason.CLONE_BLOCKED], CONST[Reason.OWNERSHIP_BLOCKED]),
        exceptions=(*idx.exception_data(), HAS_OPERATOR_SIMS, HAS_PRE_REGISTRY_USERS),
        unregistered=_unregistered(bundle, state),
        imsi=(r.plan.home_mccs, *idx.imsi_columns()))
    return fast
