"""The ``eir`` command line: one click group, one module per command family."""

from __future__ import annotations

import click


@click.group()
@click.version_option(package_name="eir")
def main() -> None:
    """EIR decision engine: snapshots, replay, one-off checks, the service."""
