//! The fleet's private CA: creating it and issuing node certificates (rcgen).
//!
//! On disk a CA is a directory holding `ca.pem` (the self-signed CA certificate) and `ca.key`
//! (its PKCS#8 private key, mode 0600). A node's identity is `<id>.pem`, holding the leaf
//! certificate only (peers already hold the CA as their trust anchor), and `<id>.key` (0600).
//! The leaf names the node id as its subject CN and as its one DNS subject alternative name,
//! which is what the `daemon::tls` verifier checks a peer against. The controller gets a certificate the
//! same way, under an id such as `controller`.
//!
//! Private keys are never printed, logged or put in an error message.

use std::fmt;
use std::fs::{DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType, PKCS_ECDSA_P256_SHA256,
};
use rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256;
use rustls::{RootCertStore, SupportedCipherSuite};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use thiserror::Error;

use daemon::tls::Identity;

/// The subject CN of every fleet CA.
pub const CA_COMMON_NAME: &str = "overlay fleet CA";
/// File name of the CA certificate inside a CA directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the CA private key inside a CA directory.
pub const CA_KEY_FILE: &str = "ca.key";

const DAY: Duration = Duration::from_secs(24 * 60 * 60);
/// CA lifetime: ten years.
const CA_VALIDITY: Duration = Duration::from_secs(3653 * DAY.as_secs());
/// Node certificate lifetime: two years.
const LEAF_VALIDITY: Duration = Duration::from_secs(731 * DAY.as_secs());
/// Certificates start an hour in the past so that a node whose clock lags still accepts them.
const BACKDATE: Duration = Duration::from_secs(60 * 60);

/// Why creating the CA or issuing a certificate failed.
#[derive(Debug, Error)]
pub enum PkiError {
    #[error(
        "`{id}` is not a valid node id; expected a lowercase letter, then lowercase letters, \
         digits or '-', at most 16 characters"
    )]
    InvalidId { id: String },
    #[error("{} already exists; refusing to overwrite it", path.display())]
    Exists { path: PathBuf },
    #[error("cannot create directory {}: {source}", path.display())]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("{} does not exist; is {} a CA directory made by `overlay pki init`?", path.display(), dir.display())]
    MissingCa { dir: PathBuf, path: PathBuf },
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{} holds no usable CA certificate: {reason}", path.display())]
    BadCaCert { path: PathBuf, reason: String },
    /// Deliberately carries no detail from the parser: the input is a private key.
    #[error("{} holds no usable PEM private key", path.display())]
    BadCaKey { path: PathBuf },
    #[error("{} is not the private key of {}", key.display(), cert.display())]
    KeyMismatch { key: PathBuf, cert: PathBuf },
    #[error("cannot generate {what}: {source}")]
    Generate { what: String, source: rcgen::Error },
    #[error("the certificate issued for `{id}` does not verify against {}: {reason}", ca.display())]
    Verify {
        id: String,
        ca: PathBuf,
        reason: String,
    },
}

/// The files [`init_ca`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaFiles {
    /// `ca.pem`.
    pub cert: PathBuf,
    /// `ca.key` (mode 0600).
    pub key: PathBuf,
    /// SHA-256 of the CA certificate's DER, as colon-separated uppercase hex.
    pub fingerprint: String,
}

/// The files [`issue`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedFiles {
    pub node_id: String,
    /// `<id>.pem`: the leaf certificate only.
    pub cert: PathBuf,
    /// `<id>.key` (mode 0600).
    pub key: PathBuf,
    /// SHA-256 of the leaf certificate's DER, as colon-separated uppercase hex.
    pub fingerprint: String,
}

