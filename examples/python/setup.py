"""Build libkvc's C sources into the package (kvc/libkvc.so), loaded by ctypes.

`pip install examples/python` from a libkvc source tree compiles lib/*.c
(libc and libm only; each ISA kernel with its own flags, as the Makefile
does) with the C compiler Python was built with. Nothing is downloaded
(offline: add --no-build-isolation). Outside a source tree (no ../../lib),
the package is pure Python and uses an installed libkvc (pkg-config or
KVC_LIBRARY); so does KVC_PYTHON_BUNDLE=0.
"""

import glob
import os
import platform

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, os.pardir, os.pardir))
LIB = os.path.join(ROOT, "lib")

# Per-file flags of the ISA kernels (the Makefile's ISA_FLAGS_*).
ISA_FLAGS = {
    "avx2.c": ["-mavx2", "-mfma", "-mf16c"],
    "avx512.c": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx2", "-mfma", "-mf16c"],
    "neon.c": [],
}


def sources():
    """libkvc's translation units for this machine, or [] outside a source tree."""
    if os.environ.get("KVC_PYTHON_BUNDLE", "1") == "0" or not os.path.isfile(os.path.join(LIB, "cache.c")):
        return []
    srcs = sorted(glob.glob(os.path.join(LIB, "*.c")))
    srcs += [os.path.join(LIB, "attn", f) for f in ("dispatch.c", "scalar.c")]
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64"):
        srcs += [os.path.join(LIB, "attn", f) for f in ("avx2.c", "avx512.c")]
    elif machine in ("aarch64", "arm64"):
        srcs += [os.path.join(LIB, "attn", "neon.c")]
    # setuptools wants paths relative to setup.py; build_extension makes them absolute again
    return [os.path.relpath(p, HERE).replace(os.sep, "/") for p in srcs]


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
            flags = common + ISA_FLAGS.get(os.path.basename(src), []) if "attn" in src else common
            objects += self.compiler.compile([src], output_dir=self.build_temp,
                                             include_dirs=[os.path.normpath(os.path.join(HERE, d)) for d in ext.include_dirs],
                                             extra_postargs=flags)
        out = self.get_ext_fullpath(ext.name)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        self.compiler.link_shared_object(objects, out, libraries=["m"],
                                         extra_postargs=["-Wl,--no-undefined"])


srcs = sources()
ext_modules = []
if srcs:
    ext_modules = [Extension("kvc.libkvc", sources=srcs, include_dirs=["../../include", "../../lib"])]

setup(ext_modules=ext_modules, cmdclass={"build_ext": BuildLibkvc})
