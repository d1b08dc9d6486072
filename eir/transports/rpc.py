"""msgpack RPC over TCP: pipelined ``check``, ``check_batch`` and ``ping`` (wire format: rpc_codec).

Methods (MessagePack-RPC: request ``[0, msgid, method, params]``, response ``[1, msgid, error, result]``):

* ``check`` params ``[imei, msisdn, slot?, time?, imsi?]`` (time: epoch seconds, ISO 8601, or nil = now)
  -> ``{"verdict", "status", "reason", "deadline"}`` (deadline: int epoch seconds or nil);
* ``check_batch`` params ``[[[imei, msisdn, slot?, time?, imsi?], ...]]`` -> the result maps in order;
  every query is validated before any is decided (one bad query: ``invalid_params`` naming its index);
* ``ping`` -> ``"pong"``.

Errors are ``{"code", "message"}`` maps; codes: ``invalid_request`` (not msgpack-rpc: answered, then the
connection closes), ``invalid_params``, ``unknown_method``, ``too_large``, ``not_ready``, ``overloaded``
(connection limit), ``unavailable`` (the state store could not commit). Connections, message size,
batch length and idle time are bounded (``eir.config.Limits``). Answer order and flow control:
``eir.transports.rpc_conn``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from eir.log import fields
from eir.transports.rpc_conn import RpcConnection

if TYPE_CHECKING:
    from eir.service import Service

__all__ = ["RpcConnection", "RpcServer"]
log = logging.getLogger("eir.rpc")


class RpcServer:
    """The listening socket, the set of connections, the idle sweeper and the drain."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.loop = asyncio.get_running_loop()
        self.conns: set[RpcConnection] = set()
        self.address: tuple[str, int] | None = None
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.accepting = False

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen; returns the bound address (port 0 picks a free one)."""
        self.accepting = True
        self._server = await self.loop.create_server(lambda: RpcConnection(self), host, port, backlog=1024)
        sockname = self._server.sockets[0].getsockname()
        self.address = (sockname[0], sockname[1])
        self._sweeper = self.loop.create_task(self._sweep())
        log.info("listening", extra=fields(transport="rpc", host=self.address[0], port=self.address[1]))
        return self.address

    def admit(self, conn: RpcConnection) -> bool:
        """Count a new connection in, unless the limit is reached."""
        if not self.accepting or len(self.conns) >= self.service.config.limits.max_connections:
            self.service.metrics.rpc_rejected.inc()
            return False
        self.conns.add(conn)
        self.service.metrics.rpc_connections.inc()
        return True

    def forget(self, conn: RpcConnection) -> None:
        if conn in self.conns:
            self.conns.discard(conn)
            self.service.metrics.rpc_connections.dec()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _sweep(self) -> None:
        """Close idle connections; drop clients that stopped reading their answers."""
        idle = self.service.config.limits.idle_timeout_s
        while True:
            await asyncio.sleep(max(0.05, min(idle / 4, 5.0)))
            now = self.loop.time()
            for c in list(self.conns):
                if now - c.last_active > idle and not c.holding:
                    if c.write_paused:
                        c.abort("slow_reader")
                    elif not c.queue:
                        c.close("idle")

    async def drain(self, timeout: float) -> None:
        """Stop accepting; let every connection answer what it received; close (abort after timeout)."""
        self.accepting = False
        server, self._server = self._server, None
        if server is not None:
            server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        for c in list(self.conns):
            c.drain()
        waits = [c.lost for c in self.conns]
        if waits:
            await asyncio.wait(waits, timeout=timeout)
        for c in list(self.conns):
            c.abort("drain_timeout")
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)
        if server is not None:
            await server.wait_closed()