/// Creates a new CA in `out_dir` (made, mode 0700, if missing): `ca.pem` and `ca.key`.
/// Refuses to replace either file unless `force`.
pub fn init_ca(out_dir: &Path, force: bool) -> Result<CaFiles, PkiError> {
    let cert_path = out_dir.join(CA_CERT_FILE);
    let key_path = out_dir.join(CA_KEY_FILE);
    if !force {
        refuse_existing(&[&cert_path, &key_path])?;
    }
    let ca = Ca::generate(SystemTime::now())?;
    create_dir(out_dir)?;
    // The key first: a crash in between leaves a key without a certificate, never the reverse.
    write_new(&key_path, ca.key.serialize_pem().as_bytes(), 0o600, force)?;
    write_new(&cert_path, ca.cert.pem().as_bytes(), 0o644, force)?;
    Ok(CaFiles {
        fingerprint: sha256_fingerprint(ca.cert.der()),
        cert: cert_path,
        key: key_path,
    })
}

/// Issues a certificate for `node_id`, signed by the CA in `ca_dir`, as `<id>.pem` and
/// `<id>.key` in `out_dir` (made, mode 0700, if missing). Refuses to replace either file
/// unless `force`. The new certificate is checked against `ca.pem` before anything is written.
pub fn issue(
    ca_dir: &Path,
    node_id: &str,
    out_dir: &Path,
    force: bool,
) -> Result<IssuedFiles, PkiError> {
    check_id(node_id)?;
    let cert_path = out_dir.join(format!("{node_id}.pem"));
    let key_path = out_dir.join(format!("{node_id}.key"));
    let (ca, ca_der) = Ca::load(ca_dir)?;
    if !force {
        refuse_existing(&[&cert_path, &key_path])?;
    }
    let (leaf, leaf_key) = ca.sign_leaf(node_id, SystemTime::now())?;
    verify_leaf(leaf.der(), &ca_der, node_id).map_err(|reason| PkiError::Verify {
        id: node_id.to_owned(),
        ca: ca_dir.join(CA_CERT_FILE),
        reason,
    })?;
    create_dir(out_dir)?;
    write_new(&key_path, leaf_key.serialize_pem().as_bytes(), 0o600, force)?;
    write_new(&cert_path, leaf.pem().as_bytes(), 0o644, force)?;
    Ok(IssuedFiles {
        node_id: node_id.to_owned(),
        fingerprint: sha256_fingerprint(leaf.der()),
        cert: cert_path,
        key: key_path,
    })
}

