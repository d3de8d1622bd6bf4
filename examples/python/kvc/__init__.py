"""Python binding of libkvc: KV-cache eviction policies and SIMD decode attention.

Pure ctypes, no dependency. The shared library is found through the
``KVC_LIBRARY`` environment variable (a path to libkvc.so or its directory),
then ``pkg-config --variable=libdir kvc``, then the source tree's lib/
(for a checkout built with ``make``), then the dynamic loader's search path.

    import kvc
    with kvc.Cache(n_kv_heads=2, n_q_heads=4, head_dim=64, capacity=1024,
                   dtype="f16", policy="h2o recent=64") as cache:
        for k, v, q in stream:          # float32 buffers: array('f'), numpy, memoryview
            cache.append(k, v)
            out = cache.attend(q)

Every failure raises :class:`kvc.Error` (``.code``, ``.message``, ``.detail``).
Policies can be written in Python by subclassing :class:`kvc.Policy`.
"""

from . import _capi
from ._cache import (Cache, PolicyInfo, Reservation, Stats, active_isa, attention, policies,
                     policy_info, set_isa, version)
from ._errors import (CacheFull, Error, InvalidType, InvalidValue, OutOfMemory, PolicyError, Status,
                      strerror)
from ._policy import (NEED_ATTN, NEED_KEY_STATS, NEED_KEYS, NEED_QUERIES, NEED_QUERY_WINDOW, NEED_RNG,
                      NEED_VALUE_STATS, NEED_VALUES, RECENT_HALF, Param, Policy, PolicyContext, Rng,
                      SelectRequest, Token)

__version__ = "0.1.0"
#: Path of the loaded shared library, and how it was found
#: ("KVC_LIBRARY", "pkg-config", "build tree" or "loader").
library_path = _capi.library_path
library_source = _capi.how_found

__all__ = [
    "Cache", "Error", "InvalidValue", "InvalidType", "OutOfMemory", "CacheFull", "PolicyError",
    "Status", "Policy", "Param", "PolicyContext", "Token",
    "SelectRequest", "Rng", "Stats", "Reservation", "PolicyInfo", "attention", "active_isa",
    "set_isa", "version", "policies", "policy_info", "strerror", "NEED_ATTN",
    "NEED_QUERY_WINDOW", "NEED_VALUE_STATS", "NEED_KEY_STATS", "NEED_RNG", "NEED_KEYS",
    "NEED_VALUES", "NEED_QUERIES", "RECENT_HALF",
    "library_path", "library_source",
]
