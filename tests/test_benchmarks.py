"""The benchmarks are not run by the tests (they are measurements, not checks), but they must keep
importing and parsing their arguments as the code under them changes."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import benchmarks

ROOT = Path(__file__).resolve().parent.parent
MODULES = sorted(m.name for m in pkgutil.iter_modules(benchmarks.__path__))


@pytest.mark.parametrize("name", MODULES)
def test_benchmark_module_imports(name: str) -> None:
    module = importlib.import_module(f"benchmarks.{name}")
    assert module.__doc__, f"benchmarks/{name}.py says what it measures in its docstring"


# The bare servers (echo_server, bare_http) take positional arguments from service_bench, which is covered.
CLIS = [m for m in MODULES if "argparse" in (ROOT / "benchmarks" / f"{m}.py").read_text()]


@pytest.mark.parametrize("name", CLIS)
def test_benchmark_help(name: str) -> None:
    out = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "usage" in out.stdout.lower()