/// SHA-256 of `der` as colon-separated uppercase hex (the form `openssl x509 -fingerprint`
/// prints).
pub fn sha256_fingerprint(der: &[u8]) -> String {
    // The hash comes from the ring provider's TLS 1.3 suite, so no extra crate is needed.
    let SupportedCipherSuite::Tls13(suite) = TLS13_AES_128_GCM_SHA256 else {
        unreachable!("TLS13_AES_128_GCM_SHA256 is a TLS 1.3 suite")
    };
    let digest = suite.common.hash_provider.hash(der);
    digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn check_id(id: &str) -> Result<(), PkiError> {
    if topology::is_valid_id(id) {
        Ok(())
    } else {
        Err(PkiError::InvalidId { id: id.to_owned() })
    }
}

/// A CA in memory: its key and a certificate carrying the subject that leaves name as issuer.
struct Ca {
    key: KeyPair,
    cert: Certificate,
}

impl Ca {
    fn generate(now: SystemTime) -> Result<Self, PkiError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|source| {
            PkiError::Generate {
                what: "the CA key".into(),
                source,
            }
        })?;
        let cert = ca_params(now, CA_VALIDITY)
            .self_signed(&key)
            .map_err(|source| PkiError::Generate {
                what: "the CA certificate".into(),
                source,
            })?;
        Ok(Ca { key, cert })
    }

    /// Loads `ca.pem` and `ca.key` from `dir`; returns the CA and the DER of `ca.pem`.
    ///
    /// rcgen (without its x509-parser feature) cannot read a certificate back, so the issuer
    /// is rebuilt from the same parameters `init_ca` used and the loaded key. Leaves only copy
    /// the issuer's subject from it, and [`issue`] verifies every leaf against the real
    /// `ca.pem` before writing it, so a CA made some other way fails loudly, not silently.
    fn load(dir: &Path) -> Result<(Self, CertificateDer<'static>), PkiError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let cert_pem = read_ca_file(dir, &cert_path)?;
        let key_pem = read_ca_file(dir, &key_path)?;
        warn_if_exposed(&key_path);

        let bad_cert = |reason: String| PkiError::BadCaCert {
            path: cert_path.clone(),
            reason,
        };
        let ca_der = CertificateDer::pem_slice_iter(&cert_pem)
            .next()
            .ok_or_else(|| bad_cert("no certificate in it".into()))?
            .map_err(|e| bad_cert(e.to_string()))?;
        let anchor =
            webpki::anchor_from_trusted_cert(&ca_der).map_err(|e| bad_cert(e.to_string()))?;

        let key_text = String::from_utf8(key_pem).map_err(|_| PkiError::BadCaKey {
            path: key_path.clone(),
        })?;
        let key = KeyPair::from_pem(&key_text).map_err(|_| PkiError::BadCaKey {
            path: key_path.clone(),
        })?;
        if webpki::spki_for_anchor(&anchor).as_ref() != key.public_key_der().as_slice() {
            return Err(PkiError::KeyMismatch {
                key: key_path,
                cert: cert_path,
            });
        }
        let cert = ca_params(SystemTime::now(), CA_VALIDITY)
            .self_signed(&key)
            .map_err(|source| PkiError::Generate {
                what: "the CA issuer".into(),
                source,
            })?;
        Ok((Ca { key, cert }, ca_der))
    }

    /// A fresh key pair and a certificate for `id` (which the caller has validated).
    fn sign_leaf(&self, id: &str, now: SystemTime) -> Result<(Certificate, KeyPair), PkiError> {
        let generate = |what: &str| {
            let what = format!("{what} for `{id}`");
            move |source| PkiError::Generate { what, source }
        };
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(generate("a key"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, id);
        params.subject_alt_names = vec![SanType::DnsName(
            id.try_into().map_err(generate("a DNS name"))?,
        )];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, now, LEAF_VALIDITY);
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .map_err(generate("a certificate"))?;
        Ok((cert, key))
    }
}

fn ca_params(now: SystemTime, validity: Duration) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, CA_COMMON_NAME);
    // Path length 0: the CA signs node certificates only, never another CA.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, now, validity);
    params
}

fn set_validity(params: &mut CertificateParams, now: SystemTime, validity: Duration) {
    // rcgen takes `time::OffsetDateTime`; build it from the epoch so that this crate needs no
    // direct dependency on `time`. A clock before 1970 is treated as the epoch.
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + since_epoch.saturating_sub(BACKDATE);
    params.not_after = epoch + since_epoch + validity;
}

/// Checks that `leaf` chains to `ca` and names `id`; the reason on failure.
fn verify_leaf(leaf: &CertificateDer<'_>, ca: &CertificateDer<'_>, id: &str) -> Result<(), String> {
    let anchor = webpki::anchor_from_trusted_cert(ca).map_err(|e| e.to_string())?;
    let cert = webpki::EndEntityCert::try_from(leaf).map_err(|e| e.to_string())?;
    // Nodes use the one certificate both to accept links and to dial them.
    for usage in [
        webpki::KeyUsage::server_auth(),
        webpki::KeyUsage::client_auth(),
    ] {
        cert.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            std::slice::from_ref(&anchor),
            &[],
            UnixTime::now(),
            usage,
            None,
            None,
        )
        .map_err(|e| e.to_string())?;
    }
    let name = ServerName::try_from(id).map_err(|e| e.to_string())?;
    cert.verify_is_valid_for_subject_name(&name)
        .map_err(|e| e.to_string())
}

fn refuse_existing(paths: &[&Path]) -> Result<(), PkiError> {
    for path in paths {
        // symlink_metadata: a dangling symlink still occupies the name.
        if path.symlink_metadata().is_ok() {
            return Err(PkiError::Exists {
                path: path.to_path_buf(),
            });
        }
    }
    Ok(())
}

