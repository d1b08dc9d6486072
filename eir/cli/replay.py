"""`eir replay` and `eir check`: decisions from the command line against a snapshot and a rule set."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, Any

import click
import orjson

from eir.compare import Comparison, compare
from eir.control_ops import JournalError
from eir.control_ops import replay as replay_journal
from eir.engine import Bundle, Engine, EventSink
from eir.events import Event, iso_utc
from eir.identifiers import IdentifierError
from eir.index import Index
from eir.query import build_query, parse_time
from eir.replay import (
    BadRow,
    DecisionWriter,
    ReplayError,
    Summary,
    event_counter,
    event_writer,
    read_rows,
)
from eir.replay_fast import replay_file
from eir.rules import RuleError, RuleSet, load_rules
from eir.runtime import tune_gc_after_load
from eir.snapshot import SnapshotError
from eir.state import MemoryState

_existing = click.Path(exists=True, dir_okay=False, path_type=Path)


def load_bundle(snapshot: Path, rules: Path) -> Bundle:
    """Load a snapshot and a rule set, turning their errors into CLI errors."""
    try:
        return Bundle.of(Index.from_snapshot(snapshot), load_rules(rules))
    except (SnapshotError, RuleError) as e:
        raise click.ClickException(str(e)) from e


def _rules(path: Path) -> RuleSet:
    try:
        return load_rules(path)
    except RuleError as e:
        raise click.ClickException(str(e)) from e


class _BadRows:
    """Reports unreadable rows on stderr (up to a cap), or stops the run under --strict."""

    def __init__(self, source: Path, strict: bool, cap: int, summary: Summary | None) -> None:
        self.source, self.strict, self.cap, self.summary = source, strict, cap, summary
        self.count = 0

    def __call__(self, bad: BadRow) -> None:
        self.count += 1
        if self.summary is not None:
            self.summary.bad_rows += 1
        msg = f"{self.source}:{bad.line}: {bad.reason}"
        if self.strict:
            raise click.ClickException(f"{msg} (--strict)")
        if self.count <= self.cap:
            click.echo(f"bad row: {msg}", err=True)
        elif self.count == self.cap + 1:
            click.echo(f"bad row: more bad rows follow; only the first {self.cap} are listed", err=True)


def _progress(enabled: bool) -> tuple[Any, Any]:
    if not enabled:
        return None, None
    from tqdm import tqdm

    bar = tqdm(unit=" rows", unit_scale=True, file=sys.stderr, mininterval=0.5)
    last = [0]

    def update(n: int) -> None:
        bar.update(n - last[0])
        last[0] = n

    return bar, update


@click.command("replay")
@click.argument("attaches", type=_existing)
@click.option("--snapshot", "snapshot", type=_existing, required=True, help="Snapshot file (eir snapshot build).")
@click.option("--rules", "rules", type=_existing, required=True, help="Rule set (rules/*.toml).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Decisions, one JSON per row.")
@click.option("--events", "events_out", type=click.Path(dir_okay=False, path_type=Path),
              help="Events, one JSON per event.")
@click.option("--compare", "compare_rules", type=_existing, help="Second rule set: report what changes.")
@click.option("--strict", is_flag=True, help="Stop at the first unreadable row.")
@click.option("--summary-json", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the summary (or comparison) as JSON.")
@click.option("--max-bad-reports", default=1000, show_default=True, help="Bad rows listed on stderr.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: when stderr is a terminal).")
@click.option("--state", "state_db", type=click.Path(dir_okay=False, path_type=Path),
              help="SQLite state to continue from and to write (default: in memory, discarded).")
def replay_cmd(attaches: Path, snapshot: Path, rules: Path, out: Path | None, events_out: Path | None,
               compare_rules: Path | None, strict: bool, summary_json: Path | None, max_bad_reports: int,
               progress: bool | None, state_db: Path | None) -> None:
    """Replay an attach log (CSV or JSON Lines) against a snapshot and a rule set."""
    show = sys.stderr.isatty() if progress is None else progress
    t0 = time.perf_counter()
    index = _load_index(snapshot)
    tune_gc_after_load()
    click.echo(f"snapshot {snapshot}: {index.n_devices:,} devices, {index.n_imeis:,} IMEIs "
               f"(loaded in {time.perf_counter() - t0:.2f} s)", err=True)
    rules_a = _rules(rules)
    bar, update = _progress(show)
    try:
        if compare_rules is not None:
            if state_db is not None:
                raise click.UsageError("--compare runs each rule set on its own fresh state: drop --state")
            rules_b = _rules(compare_rules)
            cmp = Comparison(rules_a.name, rules_b.name)
            # Events are only counted here: their texts are not rendered.
            ea = Engine(Bundle.of(index, rules_a), MemoryState(keep_outbox=False), (event_counter(cmp.a),), False)
            eb = Engine(Bundle.of(index, rules_b), MemoryState(keep_outbox=False), (event_counter(cmp.b),), False)
            bad = _BadRows(attaches, strict, max_bad_reports, None)
            compare(read_rows(attaches), ea, eb, cmp, bad, update)
            if bar is not None:
                bar.close()
            click.echo(cmp.render())
            _write_json(summary_json, cmp.to_dict())
            return
        summary = Summary()
        with ExitStack() as stack:
            sinks: list[EventSink] = []
            if events_out is not None:
                sinks.append(event_writer(stack.enter_context(_open_out(events_out)), summary))
            else:
                sinks.append(event_counter(summary))
            writer = DecisionWriter(stack.enter_context(_open_out(out))) if out is not None else None
            state = stack.enter_context(_open_state(state_db, rules_a))
            _replay_journal(index, state)
            # Texts are rendered when someone reads them: the --events file or the durable outbox.
            texts = events_out is not None or state_db is not None
            engine = Engine(Bundle.of(index, rules_a), state, tuple(sinks), texts)
            bad = _BadRows(attaches, strict, max_bad_reports, summary)
            replay_file(attaches, engine, summary, writer, bad, update)
    except ReplayError as e:
        raise click.ClickException(str(e)) from e
    finally:
        if bar is not None:
            bar.close()
    click.echo(f"replay of {attaches} under rule set '{rules_a.name}'")
    click.echo(summary.render())
    _write_json(summary_json, summary.to_dict())


@contextmanager
def _open_state(path: Path | None, rules: RuleSet) -> Iterator[MemoryState]:
    """The replay's state: in memory, or the durable SQLite state (committed in chunks and at the end)."""
    if path is None:
        yield MemoryState(keep_outbox=False)
        return
    from eir.store import StoreError
    from eir.store_sync import SyncSqliteState

    try:
        store = SyncSqliteState.open(path, rules=lambda: rules)
    except StoreError as e:
        raise click.ClickException(str(e)) from e
    with store:
        yield store


