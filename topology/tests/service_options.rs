//! Per-service options: `protect` and `budget_ms` reach the model, and a UDP
//! and a TCP service may listen on the same port (separate port spaces).

const FLEET: &str = r#"
version: 1
nodes:
  - { id: sha, city: Shanghai, country: CN, region: asia-east, lat: 31.23, lon: 121.47, addr: "127.0.0.1:7001" }
  - { id: lax, city: Los Angeles, country: US, region: north-america-west, lat: 34.05, lon: -118.24, addr: "127.0.0.1:7002" }
links:
  - { between: [sha, lax], kind: undersea, name: ncp }
services:
  - name: media
    protocol: udp
    ingress: { node: sha, listen: "127.0.0.1:9000" }
    egress: { node: lax, target: "127.0.0.1:9100" }
    protect: true
    budget_ms: 150
  - name: signal
    protocol: tcp
    ingress: { node: sha, listen: "127.0.0.1:9000" }
    egress: { node: lax, target: "127.0.0.1:9100" }
"#;

#[test]
fn options_reach_the_model_and_udp_and_tcp_share_a_port() {
    let t = topology::parse("fleet.yaml", FLEET).expect("valid topology");
    let media = t
        .services
        .iter()
        .find(|s| s.name == "media")
        .expect("media");
    let signal = t
        .services
        .iter()
        .find(|s| s.name == "signal")
        .expect("signal");
    assert!(media.protect);
    assert_eq!(media.budget_us, 150_000);
    assert!(!signal.protect);
    assert_eq!(signal.budget_us, topology::DEFAULT_BUDGET_US);
    assert_eq!(media.listen, signal.listen, "one port, two protocols");
}

#[test]
fn two_udp_services_on_one_port_still_clash() {
    let text = FLEET.replace("protocol: tcp", "protocol: udp");
    let err = topology::parse("fleet.yaml", &text).expect_err("a clash");
    assert!(
        err.to_string().contains("is already used"),
        "unexpected errors: {err}"
    );
}
