//! The `overlay` package's library: the in-process fleet the lab and the
//! end-to-end tests run on. The operator CLI is the `overlay` binary.

pub mod fleet;
