//! `overlay status|links|routes|trace`: the controller's admin API, as tables.

use serde_json::Value;

use crate::cli::Api;
use crate::failure::Failure;
use crate::outln;
use crate::table::Table;

/// GETs `path` from the API at `api` and parses the JSON (bounded in time).
/// Each address `api` resolves to is tried in turn until one takes the
/// connection (`localhost` may be `::1` and `127.0.0.1`, the API on one only).
fn get(api: &Api, path: &str) -> Result<Value, Failure> {
    let mut refused = None;
    let mut answer = None;
    for &addr in &api.addrs {
        match daemon::admin::client::get_blocking(addr, path) {
            Ok(r) => {
                answer = Some(r);
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                return Err(Failure::runtime(format!(
                    "the controller API at {api} did not answer within {} s",
                    daemon::admin::client::TIMEOUT.as_secs()
                )))
            }
            Err(e) => refused = Some(e),
        }
    }
    let Some((status, body)) = answer else {
        let e = refused.map_or_else(|| "no address".to_string(), |e| e.to_string());
        return Err(Failure::runtime(format!(
            "cannot reach the controller API at {api}: {e}; is the controller (or `overlay lab`) running? Point elsewhere with --api HOST:PORT"
        )));
    };
    let value: Value = serde_json::from_str(&body).map_err(|e| {
        Failure::runtime(format!(
            "the API at {api} sent something that is not JSON: {e}"
        ))
    })?;
    match status {
        200 => Ok(value),
        400 | 404 => Err(Failure::usage(
            value["error"].as_str().unwrap_or(&body).to_string(),
        )),
        _ => Err(Failure::runtime(format!(
            "{api}{path}: HTTP {status}: {body}"
        ))),
    }
}

fn num(v: &Value, digits: usize) -> String {
    v.as_f64()
        .map_or_else(|| "-".to_string(), |x| format!("{x:.digits$}"))
}

/// `overlay status`'s summary, and whether the fleet is degraded.
#[derive(Debug)]
pub struct Status {
    pub text: String,
    /// A relay of the topology is away, or a link is not up (down, held down,
    /// or unknown). A link of poor quality (`degraded`) is up: not counted.
    pub degraded: bool,
}

impl Status {
    /// 0, or [`Failure::DEGRADED`] for a degraded fleet.
    pub fn exit_code(&self) -> u8 {
        if self.degraded {
            Failure::DEGRADED
        } else {
            0
        }
    }
}

pub fn status(api: &Api) -> Result<Status, Failure> {
    let nodes = get(api, "/api/v1/nodes")?;
    let links = get(api, "/api/v1/links")?;
    Ok(summary(api, &nodes, &links))
}

/// The summary of the controller's `/api/v1/nodes` and `/api/v1/links`.
fn summary(api: &dyn std::fmt::Display, nodes: &Value, links: &Value) -> Status {
    let nodes = nodes.as_array().cloned().unwrap_or_default();
    let links = links.as_array().cloned().unwrap_or_default();
    let connected = nodes.iter().filter(|n| n["connected"] == true).count();
    let count = |s: &str| links.iter().filter(|l| l["state"] == s).count();
    let versions: Vec<u64> = nodes
        .iter()
        .filter_map(|n| n["table_version_applied"].as_u64())
        .collect();
    let mut out = String::new();
    outln!(out, "controller {api}");
    outln!(out, "  relays   {} of {} connected", connected, nodes.len());
    // A degraded link is up (and in use), its quality poor.
    let degraded = count("degraded");
    outln!(
        out,
        "  links    {} up{}, {} held down, {} down{} (of {})",
        count("up") + degraded,
        if degraded > 0 {
            format!(" ({degraded} degraded)")
        } else {
            String::new()
        },
        count("held-down"),
        count("down"),
        // No fresh report from either end (their relays are away): not up.
        match count("unknown") {
            0 => String::new(),
            n => format!(", {n} unknown"),
        },
        links.len()
    );
    if let (Some(lo), Some(hi)) = (versions.iter().min(), versions.iter().max()) {
        outln!(
            out,
            "  tables   version {hi} in force{}",
            if lo == hi {
                String::new()
            } else {
                format!(" (some relays still on {lo})")
            }
        );
    }
    let ends = |l: &Value| {
        format!(
            "{}–{}",
            l["a"].as_str().unwrap_or("?"),
            l["b"].as_str().unwrap_or("?")
        )
    };
    let down: Vec<String> = links
        .iter()
        .filter(|l| !matches!(l["state"].as_str(), Some("up" | "degraded" | "unknown")))
        .map(|l| format!("{} ({})", ends(l), l["state"].as_str().unwrap_or("?")))
        .collect();
    if !down.is_empty() {
        outln!(out, "  not up   {}", down.join(", "));
    }
    let poor: Vec<String> = links
        .iter()
        .filter(|l| l["state"] == "degraded")
        .map(|l| {
            format!(
                "{} (loss {:.1}%, jitter {} ms)",
                ends(l),
                l["loss"].as_f64().unwrap_or(0.0) * 100.0,
                num(&l["jitter_ms"], 1)
            )
        })
        .collect();
    if !poor.is_empty() {
        outln!(out, "  degraded {}", poor.join(", "));
    }
    let missing: Vec<&str> = nodes
        .iter()
        .filter(|n| n["connected"] != true)
        .filter_map(|n| n["id"].as_str())
        .collect();
    if !missing.is_empty() {
        outln!(out, "  away     {}", missing.join(", "));
    }
    let not_up = links
        .iter()
        .filter(|l| !matches!(l["state"].as_str(), Some("up" | "degraded")))
        .count();
    Status {
        text: out,
        degraded: !missing.is_empty() || not_up > 0,
    }
}

