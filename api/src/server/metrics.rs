//! Prometheus text metrics, hand-written from atomics.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the batch size histogram (entries).
const BATCH_BUCKETS: [u64; 10] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512];
/// Upper bounds of the append latency histogram (microseconds).
const LATENCY_BUCKETS_US: [u64; 12] =
    [500, 1_000, 2_000, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000];

struct Histogram {
    buckets: Vec<AtomicU64>,
    sum: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &[u64]) -> Histogram {
        Histogram {
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    fn observe(&self, bounds: &[u64], value: u64) {
        for (bucket, bound) in self.buckets.iter().zip(bounds) {
            if value <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.sum.fetch_add(value, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, bounds: &[u64], scale: f64) {
        for (bucket, bound) in self.buckets.iter().zip(bounds) {
            let le = *bound as f64 / scale;
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {}", bucket.load(Ordering::Relaxed));
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}", self.sum.load(Ordering::Relaxed) as f64 / scale);
        let _ = writeln!(out, "{name}_count {count}");
    }
}

pub(crate) struct Metrics {
    pub appends_total: AtomicU64,
    pub duplicates_total: AtomicU64,
    pub append_failures_total: AtomicU64,
    /// Whether the last append attempt failed: set on a failed batch, cleared by a durable one.
    pub appends_failing: AtomicBool,
    pub automation_appends_total: AtomicU64,
    pub queue_depth: AtomicI64,
    pub sse_subscribers: AtomicI64,
    rejections: Mutex<BTreeMap<String, u64>>,
    /// GitHub webhook deliveries by outcome (SPEC.md section 13).
    github_deliveries: [AtomicU64; DeliveryOutcome::ALL.len()],
    batch_entries: Histogram,
    append_latency_us: Histogram,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            appends_total: AtomicU64::new(0),
            duplicates_total: AtomicU64::new(0),
            append_failures_total: AtomicU64::new(0),
            appends_failing: AtomicBool::new(false),
            automation_appends_total: AtomicU64::new(0),
            queue_depth: AtomicI64::new(0),
            sse_subscribers: AtomicI64::new(0),
            rejections: Mutex::new(BTreeMap::new()),
            github_deliveries: std::array::from_fn(|_| AtomicU64::new(0)),
            batch_entries: Histogram::new(&BATCH_BUCKETS),
            append_latency_us: Histogram::new(&LATENCY_BUCKETS_US),
        }
    }
}

/// What became of a GitHub webhook delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeliveryOutcome {
    Metered,
    Unauthorized,
    AlreadyLogged,
    DuplicateDelivery,
    Pong,
    Ignored,
    BadSignature,
    Malformed,
    Unavailable,
}

impl DeliveryOutcome {
    pub(crate) const ALL: [DeliveryOutcome; 9] = [
        DeliveryOutcome::Metered,
        DeliveryOutcome::Unauthorized,
        DeliveryOutcome::AlreadyLogged,
        DeliveryOutcome::DuplicateDelivery,
        DeliveryOutcome::Pong,
        DeliveryOutcome::Ignored,
        DeliveryOutcome::BadSignature,
        DeliveryOutcome::Malformed,
        DeliveryOutcome::Unavailable,
    ];

    /// The stable name clients and `/metrics` see.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DeliveryOutcome::Metered => "metered",
            DeliveryOutcome::Unauthorized => "unauthorized",
            DeliveryOutcome::AlreadyLogged => "already_logged",
            DeliveryOutcome::DuplicateDelivery => "duplicate_delivery",
            DeliveryOutcome::Pong => "pong",
            DeliveryOutcome::Ignored => "ignored",
            DeliveryOutcome::BadSignature => "bad_signature",
            DeliveryOutcome::Malformed => "malformed",
            DeliveryOutcome::Unavailable => "unavailable",
        }
    }
}

