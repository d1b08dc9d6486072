"""Loading the optional C extensions (``eir._fastpath``, ``eir._replayio``): one rule for all of them.

An extension is used only when it is built, not disabled (``EIR_PURE_PYTHON=1``), and built from the
sources of this version of the package: each carries an ``ABI`` number that is raised whenever its
interface with the Python side changes. A stale build (an old ``.so`` left beside newer sources, e.g.
after ``git pull`` without reinstalling) is then not used, instead of failing on a missing name; the
reason is reported (``eir serve`` logs it at start-up) so that a slow pure-Python run is never a surprise.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Final

#: The interface versions this package expects (eir/_fastpath.h EIR_FASTPATH_ABI, eir/_replayio.h
#: EIR_REPLAYIO_ABI).
FASTPATH_ABI: Final = 6
REPLAYIO_ABI: Final = 1


def load(name: str, abi: int) -> tuple[ModuleType | None, str]:
    """``(module, "on")`` when the extension ``name`` is usable, else ``(None, why not)``."""
    if os.environ.get("EIR_PURE_PYTHON"):
        return None, "off: EIR_PURE_PYTHON is set"
    try:
        mod = importlib.import_module(name)
    except ImportError:
        return None, "off: not built (no C compiler or Python headers at install)"
    built = getattr(mod, "ABI", None)
    if built != abi:
        return None, f"off: stale build (ABI {built}, this version needs {abi}): reinstall (make, or pip install -e .)"
    return mod, "on"
