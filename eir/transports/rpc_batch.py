"""A ``check_batch`` call in progress (eir.transports.rpc_conn runs it, a budget of items at a time).

Every item is parsed before any is decided (one bad item: ``invalid_params`` naming its index, nothing
decided), then the items are decided in order, on the bundle the batch started with even if a reload
swapped it since. With the C accelerator (eir.fastpath) both phases run in C for the common items:
``parse_items`` parses the usual forms into a bytearray and ``decide_items`` decides the common attach
and appends its pre-packed answer (or, for a running grace or window, the answer it packs), so
such an item never becomes a Query; every other item is parsed
(and refused) by :func:`eir.query.build_query` and decided by :meth:`eir.engine.Engine.check`, in its
place in the order. Without the accelerator both phases are the plain Python loops.

A batch the connection's decoder read from its bytes (a WireBatch, eir.transports.rpc_wire) is parsed
from them: ``parse_wire_items`` fills the same bytearray from the item bytes, and an item it leaves to
Python is decoded by msgpack from its own bytes and parsed by :func:`parse_params`, as if it had come
in a decoded list. Without an accelerator for the bundle, the batch takes the list msgpack decodes.
"""

from __future__ import annotations

from time import perf_counter
from typing import TYPE_CHECKING, Any

import msgpack

from eir.fastpath import BATCH_ITEM_SIZE, FAST_REASONS
from eir.model import CONST, Query, Reason
from eir.query import RequestError, build_query, parse_time
from eir.service import pinned
from eir.transports.rpc_codec import WireBatch

if TYPE_CHECKING:
    from eir.engine import Bundle, Engine
    from eir.service import Durable
    from eir.transports.rpc_codec import RpcEncoder


def item_values(p: Any) -> tuple[Any, Any, Any, Any, Any]:
    """``[imei, msisdn, slot?, time?, imsi?]`` -> ``(imei, msisdn, slot, time, imsi)``, absent ones None
    (RequestError when ``p`` is not such a list)."""
    if type(p) is not list or not 2 <= len(p) <= 5:
        raise RequestError("params", type(p).__name__, "expected [imei, msisdn, slot?, time?, imsi?]")
    n = len(p)
    return p[0], p[1], p[2] if n > 2 else None, p[3] if n > 3 else None, p[4] if n > 4 else None


def parse_params(b: Bundle, p: Any, now: int) -> Query:
    """``[imei, msisdn, slot?, time?, imsi?]`` -> Query (RequestError when unusable)."""
    imei, msisdn, slot, t, imsi = item_values(p)
    return build_query(b.index, b.rules, now if t is None else parse_time(t), imei, msisdn, slot, imsi)


