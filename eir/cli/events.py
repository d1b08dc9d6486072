"""``eir events tail|status``: the durable event outbox from the command line.

Reads the state database read-only (a running ``eir serve`` keeps writing it; WAL readers never block
the writer) and prints only committed events, as JSON Lines, oldest first.
"""

from __future__ import annotations

import sqlite3
import sys
import time
from pathlib import Path

import click
import orjson

from eir.store_schema import StoreError, connect_reader, iter_events, last_committed_seq

_state = click.Path(dir_okay=False, path_type=Path)


@click.group("events")
def events() -> None:
    """The event outbox of a state database (what the SMS gateway and the registry consume)."""


@events.command("tail")
@click.option("--state", "state", type=_state, required=True, help="State database (eir serve/replay --state).")
@click.option("--after", type=click.IntRange(min=0), default=0, show_default=True,
              help="Print events with a seq greater than this.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events as they are committed.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Stop after this many events.")
@click.option("--poll", type=click.FloatRange(min=0.01, max=60), default=0.25, show_default=True,
              help="Seconds between checks for new events with --follow.")
def tail(state: Path, after: int, follow: bool, limit: int | None, poll: float) -> None:
    """Print committed events after --after as JSON Lines (seq is the idempotency key)."""
    try:
        conn = connect_reader(state)
    except StoreError as e:
        raise click.ClickException(str(e)) from e
    out = sys.stdout.buffer
    left = limit
    try:
        while True:
            for seq, body in iter_events(conn, after):
                out.write(body)
                out.write(b"\n")
                after = seq
                if left is not None:
                    left -= 1
                    if left == 0:
                        out.flush()
                        return
            out.flush()
            if not follow:
                return
            time.sleep(poll)
    except KeyboardInterrupt:
        return
    except BrokenPipeError:
        # `eir events tail | head`: the reader went away; leave quietly.
        sys.stderr.close()
    except sqlite3.Error as e:
        raise click.ClickException(f"{state}: {e}") from e
    finally:
        conn.close()


@events.command("status")
@click.option("--state", "state", type=_state, required=True, help="State database.")
def status(state: Path) -> None:
    """Outbox size, last committed seq and each delivery consumer's position (JSON)."""
    try:
        conn = connect_reader(state)
    except StoreError as e:
        raise click.ClickException(str(e)) from e
    try:
        last = last_committed_seq(conn)
        rows, first = conn.execute("SELECT count(*), min(seq) FROM outbox").fetchone()
        consumers = {str(n): int(s) for n, s in conn.execute("SELECT name, seq FROM consumer")}
    except sqlite3.Error as e:
        raise click.ClickException(f"{state}: {e}") from e
    finally:
        conn.close()
    doc = {"last_seq": last, "outbox_rows": rows, "first_seq": first,
           "consumers": {n: {"acked_seq": s, "lag": last - s} for n, s in consumers.items()}}
    click.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
