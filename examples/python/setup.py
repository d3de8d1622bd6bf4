"""Build libkvc's C sources into the package (kvc/libkvc.so), loaded by ctypes.

`pip install examples/python` from a libkvc source tree compiles lib/*.c
(libc and libm only; the sources and each ISA kernel's flags as the
Makefile lists them, `make lib-sources`) with the C compiler Python was
built with. Nothing is downloaded
(offline: add --no-build-isolation). Outside a source tree (no ../../lib),
the package is pure Python and uses an installed libkvc (pkg-config or
KVC_LIBRARY); so does KVC_PYTHON_BUNDLE=0.
"""

import os
import subprocess

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, os.pardir, os.pardir))
LIB = os.path.join(ROOT, "lib")

def sources():
    """(path relative to setup.py, extra flags) of libkvc's translation units for
    this machine, as the Makefile lists them (`make lib-sources`: one list of
    sources and ISA flags), or [] outside a source tree."""
    if os.environ.get("KVC_PYTHON_BUNDLE", "1") == "0" or not os.path.isfile(os.path.join(LIB, "cache.c")):
        return []
    try:
        out = subprocess.run(["make", "-s", "--no-print-directory", "-C", ROOT, "lib-sources"],
                             capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise SystemExit("kvc: cannot list libkvc's sources with `make -C %s lib-sources` (%s); install make, "
                         "or build without them: KVC_PYTHON_BUNDLE=0 pip install ... and an installed libkvc"
                         % (ROOT, e))
    srcs = []
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0].endswith(".c"):
            # setuptools wants paths relative to setup.py; build_extension makes them absolute again
            srcs.append((os.path.relpath(os.path.join(ROOT, parts[0]), HERE).replace(os.sep, "/"), parts[1:]))
    if not srcs:
        raise SystemExit("kvc: `make lib-sources` listed no sources")
    return srcs


class BuildLibkvc(build_ext):
    """Compile libkvc as a plain shared library inside the package: each file
    with its own flags, objects under build/, the result as kvc/libkvc.so."""

    def get_source_files(self):
        # the C sources live outside this project (../../lib): not part of its sdist manifest
        return []

    def get_ext_filename(self, ext_name):
        return os.path.join(*ext_name.split(".")) + ".so"

    def build_extension(self, ext):
        objects = []
        common = ["-std=c11", "-O2", "-fPIC", "-fvisibility=hidden"]
        for rel in ext.sources:
            # absolute, so the objects land under build_temp, never beside the sources
            src = os.path.normpath(os.path.join(HERE, rel))
            flags = common + FLAGS.get(rel, [])
            objects += self.compiler.compile([src], output_dir=self.build_temp,
                                             include_dirs=[os.path.normpath(os.path.join(HERE, d)) for d in ext.include_dirs],
                                             extra_postargs=flags)
        out = self.get_ext_fullpath(ext.name)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        self.compiler.link_shared_object(objects, out, libraries=["m"],
                                         extra_postargs=["-Wl,--no-undefined"])


srcs = sources()
FLAGS = dict(srcs)
ext_modules = []
if srcs:
    ext_modules = [Extension("kvc.libkvc", sources=[p for p, _ in srcs], include_dirs=["../../include", "../../lib"])]

setup(ext_modules=ext_modules, cmdclass={"build_ext": BuildLibkvc})
