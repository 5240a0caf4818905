//! Exit codes, documented in the README.

/// What the process tells its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Everything worked.
    Ok = 0,
    /// The run finished, but some users or calendars failed (listed).
    Partial = 1,
    /// Invalid command line (clap's own code).
    Usage = 2,
    /// Invalid configuration, rule or user file: nothing was done.
    Config = 3,
    /// Something else failed (cannot write output, state store, …).
    Failure = 4,
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e as u8)
    }
}