class Batch:
    """One ``check_batch``: :meth:`step` advances it; then ``error`` (an ``invalid_params`` message) or
    ``answer`` (the whole response) is set, and ``held`` says the answer must wait for a group commit."""

    __slots__ = ("_buf", "answer", "bundle", "count", "durable", "enc", "engine", "error", "held", "items",
                 "msgid", "n", "now", "parsed", "parts", "pos", "queries", "started", "wire", "wpos")

    def __init__(self, msgid: int, engine: Engine, items: list[Any] | WireBatch, now: int, enc: RpcEncoder,
                 count: dict[Reason, int], durable: Durable | None) -> None:
        self.msgid = msgid
        self.engine = engine
        self.bundle = engine.bundle
        fast = engine.fast is not None
        # A batch read from its bytes (eir.transports.rpc_wire) is parsed from them by the accelerator; the
        # plain loops take the items msgpack decodes.
        self.wire: WireBatch | None = None
        if isinstance(items, WireBatch):
            self.n = items.n
            self.wire, items = (items, []) if fast else (None, items.items())
        else:
            self.n = len(items)
        self.items = items
        self.wpos = self.wire.items_at if self.wire is not None else 0  # the bytes of item `parsed`
        self.now = now
        self.enc = enc
        self.count = count  # the decisions counter of the metrics
        self.durable = durable
        # Accelerated: queries[i] is the Query of an item Python parsed, None for one parsed into _buf.
        self.queries: list[Query | None] = [None] * self.n if fast else []
        self._buf = bytearray(self.n * BATCH_ITEM_SIZE) if fast else None
        self.parsed = 0  # items parsed (phase 1 is over when all are)
        self.pos = 0  # items decided
        self.parts: list[bytes] = []
        self.held = False
        self.error: str | None = None
        self.answer: bytes | None = None
        self.started = perf_counter()

    def step(self, budget: int) -> int:
        """Parse or decide up to ``budget`` items; returns the budget left."""
        n = self.n
        # Parse and decide against the bundle the batch started with (the engine re-pinned if swapped).
        self.engine = engine = pinned(self.engine, self.bundle)
        if self.parsed < n:
            if self._buf is None:
                budget = self._parse(budget)
            else:
                budget = self._parse_fast(budget) if self.wire is None else self._parse_wire(budget)
            if self.error is not None or self.parsed < n or budget <= 0:
                return budget
        # phase 2: decide
        end = min(n, self.pos + budget)
        fast = engine.fast
        if fast is not None and self._buf is not None:
            result = self.enc.result
            # With a durable store an answer with a deadline may have to wait for a commit (needs_barrier):
            # the outcomes with a new Decision are then left to _check_one.
            counts = fast.decide_items(self._buf, self.queries, self.pos, end, self.parts, self._check_one,
                                       tuple(result(CONST[r]) for r in FAST_REASONS),
                                       (self.enc.prefixes, self.count) if self.durable is None else None)
            for reason, k in zip(FAST_REASONS, counts, strict=True):
                self.count[reason] += k
        else:
            for q in self.queries[self.pos : end]:
                assert q is not None
                self.parts.append(self._check_one(q))
        budget -= end - self.pos
        self.pos = end
        if end == n:
            self.answer = self.enc.ok_list(self.msgid, self.parts)
        return budget

    def _check_one(self, q: Query) -> bytes:
        """Decide one query in Python (the engine: its accelerator first) -> its packed result."""
        d = self.engine.check(q)
        self.count[d.reason] += 1
        durable = self.durable
        if durable is not None and not self.held and durable.needs_barrier(d):
            self.held = True
        return self.enc.result(d)

    def _parse(self, budget: int) -> int:
        items, n, start = self.items, len(self.items), self.parsed
        end = min(n, start + budget)
        b, now = self.bundle, self.now
        index, rules, add = b.index, b.rules, self.queries.append
        for i in range(start, end):
            try:
                # parse_params inlined for the usual item, [imei, msisdn, slot?, time?, imsi?]: this loop
                # runs once per query of every batch.
                p = items[i]
                k = len(p) if type(p) is list else 0
                if 2 <= k <= 5:
                    t = p[3] if k > 3 else None
                    add(build_query(index, rules, now if t is None else parse_time(t), p[0], p[1],
                                    p[2] if k > 2 else None, p[4] if k > 4 else None))
                else:
                    add(parse_params(b, p, now))  # raises the error naming what is wrong
            except RequestError as e:
                self.error = f"query {i}: {e.field}: {e.reason}"
                return budget - (i - start + 1)
        self.parsed = end
        return budget - (end - start)

    def _parse_fast(self, budget: int) -> int:
        fast, buf = self.engine.fast, self._buf
        assert fast is not None and buf is not None
        items, n, start = self.items, len(self.items), self.parsed
        end = min(n, start + budget)
        b, now, queries = self.bundle, self.now, self.queries
        i = start
        while i < end:
            i = fast.parse_items(items, i, end, now, buf)
            if i < end:  # an item the C parser leaves to Python (an unusual form or an error)
                try:
                    queries[i] = parse_params(b, items[i], now)
                except RequestError as e:
                    self.error = f"query {i}: {e.field}: {e.reason}"
                    return budget - (i - start + 1)
                i += 1
        self.parsed = end
        return budget - (end - start)

    def _parse_wire(self, budget: int) -> int:
        """_parse_fast for a batch read from its bytes: an item the C parser leaves to Python is decoded by
        msgpack from its bytes (the object the Unpacker would have made) and parsed by parse_params."""
        fast, buf, wire = self.engine.fast, self._buf, self.wire
        assert fast is not None and buf is not None and wire is not None
        data, start = wire.data, self.parsed
        end = min(self.n, start + budget)
        b, now, queries = self.bundle, self.now, self.queries
        i, pos = start, self.wpos
        while i < end:
            i, pos, stop = fast.parse_wire_items(data, pos, i, end, now, buf)
            if i < end:
                try:
                    queries[i] = parse_params(b, msgpack.unpackb(data[pos:stop], raw=False, use_list=True), now)
                except RequestError as e:
                    self.error = f"query {i}: {e.field}: {e.reason}"
                    return budget - (i - start + 1)
                i, pos = i + 1, stop
        self.parsed, self.wpos = end, pos
        return budget - (end - start)