fn create_dir(dir: &Path) -> Result<(), PkiError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| PkiError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })
}

/// Writes `contents` to a file created with `mode` (never chmod'ed afterwards). With `force`
/// an existing file is removed first, so the new file gets `mode` rather than the old one's.
fn write_new(path: &Path, contents: &[u8], mode: u32, force: bool) -> Result<(), PkiError> {
    let write_err = |source| PkiError::Write {
        path: path.to_path_buf(),
        source,
    };
    if force {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(write_err(e)),
        }
    }
    // create_new: O_EXCL, which also refuses to follow a symlink planted at `path`.
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => PkiError::Exists {
                path: path.to_path_buf(),
            },
            _ => write_err(e),
        })?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(write_err)
}

fn read_ca_file(dir: &Path, path: &Path) -> Result<Vec<u8>, PkiError> {
    std::fs::read(path).map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            PkiError::MissingCa {
                dir: dir.to_path_buf(),
                path: path.to_path_buf(),
            }
        } else {
            PkiError::Read {
                path: path.to_path_buf(),
                source,
            }
        }
    })
}

fn warn_if_exposed(key_path: &Path) {
    if let Ok(meta) = std::fs::metadata(key_path) {
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %key_path.display(),
                mode = format_args!("{:o}", mode & 0o777),
                "CA private key is readable by group or others; expected mode 0600"
            );
        }
    }
}

/// An in-memory CA for tests and the lab: nothing touches the disk.
pub struct TestCa {
    ca: Ca,
}

impl fmt::Debug for TestCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestCa")
            .field("fingerprint", &sha256_fingerprint(self.ca.cert.der()))
            .finish_non_exhaustive()
    }
}

impl TestCa {
    /// A new CA with the same parameters as [`init_ca`].
    ///
    /// # Panics
    /// If the crypto backend cannot generate a key (not expected to happen).
    pub fn new() -> Self {
        TestCa {
            ca: Ca::generate(SystemTime::now()).expect("generate an in-memory CA"),
        }
    }

    /// A certificate and key for `id`, exactly as [`issue`] would write them.
    ///
    /// # Panics
    /// If `id` is not a valid node id (a test bug), or key generation fails.
    pub fn issue(&self, id: &str) -> Identity {
        if let Err(e) = check_id(id) {
            panic!("TestCa::issue: {e}");
        }
        let (cert, key) = self
            .ca
            .sign_leaf(id, SystemTime::now())
            .expect("sign an in-memory leaf certificate");
        Identity {
            cert_chain: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        }
    }

    /// Writes a certificate and key for `id` as `<id>.pem` and `<id>.key`
    /// (mode 0600) in `out_dir`, and this CA's certificate as `ca.pem` there,
    /// for a daemon process that a test starts from files. Replaces existing
    /// files.
    pub fn write_files(&self, id: &str, out_dir: &Path) -> Result<IssuedFiles, PkiError> {
        check_id(id)?;
        let (leaf, leaf_key) = self.ca.sign_leaf(id, SystemTime::now())?;
        create_dir(out_dir)?;
        let cert_path = out_dir.join(format!("{id}.pem"));
        let key_path = out_dir.join(format!("{id}.key"));
        write_new(&key_path, leaf_key.serialize_pem().as_bytes(), 0o600, true)?;
        write_new(&cert_path, leaf.pem().as_bytes(), 0o644, true)?;
        write_new(
            &out_dir.join(CA_CERT_FILE),
            self.ca.cert.pem().as_bytes(),
            0o644,
            true,
        )?;
        Ok(IssuedFiles {
            node_id: id.to_owned(),
            fingerprint: sha256_fingerprint(leaf.der()),
            cert: cert_path,
            key: key_path,
        })
    }

