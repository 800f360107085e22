//! The demand file: a YAML list of classes between node pairs, with optional services
//! (budget and profile). Raw serde structs with `deny_unknown_fields`, then checks that
//! collect every error with file, line and key, like the topology file.
//!
//! ```yaml
//! version: 1
//! services:                 # optional; default: one `class` service, 200 ms, HD
//!   - name: class
//!     budget_ms: 200        # optional, default 200
//!     profile:              # optional; each figure defaults to the HD profile's
//!       forward: { audio_kbps: 73, video_kbps: 1616, signalling_kbps: 18 }
//! classes:
//!   - { from: sha, to: nyc, count: 120 }             # service: the first listed
//!   - { from: sel, to: sfo, count: 40, service: class }
//! ```

use std::collections::HashMap;

use serde::Deserialize;
use serde_yaml::Value;

use super::{ClassProfile, Demand, Direction, PairDemand, ServiceSpec, DEFAULT_BUDGET_US};
use crate::doc::Doc;
use crate::error::ConfigErrors;
use crate::model::{closest_id, Topology};

/// The demand file's only schema version.
pub const DEMAND_VERSION: u32 = 1;
/// Most classes one entry may name: far beyond any fleet, small enough that sums
/// of many entries cannot overflow.
const MAX_COUNT: u64 = 100_000_000;
/// Longest budget accepted: anything longer is a typo (µs instead of ms?).
const MAX_BUDGET_MS: f64 = 10_000.0;
/// Most kbit/s one stream of one class may state (1 Gbit/s).
const MAX_STREAM_KBPS: u32 = 1_000_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDemand {
    /// Schema version. Required; the only version is `1`.
    version: u32,
    /// Kinds of class. Default: one service `class` (200 ms, HD profile).
    #[serde(default)]
    services: Option<Vec<Value>>,
    /// Classes between node pairs. Required (may be empty).
    classes: Vec<Value>,
}

/// `services[]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    /// Unique name, e.g. `class`. Required.
    name: String,
    /// One-way latency budget over the overlay, ms. Default: 200.
    #[serde(default)]
    budget_ms: Option<f64>,
    /// Traffic of one class. Default: the HD profile.
    #[serde(default)]
    profile: Option<RawProfile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    /// From `from` to `to`. Default: the HD profile's.
    #[serde(default)]
    forward: Option<RawDirection>,
    /// From `to` back to `from`. Default: the HD profile's.
    #[serde(default)]
    reverse: Option<RawDirection>,
}

/// kbit/s on an overlay link, overhead included.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDirection {
    /// Default: the HD profile's 73.
    #[serde(default)]
    audio_kbps: Option<u32>,
    /// Default: the HD profile's 1616.
    #[serde(default)]
    video_kbps: Option<u32>,
    /// Default: the HD profile's 18.
    #[serde(default)]
    signalling_kbps: Option<u32>,
}

/// `classes[]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    /// Node id at the student's end, e.g. `sha`. Required.
    from: String,
    /// Node id at the teacher's end, e.g. `nyc`. Required.
    to: String,
    /// Number of concurrent classes, at least 1. Required.
    count: u64,
    /// Service name. Default: the first service.
    #[serde(default)]
    service: Option<String>,
}

impl Demand {
    /// Parses and checks a demand file against `t`. `source` names the file in messages.
    pub fn parse(t: &Topology, source: &str, text: &str) -> Result<Demand, ConfigErrors> {
        let (mut doc, value) = Doc::parse(source, text)?;
        let demand = compile(&mut doc, t, value);
        doc.finish()?;
        // compile() returns None only after recording why.
        demand.ok_or(ConfigErrors {
            diagnostics: Vec::new(),
        })
    }
}

