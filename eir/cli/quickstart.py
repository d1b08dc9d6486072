"""``eir demo``: the embedded default — the service on a demo snapshot with SQLite state.

Generates a small seeded demo registry under ``var/demo`` (once), builds its snapshot (once), prints
how to query the service, and then runs ``eir serve`` with ``var/eir-state.db`` as the durable state.
"""

from __future__ import annotations

from pathlib import Path

import click

from eir.demo import write_demo
from eir.registry import RegistryError
from eir.snapshot import SnapshotError, build_snapshot

ROOT_RULES = Path(__file__).resolve().parent.parent.parent / "rules" / "default.toml"

HOW_TO_QUERY = """\
EIR demo: {devices:,} devices from {registry}, rules {rules}, state {state}

Query it (N5g-eir over HTTP):
  curl -s 'http://{http}/n5g-eir-eic/v1/equipment-status?pei=imei-{imei}&gpsi=msisdn-{msisdn}'
  curl -s -X POST http://{http}/v1/check -d '{{"imei":"{imei}","msisdn":"{msisdn}"}}'
  curl -s http://{http}/metrics | head

msgpack RPC (python3 with msgpack installed, e.g. .venv/bin/python):
  import socket, msgpack
  s = socket.create_connection(("{rpc_host}", {rpc_port}))
  s.sendall(msgpack.packb([0, 1, "check", ["{imei}", "{msisdn}"]]))
  u = msgpack.Unpacker(); u.feed(s.recv(65536))
  print(next(u))   # [1, 1, None, {{'verdict': ..., 'status': ..., 'reason': ..., 'deadline': ...}}]

Registry control plane (the service needs EIR_ADMIN_TOKEN in its environment: EIR_ADMIN_TOKEN=... make demo):
  EIR_ADMIN_TOKEN=... .venv/bin/eir admin --url http://{http} authenticity --imei {imei}
  EIR_ADMIN_TOKEN=... .venv/bin/eir admin --url http://{http} block --imei {imei} --reason stolen
  (every operation: .venv/bin/eir admin --help; docs/control-plane.md)

Replay the demo attach log:  .venv/bin/eir replay {attaches} --snapshot {snapshot} --rules {rules}
Stop with Ctrl-C (SIGINT/SIGTERM drain in-flight requests and flush the state).
"""


def _first_owned(registry: Path) -> tuple[str, str]:
    """An (IMEI, owner) pair of the demo registry for the printed examples."""
    import orjson

    with registry.open("rb") as f:
        for line in f:
            rec = orjson.loads(line)
            if rec.get("type") == "device" and rec.get("owner") and not rec.get("block"):
                return str(rec["imeis"][0]), str(rec["owner"])
    return "356938035643809", "09121234567"


@click.command("demo")
@click.option("--dir", "workdir", type=click.Path(file_okay=False, path_type=Path), default=Path("var/demo"),
              show_default=True, help="Where the demo data and snapshot are kept.")
@click.option("--devices", type=click.IntRange(min=100), default=20_000, show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=1, show_default=True)
@click.option("--state", type=click.Path(dir_okay=False, path_type=Path), default=Path("var/eir-state.db"),
              show_default=True, help="SQLite state file.")
@click.option("--rules", type=click.Path(dir_okay=False, path_type=Path), default=ROOT_RULES,
              show_default="rules/default.toml of the source tree",
              help="Rule set (needed when eir is installed without its source tree).")
@click.option("--rpc", default="127.0.0.1:3869", show_default=True, metavar="HOST:PORT")
@click.option("--http", "http", default="127.0.0.1:8080", show_default=True, metavar="HOST:PORT")
@click.pass_context
def demo(ctx: click.Context, workdir: Path, devices: int, seed: int, state: Path, rules: Path, rpc: str,
         http: str) -> None:
    """Run the service on a generated demo snapshot with SQLite state (the quick start)."""
    from eir.cli.serve import serve

    if not rules.is_file():
        raise click.UsageError(f"rule set {rules} not found; pass --rules PATH (e.g. rules/default.toml)")
    workdir.mkdir(parents=True, exist_ok=True)
    registry, attaches = workdir / "registry.jsonl", workdir / "attaches.csv"
    snapshot = workdir / "registry.eirsnap"
    if not registry.exists() or not attaches.exists():
        click.echo(f"generating demo data ({devices:,} devices, seed {seed}) in {workdir} ...", err=True)
        write_demo(workdir, devices, devices * 4, seed)
    if not snapshot.exists():
        try:
            build_snapshot([registry], snapshot, skip_invalid=False)
        except (RegistryError, SnapshotError) as e:
            raise click.ClickException(str(e)) from e
    state.parent.mkdir(parents=True, exist_ok=True)
    imei, owner = _first_owned(registry)
    rpc_host, _, rpc_port = rpc.rpartition(":")
    click.echo(HOW_TO_QUERY.format(devices=devices, registry=registry, rules=rules, state=state, http=http,
                                   imei=imei, msisdn=owner, rpc_host=rpc_host, rpc_port=rpc_port,
                                   attaches=attaches, snapshot=snapshot))
    ctx.invoke(serve, snapshot=snapshot, rules=rules, state=state, rpc=rpc, http=http)
