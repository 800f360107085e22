//! `overlay pki init|issue`: create the fleet's private CA and issue node certificates.

use std::path::Path;

use pki::PkiError;

use crate::failure::Failure;
use crate::outln;

pub fn init(out: &Path, force: bool) -> Result<String, Failure> {
    let files = pki::init_ca(out, force).map_err(failure)?;
    let mut text = String::new();
    outln!(
        text,
        "wrote {} (CA certificate, SHA-256 {})",
        files.cert.display(),
        files.fingerprint
    );
    outln!(
        text,
        "wrote {} (CA private key, mode 0600: keep it off the relays)",
        files.key.display()
    );
    Ok(text)
}

pub fn issue(ca: &Path, node: &str, out: &Path, force: bool) -> Result<String, Failure> {
    let files = pki::issue(ca, node, out, force).map_err(failure)?;
    let mut text = String::new();
    outln!(
        text,
        "wrote {} (certificate for `{}`, SHA-256 {})",
        files.cert.display(),
        files.node_id,
        files.fingerprint
    );
    outln!(
        text,
        "wrote {} (private key, mode 0600)",
        files.key.display()
    );
    Ok(text)
}

/// What the operator got wrong is exit 64; what broke while doing it is exit 1.
fn failure(e: PkiError) -> Failure {
    match e {
        PkiError::Exists { .. } => Failure::usage(format!("{e}; pass --force to replace it")),
        PkiError::InvalidId { .. }
        | PkiError::MissingCa { .. }
        | PkiError::BadCaCert { .. }
        | PkiError::BadCaKey { .. }
        | PkiError::KeyMismatch { .. } => Failure::usage(e),
        PkiError::CreateDir { .. }
        | PkiError::Write { .. }
        | PkiError::Read { .. }
        | PkiError::Generate { .. }
        | PkiError::Verify { .. } => Failure::runtime(e),
    }
}
