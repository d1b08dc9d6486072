"""Build of the optional C accelerators eir._fastpath and eir._replayio (the rest is in pyproject.toml).

The extension is optional: when it cannot be built (no C compiler or no Python headers) the install
still succeeds and eir.engine runs the same decisions in pure Python (tests/test_fastpath.py checks
that both paths agree).
"""

from setuptools import Extension, setup

# Mistakes that C accepts with a mere warning (a call with the wrong arguments, a pointer of the wrong
# type) are errors here: the build then fails, the install falls back to pure Python, and CI, which
# requires the extensions (EIR_REQUIRE_FASTPATH=1, tests/test_native.py), fails instead of crashing later.
CFLAGS = ["-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers",
          "-Werror=implicit-function-declaration", "-Werror=incompatible-pointer-types", "-Werror=int-conversion",
          "-Werror=return-type"]

setup(ext_modules=[Extension("eir._fastpath", ["eir/_fastpath_module.c", "eir/_fastpath.c", "eir/_fastpath_raw.c",
                                               "eir/_fastpath_grace.c", "eir/_fastpath_record.c",
                                               "eir/_fastpath_wire.c"],
                             depends=["eir/_fastpath.h", "eir/_ident.h", "eir/_histable.h", "eir/_histype.h",
                                      "eir/_layout.h", "eir/_outcomes.h", "eir/_allowed.h",
                                      "eir/_unregistered.h"], optional=True,
                             extra_compile_args=CFLAGS),
                   # the CSV edge of eir replay (eir/replay_fast.py; pure-Python fallback: eir/replay.py)
                   Extension("eir._replayio", ["eir/_replayio.c", "eir/_replayio_out.c"],
                             depends=["eir/_replayio.h", "eir/_replayio_text.h", "eir/_ident.h"], optional=True,
                             extra_compile_args=CFLAGS)])
