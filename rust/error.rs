//! The one error type of the core: a kind (what a caller may want to catch)
//! and a message naming the problem. The Python binding maps the kinds to
//! `ValueError`, `vitrust.FormatError` (a `ValueError`), `MemoryError`,
//! `KeyboardInterrupt` and `OSError`.

use std::fmt;

/// What went wrong, as far as a caller would branch on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// An argument or configuration the core refuses.
    Invalid,
    /// A file (or bytes claiming to be one) that is damaged, truncated or hostile.
    Format,
    /// An allocation that failed or would exceed what the input justifies.
    Memory,
    /// The caller asked the work to stop (a signal or a cancel flag).
    Interrupted,
    /// The operating system refused a file operation.
    Io,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub msg: String,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn new(kind: ErrorKind, msg: impl Into<String>) -> Self {
        Self {
            kind,
            msg: msg.into(),
        }
    }
    /// An argument or configuration the core refuses.
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, msg)
    }
    /// A damaged or hostile file.
    pub fn format(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::Format, msg)
    }
    /// A failed (or refused) allocation of `bytes` bytes for `what`.
    pub fn memory(what: &str, bytes: u128) -> Self {
        Self::new(
            ErrorKind::Memory,
            format!("could not allocate {bytes} bytes for {what}"),
        )
    }
    /// The work was interrupted before it finished.
    pub fn interrupted() -> Self {
        Self::new(ErrorKind::Interrupted, "interrupted")
    }
    /// A file operation the OS refused.
    pub fn io(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::Io, msg)
    }
    /// The same error with `ctx: ` in front of its message (the kind is kept).
    pub fn context(self, ctx: impl fmt::Display) -> Self {
        Self::new(self.kind, format!("{ctx}: {}", self.msg))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for Error {}

/// Returns an `Err(Error)` of kind `Invalid` from a format string.
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::Error::invalid(format!($($arg)*)))
    };
}

/// Returns an `Err(Error)` of kind `Format` from a format string.
#[macro_export]
macro_rules! bail_format {
    ($($arg:tt)*) => {
        return Err($crate::Error::format(format!($($arg)*)))
    };
}
