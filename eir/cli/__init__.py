"""The ``eir`` command line: one click group, one module per command family."""

from __future__ import annotations

import click


@click.group()
@click.version_option(package_name="eir")
def main() -> None:
    """EIR decision engine: snapshots, replay, one-off checks, the service."""


def _register() -> None:
    # Subcommands live in their own modules; registering them here keeps `eir --help` complete.
    from eir.cli.admin import admin
    from eir.cli.demo import demo_data
    from eir.cli.events import events
    from eir.cli.quickstart import demo
    from eir.cli.replay import check_cmd, replay_cmd
    from eir.cli.serve import serve
    from eir.cli.snapshot import snapshot

    for cmd in (demo, snapshot, replay_cmd, check_cmd, serve, events, demo_data, admin):
        main.add_command(cmd)


_register()
