"""Build of the optional C accelerator eir._fastpath (everything else is in pyproject.toml).

The extension is optional: when it cannot be built (no C compiler or no Python headers) the install
still succeeds and eir.engine runs the same decisions in pure Python (tests/test_fastpath.py checks
that both paths agree).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("eir._fastpath", ["eir/_fastpath.c", "eir/_fastpath_raw.c"],
                             depends=["eir/_fastpath.h", "eir/_ident.h"], optional=True,
                             extra_compile_args=["-Wall", "-Wextra", "-Wno-unused-parameter",
                                                 "-Wno-missing-field-initializers"])])
