//! How a command fails: a message for stderr and the exit code it maps to.

use std::fmt::Display;

#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    /// Bad usage or bad configuration (sysexits `EX_USAGE`).
    pub const USAGE: u8 = 64;
    /// A runtime failure.
    pub const RUNTIME: u8 = 1;
    /// `overlay status`: the controller answered, and the fleet is degraded
    /// (a relay away or a link not up); the summary is printed as usual.
    pub const DEGRADED: u8 = 2;

    pub fn usage(message: impl Display) -> Self {
        Failure {
            code: Self::USAGE,
            message: message.to_string(),
        }
    }

    pub fn runtime(message: impl Display) -> Self {
        Failure {
            code: Self::RUNTIME,
            message: message.to_string(),
        }
    }
}
