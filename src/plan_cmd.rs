//! `overlay plan`: the controller's own placement run on a demand, without a
//! packet sent, beside delay-only routing: per-line load, the classes'
//! latency, and what each undersea cut does.

use std::path::Path as FsPath;

use serde::Serialize;
use topology::demand::{Demand, ServiceSpec};
use topology::placement::{plan, CutResult, LinkLoad, Options, Problem, Summary};
use topology::{LinkIdx, LinkKind, Topology};

use crate::failure::Failure;
use crate::outln;
use crate::table::Table;

/// What `overlay plan` was asked.
#[derive(Debug)]
pub struct PlanOptions<'a> {
    pub topology: Option<&'a FsPath>,
    /// Classes to generate between the Asian and North American cities
    /// (ignored with a demand file).
    pub classes: u64,
    pub demand: Option<&'a FsPath>,
    /// Show only this undersea line's cut (its name, or `a-b`).
    pub cut: Option<&'a str>,
    pub json: bool,
}

pub fn run(o: &PlanOptions<'_>) -> Result<String, Failure> {
    let t = crate::topology_cmd::load(o.topology)?;
    let demand = match o.demand {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                Failure::usage(format!("cannot read demand file {}: {e}", path.display()))
            })?;
            Demand::parse(&t, &path.display().to_string(), &text).map_err(Failure::usage)?
        }
        None if o.classes == 0 => {
            return Err(Failure::usage(
                "--classes 0: give at least 1 class (default 35000)",
            ))
        }
        None => Demand::generate(&t, o.classes, ServiceSpec::default()),
    };
    let cut = o.cut.map(|name| find_line(&t, name)).transpose()?;
    let problem = Problem::new(t, demand);
    let options = Options::default();
    let p = plan(&problem.inputs(), &options).map_err(Failure::usage)?;
    let (t, demand) = (&problem.topology, &problem.demand);
    let shown = |s: &Summary| View::of(t, s, cut);
    let view = Report {
        classes: demand.total_classes(),
        ceiling: options.ceiling,
        placed: shown(&p.placed),
        delay_only: shown(&p.delay_only),
    };
    if o.json {
        return serde_json::to_string_pretty(&view)
            .map(|s| s + "\n")
            .map_err(|e| Failure::runtime(format!("cannot encode the plan: {e}")));
    }
    Ok(render(&view))
}

/// The undersea line named `name` (its `name:` or `a-b`), for `--cut`.
fn find_line(t: &Topology, name: &str) -> Result<LinkIdx, Failure> {
    let lines: Vec<(LinkIdx, String)> = t
        .links
        .iter()
        .enumerate()
        .filter(|(_, l)| l.kind == LinkKind::Undersea)
        .map(|(i, l)| {
            let label = l
                .name
                .clone()
                .unwrap_or_else(|| format!("{}-{}", t.node(l.a).id, t.node(l.b).id));
            (LinkIdx(i as u32), label)
        })
        .collect();
    lines
        .iter()
        .find(|(_, label)| label == name)
        .map(|(i, _)| *i)
        .ok_or_else(|| {
            let names: Vec<&str> = lines.iter().map(|(_, n)| n.as_str()).collect();
            Failure::usage(format!(
                "--cut {name}: no undersea line of that name; lines: {}",
                names.join(", ")
            ))
        })
}

#[derive(Debug, Serialize)]
struct Report {
    classes: u64,
    ceiling: f64,
    placed: View,
    delay_only: View,
}

#[derive(Debug, Serialize)]
struct View {
    latency_ms: Latency,
    /// Undersea lines: classes and load each way.
    lines: Vec<Line>,
    /// Every link direction past the ceiling, worst first.
    over_ceiling: Vec<Direction>,
    cuts: Vec<Cut>,
}

#[derive(Debug, Serialize)]
struct Latency {
    p50: Option<f64>,
    p99: Option<f64>,
    max: Option<f64>,
    within_budget: u64,
    share_within_budget: f64,
}

#[derive(Debug, Serialize)]
struct Line {
    name: String,
    classes: u64,
    ab: Direction,
    ba: Direction,
}

