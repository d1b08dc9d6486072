"""eir.native: when an optional C extension is used, and why not."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from eir import fastpath
from eir.native import FASTPATH_ABI, REPLAYIO_ABI, load


def test_disabled_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EIR_PURE_PYTHON", "1")
    mod, why = load("eir._fastpath", FASTPATH_ABI)
    assert mod is None and "EIR_PURE_PYTHON" in why


def test_not_built(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EIR_PURE_PYTHON", raising=False)
    mod, why = load("eir._no_such_extension", 1)
    assert mod is None and "not built" in why


def test_stale_build_is_not_used(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # An extension built from older sources: present, importable, another ABI (or none at all).
    monkeypatch.delenv("EIR_PURE_PYTHON", raising=False)
    (tmp_path / "eir_stale_ext.py").write_text("ABI = 0\n")
    (tmp_path / "eir_older_ext.py").write_text("KEY_SHIFT = 104\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("eir_stale_ext", "eir_older_ext"):
        mod, why = load(name, 1)
        assert mod is None and "stale build" in why and "reinstall" in why
        sys.modules.pop(name, None)


@pytest.mark.skipif(not os.environ.get("EIR_REQUIRE_FASTPATH"),
                    reason="CI builds the extensions (EIR_REQUIRE_FASTPATH=1)")
def test_built_extensions_match_this_version() -> None:
    for name, abi in (("eir._fastpath", FASTPATH_ABI), ("eir._replayio", REPLAYIO_ABI)):
        mod, why = load(name, abi)
        assert mod is not None, f"{name}: {why}"
    assert fastpath.status() == "on"
