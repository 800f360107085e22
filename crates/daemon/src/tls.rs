//! Mutual TLS for QUIC links: rustls configs that accept only the fleet's own nodes.
//!
//! Both sides present a certificate from the fleet CA (`overlay pki`) whose DNS name is
//! the node id. A client checks the server against the node id it dialled (the `server_name`
//! given to `quinn::Endpoint::connect`); a server accepts a client only if its certificate
//! chains to the fleet CA *and* names a node its [`PeerPolicy`] allows. Every config is built
//! on an explicit ring provider; nothing depends on a process-wide default.
//!
//! Session resumption is off on both sides: a resumed TLS 1.3 session skips the client
//! certificate check, which would let a peer removed from the policy back in.

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use quinn::crypto::rustls::{NoInitialCipherSuite, QuicClientConfig, QuicServerConfig};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{NoServerSessionStorage, VerifierBuilderError, WebPkiClientVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, DnsName, PrivateKeyDer, ServerName, UnixTime};
use thiserror::Error;

/// The ALPN protocol of overlay links; both sides insist on it.
pub const ALPN: &[u8] = b"overlay/1";

/// Why loading credentials or building a TLS config failed.
#[derive(Debug, Error)]
pub enum TlsError {
    #[error("{} does not exist", path.display())]
    Missing { path: PathBuf },
    #[error("cannot read {}: {source}", path.display())]
    Unreadable { path: PathBuf, source: io::Error },
    #[error("{} holds no PEM certificate", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{} holds no PEM private key", path.display())]
    NoKey { path: PathBuf },
    #[error("{} is not valid PEM: {source}", path.display())]
    BadCertPem { path: PathBuf, source: pem::Error },
    /// Deliberately carries no detail from the parser: the input is a private key.
    #[error("{} is not valid PEM", path.display())]
    BadKeyPem { path: PathBuf },
    #[error("{} is readable by others than its owner (mode {mode:o}): run `chmod 600 {}`", path.display(), path.display())]
    KeyExposed { path: PathBuf, mode: u32 },
    #[error("{} holds a certificate that cannot be a trust anchor: {reason}", path.display())]
    BadRoot { path: PathBuf, reason: String },
    #[error("cannot build the client certificate verifier: {0}")]
    Verifier(#[from] VerifierBuilderError),
    #[error("invalid tls configuration: {0}")]
    Config(#[from] rustls::Error),
    #[error("tls configuration unusable for QUIC: {0}")]
    Quic(#[from] NoInitialCipherSuite),
}

/// A node's certificate chain (leaf first) and private key.
pub struct Identity {
    pub cert_chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("certificates", &self.cert_chain.len())
            .field("key", &"<redacted>")
            .finish()
    }
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity {
            cert_chain: self.cert_chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl Identity {
    /// Loads a PEM certificate chain (leaf first; `overlay pki issue` writes the leaf alone)
    /// and a PEM private key (PKCS#8, SEC1 or PKCS#1).
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, TlsError> {
        let cert_chain = read_certs(cert_path)?;
        let pem = read(key_path)?;
        let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
            pem::Error::NoItemsFound => TlsError::NoKey {
                path: key_path.to_path_buf(),
            },
            _ => TlsError::BadKeyPem {
                path: key_path.to_path_buf(),
            },
        })?;
        check_key_private(key_path)?;
        Ok(Identity { cert_chain, key })
    }
}

/// What is wrong with an identity for `node` under the fleet CA `roots`, if
/// anything: the certificate must name the node, verify against the CA now,
/// and belong to the key. A daemon checks this with its config, so a mismatch
/// is a config error (exit 64) rather than a failure at every handshake.
pub fn check_identity(
    identity: &Identity,
    roots: &RootCertStore,
    node: &str,
) -> Result<(), IdentityProblem> {
    let leaf = identity
        .cert_chain
        .first()
        .ok_or(IdentityProblem::Unreadable)?;
    let parsed = webpki::EndEntityCert::try_from(leaf).map_err(|_| IdentityProblem::Unreadable)?;
    if !names_node(&parsed, node) {
        let names = parsed.valid_dns_names().map(str::to_owned).collect();
        return Err(IdentityProblem::WrongName {
            node: node.to_string(),
            names,
        });
    }
    let provider = provider();
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots.clone()), provider.clone())
            .build()
            .map_err(|e| IdentityProblem::NotFromCa(e.to_string()))?;
    verifier
        .verify_client_cert(leaf, &identity.cert_chain[1..], UnixTime::now())
        .map_err(|e| IdentityProblem::NotFromCa(e.to_string()))?;
    rustls::sign::CertifiedKey::from_der(
        identity.cert_chain.clone(),
        identity.key.clone_key(),
        &provider,
    )
    .map_err(|e| IdentityProblem::KeyMismatch(e.to_string()))?;
    Ok(())
}

