//! The lab's admin API: the controller's read endpoints, plus
//! `POST /api/v1/lab/links/{a}/{b}/cut|restore|impair` to break links by hand
//! (impair takes JSON `{"delay_ms": 150, "jitter_ms": 5, "loss": 0.01}`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use relay::emulator::LinkHandle;
use relay::http::{Request, Response};
use serde::Deserialize;

/// What the lab did, for the closing report: (seconds into the run, what).
pub type EventLog = Arc<Mutex<Vec<(f64, String)>>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Impair {
    delay_ms: f64,
    #[serde(default)]
    jitter_ms: f64,
    #[serde(default)]
    loss: f64,
}

/// Builds the handler. `links` has each link under both (a, b) and (b, a).
pub fn handler(
    controller: Arc<controller::server::Shared>,
    links: HashMap<(String, String), LinkHandle>,
    log: EventLog,
    started: tokio::time::Instant,
) -> relay::http::Handler {
    Arc::new(move |r: &Request| {
        if r.method == "GET" {
            return controller::api::respond(&controller, r);
        }
        let parts: Vec<&str> = r.path.trim_matches('/').split('/').collect();
        let ["api", "v1", "lab", "links", a, b, action] = parts.as_slice() else {
            return Response::not_found(&r.path);
        };
        if r.method != "POST" {
            return Response::error(405, "use POST for lab actions");
        }
        let Some(link) = links.get(&(a.to_string(), b.to_string())) else {
            return Response::error(404, &format!("no link between `{a}` and `{b}`"));
        };
        let what = match *action {
            "cut" => {
                link.cut();
                format!("cut {a}–{b} (API)")
            }
            "restore" => {
                link.restore();
                format!("restore {a}–{b} (API)")
            }
            "impair" => {
                let p: Impair = match serde_json::from_slice(&r.body) {
                    Ok(p) => p,
                    Err(e) => return Response::error(400, &format!("impair takes JSON like {{\"delay_ms\": 150, \"jitter_ms\": 5, \"loss\": 0.01}}: {e}")),
                };
                let ms = |v: f64| Duration::from_secs_f64(v.clamp(0.0, 60_000.0) / 1000.0);
                if let Err(e) = link.impair(ms(p.delay_ms), ms(p.jitter_ms), p.loss) {
                    return Response::error(400, &e.to_string());
                }
                format!(
                    "impair {a}–{b}: {} ms ± {} ms, loss {:.1}% (API)",
                    p.delay_ms,
                    p.jitter_ms,
                    p.loss * 100.0
                )
            }
            other => {
                return Response::error(
                    404,
                    &format!("unknown lab action `{other}`; use cut, restore or impair"),
                )
            }
        };
        log.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((started.elapsed().as_secs_f64(), what.clone()));
        Response::json(&serde_json::json!({ "ok": what }))
    })
}
