use std::ffi::CStr;
use std::fmt;

use kvc_sys as sys;

/// A libkvc status code other than `KVC_OK`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Status {
    Inval,
    NoMem,
    Overflow,
    Full,
    State,
    Range,
    Unknown,
    Order,
    NonFinite,
    Mode,
    Policy,
    Abi,
    Empty,
    NotSup,
    Syntax,
}

static TABLE: [(Status, i32, &str); 15] = [
    (Status::Inval, sys::KVC_EINVAL, "KVC_EINVAL"),
    (Status::NoMem, sys::KVC_ENOMEM, "KVC_ENOMEM"),
    (Status::Overflow, sys::KVC_EOVERFLOW, "KVC_EOVERFLOW"),
    (Status::Full, sys::KVC_EFULL, "KVC_EFULL"),
    (Status::State, sys::KVC_ESTATE, "KVC_ESTATE"),
    (Status::Range, sys::KVC_ERANGE, "KVC_ERANGE"),
    (Status::Unknown, sys::KVC_EUNKNOWN, "KVC_EUNKNOWN"),
    (Status::Order, sys::KVC_EORDER, "KVC_EORDER"),
    (Status::NonFinite, sys::KVC_ENONFINITE, "KVC_ENONFINITE"),
    (Status::Mode, sys::KVC_EMODE, "KVC_EMODE"),
    (Status::Policy, sys::KVC_EPOLICY, "KVC_EPOLICY"),
    (Status::Abi, sys::KVC_EABI, "KVC_EABI"),
    (Status::Empty, sys::KVC_EEMPTY, "KVC_EEMPTY"),
    (Status::NotSup, sys::KVC_ENOTSUP, "KVC_ENOTSUP"),
    (Status::Syntax, sys::KVC_ESYNTAX, "KVC_ESYNTAX"),
];

impl Status {
    /// Every status, in the header's order.
    pub fn all() -> impl Iterator<Item = Status> {
        TABLE.iter().map(|t| t.0)
    }
    /// The C value (negative).
    pub fn code(self) -> i32 {
        TABLE
            .iter()
            .find(|t| t.0 == self)
            .map(|t| t.1)
            .unwrap_or(sys::KVC_EINVAL)
    }
    /// The status of a C value, `None` for `KVC_OK` or an unknown value.
    pub fn from_code(code: i32) -> Option<Status> {
        TABLE.iter().find(|t| t.1 == code).map(|t| t.0)
    }
    /// The C name, e.g. `"KVC_EINVAL"`.
    pub fn name(self) -> &'static str {
        TABLE.iter().find(|t| t.0 == self).map(|t| t.2).unwrap_or("KVC_EINVAL")
    }
}

/// The C library's description of a status code (`kvc_strerror`).
pub fn strerror(code: i32) -> &'static str {
    // SAFETY: kvc_strerror returns a static NUL-terminated ASCII string, never NULL.
    unsafe { CStr::from_ptr(sys::kvc_strerror(code)) }
        .to_str()
        .unwrap_or("?")
}

/// A failed libkvc call: the status code, and what exactly was wrong
/// (`kvc_cache_last_error`, or the wrapper's own check that refused the call
/// before it reached C).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    code: i32,
    detail: String,
}

impl Error {
    /// An error with a status code (from [`Status::code`] or the C library) and a detail.
    pub fn new(code: i32, detail: impl Into<String>) -> Error {
        Error {
            code,
            detail: detail.into(),
        }
    }
    pub(crate) fn inval(detail: impl Into<String>) -> Error {
        Error::new(sys::KVC_EINVAL, detail)
    }
    /// The negative C status code.
    pub fn code(&self) -> i32 {
        self.code
    }
    /// The code as a [`Status`] (`None` for a value this crate does not know).
    pub fn status(&self) -> Option<Status> {
        Status::from_code(self.code)
    }
    /// `kvc_strerror` of the code.
    pub fn message(&self) -> &'static str {
        strerror(self.code)
    }
    /// What was wrong, e.g. "position 3 is not greater than the previous position 39".
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

impl From<Status> for Error {
    fn from(s: Status) -> Error {
        Error::new(s.code(), "")
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status() {
            Some(s) => write!(f, "{} ({})", s.name(), self.message())?,
            None => write!(f, "status {} ({})", self.code, self.message())?,
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