/// Why an identity is unfit for its node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityProblem {
    #[error("the certificate cannot be parsed")]
    Unreadable,
    #[error("the certificate names {names:?}, not node `{node}`")]
    WrongName { node: String, names: Vec<String> },
    #[error("the certificate does not verify against the CA: {0}")]
    NotFromCa(String),
    #[error("the key does not belong to the certificate: {0}")]
    KeyMismatch(String),
}

/// Loads every certificate in `ca_path` (PEM) as a trust anchor.
pub fn load_roots(ca_path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(ca_path)? {
        roots.add(cert).map_err(|e| TlsError::BadRoot {
            path: ca_path.to_path_buf(),
            reason: e.to_string(),
        })?;
    }
    Ok(roots)
}

/// The largest certificate or key file read: a chain of a few certificates is
/// a few KiB.
const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// Reads a PEM file: a regular file of at most [`MAX_PEM_BYTES`], refused at
/// once if it is a FIFO, a device or larger.
fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    topology::read_bounded_bytes(path, MAX_PEM_BYTES).map_err(|e| match e {
        topology::ReadError::Open { source, .. } if source.kind() == io::ErrorKind::NotFound => {
            TlsError::Missing {
                path: path.to_path_buf(),
            }
        }
        other => TlsError::Unreadable {
            path: path.to_path_buf(),
            source: io::Error::other(other.to_string()),
        },
    })
}