impl Metrics {
    pub(crate) fn delivery(&self, outcome: DeliveryOutcome) {
        self.github_deliveries[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn reject(&self, code: &str) {
        if let Ok(mut map) = self.rejections.lock() {
            *map.entry(code.to_string()).or_default() += 1;
        }
    }

    pub(crate) fn observe_batch(&self, entries: usize, latency: Duration) {
        self.batch_entries.observe(&BATCH_BUCKETS, entries as u64);
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.append_latency_us.observe(&LATENCY_BUCKETS_US, us);
        self.appends_total.fetch_add(entries as u64, Ordering::Relaxed);
    }

    pub(crate) fn render(&self, log_size: u64) -> String {
        let mut out = String::with_capacity(4096);
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        counter(&mut out, "grantline_appends_total", "Records appended to the log.", load(&self.appends_total));
        counter(
            &mut out,
            "grantline_duplicates_total",
            "Identical re-submissions answered with the original receipt.",
            load(&self.duplicates_total),
        );
        counter(
            &mut out,
            "grantline_append_failures_total",
            "Batches whose durable append failed (answered 503).",
            load(&self.append_failures_total),
        );
        let failing = u8::from(self.appends_failing.load(Ordering::Relaxed));
        let _ = writeln!(
            out,
            "# HELP grantline_appends_failing 1 while the last append attempt failed (writes answer 503).\n\
             # TYPE grantline_appends_failing gauge\ngrantline_appends_failing {failing}"
        );
        counter(
            &mut out,
            "grantline_automation_appends_total",
            "Records appended by the automation key.",
            load(&self.automation_appends_total),
        );
        let _ = writeln!(out, "# HELP grantline_rejections_total Rejected submissions by code.");
        let _ = writeln!(out, "# TYPE grantline_rejections_total counter");
        if let Ok(map) = self.rejections.lock() {
            for (code, n) in map.iter() {
                let _ = writeln!(out, "grantline_rejections_total{{code=\"{}\"}} {n}", escape_label(code));
            }
        }
        let _ = writeln!(out, "# HELP grantline_github_deliveries_total GitHub webhook deliveries by outcome.");
        let _ = writeln!(out, "# TYPE grantline_github_deliveries_total counter");
        for outcome in DeliveryOutcome::ALL {
            let n = load(&self.github_deliveries[outcome as usize]);
            let _ = writeln!(out, "grantline_github_deliveries_total{{outcome=\"{}\"}} {n}", outcome.as_str());
        }
        let _ = writeln!(out, "# HELP grantline_batch_entries Entries per group commit.");
        let _ = writeln!(out, "# TYPE grantline_batch_entries histogram");
        self.batch_entries.render(&mut out, "grantline_batch_entries", &BATCH_BUCKETS, 1.0);
        let _ = writeln!(out, "# HELP grantline_append_seconds Durable append latency (one flush per batch).");
        let _ = writeln!(out, "# TYPE grantline_append_seconds histogram");
        self.append_latency_us.render(&mut out, "grantline_append_seconds", &LATENCY_BUCKETS_US, 1e6);
        let gauge = |out: &mut String, name: &str, help: &str, v: i64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        gauge(
            &mut out,
            "grantline_log_size",
            "Records in the published log.",
            i64::try_from(log_size).unwrap_or(i64::MAX),
        );
        gauge(
            &mut out,
            "grantline_queue_depth",
            "Verified envelopes waiting for the sequencer.",
            self.queue_depth.load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            "grantline_sse_subscribers",
            "Open event streams.",
            self.sse_subscribers.load(Ordering::Relaxed),
        );
        out
    }
}

/// One witness's state in `/metrics` (DESIGN.md section 12).
pub(crate) struct WitnessMetric {
    pub name: String,
    pub url: String,
    /// The largest checkpoint size it cosigned (0 before its first cosignature).
    pub cosigned_size: u64,
    /// Requests that did not bring back a valid cosignature.
    pub failures: u64,
}

/// The witnesses' lines of `/metrics`; `quorum_size` is the size of the newest checkpoint
/// that reached the quorum (what readers are served).
pub(crate) fn render_witnesses(out: &mut String, witnesses: &[WitnessMetric], quorum_size: u64) {
    type Value = fn(&WitnessMetric) -> u64;
    let families: [(&str, &str, &str, Value); 2] = [
        ("grantline_witness_cosigned_size", "The largest checkpoint size each witness cosigned.", "gauge", |w| {
            w.cosigned_size
        }),
        (
            "grantline_witness_failures_total",
            "Witness requests that brought back no valid cosignature.",
            "counter",
            |w| w.failures,
        ),
    ];
    for (name, help, kind, value) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for w in witnesses {
            let _ = writeln!(
                out,
                "{name}{{witness=\"{}\",url=\"{}\"}} {}",
                escape_label(&w.name),
                escape_label(&w.url),
                value(w)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP grantline_witnessed_size Size of the newest checkpoint with the witness quorum (the one served).\n\
         # TYPE grantline_witnessed_size gauge\ngrantline_witnessed_size {quorum_size}"
    );
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
