"""Status codes and the exceptions every failure becomes."""

from __future__ import annotations

import enum

from . import _capi

Status = enum.IntEnum("Status", [(name[4:], value) for name, value in _capi.STATUS])
Status.__doc__ = "libkvc status codes (KVC_OK, KVC_EINVAL, ...) without the KVC_ prefix."
Status.__module__ = "kvc"


def strerror(code: int) -> str:
    """The C library's one-line description of a status code."""
    return _capi.lib.kvc_strerror(int(code)).decode()


class Error(Exception):
    """A libkvc call failed.

    ``code`` is the negative status (compare with :class:`kvc.Status`),
    ``message`` the C library's description of it (kvc_strerror) and
    ``detail`` what exactly was wrong (kvc_cache_last_error, or the binding's
    own check that refused the call before it reached C).

    ``Error(code, detail)`` returns the subclass that fits the code, so a
    caller may catch the Python exception it expects: :class:`InvalidValue`
    (also a ``ValueError``: bad values, options, names, state such as a
    closed cache), :class:`InvalidType` (also a ``TypeError``),
    :class:`OutOfMemory`, :class:`CacheFull`, or
    :class:`PolicyError` for a policy's failure.
    """

    def __new__(cls, code=0, detail="", *args, **kwargs):
        if cls is Error:
            cls = _CLASS_OF.get(int(code), Error)
        return super().__new__(cls)

    def __init__(self, code: int, detail: str = "") -> None:
        super().__init__(int(code), detail)
        self.code = int(code)
        self.detail = detail

    @property
    def status(self) -> "Status | None":
        """The code as a :class:`kvc.Status`, or None for a code the binding does not know."""
        try:
            return Status(self.code)
        except ValueError:
            return None

    @property
    def message(self) -> str:
        """The C library's one-line description of ``code`` (kvc_strerror)."""
        return strerror(self.code)

    def __str__(self) -> str:
        st = self.status
        name = ("KVC_" + st.name) if st is not None else str(self.code)
        return "%s (%s)%s" % (name, self.message, ": " + self.detail if self.detail else "")


class InvalidValue(Error, ValueError):
    """A value, option, name or call the library refused (KVC_EINVAL, KVC_ERANGE,
    KVC_EUNKNOWN, KVC_ESYNTAX, KVC_ENONFINITE, KVC_EORDER, KVC_ESTATE, ...); also
    a ``ValueError``."""


class InvalidType(Error, TypeError):
    """An argument of the wrong Python type (code KVC_EINVAL); also a ``TypeError``."""


class OutOfMemory(Error):
    """The allocator returned NULL (KVC_ENOMEM)."""


class CacheFull(Error):
    """The cache is full and its policy never evicts (KVC_EFULL)."""


class PolicyError(Error):
    """A method of a :class:`kvc.Policy` written in Python raised.

    The original exception is ``__cause__``. ``callback`` names the method
    (``"select"``, ``"score"``, ``"on_insert"``, ...). ``completed`` tells
    whether the C call that invoked it went through (the cache changed:
    failures in ``score`` and the ``on_*`` notifications cannot stop it) or
    failed and left the cache as it was (``init``, ``select``). When it went
    through, ``result`` holds what the method would have returned (the
    :class:`kvc.Reservation` of ``reserve``, the output of ``attend``), so an
    engine can still write the token where the cache put it.
    """

    def __init__(self, code, detail="", callback="", completed=False):
        super().__init__(code, detail)
        self.args = (int(code), detail, callback, completed)
        self.callback = callback
        self.completed = completed
        self.result = None


_CLASS_OF = {int(st): InvalidValue for st in Status if st not in (Status.OK, Status.ENOMEM, Status.EFULL,
                                                                    Status.EPOLICY)}
_CLASS_OF[int(Status.ENOMEM)] = OutOfMemory
_CLASS_OF[int(Status.EFULL)] = CacheFull


def invalid(detail):
    """An argument refused by the binding before it reached C."""
    return Error(Status.EINVAL, detail)


def wrong_type(detail):
    """An argument of the wrong type, refused before it reached C."""
    return InvalidType(Status.EINVAL, detail)


def c_string(value, what, code=Status.EINVAL):
    """`value` (a str) encoded for a C string argument. C stops reading at the
    first NUL, so a string holding one would be silently cut short: refused."""
    if not isinstance(value, str):
        raise wrong_type("%s must be a str, got %s" % (what, type(value).__name__))
    if "\0" in value:
        raise Error(code, "%s %r contains a NUL character at index %d: C would stop reading there "
                          "and ignore the rest" % (what, value, value.index("\0")))
    return value.encode()