def _replay_journal(index: Index, state: MemoryState) -> None:
    """A state database carries the control plane's registry changes: decide as the service would."""
    try:
        report = replay_journal(index, state.changes, state.journal_id)
    except JournalError as e:
        raise click.ClickException(str(e)) from e
    if report.applied:
        click.echo(f"registry-change journal: {report.applied} change(s) applied to the snapshot", err=True)


def _load_index(snapshot: Path) -> Index:
    try:
        return Index.from_snapshot(snapshot)
    except SnapshotError as e:
        raise click.ClickException(str(e)) from e


def _open_out(path: Path) -> IO[bytes]:
    try:
        return path.open("wb", buffering=1 << 20)
    except OSError as e:
        raise click.ClickException(f"{path}: cannot write: {e.strerror}") from e


def _write_json(path: Path | None, obj: Any) -> None:
    if path is not None:
        with _open_out(path) as f:
            f.write(orjson.dumps(obj, option=orjson.OPT_INDENT_2))


@click.command("check")
@click.option("--snapshot", type=_existing, required=True, help="Snapshot file.")
@click.option("--rules", type=_existing, required=True, help="Rule set (rules/*.toml).")
@click.option("--imei", required=True, help="IMEI / IMEISV (14-16 digits, imei-/imeisv- prefix allowed).")
@click.option("--msisdn", default=None, help="Subscriber number (any Iranian or E.164 form).")
@click.option("--imsi", default=None, help="IMSI (used when there is no MSISDN).")
@click.option("--slot", default=None, help="SIM slot, 1-based (default 1).")
@click.option("--time", "when", default=None, help="ISO 8601 with offset or epoch seconds (default: now).")
def check_cmd(snapshot: Path, rules: Path, imei: str, msisdn: str | None, imsi: str | None, slot: str | None,
              when: str | None) -> None:
    """Decide one attach and print the decision (and the events it would emit) as JSON."""
    bundle = load_bundle(snapshot, rules)
    events: list[Event] = []
    engine = Engine(bundle, MemoryState(), (events.append,))
    try:
        t = parse_time(when) if when is not None else int(time.time())
        q = build_query(bundle.index, bundle.rules, t, imei, msisdn, slot, imsi)
    except IdentifierError as e:
        raise click.UsageError(str(e)) from e
    d = engine.check(q)
    click.echo(orjson.dumps({
        "time": iso_utc(q.time), "imei": imei, "msisdn": str(q.msisdn) if q.msisdn else None,
        "slot": q.slot, "roamer": q.roamer, "verdict": d.verdict.name, "status": d.verdict.status,
        "reason": d.reason.value, "deadline": iso_utc(d.deadline),
        "events": [e.to_dict() for e in events],
    }, option=orjson.OPT_INDENT_2).decode())
