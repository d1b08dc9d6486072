"""``eir snapshot build|export|inspect``: registry JSONL -> snapshot; roll a snapshot forward with the control
plane's journal; describe one."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import orjson

from eir.control_export import export_snapshot
from eir.control_ops import JournalError
from eir.registry import MAX_REPORTED_ERRORS, RegistryError
from eir.snapshot import SnapshotError, SnapshotMeta, build_snapshot, read_snapshot
from eir.store_schema import StoreError

# Counts in the order an operator reads them; any other count in the file is listed after these.
_COUNT_ORDER = (
    "devices", "imeis", "owned", "cloned", "blocked_devices", "blacklisted_imeis", "blacklisted_unregistered",
    "origin_import", "origin_pre_registry", "origin_traveler", "origin_repair", "pre_registry",
    "unowned_pre_registry", "not_activated_import", "not_activated_traveler", "not_activated_repair",
    "operator_sims", "devices_with_operator_sims", "pre_registry_users", "activation_codes", "models",
    "subscribers", "subscribers_with_imsi", "subscribers_with_national_id", "subscribers_expired",
    "traveler_entries", "tacs",
)  # fmt: skip


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def _ordered_counts(meta: SnapshotMeta) -> dict[str, int]:
    counts = dict(meta.counts)
    ordered = {k: counts.pop(k) for k in _COUNT_ORDER if k in counts}
    ordered.update(sorted(counts.items()))
    return ordered


def _print_errors(errors: tuple[str, ...] | list[str], n_errors: int) -> None:
    for line in errors:
        click.echo(line, err=True)
    if n_errors > len(errors):
        click.echo(f"... and {n_errors - len(errors)} more (only the first {MAX_REPORTED_ERRORS} are listed)", err=True)


@click.group()
def snapshot() -> None:
    """Build and inspect registry snapshot files."""


@snapshot.command()
@click.argument("registry", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "-o", "--output", "out", required=True, type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Snapshot file to write (replaced atomically).",
)  # fmt: skip
@click.option("--skip-invalid", is_flag=True, help="Report invalid records and build without them.")
def build(registry: tuple[Path, ...], out: Path, skip_invalid: bool) -> None:
    """Validate REGISTRY JSON Lines file(s) and write one snapshot.

    Activation codes are stored only as HMAC-SHA256 under the key in EIR_CODE_KEY.
    """
    try:
        report = build_snapshot(list(registry), out, skip_invalid)
    except RegistryError as exc:
        _print_errors(exc.errors, exc.n_errors)
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from None
    except OSError as exc:  # writing the output (reading errors are RegistryErrors with a location)
        click.echo(f"error: cannot write {out}: {exc.strerror or exc}", err=True)
        raise SystemExit(1) from None
    if report.n_errors:
        _print_errors(report.errors, report.n_errors)
        click.echo(f"warning: skipped {report.n_errors} invalid record(s)", err=True)
    c = report.meta.counts
    click.echo(
        f"wrote {out} ({report.meta.size:,} bytes, sha256 {report.meta.checksum[:16]}...): "
        f"{c['devices']:,} devices, {c['imeis']:,} IMEIs, {c['subscribers']:,} subscribers, "
        f"{c['blacklisted_imeis']:,} blacklisted IMEIs, {c['traveler_entries']:,} traveler entries, "
        f"{c['tacs']:,} TACs; {report.records:,} records from {report.lines:,} lines "
        f"in {report.elapsed:.2f} s"
    )


@snapshot.command()
@click.option("--state", "state", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="State database whose registry-change journal is applied (the service may be running).")
@click.option("--snapshot", "snap", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The snapshot the service serves (or any snapshot exported from this state).")
@click.option("-o", "--output", "out", required=True, type=click.Path(dir_okay=False, writable=True, path_type=Path),
              help="Snapshot file to write (replaced atomically).")
def export(state: Path, snap: Path, out: Path) -> None:
    """Write a snapshot that includes the control plane's journaled changes.

    Its meta records the journal and the last change it includes, so serving it with the same state
    replays only the newer changes.
    """
    try:
        meta, report = export_snapshot(snap, state, out)
    except (SnapshotError, StoreError, JournalError) as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from None
    except OSError as exc:
        click.echo(f"error: cannot write {out}: {exc.strerror or exc}", err=True)
        raise SystemExit(1) from None
    click.echo(
        f"wrote {out} ({meta.size:,} bytes, sha256 {meta.checksum[:16]}...): {report.applied:,} journaled "
        f"change(s) applied ({report.skipped:,} mutation(s) no longer applicable), journal watermark "
        f"{meta.journal_seq}"
    )


@snapshot.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def inspect(path: Path, as_json: bool) -> None:
    """Verify a snapshot (checksum) and print its version, creation time and counts."""
    try:
        meta = read_snapshot(path).meta
    except SnapshotError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from None
    counts = _ordered_counts(meta)
    if as_json:
        doc: dict[str, Any] = {
            "path": str(path), "format_version": meta.format_version, "created": meta.created,
            "created_iso": _iso(meta.created), "checksum_sha256": meta.checksum, "size": meta.size,
            "generator": meta.generator, "sources": list(meta.sources), "skipped_records": meta.skipped,
            "journal": {"id": meta.journal_id, "seq": meta.journal_seq}, "counts": counts,
        }  # fmt: skip
        click.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
        return
    width = max(map(len, counts), default=0)
    click.echo(f"snapshot        {path}")
    click.echo(f"format version  {meta.format_version}")
    click.echo(f"created         {_iso(meta.created)}")
    click.echo(f"checksum        sha256:{meta.checksum}")
    click.echo(f"size            {meta.size:,} bytes")
    click.echo(f"generator       {meta.generator}")
    click.echo(f"sources         {', '.join(meta.sources)}")
    if meta.skipped:
        click.echo(f"skipped         {meta.skipped} invalid record(s) at build")
    if meta.journal_seq:
        click.echo(f"journal         changes 1..{meta.journal_seq} of journal {meta.journal_id} included")
    click.echo("counts")
    for name, value in counts.items():
        click.echo(f"  {name:<{width}}  {value:>12,}")
