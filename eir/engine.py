"""The engine: one loaded snapshot + rule set + state; decides attaches and applies their effects.

``check`` = pure ``decide`` + apply the returned effects to the state + record the attach in the
observation history + turn notices into rendered, sequenced events. The (index, rules) pair lives in one
immutable :class:`Bundle` that a reload replaces with a single reference swap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from eir.decide import decide
from eir.events import OPS_EVENTS, Event, Renderer
from eir.fastpath import FastCheck, accelerator
from eir.model import (
    ActivationStart,
    CloneDetect,
    Decision,
    GracesDrop,
    GraceStart,
    Notice,
    Query,
    Reason,
    Switchback,
    WindowStart,
)
from eir.query import build_query, parse_time
from eir.state import Detection, MemoryState, TravelerWindow

if TYPE_CHECKING:
    from eir.index import Index
    from eir.rules import RuleSet

EventSink = Callable[[Event], None]

#: Reason -> its value as a plain str (what Event.reason holds): Enum's ``.value`` is a Python-level
#: property, a noticeable part of an event's cost.
_REASON_TEXT: Final = {r: r.value for r in Reason}


@dataclass(frozen=True, slots=True)
class Bundle:
    """What a decision reads besides state: swapped as a whole on reload."""

    index: Index
    rules: RuleSet
    renderer: Renderer

    @classmethod
    def of(cls, index: Index, rules: RuleSet) -> Bundle:
        """Bundle an index and a rule set with the rule set's text renderer."""
        return cls(index, rules, Renderer(rules.messages, rules.tz, rules.plan))


class Engine:
    """Decides attaches against the current bundle and keeps the dynamic state up to date.

    ``bundle`` changes only through :meth:`swap` (it also renews the accelerator bound to it).
    """

    __slots__ = ("_fast", "bundle", "sinks", "state", "texts")

    def __init__(self, bundle: Bundle, state: MemoryState, sinks: tuple[EventSink, ...] = (),
                 texts: bool = True, accelerate: bool = True) -> None:
        self.bundle = bundle
        self.state = state
        self.sinks = sinks
        #: Render the subscriber texts of events. Off only where nobody reads them (a replay that
        #: counts events but writes none): rendering is most of the cost of an event.
        self.texts = texts
        #: The C accelerator of the common attach (eir.fastpath), None for the pure-Python path.
        self._fast = accelerator(bundle, state) if accelerate else None

    @property
    def accelerated(self) -> bool:
        """Whether the common attach is decided by the C accelerator."""
        return self._fast is not None

    @property
    def fast(self) -> FastCheck | None:
        """The C accelerator bound to this engine's bundle and state (its ``check_raw`` takes raw values),
        or None; a decision it returns needs nothing more from the engine (no effects, already observed)."""
        return self._fast

    def swap(self, bundle: Bundle) -> Bundle:
        """Replace the index/rules in one step; returns the previous bundle."""
        fast = accelerator(bundle, self.state) if self._fast is not None else None
        old, self.bundle, self._fast = self.bundle, bundle, fast
        return old

    def check(self, q: Query) -> Decision:
        """Decide one attach and apply what it implies."""
        fast = self._fast
        if fast is not None:
            # The common attach (ALLOW OWNER / REGISTERED, no effects) decided and observed in C;
            # None for everything else, decided below.
            d = fast(q)
            if d is not None:
                return d
        b = self.bundle
        st = self.state
        d = decide(q, b.index, b.rules, st)
        if d.effects:
            self._apply(q, d, b)
        if q.msisdn and not q.roamer and q.imei >= 0:
            st.observe(q.imei, q.msisdn, q.slot, q.time)
        return d

    def check_values(self, now: int, imei: object, msisdn: object, slot: object = None, time: object = None,
                     imsi: object = None) -> Decision:
        """Decide one attach from its values as an edge received them (``time`` None: ``now``).

        The accelerator decides the common attach straight from them (no Query); any other is parsed by
        :func:`eir.query.build_query` - RequestError when a value is unusable - and decided by :meth:`check`.
        """
        fast = self._fast
        if fast is not None:
            d = fast.check_raw(imei, msisdn, slot, now if time is None else time, imsi)
            if d is not None:
                return d
        b = self.bundle
        return self.check(build_query(b.index, b.rules, now if time is None else parse_time(time), imei, msisdn,
                                      slot, imsi))

    def _apply(self, q: Query, d: Decision, b: Bundle) -> None:
        st = self.state
        for e in d.effects:
            if isinstance(e, Notice):
                self._emit(q, e, b)
            elif isinstance(e, GraceStart):
                st.put_grace(e.kind, e.imei, e.msisdn, e.start, e.deadline)
            elif isinstance(e, GracesDrop):
                st.drop_graces(e.imei, e.msisdn)
            elif isinstance(e, ActivationStart):
                st.put_activation(e.device_key, e.first_seen, e.deadline)
            elif isinstance(e, WindowStart):
                st.put_window(e.imei, TravelerWindow(e.start, e.deadline, e.period_end, e.identity, e.msisdn))
                st.put_quota(e.identity, e.start)
            elif isinstance(e, Switchback):
                st.add_switchback(e.imei, e.time, b.rules.clone_window_s)
            elif isinstance(e, CloneDetect):
                st.put_detection(e.imei, Detection(e.time, e.enforced, e.subscribers))

    def publish(self, ev: Event, model: str = "", code: str = "") -> Event:
        """Emit a control-plane event (eir.control): render its texts, sequence it, hand it to the sinks.

        ``code`` is rendered into the TRANSFER_CODE_ISSUED text only; it is never kept anywhere else.
        """
        if ev.type not in OPS_EVENTS:
            ev.text_fa, ev.text_en = self.bundle.renderer.render(ev, model, code)
        self.state.append_event(ev)
        for sink in self.sinks:
            sink(ev)
        return ev

    def _emit(self, q: Query, n: Notice, b: Bundle) -> None:
        ev = Event(n.type, q.time, n.imei, n.msisdn or None, n.slot,
                   _REASON_TEXT[n.reason] if n.reason is not None else None, n.deadline, None, None, n.subscribers)
        if self.texts:
            # Rendered when first read (the outbox writer, delivery), not here; the model is looked up now,
            # so that a pending text holds no reference to the index (a reload may replace it).
            code = b.index.lookup(n.imei)
            ev.defer_texts(b.renderer, b.index.model((code >> 1) - 1) if code > 1 else "")
        self.state.put_mark(n.mark, q.time)
        self.state.append_event(ev)
        for sink in self.sinks:
            sink(ev)
