"""``eir serve``: the EIR service (msgpack RPC + HTTP N5g-eir) on uvloop."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import click

from eir.config import DEFAULT_HTTP, DEFAULT_RPC, ConfigError, ServiceConfig, load_config


def _run(config: ServiceConfig) -> int:
    # Imported here: nothing heavy (uvloop, aiohttp) happens when the CLI is merely loaded.
    import uvloop

    from eir import log
    from eir.runtime import raise_gc_thresholds
    from eir.service import Service

    log.configure(config.log_level)
    # Process-wide, like the replay: young collections every 100k allocations instead of 700 (the
    # service freezes its long-lived objects itself, see Service._gc_freezer).
    raise_gc_thresholds()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(Service(config).run())


@click.command()
@click.option("--snapshot", "snapshot", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Snapshot file to serve (re-read on reload).")
@click.option("--rules", "rules", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Rule-set TOML file (re-read on reload).")
@click.option("--state", "state", default=None, metavar="PATH|memory",
              help="SQLite file of the durable state (parent directory created if missing), or 'memory' "
                   "for an in-memory state lost on exit (no webhook, no /v1/events) "
                   "[default: ./var/eir-state.db].")
@click.option("--webhook", "webhook", multiple=True, metavar="URL",
              help="POST committed events to this http(s) URL (at least once, seq = idempotency key); "
                   "repeatable; needs a durable --state.")
@click.option("--rpc", "rpc", default=None, metavar="HOST:PORT",
              help=f"msgpack RPC listen address, or 'off' [default: {DEFAULT_RPC}].")
@click.option("--http", "http", default=None, metavar="HOST:PORT",
              help=f"HTTP listen address, or 'off' [default: {DEFAULT_HTTP}].")
@click.option("--max-message-bytes", type=int, default=None, help="Largest RPC message / HTTP body [1 MiB].")
@click.option("--max-batch", type=int, default=None, help="Most queries per batch [10000].")
@click.option("--max-connections", type=int, default=None, help="Most open RPC connections [1024].")
@click.option("--idle-timeout", "idle_timeout_s", type=float, default=None,
              help="Seconds a connection may stay without a complete request [300].")
@click.option("--drain-timeout", "drain_timeout_s", type=float, default=None,
              help="Seconds SIGTERM gives in-flight requests [10].")
@click.option("--max-share-jump", type=float, default=None,
              help="Reload safety bound: largest increase of the blocked/cloned/unowned IMEI share [0.05].")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default=None,
              help="Log level [info].")
def serve(**options: Any) -> None:
    """Serve decisions over msgpack RPC and HTTP (N5g-eir) until SIGTERM.

    SIGHUP or POST /v1/admin/reload (bearer token from EIR_ADMIN_TOKEN) reloads the snapshot and the
    rules. Limits may also come from the environment (EIR_MAX_MESSAGE_BYTES, EIR_MAX_BATCH,
    EIR_MAX_CONNECTIONS, EIR_IDLE_TIMEOUT, EIR_DRAIN_TIMEOUT, EIR_MAX_SHARE_JUMP, EIR_LOG_LEVEL).
    """
    try:
        config = load_config(options, os.environ)
    except ConfigError as e:
        raise click.UsageError(str(e)) from e
    sys.exit(_run(config))