    /// The CA certificate's DER.
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.ca.cert.der().clone()
    }

    /// A root store trusting this CA only.
    ///
    /// # Panics
    /// Never in practice: the CA certificate is generated by this module.
    pub fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots
            .add(self.cert_der())
            .expect("the generated CA certificate is a valid trust anchor");
        roots
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
    }

    fn read_cert(path: &Path) -> CertificateDer<'static> {
        let pem = std::fs::read(path).expect("read cert");
        let mut certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .expect("parse PEM");
        assert_eq!(
            certs.len(),
            1,
            "{} holds exactly one certificate",
            path.display()
        );
        certs.remove(0)
    }

    #[test]
    fn init_writes_ca_files_with_private_key_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("new/ca");
        let files = init_ca(&out, false).expect("init");
        assert_eq!(files.cert, out.join("ca.pem"));
        assert_eq!(files.key, out.join("ca.key"));
        assert_eq!(mode(&files.key), 0o600);
        assert_eq!(mode(&out), 0o700);
        let key = std::fs::read_to_string(&files.key).expect("read key");
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));
        let ca = read_cert(&files.cert);
        assert_eq!(files.fingerprint, sha256_fingerprint(&ca));
        assert_eq!(files.fingerprint.len(), 32 * 3 - 1);
        // The CA is usable as a trust anchor.
        webpki::anchor_from_trusted_cert(&ca).expect("trust anchor");
    }

    #[test]
    fn init_refuses_to_overwrite_without_force() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = init_ca(dir.path(), false).expect("init");
        let before = std::fs::read(&first.key).expect("read key");
        let err = init_ca(dir.path(), false).expect_err("second init refused");
        assert!(matches!(&err, PkiError::Exists { path } if path.ends_with("ca.pem")));
        assert!(err.to_string().contains("ca.pem"), "{err}");
        assert_eq!(std::fs::read(&first.key).expect("read key"), before);

        // A lone leftover key is refused too, and nothing is half-written.
        std::fs::remove_file(&first.cert).expect("rm");
        let err = init_ca(dir.path(), false).expect_err("refused");
        assert!(err.to_string().contains("ca.key"), "{err}");
        assert!(!first.cert.exists());

        let second = init_ca(dir.path(), true).expect("forced init");
        assert_ne!(std::fs::read(&second.key).expect("read key"), before);
        assert_eq!(mode(&second.key), 0o600);
    }

    #[test]
    fn forced_overwrite_recreates_key_with_private_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("ca.key");
        std::fs::write(&key, "old").expect("write");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        init_ca(dir.path(), true).expect("forced init");
        assert_eq!(mode(&key), 0o600);
    }

    #[test]
    fn issued_certificate_verifies_against_the_ca_and_names_the_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_dir = dir.path().join("ca");
        let ca = init_ca(&ca_dir, false).expect("init");
        let nodes = dir.path().join("nodes");
        let files = issue(&ca_dir, "sha", &nodes, false).expect("issue");
        assert_eq!(files.cert, nodes.join("sha.pem"));
        assert_eq!(files.key, nodes.join("sha.key"));
        assert_eq!(mode(&files.key), 0o600);

        let ca_der = read_cert(&ca.cert);
        let leaf_der = read_cert(&files.cert);
        let anchor = webpki::anchor_from_trusted_cert(&ca_der).expect("anchor");
        let leaf = webpki::EndEntityCert::try_from(&leaf_der).expect("leaf parses");
        let now = UnixTime::now();
        for usage in [
            webpki::KeyUsage::server_auth(),
            webpki::KeyUsage::client_auth(),
        ] {
            leaf.verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                std::slice::from_ref(&anchor),
                &[],
                now,
                usage,
                None,
                None,
            )
            .expect("leaf chains to the CA");
        }
        assert_eq!(leaf.valid_dns_names().collect::<Vec<_>>(), ["sha"]);
        let named = |id: &str| {
            leaf.verify_is_valid_for_subject_name(&ServerName::try_from(id).expect("name"))
                .is_ok()
        };
        assert!(named("sha"));
        assert!(!named("lax"));

        // Valid for about two years, not ten.
        let in_a_year = UnixTime::since_unix_epoch(Duration::from_secs(now.as_secs()) + 365 * DAY);
        let in_three_years =
            UnixTime::since_unix_epoch(Duration::from_secs(now.as_secs()) + 3 * 365 * DAY);
        let valid_at = |time| {
            leaf.verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                std::slice::from_ref(&anchor),
                &[],
                time,
                webpki::KeyUsage::client_auth(),
                None,
                None,
            )
            .is_ok()
        };
        assert!(valid_at(in_a_year));
        assert!(!valid_at(in_three_years));

        // The issued key is the leaf's key, and tls::Identity loads the pair.
        let identity = Identity::load(&files.cert, &files.key).expect("load identity");
        assert_eq!(identity.cert_chain, vec![leaf_der]);
    }

    #[test]
    fn issue_refuses_overwrite_without_force() {
        let dir = tempfile::tempdir().expect("tempdir");
        init_ca(dir.path(), false).expect("init");
        issue(dir.path(), "controller", dir.path(), false).expect("issue");
        let err = issue(dir.path(), "controller", dir.path(), false).expect_err("refused");
        assert!(err.to_string().contains("controller.pem"), "{err}");
        issue(dir.path(), "controller", dir.path(), true).expect("forced");
    }

    #[test]
    fn issue_rejects_invalid_ids() {
        let dir = tempfile::tempdir().expect("tempdir");
        init_ca(dir.path(), false).expect("init");
        for bad in [
            "Bad_ID",
            "",
            "1abc",
            "sha.lax",
            "../etc",
            "abcdefghijklmnopq",
        ] {
            let err = issue(dir.path(), bad, dir.path(), false).expect_err(bad);
            assert!(
                matches!(&err, PkiError::InvalidId { id } if id == bad),
                "{err}"
            );
        }
        // 16 characters is the limit, and is accepted.
        issue(dir.path(), "abcdefghijklmnop", dir.path(), false).expect("16 chars");
        let written: Vec<_> = std::fs::read_dir(dir.path())
            .expect("ls")
            .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
            .collect();
        assert_eq!(written.len(), 4, "{written:?}");
    }

    #[test]
    fn issue_names_missing_or_mismatched_ca_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = issue(&dir.path().join("nope"), "sha", dir.path(), false).expect_err("no CA");
        assert!(matches!(err, PkiError::MissingCa { .. }), "{err}");
        assert!(err.to_string().contains("ca.pem"), "{err}");

        let a = dir.path().join("a");
        let b = dir.path().join("b");
        init_ca(&a, false).expect("init a");
        init_ca(&b, false).expect("init b");
        std::fs::copy(b.join("ca.key"), a.join("ca.key")).expect("copy");
        let err = issue(&a, "sha", dir.path(), false).expect_err("mismatch");
        assert!(matches!(err, PkiError::KeyMismatch { .. }), "{err}");

        std::fs::write(a.join("ca.key"), "-----BEGIN PRIVATE KEY-----\nAAAA\n").expect("write");
        let err = issue(&a, "sha", dir.path(), false).expect_err("bad key");
        assert!(matches!(err, PkiError::BadCaKey { .. }), "{err}");
        assert!(!err.to_string().contains("AAAA"), "{err}");
        assert!(!dir.path().join("sha.pem").exists());
    }

    #[test]
    fn test_ca_issues_identities_its_roots_trust() {
        let ca = TestCa::new();
        let id = ca.issue("lax");
        assert_eq!(id.cert_chain.len(), 1);
        let leaf = webpki::EndEntityCert::try_from(&id.cert_chain[0]).expect("parse");
        assert_eq!(leaf.valid_dns_names().collect::<Vec<_>>(), ["lax"]);
        verify_leaf(&id.cert_chain[0], &ca.cert_der(), "lax").expect("verifies");
        assert!(verify_leaf(&id.cert_chain[0], &TestCa::new().cert_der(), "lax").is_err());
        assert_eq!(ca.roots().len(), 1);
        assert!(!format!("{ca:?}").contains("PRIVATE"));
    }
}
