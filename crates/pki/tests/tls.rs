//! Mutual TLS between real quinn endpoints on loopback: who gets in, who is refused, and why.

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use daemon::tls::{client_config, peer_node_id, server_config, Identity, PeerPolicy};
use pki::TestCa;
use quinn::{ConnectionError, Endpoint};

const LIMIT: Duration = Duration::from_secs(20);

/// TLS alert numbers (RFC 8446 §6) as they appear in QUIC CRYPTO_ERROR codes (0x100 + alert).
const BAD_CERTIFICATE: u8 = 42;
const DECRYPT_ERROR: u8 = 51;
const ACCESS_DENIED: u8 = 49;

/// Runs a test body under the time limit every async test here shares.
async fn bounded<F: Future<Output = ()>>(body: F) {
    tokio::time::timeout(LIMIT, body)
        .await
        .expect("test finished within its time limit");
}

/// A relay-like endpoint on 127.0.0.1:0 that both accepts and dials.
struct Node {
    endpoint: Endpoint,
    policy: PeerPolicy,
}

impl Node {
    fn new(identity: Identity, ca: &TestCa, allowed: &[&str]) -> Self {
        let policy = PeerPolicy::new(allowed.iter().copied()).admitting("node of this test fleet");
        let server =
            server_config(identity.clone(), ca.roots(), policy.clone()).expect("server config");
        let mut endpoint =
            Endpoint::server(server, SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind");
        endpoint
            .set_default_client_config(client_config(identity, ca.roots()).expect("client config"));
        Node { endpoint, policy }
    }

    fn addr(&self) -> SocketAddr {
        self.endpoint.local_addr().expect("local addr")
    }
}

/// A dial-only endpoint presenting `identity` and trusting `roots_of`'s CA.
fn dialer(identity: Identity, roots_of: &TestCa) -> Endpoint {
    let mut endpoint =
        Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind client");
    endpoint.set_default_client_config(client_config(identity, roots_of.roots()).expect("client"));
    endpoint
}

/// The outcome of one accepted handshake, from the server's side.
type Accepted = Result<(String, Option<String>), ConnectionError>;

/// Accepts one connection; if it establishes, echoes one stream reversed and reports the
/// bytes received and who the peer is (among `candidates`).
fn serve_one(
    server: &Endpoint,
    candidates: &'static [&'static str],
) -> tokio::task::JoinHandle<Accepted> {
    let server = server.clone();
    tokio::spawn(async move {
        let incoming = server.accept().await.expect("endpoint open");
        let conn = incoming.await?;
        let peer = peer_node_id(&conn, candidates.iter().copied());
        let (mut send, mut recv) = conn.accept_bi().await?;
        let got = recv.read_to_end(1024).await.expect("read request");
        let mut reply = got.clone();
        reply.reverse();
        send.write_all(&reply).await.expect("write reply");
        send.finish().expect("finish");
        // Hold the connection until the client has read the reply and closed.
        let _ = conn.closed().await;
        Ok((String::from_utf8(got).expect("utf-8"), peer))
    })
}

/// Dials `addr` as `name`, sends `msg` on a bidirectional stream and returns the reply and
/// the peer's node id among `candidates`.
async fn round_trip(
    client: &Endpoint,
    addr: SocketAddr,
    name: &str,
    msg: &str,
    candidates: &[&str],
) -> Result<(String, Option<String>), ConnectionError> {
    let conn = client.connect(addr, name).expect("connect starts").await?;
    let peer = peer_node_id(&conn, candidates.iter().copied());
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(msg.as_bytes()).await.map_err(|e| match e {
        quinn::WriteError::ConnectionLost(e) => e,
        other => panic!("write failed: {other}"),
    })?;
    let _ = send.finish();
    let reply = recv.read_to_end(1024).await.map_err(|e| match e {
        quinn::ReadToEndError::Read(quinn::ReadError::ConnectionLost(e)) => e,
        other => panic!("read failed: {other}"),
    })?;
    conn.close(0u32.into(), b"done");
    Ok((String::from_utf8(reply).expect("utf-8"), peer))
}

/// The TLS alert a connection failed with, if it failed in the handshake.
fn tls_alert(e: &ConnectionError) -> Option<u8> {
    let code = match e {
        ConnectionError::TransportError(t) => t.code,
        ConnectionError::ConnectionClosed(c) => c.error_code,
        _ => return None,
    };
    let code = u64::from(code);
    (0x100..0x200).contains(&code).then(|| (code - 0x100) as u8)
}

/// Dials and expects a refusal: the client sees the TLS alert `alert` and the server never
/// yields an established connection. Returns nothing; panics with the evidence otherwise.
async fn expect_refused(client: &Endpoint, server: &Endpoint, name: &str, alert: u8) {
    let accepted = serve_one(server, &["sha", "lax", "tyo"]);
    let addr = server.local_addr().expect("addr");
    let err = round_trip(client, addr, name, "let me in", &[])
        .await
        .expect_err("the connection is refused");
    assert_eq!(tls_alert(&err), Some(alert), "client saw {err}");
    match accepted.await.expect("server task") {
        Ok(established) => panic!("server established a connection: {established:?}"),
        Err(e) => assert!(tls_alert(&e).is_some(), "server saw {e}"),
    }
}

