//! One bad report does not flood the controller's log: a relay's report of
//! 2,000 link entries that cannot be used gives one warning line, with the
//! count, not 2,000 lines.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use control_protocol::{LinkReport, RelayMessage};
use pki::TestCa;

#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("logs").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_full_of_bad_entries_gives_one_warning() {
    let logs = Logs::default();
    let sink = logs.clone();
    tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .try_init()
        .expect("the only subscriber of this test binary");
    let test = async {
        let ca = TestCa::new();
        let (controller, ctl_addr) = support::two_node_controller(&ca).await;
        let conn = support::connect_as_aaa(&ca, ctl_addr).await;
        let (mut send, _recv) = conn.open_bi().await.expect("stream");
        let hello = RelayMessage::Hello {
            node: "aaa".into(),
            table_version: 0,
            protocol: 1,
        };
        // 2,000 entries about the real link, each with an impossible loss.
        let links = (0..2_000)
            .map(|_| LinkReport {
                peer: "bbb".into(),
                up: true,
                rtt_ms: Some(1.0),
                min_rtt_ms: Some(1.0),
                jitter_ms: None,
                loss: 5.0,
                tx_mbps: None,
                up_for_s: None,
            })
            .collect();
        for m in [
            hello,
            RelayMessage::Links {
                links,
                draining: false,
                services: vec![],
                demand: vec![],
            },
        ] {
            let bytes = control_protocol::framing::encode(&m).expect("encode");
            send.write_all(&bytes).await.expect("send");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let text = String::from_utf8_lossy(&logs.0.lock().expect("logs")).into_owned();
        let warnings: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("WARN") && l.contains("link report"))
            .collect();
        assert_eq!(warnings.len(), 1, "{text}");
        assert!(warnings[0].contains("ignored=2000"), "{}", warnings[0]);
        conn.close(0u32.into(), b"done");
        controller.shutdown().await;
    };
    tokio::time::timeout(Duration::from_secs(30), test)
        .await
        .expect("bounded");
}
