//! The lab's admin API: the controller's read endpoints and live map, plus
//! `POST /api/v1/lab/links/{a}/{b}/cut|restore|impair` to break links by hand
//! (impair takes JSON `{"delay_ms": 150, "jitter_ms": 5, "loss": 0.01}`).
//! What it does goes into the run's event log and the map's timeline.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use controller::live::EventKind;
use daemon::admin;
use emulator::LinkHandle;
use serde::Deserialize;

/// What the lab did, for the closing report: (seconds into the run, what).
pub type EventLog = Arc<Mutex<Vec<LoggedEvent>>>;

/// One thing the lab did, when (seconds into the run), and the link it cut or
/// impaired (`None` for a restore): link-downs there are expected, not false.
#[derive(Debug, Clone)]
pub struct LoggedEvent {
    pub at: f64,
    pub what: String,
    pub broke: Option<(String, String)>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Impair {
    delay_ms: f64,
    #[serde(default)]
    jitter_ms: f64,
    #[serde(default)]
    loss: f64,
}

/// Records something the lab did: in the run's log (for the closing report)
/// and on the controller's live map timeline.
pub fn record(
    log: &EventLog,
    started: tokio::time::Instant,
    controller: &controller::shared::Shared,
    kind: EventKind,
    link: (&str, &str),
    what: &str,
) {
    let broke = (!matches!(kind, EventKind::Restore)).then(|| (link.0.into(), link.1.into()));
    log.lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(LoggedEvent {
            at: started.elapsed().as_secs_f64(),
            what: what.to_string(),
            broke,
        });
    controller.live.event(kind, what, Some(link));
}

/// The lab's links and its event log, for the lab's own endpoints.
#[derive(Debug)]
struct Lab {
    /// Each link under both (a, b) and (b, a).
    links: HashMap<(String, String), LinkHandle>,
    log: EventLog,
    started: tokio::time::Instant,
    controller: Arc<controller::shared::Shared>,
}

/// Builds the lab's router. `links` has each link under both (a, b) and (b, a).
pub fn router(
    controller: Arc<controller::shared::Shared>,
    links: HashMap<(String, String), LinkHandle>,
    log: EventLog,
    started: tokio::time::Instant,
) -> Router {
    let lab = Arc::new(Lab {
        links,
        log,
        started,
        controller: controller.clone(),
    });
    controller::api::routes()
        .route(
            "/api/v1/lab/links/{a}/{b}/{action}",
            post(
                move |Path((a, b, action)): Path<(String, String, String)>, body: Bytes| {
                    let lab = lab.clone();
                    async move { lab.act(&a, &b, &action, &body) }
                },
            )
            .fallback(|| async {
                admin::error(StatusCode::METHOD_NOT_ALLOWED, "use POST for lab actions")
            }),
        )
        .method_not_allowed_fallback(admin::get_only)
        .fallback(admin::not_found)
        .with_state(controller)
}

impl Lab {
    fn act(&self, a: &str, b: &str, action: &str, body: &[u8]) -> Response {
        let Some(link) = self.links.get(&(a.to_string(), b.to_string())) else {
            return admin::error(
                StatusCode::NOT_FOUND,
                &format!("no link between `{a}` and `{b}`"),
            );
        };
        let (kind, what) = match action {
            "cut" => {
                link.cut();
                (EventKind::Cut, format!("cut {a}–{b} (API)"))
            }
            "restore" => {
                link.restore();
                (EventKind::Restore, format!("restore {a}–{b} (API)"))
            }
            "impair" => {
                let p: Impair = match serde_json::from_slice(body) {
                    Ok(p) => p,
                    Err(e) => return admin::error(StatusCode::BAD_REQUEST, &format!("impair takes JSON like {{\"delay_ms\": 150, \"jitter_ms\": 5, \"loss\": 0.01}}: {e}")),
                };
                let ms = |v: f64| Duration::from_secs_f64(v.clamp(0.0, 60_000.0) / 1000.0);
                if let Err(e) = link.impair(ms(p.delay_ms), ms(p.jitter_ms), p.loss) {
                    return admin::error(StatusCode::BAD_REQUEST, &e.to_string());
                }
                (
                    EventKind::Impair,
                    format!(
                        "impair {a}–{b}: {} ms ± {} ms, loss {:.1}% (API)",
                        p.delay_ms,
                        p.jitter_ms,
                        p.loss * 100.0
                    ),
                )
            }
            other => {
                return admin::error(
                    StatusCode::NOT_FOUND,
                    &format!("unknown lab action `{other}`; use cut, restore or impair"),
                )
            }
        };
        record(
            &self.log,
            self.started,
            &self.controller,
            kind,
            (a, b),
            &what,
        );
        admin::json(&serde_json::json!({ "ok": what }))
    }
}