/// Refuses a private key that others than its owner may read, as ssh does:
/// the key is the node's identity in the fleet.
fn check_key_private(path: &Path) -> Result<(), TlsError> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path)
        .map_err(|source| TlsError::Unreadable {
            path: path.to_path_buf(),
            source,
        })?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(TlsError::KeyExposed {
            path: path.to_path_buf(),
            mode: mode & 0o777,
        });
    }
    Ok(())
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::BadCertPem {
            path: path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The node ids a daemon accepts inbound connections from (a relay: its neighbours; the
/// controller: the fleet's relays). Cheap to clone; every clone shares one set, so
/// [`PeerPolicy::set`] (say on a topology reload) applies to every later handshake.
#[derive(Debug, Clone)]
pub struct PeerPolicy {
    ids: Arc<RwLock<BTreeSet<String>>>,
    /// Who the policy admits, for the log line of a refusal: "a neighbour of this relay".
    admits: &'static str,
}

impl Default for PeerPolicy {
    fn default() -> Self {
        PeerPolicy {
            ids: Arc::default(),
            admits: "node this daemon accepts",
        }
    }
}

impl PeerPolicy {
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(ids: I) -> Self {
        let policy = PeerPolicy::default();
        policy.set(ids);
        policy
    }

    /// Names who the policy admits, as refusals are logged: "names no {admits}".
    pub fn admitting(mut self, admits: &'static str) -> Self {
        self.admits = admits;
        self
    }

    /// Replaces the allowed ids.
    pub fn set<I: IntoIterator<Item = S>, S: Into<String>>(&self, ids: I) {
        let ids: BTreeSet<String> = ids.into_iter().map(Into::into).collect();
        // A panic while holding the lock cannot leave a half-replaced set: recover it.
        *self.ids.write().unwrap_or_else(PoisonError::into_inner) = ids;
    }

    pub fn allows(&self, id: &str) -> bool {
        self.read().contains(id)
    }

    /// The allowed ids, sorted.
    pub fn ids(&self) -> Vec<String> {
        self.read().iter().cloned().collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeSet<String>> {
        self.ids.read().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A quinn server config that requires a client certificate from the fleet CA naming a node
/// `policy` allows. Transport parameters are quinn's defaults.
pub fn server_config(
    identity: Identity,
    roots: RootCertStore,
    policy: PeerPolicy,
) -> Result<quinn::ServerConfig, TlsError> {
    let provider = provider();
    let inner =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build()?;
    let verifier = Arc::new(FleetClientVerifier { inner, policy });
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.cert_chain, identity.key)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    tls.session_storage = Arc::new(NoServerSessionStorage {});
    tls.send_tls13_tickets = 0;
    tls.max_early_data_size = 0;
    let quic = QuicServerConfig::try_from(tls)?;
    Ok(quinn::ServerConfig::with_crypto(Arc::new(quic)))
}

/// A quinn client config that presents `identity` and accepts a server whose certificate
/// chains to `roots` and names the node id passed as `server_name` to `Endpoint::connect`.
pub fn client_config(
    identity: Identity,
    roots: RootCertStore,
) -> Result<quinn::ClientConfig, TlsError> {
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_client_auth_cert(identity.cert_chain, identity.key)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    tls.resumption = rustls::client::Resumption::disabled();
    tls.enable_early_data = false;
    let quic = QuicClientConfig::try_from(tls)?;
    Ok(quinn::ClientConfig::new(Arc::new(quic)))
}

/// Which of `candidates` the peer's leaf certificate names, if any. The chain was verified in
/// the handshake; this only reads the name from it.
pub fn peer_node_id<'a>(
    conn: &quinn::Connection,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let chain = conn
        .peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()?;
    let leaf = webpki::EndEntityCert::try_from(chain.first()?).ok()?;
    candidates
        .into_iter()
        .find(|id| names_node(&leaf, id))
        .map(str::to_owned)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Whether `cert` is valid for the DNS name `id` (ids that are not DNS names never match).
fn names_node(cert: &webpki::EndEntityCert<'_>, id: &str) -> bool {
    DnsName::try_from(id).is_ok_and(|name| {
        cert.verify_is_valid_for_subject_name(&ServerName::DnsName(name))
            .is_ok()
    })
}

/// rustls' WebPKI client verifier (the chain must reach the fleet CA), plus: the leaf must
/// name a node the policy allows.
#[derive(Debug)]
struct FleetClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    policy: PeerPolicy,
}

impl ClientCertVerifier for FleetClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if let Err(e) = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)
        {
            let why = match &e {
                rustls::Error::InvalidCertificate(
                    CertificateError::UnknownIssuer | CertificateError::BadSignature,
                ) => "refused peer certificate: not signed by the fleet CA",
                rustls::Error::InvalidCertificate(
                    CertificateError::Expired
                    | CertificateError::ExpiredContext { .. }
                    | CertificateError::NotValidYet
                    | CertificateError::NotValidYetContext { .. },
                ) => "refused peer certificate: outside its validity period",
                _ => "refused peer certificate: does not verify against the fleet CA",
            };
            tracing::warn!(error = %e, "{why}");
            return Err(e);
        }
        let leaf = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let ids = self.policy.read();
        match ids.iter().find(|id| names_node(&leaf, id)) {
            Some(id) => {
                tracing::debug!(node = %id, "accepted peer certificate");
                Ok(ClientCertVerified::assertion())
            }
            None => {
                let names: Vec<&str> = leaf.valid_dns_names().collect();
                tracing::warn!(
                    names = ?names,
                    "refused peer certificate: names no {}",
                    self.policy.admits
                );
                Err(rustls::Error::InvalidCertificate(
                    CertificateError::ApplicationVerificationFailure,
                ))
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_is_shared_between_clones_and_replaceable() {
        let policy = PeerPolicy::new(["lax", "sha"]);
        let clone = policy.clone();
        assert!(clone.allows("sha"));
        policy.set(["tyo"]);
        assert!(!clone.allows("sha"));
        assert!(clone.allows("tyo"));
        assert_eq!(clone.ids(), ["tyo"]);
    }
}
