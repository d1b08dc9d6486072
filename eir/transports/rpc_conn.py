"""One msgpack RPC connection: decoding, dispatch, answer order, flow control (server: eir.transports.rpc).

Each connection is an :class:`asyncio.Protocol`. Received bytes are decoded into requests that are
answered on the spot, at most ``limits.loop_budget`` decisions per event-loop turn: a longer backlog
(a big batch, a burst of pipelined calls) continues on the next turn and reading from that client
pauses until it is done, so one client never holds the loop for long and never buffers unboundedly.

Answer order: answers are written in request order, except that a decision which creates durable
state (a new grace, window or event) is answered only after the store's group commit, so its answer
may come after answers to later requests on the same connection. Clients match answers by ``msgid``.

Back-pressure: when a client's unread answers exceed ``limits.write_buffer_bytes``, the server stops
reading from it; a client that stays that way past the idle timeout is disconnected.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from time import perf_counter
from typing import TYPE_CHECKING, Any, Final, cast

from eir.query import RequestError
from eir.store_schema import StoreError
from eir.transports.rpc_batch import Batch, item_values
from eir.transports.rpc_codec import (
    INVALID_PARAMS,
    NOT_READY,
    OVERLOADED,
    TOO_LARGE,
    UNAVAILABLE,
    UNKNOWN_METHOD,
    Notification,
    Request,
    RpcEncoder,
    Violation,
    WireBatch,
)
from eir.transports.rpc_wire import make_decoder

if TYPE_CHECKING:
    from eir.transports.rpc import RpcServer

log = logging.getLogger("eir.rpc")
METHODS: Final = ("check", "check_batch", "ping")
#: Drain: a connection closes once no request arrived for this long after its last answer.
DRAIN_QUIET_S: Final = 0.05


class RpcConnection(asyncio.Protocol):
    """One client connection (usable without a socket: give it any transport-like object)."""

    def __init__(self, server: RpcServer) -> None:
        self.server = server
        svc = server.service
        self.svc = svc
        self.limits = svc.config.limits
        self.metrics = svc.metrics
        self.decoder = make_decoder(self.limits.max_message_bytes)
        self.enc = RpcEncoder()
        self.queue: deque[Request | Notification | Violation | WireBatch | Batch] = deque()
        self.transport: asyncio.Transport | None = None
        self.reading = True
        self.write_paused = False
        self.scheduled = False
        self.closing = False
        self.draining = False  # server shutdown: answer what the client already sent, then close
        self.eof = False  # the client half-closed: answer, then close
        self.received = 0  # chunks received (the drain's quiet check)
        self.holding = 0  # answers waiting for a group commit
        self.last_active = 0.0
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # --- asyncio.Protocol ----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport implements asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        transport = self.transport
        self.last_active = self.server.loop.time()
        transport.set_write_buffer_limits(high=self.limits.write_buffer_bytes)
        if not self.server.admit(self):
            transport.write(self.enc.error(None, OVERLOADED, "too many connections"))
            self.close("overloaded")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.queue.clear()
        self.server.forget(self)
        if not self.lost.done():
            self.lost.set_result(None)

    def eof_received(self) -> bool:
        # Half-close: keep the transport open to answer what was sent, close when done.
        self.eof = True
        self._maybe_finish()
        return True

    def pause_writing(self) -> None:
        self.write_paused = True
        self._pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self.last_active = self.server.loop.time()
        if self.queue:
            self._schedule()
        else:
            self._resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self.received += 1
        items = self.decoder.feed(data)
        if items:
            self.queue.extend(items)
            if not self.scheduled and not self.write_paused:
                self.run()

    # --- processing ----------------------------------------------------------------------------------

    def run(self) -> None:
        """Answer queued requests within the loop budget; continue on the next turn if more remain."""
        self.scheduled = False
        if self.closing or self.transport is None:
            return
        out: list[bytes] = []
        held: list[tuple[int, bytes]] = []
        try:
            fatal = self._work(out, held)
        # Last-resort guard, the one place allowed to catch everything: a bug reached by one client's
        # input must cost that client its connection, never the process or the other clients.
        except Exception:
            log.exception("rpc connection failed; closing it")
            self.metrics.rpc_closed.labels("internal_error").inc()
            self.transport.abort()
            return
        if out:
            self.transport.write(b"".join(out))
        if held:
            self._hold(held)
        if fatal is not None:
            self.close(fatal)
            return
        self.last_active = self.server.loop.time()
        if self.queue and not self.closing:
            self._pause_reading()
            if not self.write_paused:
                self._schedule()
        else:
            if not self.write_paused:
                self._resume_reading()
            self._maybe_finish()

    def _work(self, out: list[bytes], held: list[tuple[int, bytes]]) -> str | None:
        """Answer within the budget; returns the cause when the connection must close."""
        budget = self.limits.loop_budget
        queue = self.queue
        while queue and budget > 0:
            item = queue[0]
            if type(item) is Request:
                queue.popleft()
                budget -= 1
                if item.method == "check":
                    self._check(item, out, held)
                elif item.method == "check_batch":
                    job = self._start_batch(item, out)
                    if job is not None:
                        queue.appendleft(job)
                elif item.method == "ping":
                    out.append(self.enc.pong(item.msgid))
                else:
                    self._error(out, item.msgid, UNKNOWN_METHOD, f"unknown method {item.method[:64]!r}; "
                                f"methods: {', '.join(METHODS)}")
            elif type(item) is WireBatch:  # a check_batch read from its bytes (eir.transports.rpc_wire)
                queue.popleft()
                budget -= 1
                job = self._new_batch(item.msgid, item.n, item, out)
                if job is not None:
                    queue.appendleft(job)
            elif type(item) is Batch:
                budget = self._continue_batch(item, budget, out, held)
            elif type(item) is Violation:
                queue.clear()
                self._error(out, item.msgid, item.code, item.message)
                return item.code
            else:  # Notification: nothing to answer
                queue.popleft()
        return None

    def _error(self, out: list[bytes], msgid: int | None, code: str, message: str) -> None:
        self.metrics.rpc_errors.labels(code).inc()
        out.append(self.enc.error(msgid, code, message))

    def _check(self, req: Request, out: list[bytes], held: list[tuple[int, bytes]]) -> None:
        started = perf_counter()
        engine = self.svc.engine
        if engine is None:
            self._error(out, req.msgid, NOT_READY, "no snapshot loaded yet")
            return
        p = req.params
        try:
            d = engine.check_values(self.svc.clock(), *item_values(p))
        except RequestError as e:
            self._error(out, req.msgid, INVALID_PARAMS, f"{e.field}: {e.reason}")
            return
        self.metrics.decisions[d.reason] += 1
        answer = self.enc.ok(req.msgid, self.enc.result(d))
        durable = self.svc.durable
        if durable is not None and durable.needs_barrier(d):
            held.append((req.msgid, answer))
        else:
            out.append(answer)
        self.metrics.latency[("rpc", "check")].observe(perf_counter() - started)

    def _start_batch(self, req: Request, out: list[bytes]) -> Batch | None:
        if self.svc.engine is None:
            self._error(out, req.msgid, NOT_READY, "no snapshot loaded yet")
            return None
        p = req.params
        if type(p) is not list or len(p) != 1 or type(p[0]) is not list:
            self._error(out, req.msgid, INVALID_PARAMS, "expected [[query, ...]]")
            return None
        return self._new_batch(req.msgid, len(p[0]), p[0], out)

    def _new_batch(self, msgid: int, n: int, items: list[Any] | WireBatch, out: list[bytes]) -> Batch | None:
        engine = self.svc.engine
        if engine is None:
            self._error(out, msgid, NOT_READY, "no snapshot loaded yet")
            return None
        if n > self.limits.max_batch:
            self._error(out, msgid, TOO_LARGE, f"batch of {n} > {self.limits.max_batch} queries")
            return None
        return Batch(msgid, engine, items, self.svc.clock(), self.enc, self.metrics.decisions, self.svc.durable)

    def _continue_batch(self, job: Batch, budget: int, out: list[bytes], held: list[tuple[int, bytes]]) -> int:
        """Advance a batch by up to ``budget`` items; returns the budget left."""
        budget = job.step(budget)
        if job.error is not None:
            self.queue.popleft()
            self._error(out, job.msgid, INVALID_PARAMS, job.error)
        elif job.answer is not None:
            self.queue.popleft()
            if job.held:
                held.append((job.msgid, job.answer))
            else:
                out.append(job.answer)
            self.metrics.latency[("rpc", "check_batch")].observe(perf_counter() - job.started)
        return budget

    def _hold(self, answers: list[tuple[int, bytes]]) -> None:
        """Write answers of state-creating decisions once the store has committed their changes."""
        durable = self.svc.durable
        assert durable is not None
        commit = durable.barrier()  # covers every change made so far, these decisions' included
        self.holding += 1

        async def commit_then_write() -> None:
            try:
                await commit
                data = b"".join(a for _, a in answers)
            except StoreError as e:
                # Not committed: the deadline these answers announce could be forgotten, so they are
                # not sent. The client gets an error and may retry (the store retries the commit).
                log.error("state commit failed; %d answer(s) withheld: %s", len(answers), e)
                for _ in answers:
                    self.metrics.rpc_errors.labels(UNAVAILABLE).inc()
                data = b"".join(self.enc.error(msgid, UNAVAILABLE, "state store unavailable; retry")
                                for msgid, _ in answers)
            finally:
                self.holding -= 1
            if not self.closing and self.transport is not None:
                self.transport.write(data)
            self._maybe_finish()

        self.server.spawn(commit_then_write())

    # --- flow control and closing --------------------------------------------------------------------

    def _schedule(self) -> None:
        if not self.scheduled:
            self.scheduled = True
            self.server.loop.call_soon(self.run)

    def _pause_reading(self) -> None:
        if self.reading and self.transport is not None and not self.closing:
            self.reading = False
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if not self.reading and not self.eof and self.transport is not None and not self.closing:
            self.reading = True
            self.transport.resume_reading()

    def drain(self) -> None:
        """Server shutdown: answer every request the client has already sent, then close.

        Reading goes on (requests sitting in the socket buffer were sent before the shutdown and are
        in flight); the connection closes once its answers are out and nothing more arrived for
        :data:`DRAIN_QUIET_S`. A client that keeps sending is cut at the drain timeout.
        """
        self.draining = True
        self._maybe_finish()

    def _maybe_finish(self) -> None:
        if self.queue or self.holding or self.scheduled or self.closing:
            return
        if self.eof:
            self.close("client")
        elif self.draining and not self.decoder.buffered:
            self.server.loop.call_later(DRAIN_QUIET_S, self._quiet_close, self.received)

    def _quiet_close(self, received: int) -> None:
        if self.received == received and not self.queue and not self.holding and not self.scheduled:
            self.close("drain")

    def close(self, cause: str) -> None:
        """Close after the buffered answers are flushed."""
        if self.transport is not None and not self.transport.is_closing():
            if cause not in ("drain", "client"):
                self.metrics.rpc_closed.labels(cause).inc()
            self.transport.close()
        self.closing = True

    def abort(self, cause: str) -> None:
        """Drop the connection now (answers not flushed)."""
        self.metrics.rpc_closed.labels(cause).inc()
        self.closing = True
        if self.transport is not None:
            self.transport.abort()
