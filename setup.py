"""Build: the request path compiled with mypyc from the same typed source.

The modules listed in ``src/shieldwall/_build.py`` (HOT) are compiled when
mypyc and a C compiler are at hand; the ``.py`` files are installed as well
and stay importable (``SHIELDWALL_PURE=1`` runs them). Without a C compiler,
or if compiling fails, the package installs as pure Python with one warning.
``SHIELDWALL_BUILD=pure`` skips compiling on purpose.
"""

from __future__ import annotations

import ast
import os
import shutil
import sys
import sysconfig
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


def hot_modules() -> list[str]:
    """The HOT tuple of _build.py, read without importing the package."""
    tree = ast.parse((ROOT / "src/shieldwall/_build.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "HOT":
            return list(ast.literal_eval(node.value))  # type: ignore[arg-type]
    raise SystemExit("setup.py: HOT not found in src/shieldwall/_build.py")


def warn(why: str) -> None:
    print(f"WARNING: shieldwall is installed as pure Python ({why}); it runs correctly but "
          "costs about twice the CPU per request. Install a C compiler (Debian: gcc, "
          "python3-dev) and reinstall to compile the hot path.", file=sys.stderr)


def have_compiler() -> bool:
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    include = sysconfig.get_paths()["include"]
    return shutil.which(cc) is not None and (Path(include) / "Python.h").exists()


_BUILDS = {"build", "build_ext", "bdist_wheel", "editable_wheel", "develop", "install"}


def ext_modules() -> list[object]:
    if os.environ.get("SHIELDWALL_BUILD", "") == "pure":
        return []
    if not _BUILDS.intersection(sys.argv[1:]):
        return []  # metadata only (egg_info, dist_info): no compiler, no warning
    if not have_compiler():
        warn("no C compiler or Python headers found")
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        warn("mypyc is not available to the build")
        return []
    paths = ["src/" + m.replace(".", "/") + ".py" for m in hot_modules()]
    try:
        # Third-party imports may be absent from an isolated build environment:
        # they are typed as Any there (the code is the same; mypy strict runs
        # in `make lint`, not here).
        # Strict checks that only fire because of those Any types are off too.
        relax = ["--ignore-missing-imports", "--follow-imports=silent", "--no-warn-return-any",
                 "--allow-subclassing-any", "--allow-untyped-decorators",
                 "--allow-untyped-calls", "--no-warn-unused-ignores"]
        return list(mypycify([*relax, *paths],
                             opt_level="3", debug_level="0", group_name="shieldwall"))
    except BaseException as exc:  # mypyc exits through SystemExit on a type error
        warn(f"mypyc could not compile it: {exc!r}")
        return []


class BuildExt(build_ext):
    """All or nothing: if any compiled module fails to build, none is kept
    (a compiled module whose shared library is missing would not import)."""

    def build_extensions(self) -> None:
        try:
            super().build_extensions()
            for ext in self.extensions:
                # Stamped now even when the build reused an object: the
                # editable install's staleness check compares these times
                # with the sources' (shieldwall/_build.py).
                os.utime(self.get_ext_fullpath(ext.name))
        except Exception as exc:
            for ext in self.extensions:
                Path(self.get_ext_fullpath(ext.name)).unlink(missing_ok=True)
            warn(f"compiling failed: {exc}")
            self.extensions = []


setup(ext_modules=ext_modules(), cmdclass={"build_ext": BuildExt})
