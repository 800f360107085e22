//! Diagnostics for topology files: every problem found, each with file, line, key and a fix.

use std::fmt;

/// One problem in a topology file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file name as the user gave it.
    pub file: String,
    /// 1-based line the problem is on (0 when the file has no lines at all).
    pub line: usize,
    /// Dotted key path, e.g. `nodes[3].country`; empty for the whole document.
    pub key: String,
    /// What is wrong and what would be right.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        } else {
            write!(
                f,
                "{}:{}: {}: {}",
                self.file, self.line, self.key, self.message
            )
        }
    }
}

/// Every problem found in one config or topology file, in line order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors {
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.diagnostics.len();
        let file = self
            .diagnostics
            .first()
            .map_or("the file", |d| d.file.as_str());
        writeln!(f, "{n} error{} in {file}", if n == 1 { "" } else { "s" })?;
        for d in &self.diagnostics {
            writeln!(f, "  {d}")?;
        }
        Ok(())
    }
}

/// Reading a topology file from disk failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read: missing, not a regular file, too large, not UTF-8.
    #[error("{}", describe_read(.0))]
    Read(#[from] crate::read::ReadError),
    #[error("{0}")]
    Invalid(#[from] ConfigErrors),
}

/// A topology file's read error as the CLI has always put it for a missing or
/// unreadable file, and as the reader puts the others.
fn describe_read(e: &crate::read::ReadError) -> String {
    match e {
        crate::read::ReadError::Open { path, source } => {
            format!("cannot read topology file {path}: {source}")
        }
        other => format!("topology file {other}"),
    }
}
