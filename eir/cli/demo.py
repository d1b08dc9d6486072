"""``eir demo-data``: write a realistic demo registry and attach log (see :mod:`eir.demo`)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click
from tqdm import tqdm

from eir.demo import DemoMix, DemoSummary, write_demo


@click.command("demo-data")
@click.option("--devices", type=click.IntRange(min=1), default=10_000, show_default=True, help="Registry devices.")
@click.option(
    "--attaches",
    type=click.IntRange(min=0),
    default=None,
    help="Attach-log rows, exactly (default: 4 per device).",
)
@click.option("--seed", type=click.IntRange(min=0), default=1, show_default=True, help="Same seed, same bytes.")
@click.option(
    "-o",
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, writable=True, path_type=Path),
    required=True,
    help="Directory for registry.jsonl and attaches.csv (created if missing).",
)
@click.option(
    "--with-codes",
    is_flag=True,
    help="Give some unactivated devices an activation_code (the snapshot build then needs EIR_CODE_KEY).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def demo_data(devices: int, attaches: int | None, seed: int, out_dir: Path, with_codes: bool, as_json: bool) -> None:
    """Write DIR/registry.jsonl and DIR/attaches.csv: a deterministic, realistic demo data set.

    The registry mixes owned, dual-IMEI, cloned, pre-registry, unactivated and blocked devices with
    their subscribers, blacklist and traveler entries; the attach log (time-sorted, 2026-10-01 ..
    2026-11-20 UTC) adds simultaneous-use clones, lend-and-return, travelers, roamers and malformed
    identifiers, in every spelling networks use.
    """
    mix = DemoMix(activation_codes=with_codes)
    rows = 4 * devices if attaches is None else attaches
    started = time.perf_counter()
    if sys.stderr.isatty():
        with tqdm(total=0, unit=" entities", unit_scale=True, desc="demo-data", leave=False) as bar:

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            summary = write_demo(out_dir, devices, rows, seed, mix, progress)
    else:
        summary = write_demo(out_dir, devices, rows, seed, mix)
    elapsed = time.perf_counter() - started
    if as_json:
        click.echo(json.dumps({**summary.as_dict(), "seconds": round(elapsed, 2)}, indent=2))
    else:
        click.echo(_render(summary, elapsed))


def _render(summary: DemoSummary, elapsed: float) -> str:
    lines = [
        f"wrote {summary.registry_path} and {summary.attaches_path} in {elapsed:.1f} s (seed {summary.seed})",
        f"  devices {summary.devices:,} ({summary.dual_imei_devices:,} dual-IMEI, {summary.imeis:,} IMEIs, "
        f"{summary.owned_devices:,} owned), subscribers {summary.subscribers:,} "
        f"({summary.expired_subscribers:,} expired), tac {summary.tac_records}, "
        f"blacklist {summary.blacklist_records:,}, traveler entries {summary.traveler_entries:,}",
        f"  attach rows {summary.attach_rows:,} ({summary.malformed_rows:,} malformed IMEIs, "
        f"{summary.imsi_only_rows:,} IMSI only)",
        "  population                    entities       rows",
    ]
    for name, rows in summary.rows_by_population.items():
        entities = summary.populations.get(name)
        shown = "" if entities is None else f"{entities:,}"
        lines.append(f"  {name:<26} {shown:>11} {rows:>10,}")
    if summary.activation_codes:
        lines.append(f"  {summary.activation_codes:,} activation codes: `eir snapshot build` needs EIR_CODE_KEY")
    return "\n".join(lines)