fn compile(doc: &mut Doc, t: &Topology, value: Value) -> Option<Demand> {
    if value.is_null() {
        doc.error(
            "",
            "the file is empty; expected a mapping with `version` and `classes`",
        );
        return None;
    }
    let raw: RawDemand = doc.decode(value, "")?;
    if raw.version != DEMAND_VERSION {
        doc.error(
            "version",
            format!(
                "unsupported version {}; this build reads version {DEMAND_VERSION}",
                raw.version
            ),
        );
    }
    let services = match raw.services {
        None => vec![ServiceSpec::default()],
        Some(list) if list.is_empty() => {
            doc.error(
                "services",
                "no services; list at least one, or leave `services` out for the default",
            );
            return None;
        }
        Some(list) => services(doc, list),
    };
    let mut pairs = Vec::new();
    let mut first: HashMap<(String, String, usize), String> = HashMap::new();
    for (i, v) in raw.classes.into_iter().enumerate() {
        let p = format!("classes[{i}]");
        let Some(e) = doc.decode::<RawEntry>(v, &p) else {
            continue;
        };
        let mut ok = true;
        let mut ends = Vec::new();
        for (key, id) in [("from", &e.from), ("to", &e.to)] {
            match t.node_idx(id) {
                Some(n) => ends.push(n),
                None => {
                    ok = false;
                    let hint = match closest_id(id, t.nodes.iter().map(|n| n.id.as_str())) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!("it must be a node id of {}", t.source),
                    };
                    doc.error(&format!("{p}.{key}"), format!("no node `{id}`; {hint}"));
                }
            }
        }
        if e.from == e.to {
            ok = false;
            doc.error(
                &format!("{p}.to"),
                format!(
                    "`from` and `to` are both `{}`; a class crosses the overlay",
                    e.to
                ),
            );
        }
        if e.count == 0 || e.count > MAX_COUNT {
            ok = false;
            doc.error(
                &format!("{p}.count"),
                format!(
                    "count {} is out of range; expected 1 to {MAX_COUNT} (leave an empty pair out)",
                    e.count
                ),
            );
        }
        let service = match &e.service {
            None => Some(0),
            Some(name) => {
                let found = services.iter().position(|s| &s.name == name);
                if found.is_none() {
                    ok = false;
                    let known: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
                    doc.error(
                        &format!("{p}.service"),
                        format!(
                            "no service `{name}`; the services are: {}",
                            known.join(", ")
                        ),
                    );
                }
                found
            }
        };
        let (Some(service), true, [src, dst]) = (service, ok, ends.as_slice()) else {
            continue;
        };
        let key = (e.from.clone(), e.to.clone(), service);
        if let Some(at) = first.get(&key) {
            let msg = format!(
                "duplicate entry for `{}` → `{}` (first at line {}); give one count per pair \
                 and service",
                e.from,
                e.to,
                doc.line(at)
            );
            doc.error(&format!("{p}.from"), msg);
            continue;
        }
        first.insert(key, format!("{p}.from"));
        pairs.push(PairDemand {
            src: *src,
            dst: *dst,
            service,
            classes: e.count,
        });
    }
    Some(Demand::new(services, pairs))
}

fn services(doc: &mut Doc, list: Vec<Value>) -> Vec<ServiceSpec> {
    let mut out: Vec<ServiceSpec> = Vec::new();
    let mut first: HashMap<String, String> = HashMap::new();
    for (i, v) in list.into_iter().enumerate() {
        let p = format!("services[{i}]");
        // A service that fails to decode still takes its place, so that later
        // indices and names stay right; the file is refused anyway.
        let raw = doc.decode::<RawService>(v, &p);
        let mut spec = ServiceSpec {
            name: format!("<services[{i}]>"),
            ..ServiceSpec::default()
        };
        if let Some(raw) = raw {
            if raw.name.trim().is_empty() {
                doc.error(
                    &format!("{p}.name"),
                    "`name` is empty; give the service a name",
                );
            } else if let Some(at) = first.get(&raw.name) {
                let msg = format!(
                    "duplicate service `{}` (first at line {}); names must be unique",
                    raw.name,
                    doc.line(at)
                );
                doc.error(&format!("{p}.name"), msg);
            } else {
                first.insert(raw.name.clone(), format!("{p}.name"));
                spec.name = raw.name;
            }
            if let Some(ms) = raw.budget_ms {
                if ms.is_finite() && ms > 0.0 && ms <= MAX_BUDGET_MS {
                    spec.budget_us = ((ms * 1000.0).round() as u64).max(1);
                } else {
                    doc.error(
                        &format!("{p}.budget_ms"),
                        format!(
                            "budget_ms {ms} is not a usable one-way budget; expected milliseconds \
                             above 0 and at most {MAX_BUDGET_MS} (default {})",
                            DEFAULT_BUDGET_US / 1000
                        ),
                    );
                }
            }
            if let Some(profile) = raw.profile {
                spec.profile = self::profile(doc, &format!("{p}.profile"), profile);
            }
        }
        out.push(spec);
    }
    out
}

fn profile(doc: &mut Doc, path: &str, raw: RawProfile) -> ClassProfile {
    let hd = ClassProfile::HD;
    let mut dir = |key: &str, raw: Option<RawDirection>, default: Direction| -> Direction {
        let Some(raw) = raw else { return default };
        let mut one = |name: &str, v: Option<u32>, default: u32| -> u32 {
            match v {
                Some(k) if k > MAX_STREAM_KBPS => {
                    doc.error(
                        &format!("{path}.{key}.{name}"),
                        format!("{k} kbit/s is more than one class can send; expected at most {MAX_STREAM_KBPS}"),
                    );
                    default
                }
                Some(k) => k,
                None => default,
            }
        };
        Direction {
            audio_kbps: one("audio_kbps", raw.audio_kbps, default.audio_kbps),
            video_kbps: one("video_kbps", raw.video_kbps, default.video_kbps),
            signalling_kbps: one(
                "signalling_kbps",
                raw.signalling_kbps,
                default.signalling_kbps,
            ),
        }
    };
    let forward = dir("forward", raw.forward, hd.forward);
    let reverse = dir("reverse", raw.reverse, hd.reverse);
    if forward.total_kbps() + reverse.total_kbps() == 0 {
        doc.error(
            path,
            "the profile sends nothing either way; give some kbit/s",
        );
    }
    ClassProfile { forward, reverse }
}