/// Captures `tracing` output on this thread (tests run on a current-thread runtime, so the
/// endpoint driver that runs the verifier logs here too).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        let logs = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || logs.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("logs")).into_owned()
    }
}

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("logs").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn fleet_nodes_that_allow_each_other_connect_and_exchange_bytes() {
    bounded(async {
        let ca = TestCa::new();
        let sha = Node::new(ca.issue("sha"), &ca, &["lax"]);
        let lax = Node::new(ca.issue("lax"), &ca, &["sha"]);

        let accepted = serve_one(&sha.endpoint, &["lax", "tyo"]);
        let (reply, server_is) = round_trip(
            &lax.endpoint,
            sha.addr(),
            "sha",
            "hello from lax",
            &["tyo", "sha"],
        )
        .await
        .expect("lax reaches sha");
        assert_eq!(reply, "xal morf olleh");
        assert_eq!(server_is.as_deref(), Some("sha"));

        let (got, client_is) = accepted.await.expect("task").expect("sha accepts lax");
        assert_eq!(got, "hello from lax");
        assert_eq!(client_is.as_deref(), Some("lax"));

        // And the other way round, on the same pair of endpoints.
        let accepted = serve_one(&lax.endpoint, &["sha"]);
        let (reply, server_is) = round_trip(&sha.endpoint, lax.addr(), "lax", "ni hao", &["lax"])
            .await
            .expect("sha reaches lax");
        assert_eq!(
            (reply.as_str(), server_is.as_deref()),
            ("oah in", Some("lax"))
        );
        let (got, client_is) = accepted.await.expect("task").expect("lax accepts sha");
        assert_eq!(
            (got.as_str(), client_is.as_deref()),
            ("ni hao", Some("sha"))
        );
    })
    .await;
}

#[tokio::test]
async fn peer_node_id_is_none_when_no_candidate_matches() {
    bounded(async {
        let ca = TestCa::new();
        let sha = Node::new(ca.issue("sha"), &ca, &["lax"]);
        let lax = dialer(ca.issue("lax"), &ca);
        let accepted = serve_one(&sha.endpoint, &["tyo", "Not A Name"]);
        let (_, server_is) = round_trip(&lax, sha.addr(), "sha", "x", &["lax", "tyo"])
            .await
            .expect("connects");
        assert_eq!(server_is, None);
        let (_, client_is) = accepted.await.expect("task").expect("accepted");
        assert_eq!(client_is, None);
    })
    .await;
}

#[tokio::test]
async fn a_client_certificate_from_another_ca_is_refused() {
    let logs = Logs::default();
    let _guard = logs.install();
    bounded(async {
        let ca = TestCa::new();
        let rogue_ca = TestCa::new();
        let sha = Node::new(ca.issue("sha"), &ca, &["lax"]);
        // Same id the server allows, and it trusts the real CA so it would accept `sha`.
        // Every fleet CA has the same subject, so the chain finds the real CA as issuer and
        // the signature check fails: decrypt_error rather than unknown_ca.
        let impostor = dialer(rogue_ca.issue("lax"), &ca);
        expect_refused(&impostor, &sha.endpoint, "sha", DECRYPT_ERROR).await;
    })
    .await;
    let text = logs.text();
    assert!(
        text.contains("refused peer certificate: not signed by the fleet CA"),
        "{text}"
    );
}

#[tokio::test]
async fn a_fleet_certificate_for_a_node_the_policy_does_not_allow_is_refused() {
    let logs = Logs::default();
    let _guard = logs.install();
    bounded(async {
        let ca = TestCa::new();
        let sha = Node::new(ca.issue("sha"), &ca, &["lax"]);
        let tyo = dialer(ca.issue("tyo"), &ca);
        expect_refused(&tyo, &sha.endpoint, "sha", ACCESS_DENIED).await;
    })
    .await;
    let text = logs.text();
    assert!(
        text.contains("refused peer certificate: names no node of this test fleet"),
        "{text}"
    );
    assert!(
        text.contains("tyo"),
        "the log names the refused certificate: {text}"
    );
}

#[tokio::test]
async fn a_server_whose_certificate_names_another_node_is_refused() {
    bounded(async {
        let ca = TestCa::new();
        let sha = Node::new(ca.issue("sha"), &ca, &["lax"]);
        let lax = Node::new(ca.issue("lax"), &ca, &["sha"]);
        // lax believes it is dialling lax (say, a stale address), but sha answers.
        expect_refused(&lax.endpoint, &sha.endpoint, "lax", BAD_CERTIFICATE).await;
    })
    .await;
}

#[tokio::test]
async fn policy_changes_apply_to_new_handshakes() {
    bounded(async {
        let ca = TestCa::new();
        let sha = Node::new(ca.issue("sha"), &ca, &["lax"]);
        let lax = dialer(ca.issue("lax"), &ca);
        let tyo = dialer(ca.issue("tyo"), &ca);

        let admitted = |client: &Endpoint, who: &'static str| {
            let accepted = serve_one(&sha.endpoint, &["lax", "tyo"]);
            let client = client.clone();
            let addr = sha.addr();
            async move {
                let (reply, _) = round_trip(&client, addr, "sha", who, &["sha"])
                    .await
                    .unwrap_or_else(|e| panic!("{who} admitted: {e}"));
                assert_eq!(reply.chars().rev().collect::<String>(), who);
                let (_, peer) = accepted.await.expect("task").expect("accepted");
                assert_eq!(peer.as_deref(), Some(who));
            }
        };

        admitted(&lax, "lax").await;
        expect_refused(&tyo, &sha.endpoint, "sha", ACCESS_DENIED).await;

        // A topology reload: tyo replaces lax. The same client endpoints dial again, so a
        // resumed session would show up here as lax getting in.
        sha.policy.set(["tyo"]);
        expect_refused(&lax, &sha.endpoint, "sha", ACCESS_DENIED).await;
        admitted(&tyo, "tyo").await;

        sha.policy.set(["lax", "tyo"]);
        admitted(&lax, "lax").await;
        admitted(&tyo, "tyo").await;
    })
    .await;
}