pub fn links(api: &Api) -> Result<String, Failure> {
    let links = get(api, "/api/v1/links")?;
    let mut t = Table::new(&[
        "a",
        "b",
        "kind",
        "line",
        "state",
        ">since s",
        ">rtt ms",
        ">loss %",
        ">jitter ms",
        ">cost ms",
        ">expected ms",
        ">Mbit/s a→b",
        ">Mbit/s b→a",
        ">util %",
    ]);
    for l in links.as_array().cloned().unwrap_or_default() {
        t.row(vec![
            l["a"].as_str().unwrap_or("?").to_string(),
            l["b"].as_str().unwrap_or("?").to_string(),
            l["kind"].as_str().unwrap_or("?").to_string(),
            l["name"].as_str().unwrap_or("-").to_string(),
            l["state"].as_str().unwrap_or("?").to_string(),
            num(&l["since_s"], 0),
            num(&l["rtt_ms"], 1),
            l["loss"]
                .as_f64()
                .map_or("-".into(), |x| format!("{:.2}", x * 100.0)),
            num(&l["jitter_ms"], 2),
            num(&l["cost_in_force_ms"], 1),
            num(&l["expected_ms"], 1),
            num(&l["load_ab_mbps"], 1),
            num(&l["load_ba_mbps"], 1),
            // The busier direction: what a line's operator watches.
            [&l["utilisation_ab"], &l["utilisation_ba"]]
                .iter()
                .filter_map(|u| u.as_f64())
                .reduce(f64::max)
                .map_or("-".into(), |u| format!("{:.1}", u * 100.0)),
        ]);
    }
    Ok(t.render())
}

