//! Loading a node's identity and building the TLS configs from what `pki` issues.

use daemon::tls::{client_config, load_roots, server_config, Identity, PeerPolicy, TlsError};
use pki::TestCa;
use rustls_pki_types::PrivateKeyDer;

#[test]
fn identity_debug_hides_the_key() {
    let id = TestCa::new().issue("sha");
    let PrivateKeyDer::Pkcs8(key) = &id.key else {
        panic!("TestCa issues PKCS#8 keys")
    };
    let shown = format!("{id:?}");
    assert!(shown.contains("<redacted>"), "{shown}");
    assert!(!shown.contains(&format!("{:?}", &key.secret_pkcs8_der()[..8])));
}

#[test]
fn load_names_the_file_that_is_wrong() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = dir.path().join("sha.pem");
    let key = dir.path().join("sha.key");
    let empty = dir.path().join("empty.pem");
    pki::init_ca(dir.path(), false).expect("init");
    pki::issue(dir.path(), "sha", dir.path(), false).expect("issue");
    std::fs::write(&empty, "not pem at all\n").expect("write");

    let missing = dir.path().join("nope.pem");
    let err = Identity::load(&missing, &key).expect_err("missing");
    assert!(
        matches!(&err, TlsError::Missing { path } if path == &missing),
        "{err}"
    );
    let err = Identity::load(&empty, &key).expect_err("no cert");
    assert!(
        matches!(&err, TlsError::NoCertificate { path } if path == &empty),
        "{err}"
    );
    let err = Identity::load(&cert, &cert).expect_err("no key");
    assert!(
        matches!(&err, TlsError::NoKey { path } if path == &cert),
        "{err}"
    );
    assert!(err.to_string().contains("sha.pem"), "{err}");
    let err = Identity::load(&cert, dir.path()).expect_err("a directory");
    assert!(matches!(err, TlsError::Unreadable { .. }), "{err}");
    Identity::load(&cert, &key).expect("loads");

    assert_eq!(
        load_roots(&dir.path().join("ca.pem")).expect("roots").len(),
        1
    );
    let err = load_roots(&empty).expect_err("no roots");
    assert!(matches!(err, TlsError::NoCertificate { .. }), "{err}");
}

#[test]
fn configs_build_without_a_global_provider() {
    let ca = TestCa::new();
    server_config(ca.issue("sha"), ca.roots(), PeerPolicy::new(["lax"])).expect("server");
    client_config(ca.issue("lax"), ca.roots()).expect("client");
    // A key that does not belong to the certificate is refused up front.
    let mut wrong = ca.issue("sha");
    wrong.key = ca.issue("lax").key;
    assert!(matches!(
        client_config(wrong, ca.roots()),
        Err(TlsError::Config(_))
    ));
}