#[derive(Debug, Serialize)]
struct Direction {
    from: String,
    to: String,
    load_mbps: f64,
    capacity_mbps: Option<f64>,
    utilisation: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Cut {
    line: String,
    classes_on_line: u64,
    moved: u64,
    left_budget: u64,
    stranded: u64,
    worst: Option<Direction>,
}

fn label(t: &Topology, link: LinkIdx) -> String {
    let l = t.link(link);
    l.name
        .clone()
        .unwrap_or_else(|| format!("{}-{}", t.node(l.a).id, t.node(l.b).id))
}

fn direction(t: &Topology, load: &LinkLoad) -> Direction {
    let l = t.link(load.link);
    let (from, to) = match load.dir {
        topology::placement::Dir::AtoB => (l.a, l.b),
        topology::placement::Dir::BtoA => (l.b, l.a),
    };
    Direction {
        from: t.node(from).id.clone(),
        to: t.node(to).id.clone(),
        load_mbps: load.load_kbps as f64 / 1000.0,
        capacity_mbps: load.capacity_kbps.map(|c| c as f64 / 1000.0),
        utilisation: load.utilisation(),
    }
}

impl View {
    fn of(t: &Topology, s: &Summary, only_cut: Option<LinkIdx>) -> View {
        let ms = |us: Option<u64>| us.map(|u| u as f64 / 1000.0);
        let cut = |c: &CutResult| Cut {
            line: label(t, c.link),
            classes_on_line: c.classes_on_link,
            moved: c.moved,
            left_budget: c.left_budget,
            stranded: c.stranded,
            worst: c.worst().map(|w| direction(t, &w)),
        };
        View {
            latency_ms: Latency {
                p50: ms(s.latency.p50_us),
                p99: ms(s.latency.p99_us),
                max: ms(s.latency.max_us),
                within_budget: s.latency.within_budget,
                share_within_budget: s.latency.share_within_budget(),
            },
            lines: s
                .lines
                .iter()
                .map(|l| Line {
                    name: label(t, l.link),
                    classes: l.classes,
                    ab: direction(t, &l.load[0]),
                    ba: direction(t, &l.load[1]),
                })
                .collect(),
            over_ceiling: s
                .report
                .over_ceiling
                .iter()
                .map(|l| direction(t, l))
                .collect(),
            cuts: s
                .cuts
                .iter()
                .filter(|c| only_cut.is_none_or(|l| l == c.link))
                .map(cut)
                .collect(),
        }
    }
}

fn num(x: Option<f64>, digits: usize) -> String {
    x.map_or_else(|| "-".into(), |v| format!("{v:.digits$}"))
}

fn pct(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |u| format!("{:.0}%", u * 100.0))
}

fn render(r: &Report) -> String {
    let mut out = String::new();
    outln!(
        out,
        "{} classes; placement (ceiling {:.0}%, N-1 headroom) beside delay-only routing",
        r.classes,
        r.ceiling * 100.0
    );
    outln!(out);
    let mut lat = Table::new(&[
        "one-way latency",
        ">p50 ms",
        ">p99 ms",
        ">max ms",
        ">within budget",
    ]);
    for (name, v) in [("placed", &r.placed), ("delay-only", &r.delay_only)] {
        let l = &v.latency_ms;
        lat.row(vec![
            name.into(),
            num(l.p50, 1),
            num(l.p99, 1),
            num(l.max, 1),
            format!(
                "{} ({:.1}%)",
                l.within_budget,
                l.share_within_budget * 100.0
            ),
        ]);
    }
    out.push_str(&lat.render());
    outln!(out);
    let mut lines = Table::new(&[
        "undersea line",
        ">classes",
        "direction",
        ">Mbit/s",
        ">capacity",
        ">placed",
        ">delay-only",
        ">classes delay-only",
    ]);
    for (p, d) in r.placed.lines.iter().zip(&r.delay_only.lines) {
        for (i, (pd, dd)) in [(&p.ab, &d.ab), (&p.ba, &d.ba)].into_iter().enumerate() {
            lines.row(vec![
                if i == 0 {
                    p.name.clone()
                } else {
                    String::new()
                },
                if i == 0 {
                    p.classes.to_string()
                } else {
                    String::new()
                },
                format!("{} → {}", pd.from, pd.to),
                num(Some(pd.load_mbps), 0),
                num(pd.capacity_mbps, 0),
                pct(pd.utilisation),
                pct(dd.utilisation),
                if i == 0 {
                    d.classes.to_string()
                } else {
                    String::new()
                },
            ]);
        }
    }
    out.push_str(&lines.render());
    for (name, v) in [("placed", &r.placed), ("delay-only", &r.delay_only)] {
        let over: Vec<String> = v
            .over_ceiling
            .iter()
            .map(|d| format!("{} → {} {}", d.from, d.to, pct(d.utilisation)))
            .collect();
        outln!(
            out,
            "{name}: {} link directions past the ceiling{}",
            over.len(),
            if over.is_empty() {
                String::new()
            } else {
                format!(": {}", over.join(", "))
            }
        );
    }
    outln!(out);
    let mut cuts = Table::new(&[
        "cut",
        ">on line",
        ">moved",
        ">left budget",
        ">stranded",
        "worst link after (placed)",
        "worst after (delay-only)",
        ">left budget (delay-only)",
    ]);
    for (p, d) in r.placed.cuts.iter().zip(&r.delay_only.cuts) {
        let worst = |c: &Cut| {
            c.worst.as_ref().map_or("-".into(), |w| {
                format!("{} → {} {}", w.from, w.to, pct(w.utilisation))
            })
        };
        cuts.row(vec![
            p.line.clone(),
            p.classes_on_line.to_string(),
            p.moved.to_string(),
            p.left_budget.to_string(),
            p.stranded.to_string(),
            worst(p),
            worst(d),
            d.left_budget.to_string(),
        ]);
    }
    out.push_str(&cuts.render());
    out
}
