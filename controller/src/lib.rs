//! The controller: link-state database, route computation and push, admin API.
//! Built in its own issue; the crate exists so the workspace layout is complete.
