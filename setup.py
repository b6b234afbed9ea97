"""Maps the service folders into the ``tracelake`` namespace, and builds the optional C decoder.

The design card puts the core library in ``src/`` and each service in a top-level folder of its own;
installed, they are all ``tracelake.*`` so nothing else on a machine can shadow them.

``tracelake.codec._otlpdecode``, ``_attrwire`` and ``tracelake.encoding.v1._parents`` are speed-ups
only: when they cannot be compiled (no compiler, no Python headers) the install still succeeds with a
warning and the pure-Python code is used.
"""

import sys

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CCompilerError, CompileError, ExecError, PlatformError

SERVICES = ("ingester", "compactor", "querier")

packages = find_packages("src")
package_dir = {"tracelake": "src/tracelake"}
for service in SERVICES:
    package_dir[f"tracelake.{service}"] = service
    packages += [f"tracelake.{service}"] + [f"tracelake.{service}.{sub}" for sub in find_packages(service)]

_BUILD_ERRORS = (CCompilerError, CompileError, ExecError, PlatformError, OSError)


def _warn(ext_name: str, exc: BaseException) -> None:
    print(
        f"WARNING: could not build the optional extension {ext_name} ({exc}); "
        "tracelake will use its pure-Python code instead.",
        file=sys.stderr,
    )


class OptionalBuildExt(build_ext):
    """``build_ext`` that turns a failed compile into a warning instead of a failed install."""

    def run(self):
        try:
            super().run()
        except _BUILD_ERRORS as exc:  # no compiler at all, or copying a failed build in place
            _warn("extensions", exc)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except _BUILD_ERRORS as exc:
            _warn(ext.name, exc)
            self._failed = {*getattr(self, "_failed", ()), ext.name}

    def _built_only(self, method, *args):
        """Run a base-class method as if the extensions that failed to build were not declared."""
        declared = self.extensions
        failed = getattr(self, "_failed", ())
        self.extensions = [ext for ext in declared if ext.name not in failed]
        try:
            return method(*args)
        finally:
            self.extensions = declared

    def copy_extensions_to_source(self):  # in-place and editable builds
        self._built_only(super().copy_extensions_to_source)

    def get_outputs(self):
        return self._built_only(super().get_outputs)


otlpdecode = Extension(
    "tracelake.codec._otlpdecode",
    ["src/tracelake/codec/_otlpdecode.c"],
    extra_compile_args=["-O3", "-Wall", "-Wextra", "-Wno-missing-field-initializers"],
)

attrwire = Extension(
    "tracelake.codec._attrwire",
    ["src/tracelake/codec/_attrwire.c"],
    extra_compile_args=["-O3", "-Wall", "-Wextra", "-Wno-missing-field-initializers"],
)

parents = Extension(
    "tracelake.encoding.v1._parents",
    ["src/tracelake/encoding/v1/_parents.c"],
    extra_compile_args=["-O3", "-Wall", "-Wextra", "-Wno-missing-field-initializers"],
)

setup(
    packages=packages,
    package_dir=package_dir,
    package_data={"tracelake.querier": ["ui/*.html"]},  # the trace view's page (querier/ui.py)
    ext_modules=[otlpdecode, attrwire, parents],
    cmdclass={"build_ext": OptionalBuildExt},
)
