"""Status codes and the exceptions every failure becomes."""

import enum

from . import _capi

Status = enum.IntEnum("Status", [(name[4:], value) for name, value in _capi.STATUS])
Status.__doc__ = "libkvc status codes (KVC_OK, KVC_EINVAL, ...) without the KVC_ prefix."
Status.__module__ = "kvc"


def strerror(code):
    """The C library's one-line description of a status code."""
    return _capi.lib.kvc_strerror(int(code)).decode()


class Error(Exception):
    """A libkvc call failed.

    ``code`` is the negative status (compare with :class:`kvc.Status`),
    ``message`` the C library's description of it (kvc_strerror) and
    ``detail`` what exactly was wrong (kvc_cache_last_error, or the binding's
    own check that refused the call before it reached C).
    """

    def __init__(self, code, detail=""):
        super().__init__(int(code), detail)
        self.code = int(code)
        self.detail = detail

    @property
    def status(self):
        """The code as a :class:`kvc.Status`, or None for a code the binding does not know."""
        try:
            return Status(self.code)
        except ValueError:
            return None

    @property
    def message(self):
        return strerror(self.code)

    def __str__(self):
        st = self.status
        name = ("KVC_" + st.name) if st is not None else str(self.code)
        return "%s (%s)%s" % (name, self.message, ": " + self.detail if self.detail else "")


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


def invalid(detail):
    """An argument refused by the binding before it reached C."""
    return Error(Status.EINVAL, detail)


def c_string(value, what, code=Status.EINVAL):
    """`value` (a str) encoded for a C string argument. C stops reading at the
    first NUL, so a string holding one would be silently cut short: refused."""
    if not isinstance(value, str):
        raise TypeError("%s must be a str, got %s" % (what, type(value).__name__))
    if "\0" in value:
        raise Error(code, "%s %r contains a NUL character at index %d: C would stop reading there "
                          "and ignore the rest" % (what, value, value.index("\0")))
    return value.encode()
