//! What both daemons' config files share: reading the file and its first
//! document, the topology it names, addresses, paths relative to the file, and
//! the node's certificate, key and CA, each problem reported on its key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use topology::doc::Doc;
use topology::{ConfigErrors, Topology};

use crate::tls::Identity;

/// Reads a config file and hands (its name, its text, its folder) to `parse`.
pub fn read_file<C>(
    path: &Path,
    parse: impl FnOnce(&str, &str, &Path) -> Result<C, ConfigErrors>,
) -> Result<C, ConfigErrors> {
    let file = path.display().to_string();
    // A regular file, bounded, UTF-8 (a byte order mark is fine): a FIFO, a
    // device or a huge file is refused at once instead of read.
    let text = topology::read_config_text(path, topology::MAX_CONFIG_BYTES)
        .map_err(|e| single_error(&file, format!("{e}")))?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    parse(&file, &text, &base)
}

/// Parses a config document and decodes its top-level mapping into `R`; the
/// `Doc` keeps collecting errors for the checks that follow.
pub fn decode_root<R: serde::de::DeserializeOwned>(
    file: &str,
    text: &str,
) -> Result<(Doc, R), ConfigErrors> {
    let (mut doc, value) = Doc::parse(file, text)?;
    match doc.decode::<R>(value, "") {
        Some(raw) => Ok((doc, raw)),
        None => {
            doc.finish()?;
            Err(single_error(file, "unreadable config"))
        }
    }
}

/// Loads the topology file a config names; a bad one is an error at `topology`.
pub fn load_topology(doc: &mut Doc, base: &Path, path: &str) -> Option<Arc<Topology>> {
    match topology::load(&resolve(base, path)) {
        Ok(t) => Some(Arc::new(t)),
        Err(e) => {
            doc.error("topology", format!("the topology file is not usable: {e}"));
            None
        }
    }
}

/// Parses `ip:port` at `path`, recording an error (with an example) if it is not.
pub fn parse_addr(doc: &mut Doc, path: &str, text: &str) -> Option<SocketAddr> {
    match text.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            doc.error(
                path,
                format!("`{text}` is not an address; expected ip:port such as `127.0.0.1:9900`"),
            );
            None
        }
    }
}

/// The `admin` key: `off`, an address, or (absent) `default`.
pub fn admin_addr(doc: &mut Doc, text: Option<&str>, default: &str) -> Option<SocketAddr> {
    match text {
        Some("off") => None,
        Some(text) => parse_addr(doc, "admin", text),
        None => default.parse().ok(),
    }
}

/// A path from a config file: absolute as given, relative to the file's folder.
pub fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Loads a daemon's certificate, key and CA, and checks they fit together: the
/// certificate names `node`, verifies against the CA and belongs to the key.
/// Each problem is reported on the key it is about.
pub fn load_identity_and_ca(
    doc: &mut Doc,
    base: &Path,
    (cert, key, ca): (&str, &str, &str),
    node: &str,
) -> (Option<Identity>, Option<Arc<rustls::RootCertStore>>) {
    let issue = format!("issue one with `overlay pki issue --ca CA_DIR --node {node} --out DIR`");
    let key_path = resolve(base, key);
    let identity = match Identity::load(&resolve(base, cert), &key_path) {
        Ok(id) => Some(id),
        Err(e) => {
            let about_key = match &e {
                crate::tls::TlsError::NoKey { .. }
                | crate::tls::TlsError::BadKeyPem { .. }
                | crate::tls::TlsError::KeyExposed { .. } => true,
                crate::tls::TlsError::Missing { path }
                | crate::tls::TlsError::Unreadable { path, .. } => *path == key_path,
                _ => false,
            };
            doc.error(
                if about_key { "key" } else { "cert" },
                format!("{e}; {issue}"),
            );
            None
        }
    };
    let roots = load_ca(doc, base, ca);
    if let (Some(identity), Some(roots)) = (&identity, &roots) {
        use crate::tls::IdentityProblem;
        match crate::tls::check_identity(identity, roots, node) {
            Ok(()) => {}
            Err(e @ IdentityProblem::KeyMismatch(_)) => {
                doc.error("key", format!("{e}; give the key issued with `{cert}`"))
            }
            Err(e @ IdentityProblem::NotFromCa(_)) => doc.error(
                "cert",
                format!("{e} in `{ca}`; {issue} from this fleet's CA"),
            ),
            Err(e) => doc.error("cert", format!("{e}; {issue}")),
        }
    }
    (identity, roots)
}

pub fn load_ca(doc: &mut Doc, base: &Path, ca: &str) -> Option<Arc<rustls::RootCertStore>> {
    match crate::tls::load_roots(&resolve(base, ca)) {
        Ok(r) => Some(Arc::new(r)),
        Err(e) => {
            doc.error("ca", format!("{e}; create the CA with `overlay pki init`"));
            None
        }
    }
}

/// A single error not tied to a line (the file could not be read, say).
pub fn single_error(file: &str, message: impl Into<String>) -> ConfigErrors {
    ConfigErrors {
        diagnostics: vec![topology::Diagnostic {
            file: file.to_string(),
            line: 0,
            key: String::new(),
            message: message.into(),
        }],
    }
}
