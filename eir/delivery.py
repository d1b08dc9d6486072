"""Event delivery to a webhook (SPEC §5, issue 4): at least once, ``seq`` as the idempotency key.

A :class:`WebhookSink` reads *committed* events from the store's outbox (never the in-memory ones: an
event is delivered only once it survives a crash), POSTs them in batches and records the last
acknowledged ``seq`` durably under its consumer name, so a restart resumes where the receiver left off.
It runs as its own task and only ever reads the outbox: a slow or dead receiver makes the outbox backlog
grow (``lag`` metric) and never delays a decision.

Wire format (one POST per batch, ``Content-Type: application/json``)::

    {"events": [{"seq": 41, "type": "CLONE_GRACE_STARTED", ...}, {"seq": 42, ...}]}

with headers ``Idempotency-Key: eir-<first>-<last>``, ``X-EIR-First-Seq`` and ``X-EIR-Last-Seq``. Any 2xx
acknowledges the whole batch; anything else (or no answer within the timeout) is retried with
exponential back-off and jitter. After a crash the last batch may be sent again: receivers de-duplicate
on ``seq``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

import aiohttp

from eir.store_schema import StoreError

log = logging.getLogger("eir.delivery")

USER_AGENT: Final = "eir-webhook/1"


class DeliveryError(ValueError):
    """A webhook configuration that cannot work (bad URL, bad limits)."""


class Outbox(Protocol):
    """What delivery needs from the store (:class:`eir.store.SqliteState`)."""

    committed_seq: int

    async def read_events(self, after: int, limit: int) -> list[tuple[int, bytes]]: ...
    async def wait_for_events(self, after: int, timeout: float) -> bool: ...
    def attach_consumer(self, name: str) -> int: ...
    async def ack(self, consumer: str, seq: int) -> None: ...


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """Where and how to deliver; the defaults suit an SMS gateway on the operator's network."""

    url: str
    #: Consumer name under which the acknowledged ``seq`` is stored (one per receiver).
    name: str = "webhook"
    batch_size: int = 500
    timeout_s: float = 10.0
    backoff_s: float = 0.5
    backoff_max_s: float = 60.0
    #: How long to wait for new events before checking again (the wait ends at once on a commit).
    idle_wait_s: float = 5.0
    headers: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise DeliveryError(f"webhook URL must be http(s)://host/..., not {safe_url(self.url)!r}")
        if not self.name or len(self.name) > 64:
            raise DeliveryError("webhook consumer name must be 1..64 characters")
        if not 1 <= self.batch_size <= 10_000:
            raise DeliveryError("webhook batch size must be 1..10000")
        for field in ("timeout_s", "backoff_s", "backoff_max_s", "idle_wait_s"):
            if not getattr(self, field) > 0:
                raise DeliveryError(f"webhook {field} must be > 0")


def safe_url(url: str) -> str:
    """The URL without credentials, query or fragment (what logs may show: tokens often sit there)."""
    p = urlsplit(url)
    host = p.hostname or ""
    port = f":{p.port}" if p.port else ""
    return f"{p.scheme}://{host}{port}{p.path}"


class WebhookSink:
    """POSTs committed outbox events to a URL; ``start()`` it on the service loop, ``await stop()`` it."""

    def __init__(self, store: Outbox, config: WebhookConfig,
                 session: aiohttp.ClientSession | None = None) -> None:
        self.store = store
        self.config = config
        self._session = session
        self._own_session = session is None
        self._task: asyncio.Task[None] | None = None
        self.acked = store.attach_consumer(config.name)
        self.delivered = 0
        self.batches = 0
        self.failures = 0
        self.consecutive_failures = 0
        self.last_error: str | None = None

    def start(self) -> None:
        """Start delivering in the background (idempotent)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"eir-webhook-{self.config.name}")

    async def stop(self) -> None:
        """Stop delivering (an unacknowledged batch is sent again after the next start)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def name(self) -> str:
        """The consumer name (labels this delivery's metrics, keys its acknowledged ``seq``)."""
        return self.config.name

    @property
    def lag(self) -> int:
        """Committed events the receiver has not acknowledged yet (the outbox backlog)."""
        return max(0, self.store.committed_seq - self.acked)

    def metrics(self) -> dict[str, float]:
        """Counters and gauges for /metrics."""
        return {"acked_seq": self.acked, "lag": self.lag, "delivered": self.delivered, "batches": self.batches,
                "failures": self.failures, "consecutive_failures": self.consecutive_failures}

    async def _run(self) -> None:
        cfg = self.config
        if self._session is None:
            self._session = aiohttp.ClientSession(headers={"User-Agent": USER_AGENT})
        backoff = cfg.backoff_s
        while True:
            try:
                rows = await self.store.read_events(self.acked, cfg.batch_size)
            except (StoreError, OSError) as e:
                self._failed(f"reading the outbox: {e}")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, cfg.backoff_max_s)
                continue
            if not rows:
                await self.store.wait_for_events(self.acked, cfg.idle_wait_s)
                continue
            if await self._post(rows):
                last = rows[-1][0]
                try:
                    await self.store.ack(cfg.name, last)
                except StoreError as e:
                    # The cursor stays queued in the store and is committed later; at worst this batch
                    # is delivered again after a crash, which at-least-once allows.
                    log.warning("webhook: acknowledged seq %d not yet durable: %s", last, e)
                self.acked = last
                self.delivered += len(rows)
                self.batches += 1
                self.consecutive_failures = 0
                backoff = cfg.backoff_s
            else:
                # Full jitter: many engines retrying one receiver do not retry in lockstep.
                await asyncio.sleep(random.uniform(backoff / 2, backoff))
                backoff = min(backoff * 2, cfg.backoff_max_s)

    async def _post(self, rows: list[tuple[int, bytes]]) -> bool:
        cfg = self.config
        assert self._session is not None
        first, last = rows[0][0], rows[-1][0]
        body = b'{"events":[' + b",".join(b for _, b in rows) + b"]}"
        headers: dict[str, Any] = {
            "Content-Type": "application/json", "Idempotency-Key": f"eir-{first}-{last}",
            "X-EIR-First-Seq": str(first), "X-EIR-Last-Seq": str(last),
        }
        if cfg.headers:
            headers.update(cfg.headers)
        try:
            async with self._session.post(cfg.url, data=body, headers=headers,
                                          timeout=aiohttp.ClientTimeout(total=cfg.timeout_s)) as resp:
                await resp.read()
                if 200 <= resp.status < 300:
                    return True
                self._failed(f"HTTP {resp.status} for seq {first}..{last}")
        except (aiohttp.ClientError, TimeoutError) as e:
            self._failed(f"{type(e).__name__} for seq {first}..{last}: {e}")
        return False

    def _failed(self, why: str) -> None:
        self.failures += 1
        self.consecutive_failures += 1
        self.last_error = why
        # Log the first failure of a streak and then every 10th: a dead receiver must not flood logs.
        if self.consecutive_failures == 1 or self.consecutive_failures % 10 == 0:
            log.warning("webhook %s: delivery failed (%d in a row): %s", safe_url(self.config.url),
                        self.consecutive_failures, why)
