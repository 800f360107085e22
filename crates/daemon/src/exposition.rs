//! The Prometheus exposition toolkit both daemons use for `GET /metrics`: a
//! registry filled at each scrape from values the daemon keeps anyway, encoded
//! in Prometheus' classic text format.
//!
//! Why the classic format: `prometheus-client` encodes OpenMetrics, where a
//! counter's `# HELP`/`# TYPE` name lacks the `_total` its samples carry.
//! Prometheus reads either, but `promtool check metrics` and other classic
//! parsers take the OpenMetrics form for a sample without metadata. So the
//! OpenMetrics text is rewritten into the classic form ([`to_classic`]) and served as
//! `text/plain; version=0.0.4`, which every Prometheus accepts.

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Metric, Registry};

/// The content type of Prometheus' classic text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One label's key and value, e.g. `("peer", "sha")`.
type Label = [(&'static str, String); 1];

/// A registry filled at scrape time from values read then.
#[derive(Debug)]
pub struct Scrape {
    registry: Registry,
    /// The `process_*` series: named as every client library names them (no
    /// prefix), with the same labels.
    process: Registry,
}

impl Scrape {
    /// Metric names start with `prefix` (e.g. `overlay_relay`); every series
    /// carries the `labels` (e.g. the node's id).
    pub fn new(prefix: &str, labels: &[(&'static str, &str)]) -> Scrape {
        let labels: Vec<(Cow<'static, str>, Cow<'static, str>)> = labels
            .iter()
            .map(|(k, v)| (Cow::Borrowed(*k), Cow::Owned(v.to_string())))
            .collect();
        Scrape {
            registry: Registry::with_prefix_and_labels(prefix, labels.clone().into_iter()),
            process: Registry::with_labels(labels.into_iter()),
        }
    }

    /// What every daemon exports about itself: `<prefix>_build_info{version}`
    /// (always 1), `<prefix>_certificate_expiry_timestamp_seconds` (when the
    /// node certificate in force stops being valid, Unix time; left out if
    /// it cannot be read), and the process's `process_cpu_seconds_total`,
    /// `process_resident_memory_bytes`, `process_open_fds` and
    /// `process_max_fds` (each left out where `/proc` does not say).
    pub fn daemon(&mut self, version: &str, identity: &crate::tls::Identity) {
        let info: Family<Label, Gauge<f64, AtomicU64>> = Family::default();
        info.get_or_create(&[("version", version.to_string())])
            .set(1.0);
        self.registry.register(
            "build_info",
            "The build: its version in the label, the value always 1",
            info,
        );
        let expiry = identity
            .cert_chain
            .first()
            .and_then(|c| crate::cert_expiry::not_after(c));
        if let Some(t) = expiry {
            let unix = t
                .duration_since(std::time::SystemTime::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs() as f64);
            self.gauge(
                "certificate_expiry_timestamp_seconds",
                "When the node certificate in force stops being valid (its notAfter), Unix time: alert on it minus time() (reloading a renewed certificate moves it)",
                unix,
            );
        }
        let p = crate::process_stats::ProcessStats::read();
        if let Some(cpu) = p.cpu_seconds {
            let c: Counter<f64, AtomicU64> = Counter::default();
            c.inc_by(cpu);
            self.process.register(
                "process_cpu_seconds",
                "User and system CPU time spent, seconds",
                c,
            );
        }
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size, bytes",
                p.resident_bytes,
            ),
            ("process_open_fds", "Open file descriptors", p.open_fds),
            (
                "process_max_fds",
                "Most file descriptors the process may open (soft limit)",
                p.max_fds,
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(v) = value {
                let g: Gauge<f64, AtomicU64> = Gauge::default();
                g.set(v as f64);
                self.process.register(name, help, g);
            }
        }
    }

    /// A counter; `name` without `_total` (the encoding adds it).
    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        let c: Counter = Counter::default();
        c.inc_by(value);
        self.registry.register(name, help, c);
    }

    pub fn gauge(&mut self, name: &str, help: &str, value: f64) {
        let g: Gauge<f64, AtomicU64> = Gauge::default();
        g.set(value);
        self.registry.register(name, help, g);
    }

    /// A counter per value of one label.
    pub fn counters(
        &mut self,
        name: &str,
        help: &str,
        label: &'static str,
        values: impl IntoIterator<Item = (String, u64)>,
    ) {
        let family: Family<Label, Counter> = Family::default();
        for (v, n) in values {
            family.get_or_create(&[(label, v)]).inc_by(n);
        }
        self.registry.register(name, help, family);
    }

    /// A gauge per value of one label; a label value may be absent (not measured).
    pub fn gauges(
        &mut self,
        name: &str,
        help: &str,
        label: &'static str,
        values: impl IntoIterator<Item = (String, f64)>,
    ) {
        let family: Family<Label, Gauge<f64, AtomicU64>> = Family::default();
        for (v, x) in values {
            family.get_or_create(&[(label, v)]).set(x);
        }
        self.registry.register(name, help, family);
    }

    /// Histograms kept between scrapes, one per value of one label.
    pub fn histograms(
        &mut self,
        name: &str,
        help: &str,
        label: &'static str,
        values: impl IntoIterator<Item = (String, AtomicHistogram)>,
    ) {
        let each = values.into_iter().map(|(v, h)| ([(label, v)], h)).collect();
        self.registry.register(name, help, Histograms(each));
    }

    /// Any other metric (e.g. a histogram kept between scrapes).
    pub fn metric(&mut self, name: &str, help: &str, metric: impl Metric) {
        self.registry.register(name, help, metric);
    }

    /// The exposition in the classic text format.
    pub fn encode(&self) -> Result<String, fmt::Error> {
        let mut open = String::new();
        encode(&mut open, &self.registry)?;
        // Each encoding ends in `# EOF`, which the classic form drops.
        encode(&mut open, &self.process)?;
        Ok(to_classic(&open))
    }

    /// The HTTP response for `GET /metrics`.
    pub fn response(&self) -> axum::response::Response {
        use axum::response::IntoResponse as _;
        match self.encode() {
            Ok(body) => ([(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response(),
            Err(e) => crate::admin::error(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                &format!("cannot encode metrics: {e}"),
            ),
        }
    }
}

/// A histogram of fixed buckets kept in atomics: observing takes no lock (it
/// runs per datagram), and it encodes as a Prometheus histogram. The sum is
/// kept in millionths of the unit observed.
#[derive(Debug, Clone)]
pub struct AtomicHistogram(Arc<AtomicBuckets>);

#[derive(Debug)]
struct AtomicBuckets {
    /// Upper bounds, ascending; one more count than bounds (above the last).
    bounds: Vec<f64>,
    counts: Vec<AtomicU64>,
    sum_millionths: AtomicU64,
}

impl AtomicHistogram {
    pub fn new(bounds: impl IntoIterator<Item = f64>) -> Self {
        let bounds: Vec<f64> = bounds.into_iter().collect();
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        AtomicHistogram(Arc::new(AtomicBuckets {
            bounds,
            counts,
            sum_millionths: AtomicU64::new(0),
        }))
    }

    /// Counts `v` (negative and NaN count as 0) in the first bucket whose
    /// bound is at least `v`.
    pub fn observe(&self, v: f64) {
        let v = if v > 0.0 { v } else { 0.0 };
        let b = &self.0;
        let i = b.bounds.partition_point(|&bound| bound < v);
        b.counts[i].fetch_add(1, Ordering::Relaxed);
        b.sum_millionths
            .fetch_add((v * 1e6).round() as u64, Ordering::Relaxed);
    }

    /// The count of each bucket (not cumulative), the last above every bound.
    pub fn counts(&self) -> Vec<u64> {
        self.0
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), fmt::Error> {
        let counts = self.counts();
        let buckets: Vec<(f64, u64)> = self
            .0
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::MAX))
            .zip(counts.iter().copied())
            .collect();
        let sum = self.0.sum_millionths.load(Ordering::Relaxed) as f64 / 1e6;
        encoder.encode_histogram::<NoLabelSet>(sum, counts.iter().sum(), &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// Existing histograms under one name, told apart by a label (a `Family`
/// would create its own).
#[derive(Debug)]
struct Histograms(Vec<(Label, AtomicHistogram)>);

impl EncodeMetric for Histograms {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), fmt::Error> {
        for (labels, h) in &self.0 {
            h.encode(encoder.encode_family(labels)?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// Rewrites `prometheus-client`'s OpenMetrics text into the classic format:
/// a counter's `# HELP`/`# TYPE` lines name it with `_total` like its samples,
/// `unknown` becomes `untyped`, and `# UNIT` and `# EOF` go. Samples of
/// counters, gauges and histograms read the same in both formats.
pub fn to_classic(open: &str) -> String {
    let mut out = String::with_capacity(open.len());
    // A family's HELP comes before its TYPE, which says whether to rename it.
    let mut help: Option<(&str, &str)> = None;
    for line in open.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            flush_help(&mut out, help.take());
            help = Some(rest.split_once(' ').unwrap_or((rest, "")));
            continue;
        }
        if let Some((name, kind)) = line.strip_prefix("# TYPE ").and_then(|r| r.split_once(' ')) {
            let (name, kind) = match kind {
                "counter" if !name.ends_with("_total") => (format!("{name}_total"), kind),
                "unknown" => (name.to_string(), "untyped"),
                _ => (name.to_string(), kind),
            };
            if let Some((_, text)) = help.take() {
                out.push_str(&format!("# HELP {name} {text}\n"));
            }
            out.push_str(&format!("# TYPE {name} {kind}\n"));
            continue;
        }
        flush_help(&mut out, help.take());
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    flush_help(&mut out, help);
    out
}

fn flush_help(out: &mut String, help: Option<(&str, &str)>) {
    if let Some((name, text)) = help {
        out.push_str(&format!("# HELP {name} {text}\n"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_atomic_histogram_encodes_like_a_prometheus_one() {
        let h = AtomicHistogram::new([0.01, 0.1]);
        for v in [0.005, 0.05, 0.05, 3.0, -1.0] {
            h.observe(v);
        }
        assert_eq!(h.counts(), [2, 2, 1]);
        let mut s = Scrape::new("t", &[]);
        s.histograms("delay_seconds", "Delays", "service", [("a".into(), h)]);
        let text = s.encode().expect("encodes");
        for line in [
            "t_delay_seconds_sum{service=\"a\"} 3.105",
            "t_delay_seconds_count{service=\"a\"} 5",
            "t_delay_seconds_bucket{le=\"0.01\",service=\"a\"} 2",
            "t_delay_seconds_bucket{le=\"0.1\",service=\"a\"} 4",
            "t_delay_seconds_bucket{le=\"+Inf\",service=\"a\"} 5",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
    }

    #[test]
    fn classic_text_names_counters_with_total_and_drops_openmetrics_only_lines() {
        let mut s = Scrape::new("t", &[("node", "aaa")]);
        s.counter("things", "Things done", 3);
        s.gauge("level", "A level", 0.5);
        s.counters("drops", "Drops", "reason", [("ttl".to_string(), 2)]);
        let h = prometheus_client::metrics::histogram::Histogram::new([0.1, 1.0]);
        h.observe(0.05);
        h.observe(0.5);
        s.metric("wait_seconds", "Waits", h);
        let text = s.encode().expect("encodes");
        for want in [
            "# HELP t_things_total Things done.\n# TYPE t_things_total counter\nt_things_total{node=\"aaa\"} 3\n",
            "# HELP t_level A level.\n# TYPE t_level gauge\nt_level{node=\"aaa\"} 0.5\n",
            "# TYPE t_drops_total counter\nt_drops_total{node=\"aaa\",reason=\"ttl\"} 2\n",
            "# TYPE t_wait_seconds histogram\n",
            "t_wait_seconds_bucket{node=\"aaa\",le=\"0.1\"} 1\n",
            "t_wait_seconds_bucket{node=\"aaa\",le=\"+Inf\"} 2\n",
            "t_wait_seconds_count{node=\"aaa\"} 2\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
        assert!(!text.contains("# EOF"), "{text}");
        assert!(!text.contains("# UNIT"), "{text}");
    }

    #[test]
    fn classic_rewrite_handles_units_unknown_and_stray_help() {
        let open = "# HELP a_seconds A.\n# TYPE a_seconds counter\n# UNIT a_seconds seconds\na_seconds_total 1\n\
                    # HELP b B.\n# TYPE b unknown\nb 2\n# HELP c C.\nc 3\n# EOF\n";
        assert_eq!(
            to_classic(open),
            "# HELP a_seconds_total A.\n# TYPE a_seconds_total counter\na_seconds_total 1\n\
             # HELP b B.\n# TYPE b untyped\nb 2\n# HELP c C.\nc 3\n"
        );
    }
}
