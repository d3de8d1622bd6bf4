"""Buffers handed to C. Inputs may be any array-like convertible to float32:
used in place (zero-copy) when they already are C-contiguous, aligned
float32 buffers, else converted into a fresh float32 copy. Outputs must be
writable C-contiguous float32 buffers (they are written in place). Element
type, size, contiguity and alignment are checked before an address ever
reaches C."""

import ctypes
import sys
from array import array

from . import _capi
from ._errors import invalid, wrong_type

_E = "<" if _capi.LITTLE else ">"
F32 = frozenset(("f", "@f", "=f", _E + "f"))
F16 = frozenset(("e", "@e", "=e", _E + "e"))
U16 = frozenset(("H", "@H", "=H", _E + "H"))
RAW = frozenset(("B", "b", "c", "@B", "=B", "@b", "=b"))

_NAMES = {"d": "float64", "e": "float16", "f": "float32", "B": "uint8", "H": "uint16",
          "i": "int32", "l": "int64", "q": "int64"}
_dummy = ctypes.c_float(0.0)  # a valid address for empty buffers


def view(obj, what, formats, itemsize, writable=False):
    """Check `obj` and return (memoryview, element count).

    Raw byte buffers are accepted and taken as native-endian elements."""
    try:
        mv = obj if isinstance(obj, memoryview) else memoryview(obj)
    except TypeError:
        raise wrong_type("%s: expected a buffer (array.array('f'), numpy array, memoryview, "
                        "bytearray...), got %s" % (what, type(obj).__name__)) from None
    fmt = mv.format
    if fmt not in formats and not (fmt in RAW and mv.itemsize == 1):
        want = "float32" if formats is F32 else "16-bit"
        got = _NAMES.get(fmt.lstrip("@=<>!"), "format %r" % fmt)
        hint = " (convert with .astype(numpy.float32) or array('f', ...))" if formats is F32 else ""
        raise invalid("%s: expected %s elements, got %s%s" % (what, want, got, hint))
    if not mv.c_contiguous:
        raise invalid("%s: buffer is not C-contiguous (pass numpy.ascontiguousarray(x) or a copy)"
                      % what)
    if writable and mv.readonly:
        raise invalid("%s: buffer is read-only" % what)
    if mv.nbytes % itemsize:
        raise invalid("%s: %d bytes is not a whole number of %d-byte elements"
                      % (what, mv.nbytes, itemsize))
    return mv, mv.nbytes // itemsize


def addr(mv, what, itemsize):
    """Address of mv's data, checked for the element alignment C requires."""
    if mv.nbytes == 0:
        return ctypes.addressof(_dummy)
    a = _capi.address(mv)
    if a % itemsize:
        raise invalid("%s: data address is not %d-byte aligned (copy it into a fresh array)"
                      % (what, itemsize))
    return a


def _flat(x):
    """Nested sequences of numbers, flattened (the no-numpy path)."""
    out = []
    stack = [x]
    while stack:
        y = stack.pop()
        if isinstance(y, (list, tuple)):
            stack.extend(reversed(y))
        else:
            out.append(y)
    return out


def as_f32(obj, what):
    """`obj` itself when C can read it in place as float32 (a C-contiguous,
    4-byte aligned float32 buffer, or raw bytes taken as native float32),
    else a float32 copy of its values (numpy when available, else array('f'))."""
    try:
        mv = obj if isinstance(obj, memoryview) else memoryview(obj)
    except TypeError:
        mv = None
    if mv is not None:
        raw = mv.format in RAW and mv.itemsize == 1
        if (mv.format in F32 or raw) and mv.c_contiguous and (mv.nbytes == 0 or _capi.address(mv) % 4 == 0):
            return obj  # zero-copy
        if raw:  # raw bytes are reinterpreted, never converted byte by byte
            if mv.nbytes % 4:
                raise invalid("%s: %d bytes is not a whole number of 4-byte elements" % (what, mv.nbytes))
            out = array("f")
            out.frombytes(mv.tobytes())
            return out
    if isinstance(obj, (str, bytes)):
        raise wrong_type("%s: expected numbers (array-like of float32), got %s" % (what, type(obj).__name__))
    try:
        import numpy as np
    except ImportError:
        np = None
    if np is not None:
        try:
            a = np.asarray(obj)
        except (TypeError, ValueError) as e:
            raise wrong_type("%s: cannot read %s as numbers: %s" % (what, type(obj).__name__, e)) from None
        if a.dtype.kind not in "fiu":
            raise wrong_type("%s: expected real numbers convertible to float32, got %s" % (what, a.dtype))
        return np.ascontiguousarray(a, dtype=np.float32)
    try:
        return array("f", _flat(mv.tolist() if mv is not None else list(obj)))
    except (TypeError, ValueError, NotImplementedError) as e:
        raise wrong_type("%s: cannot read %s as float32 numbers: %s" % (what, type(obj).__name__, e)) from None


def f32(obj, what, n=None, writable=False, at_least=False):
    """Return (memoryview, address, count) of a float32 buffer of `n` elements.
    Inputs (writable=False) go through as_f32 first; the memoryview returned
    keeps a copy alive for the duration of the C call."""
    if not writable:
        obj = as_f32(obj, what)
    mv, count = view(obj, what, F32, 4, writable)
    if n is not None and (count < n if at_least else count != n):
        raise invalid("%s: expected %s%d float32 values, got %d"
                      % (what, "at least " if at_least else "", n, count))
    return mv, addr(mv, what, 4), count


def new_f32(n, like=None, shape=None):
    """A fresh float32 output: a numpy array when the input was one, else array('f')."""
    np = sys.modules.get("numpy")
    if np is not None and isinstance(like, np.ndarray):
        return np.empty(shape if shape is not None else like.shape, dtype=np.float32)
    return array("f", bytes(4 * n))


def overlap(a, na, b, nb):
    return a < b + nb and b < a + na