pub fn routes(api: &Api, from: &str, to: &str) -> Result<String, Failure> {
    let r = get(api, &format!("/api/v1/routes?from={from}&to={to}"))?;
    let path: Vec<&str> = r["path"]
        .as_array()
        .map(|p| p.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut out = String::new();
    match r["cost_ms"].as_f64() {
        Some(cost) => outln!(
            out,
            "{from} → {to}: {}  ({cost:.1} ms, {} hops, table version {})",
            path.join(" → "),
            path.len().saturating_sub(1),
            r["version"]
        ),
        None => outln!(
            out,
            "{from} → {to}: no route in force (table version {})",
            r["version"]
        ),
    }
    outln!(
        out,
        "  backup next hop at {from}: {}",
        r["backup_next_hop"]
            .as_str()
            .unwrap_or("none (no loop-free alternate)")
    );
    let placed = r["placed"].as_array().cloned().unwrap_or_default();
    if placed.is_empty() {
        outln!(out, "  placement: the pair's traffic follows the route");
    } else {
        outln!(out, "  placement: the pair's flows are split over");
        for p in &placed {
            let hops: Vec<&str> = p["path"]
                .as_array()
                .map(|h| h.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            outln!(
                out,
                "    {:>5.1}%  {}",
                100.0 * p["share"].as_f64().unwrap_or(0.0),
                hops.join(" → ")
            );
        }
    }
    Ok(out)
}

/// One service: its path hop by hop with each link's RTT and state, the path
/// around a failure, and what the relays measured of it each way.
pub fn trace(api: &Api, service: &str) -> Result<String, Failure> {
    let services = get(api, "/api/v1/services")?;
    let services = services.as_array().cloned().unwrap_or_default();
    let Some(s) = services.iter().find(|s| s["name"] == service) else {
        let names: Vec<&str> = services.iter().filter_map(|s| s["name"].as_str()).collect();
        return Err(Failure::usage(format!(
            "no service `{service}` in the topology; services: {}",
            names.join(", ")
        )));
    };
    let (ingress, egress) = (
        s["ingress"].as_str().unwrap_or("?"),
        s["egress"].as_str().unwrap_or("?"),
    );
    let links = get(api, "/api/v1/links")?;
    let links = links.as_array().cloned().unwrap_or_default();
    let route = get(api, &format!("/api/v1/routes?from={ingress}&to={egress}"))?;
    let names = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|p| {
                p.iter()
                    .filter_map(|n| n.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let path = names(&route["path"]);
    let mut out = String::new();
    outln!(
        out,
        "{service} ({}): {ingress} → {egress}",
        s["protocol"].as_str().unwrap_or("?")
    );
    if route["cost_ms"].is_null() {
        outln!(
            out,
            "  no route in force (table version {})",
            route["version"]
        );
    } else {
        outln!(
            out,
            "  path {}  (expected {} ms one way, table version {})",
            path.join(" → "),
            num(&route["expected_ms"], 1),
            route["version"]
        );
    }
    let mut hops = Table::new(&["hop", "line", "state", ">rtt ms", ">loss %", ">jitter ms"]);
    for pair in path.windows(2) {
        let link = links.iter().find(|l| {
            (l["a"] == pair[0].as_str() && l["b"] == pair[1].as_str())
                || (l["a"] == pair[1].as_str() && l["b"] == pair[0].as_str())
        });
        let field = |k: &str| link.map_or(Value::Null, |l| l[k].clone());
        hops.row(vec![
            format!("{} → {}", pair[0], pair[1]),
            field("name").as_str().unwrap_or("-").to_string(),
            field("state").as_str().unwrap_or("?").to_string(),
            num(&field("rtt_ms"), 1),
            field("loss")
                .as_f64()
                .map_or("-".into(), |x| format!("{:.2}", x * 100.0)),
            num(&field("jitter_ms"), 2),
        ]);
    }
    for line in hops.render().lines() {
        outln!(out, "  {line}");
    }
    let around = names(&route["repair_path"]);
    outln!(
        out,
        "  around a failure at {ingress}: {}",
        if around.is_empty() {
            "none".to_string()
        } else {
            around.join(" → ")
        }
    );
    let mut q = Table::new(&[
        "measured, last 10 s",
        ">packets",
        ">p50 ms",
        ">p99 ms",
        ">loss %",
        ">reordered %",
        ">duplicates",
    ]);
    for (what, v) in [
        (format!("clients → target, at {egress}"), &s["forward"]),
        (format!("replies → clients, at {ingress}"), &s["replies"]),
    ] {
        let pct = |k: &str| {
            v[k].as_f64()
                .map_or("-".into(), |x| format!("{:.2}", x * 100.0))
        };
        q.row(vec![
            what,
            v["packets"].as_u64().map_or("-".into(), |n| n.to_string()),
            num(&v["one_way_ms_p50"], 1),
            num(&v["one_way_ms_p99"], 1),
            pct("loss"),
            pct("reordered"),
            v["duplicates"]
                .as_u64()
                .map_or("-".into(), |n| n.to_string()),
        ]);
    }
    for line in q.render().lines() {
        outln!(out, "  {line}");
    }
    outln!(
        out,
        "  (one-way delays are from the senders' clocks: relays need synchronised clocks)"
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_nobody_reported_are_counted_unknown_and_the_fleet_degraded() {
        // One relay of three connected after a controller restart: its link
        // is up, the two links between the relays away are unknown.
        let nodes = serde_json::json!([
            {"id": "aaa", "connected": true, "table_version_applied": 3},
            {"id": "bbb", "connected": false},
            {"id": "ccc", "connected": false},
        ]);
        let links = serde_json::json!([
            {"a": "aaa", "b": "bbb", "state": "up"},
            {"a": "bbb", "b": "ccc", "state": "unknown"},
            {"a": "aaa", "b": "ccc", "state": "unknown"},
        ]);
        let s = summary(&"127.0.0.1:9000", &nodes, &links);
        assert!(s.text.contains("relays   1 of 3 connected"), "{}", s.text);
        assert!(
            s.text
                .contains("links    1 up, 0 held down, 0 down, 2 unknown (of 3)"),
            "{}",
            s.text
        );
        assert!(
            !s.text.contains("not up"),
            "unknown links are not listed as down: {}",
            s.text
        );
        assert!(s.text.contains("away     bbb, ccc"), "{}", s.text);
        assert_eq!(s.exit_code(), Failure::DEGRADED);
        // The whole fleet up, one link of poor quality: not degraded.
        let nodes =
            serde_json::json!([{"id": "aaa", "connected": true}, {"id": "bbb", "connected": true}]);
        let links =
            serde_json::json!([{"a": "aaa", "b": "bbb", "state": "degraded", "loss": 0.02}]);
        let s = summary(&"x", &nodes, &links);
        assert_eq!(s.exit_code(), 0, "{}", s.text);
    }
}
