//! Lab scenarios: timed link events (cut, restore, impair) from a YAML file,
//! checked like every other config (every error with its line), or a default
//! that cuts the busiest undersea line mid-run and restores it later.
//!
//! ```yaml
//! events:
//!   - { at: 10s, cut: [tyo, lax] }
//!   - { at: 20s, restore: [tyo, lax] }
//!   - { at: 25s, impair: [sha, pdx], delay_ms: 150, jitter_ms: 5, loss: 0.01 }
//! ```

use std::time::Duration;

use serde::Deserialize;
use serde_yaml::Value;
use topology::doc::Doc;
use topology::{ConfigErrors, Topology};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    /// Timed events. Required (may be empty).
    events: Vec<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent {
    /// When, from the start of traffic: `10s`, `1500ms`, `2m`. Required.
    at: String,
    /// Blackhole the link between these two nodes.
    #[serde(default)]
    cut: Option<Vec<String>>,
    /// Restore it.
    #[serde(default)]
    restore: Option<Vec<String>>,
    /// Change its delay, jitter and loss (delay_ms required).
    #[serde(default)]
    impair: Option<Vec<String>>,
    #[serde(default)]
    delay_ms: Option<f64>,
    #[serde(default)]
    jitter_ms: Option<f64>,
    #[serde(default)]
    loss: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Cut,
    Restore,
    Impair {
        delay: Duration,
        jitter: Duration,
        loss: f64,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub at: Duration,
    pub a: String,
    pub b: String,
    pub action: Action,
}

impl Event {
    pub fn describe(&self, t: &Topology) -> String {
        let name = t
            .node_idx(&self.a)
            .zip(t.node_idx(&self.b))
            .and_then(|(a, b)| t.link_between(a, b))
            .and_then(|l| t.link(l).name.clone())
            .map(|n| format!(" ({n})"))
            .unwrap_or_default();
        match &self.action {
            Action::Cut => format!("cut {}–{}{name}", self.a, self.b),
            Action::Restore => format!("restore {}–{}{name}", self.a, self.b),
            Action::Impair {
                delay,
                jitter,
                loss,
            } => format!(
                "impair {}–{}{name}: delay {} ms, jitter {} ms, loss {:.1}%",
                self.a,
                self.b,
                delay.as_millis(),
                jitter.as_millis(),
                loss * 100.0
            ),
        }
    }
}

/// Parses and checks a scenario against the topology it will run on.
pub fn parse(file: &str, text: &str, t: &Topology) -> Result<Vec<Event>, ConfigErrors> {
    let (mut doc, value) = Doc::parse(file, text)?;
    let Some(raw) = doc.decode::<RawScenario>(value, "") else {
        doc.finish()?;
        return Ok(Vec::new());
    };
    let mut events = Vec::new();
    for (i, v) in raw.events.into_iter().enumerate() {
        let p = format!("events[{i}]");
        let Some(e) = doc.decode::<RawEvent>(v, &p) else {
            continue;
        };
        let at = match super::parse_duration(&e.at) {
            Ok(d) => Some(d),
            Err(msg) => {
                doc.error(&format!("{p}.at"), msg);
                None
            }
        };
        let (key, pair, action) = match (e.cut, e.restore, e.impair) {
            (Some(pair), None, None) => ("cut", pair, Some(Action::Cut)),
            (None, Some(pair), None) => ("restore", pair, Some(Action::Restore)),
            (None, None, Some(pair)) => {
                let action = match e.delay_ms {
                    Some(d) if (0.0..60_000.0).contains(&d) => {
                        let loss = e.loss.unwrap_or(0.0);
                        if !(0.0..=1.0).contains(&loss) {
                            doc.error(
                                &format!("{p}.loss"),
                                "give loss as a fraction from 0.0 to 1.0",
                            );
                        }
                        Some(Action::Impair {
                            delay: Duration::from_secs_f64(d / 1000.0),
                            jitter: Duration::from_secs_f64(
                                e.jitter_ms.unwrap_or(0.0).clamp(0.0, 60_000.0) / 1000.0,
                            ),
                            loss: loss.clamp(0.0, 1.0),
                        })
                    }
                    _ => {
                        doc.error(
                            &p,
                            "an impair event needs delay_ms (0 to 60000), e.g. `delay_ms: 150`",
                        );
                        None
                    }
                };
                ("impair", pair, action)
            }
            _ => {
                doc.error(
                    &p,
                    "give exactly one of `cut`, `restore` or `impair`, each with two node ids",
                );
                continue;
            }
        };
        let path = format!("{p}.{key}");
        let [a, b] = pair.as_slice() else {
            doc.error(
                &path,
                format!(
                    "expected two node ids, like `[tyo, lax]`; found {}",
                    pair.len()
                ),
            );
            continue;
        };
        let linked = match (t.require_node(a), t.require_node(b)) {
            (Ok(x), Ok(y)) => t.link_between(x, y).is_some(),
            (Err(e), _) | (_, Err(e)) => {
                doc.error(&path, e.to_string());
                continue;
            }
        };
        if !linked {
            doc.error(
                &path,
                format!("`{a}` and `{b}` have no link between them in {}", t.source),
            );
            continue;
        }
        if let (Some(at), Some(action)) = (at, action) {
            events.push(Event {
                at,
                a: a.clone(),
                b: b.clone(),
                action,
            });
        }
    }
    doc.finish()?;
    events.sort_by_key(|e| e.at);
    Ok(events)
}

/// The default: cut the undersea line most class paths cross at a third of the
/// run, restore it at two thirds. No undersea line: the busiest link.
pub fn default_events(
    t: &Topology,
    busiest: &[(usize, topology::LinkIdx)],
    duration: Duration,
) -> Vec<Event> {
    let undersea = busiest
        .iter()
        .find(|(_, l)| t.link(*l).kind == topology::LinkKind::Undersea);
    let Some((_, link)) = undersea.or(busiest.first()) else {
        return Vec::new();
    };
    let l = t.link(*link);
    let (a, b) = (t.node(l.a).id.clone(), t.node(l.b).id.clone());
    vec![
        Event {
            at: duration / 3,
            a: a.clone(),
            b: b.clone(),
            action: Action::Cut,
        },
        Event {
            at: duration * 2 / 3,
            a,
            b,
            action: Action::Restore,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_events_and_reports_every_error_with_its_line() {
        let t = topology::world().expect("world");
        let ok = "events:\n  - { at: 10s, cut: [tyo, lax] }\n  - { at: 2s, impair: [sha, pdx], delay_ms: 150, loss: 0.01 }\n";
        let events = parse("s.yaml", ok, &t).expect("valid");
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].at, Duration::from_secs(2), "sorted by time");
        assert!(matches!(events[0].action, Action::Impair { loss, .. } if loss == 0.01));
        assert_eq!(events[1].describe(&t), "cut tyo–lax (unity)");

        let bad = "events:\n  - { at: soon, cut: [tyo, lax] }\n  - { at: 1s, cut: [tyo, sha] }\n  - { at: 1s, impair: [sha, pdx] }\n  - { at: 1s, cut: [tyo, lax], restore: [tyo, lax] }\n";
        let err = parse("s.yaml", bad, &t).expect_err("four errors");
        let lines: Vec<usize> = err.diagnostics.iter().map(|d| d.line).collect();
        assert_eq!(lines, vec![2, 3, 4, 5], "{err}");
        assert!(
            err.to_string().contains("have no link between them"),
            "{err}"
        );
    }
}
