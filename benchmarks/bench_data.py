"""Seeded benchmark data: demo registry -> snapshot, demo attach log -> RPC queries and N5g-eir paths.

Cached under ``bench-out/data/d<devices>-a<attaches>-s<seed>/`` (rebuilt when missing). Only rows the
service accepts are kept (a row with a bad MSISDN would be an RPC error, and a non-digit IMEI an HTTP
400), so every figure counts answered decisions.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from eir.demo import write_demo
from eir.identifiers import IdentifierError, parse_msisdn
from eir.index import Index
from eir.query import RequestError, build_query
from eir.rules import load_rules
from eir.snapshot import build_snapshot

ROOT = Path(__file__).resolve().parent.parent
EIC = "/n5g-eir-eic/v1/equipment-status"


def _pei(raw: str) -> str | None:
    s = raw.strip().lower()
    for prefix in ("imeisv-", "imei-"):
        if s.startswith(prefix):
            s = s[len(prefix) :]
    if not (s.isascii() and s.isdigit() and 14 <= len(s) <= 16):
        return None
    return {14: s, 15: "imei-" + s, 16: "imeisv-" + s}[len(s)]


def prepare(base: Path, devices: int, attaches: int, seed: int, batch_size: int) -> dict[str, Any]:
    d = base / f"d{devices}-a{attaches}-s{seed}"
    snap = d / "snapshot.eirsnap"
    if not snap.exists():
        d.mkdir(parents=True, exist_ok=True)
        write_demo(d, devices, attaches, seed)
        build_snapshot([d / "registry.jsonl"], snap, skip_invalid=False)
    rules = load_rules(ROOT / "rules" / "default.toml")
    index = Index.from_snapshot(snap)
    queries: list[list[Any]] = []
    paths: list[str] = []
    with open(d / "attaches.csv", newline="") as f:
        for row in csv.DictReader(f):
            imei, msisdn, slot, imsi = row["imei"], row["msisdn"] or None, row["slot"] or None, row["imsi"] or None
            try:
                build_query(index, rules, 1_790_000_000, imei, msisdn, slot, imsi)
            except RequestError:
                continue
            queries.append([imei, msisdn, int(slot) if slot else None, None, imsi])
            pei = _pei(imei)
            if pei is None:
                continue
            args = [f"pei={pei}"]
            if msisdn:
                try:
                    args.append(f"gpsi=msisdn-{parse_msisdn(msisdn, rules.plan)[0]}")
                except IdentifierError:
                    continue
            elif imsi:
                args.append(f"supi=imsi-{imsi}")
            paths.append(EIC + "?" + "&".join(args))
    paths_file = d / "paths.txt"
    paths_file.write_text("\n".join(paths) + "\n")
    batches = [queries[i : i + batch_size] for i in range(0, len(queries) - batch_size + 1, batch_size)]
    return {"snapshot": snap, "queries": queries, "batches": batches, "paths": paths, "paths_file": paths_file}
