//! `GET /metrics`: the host's counters in Prometheus' text format (version 0.0.4).
//!
//! | Metric | Type | What |
//! |---|---|---|
//! | `arena_realtime_connections` | gauge | open WebSocket and SSE connections |
//! | `arena_realtime_subscriptions` | gauge | channel subscriptions of those connections |
//! | `arena_realtime_events_delivered_total` | counter | events queued to a subscriber (live or replayed) |
//! | `arena_realtime_slow_consumers_total` | counter | connections dropped because their queue was full |
//! | `arena_realtime_events_sequenced_total` | counter | events this process's sequencer gave a position |
//! | `arena_realtime_events_read_total` | counter | events the log reader read and fanned out |
//! | `arena_realtime_log_position` | gauge | the last position the log reader fanned out |
//! | `arena_realtime_log_reconnects_total` | counter | times the log reader's connection was lost |
//! | `arena_http_requests_total{class}` | counter | requests the host answered, by status class |
//!
//! Everything is a relaxed atomic: a scrape sees each value as of some moment,
//! not all of them as of one.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// The media type Prometheus scrapes.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The realtime hub's counters (`Hub::metrics`).
#[derive(Debug, Default)]
pub struct Metrics {
    pub connections: AtomicI64,
    pub subscriptions: AtomicI64,
    pub events_delivered: AtomicU64,
    pub slow_consumers: AtomicU64,
    pub events_sequenced: AtomicU64,
    pub events_read: AtomicU64,
    pub log_position: AtomicI64,
    pub log_reconnects: AtomicU64,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// The host's requests by status class (`1xx` … `5xx`), counted by the server
/// for every request a client sent (components' chained requests excluded).
pub struct HttpMetrics {
    by_class: [AtomicU64; 5],
}

pub static HTTP: HttpMetrics = HttpMetrics {
    by_class: [const { AtomicU64::new(0) }; 5],
};

impl HttpMetrics {
    pub fn record(&self, status: http::StatusCode) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.by_class[class].fetch_add(1, Ordering::Relaxed);
    }
}

/// The exposition: the realtime metrics when a hub runs in this process, and
/// the HTTP request counts.
pub fn render(realtime: Option<&Metrics>, http: &HttpMetrics) -> String {
    let mut out = String::new();
    if let Some(m) = realtime {
        let load_i = |v: &AtomicI64| v.load(Ordering::Relaxed).max(0);
        let load_u = |v: &AtomicU64| v.load(Ordering::Relaxed);
        let metrics: [(&str, &str, &str, u64); 8] = [
            (
                "arena_realtime_connections",
                "gauge",
                "Open realtime connections (WebSocket and SSE).",
                load_i(&m.connections) as u64,
            ),
            (
                "arena_realtime_subscriptions",
                "gauge",
                "Channel subscriptions of the open realtime connections.",
                load_i(&m.subscriptions) as u64,
            ),
            (
                "arena_realtime_events_delivered_total",
                "counter",
                "Events queued to realtime subscribers, live or replayed.",
                load_u(&m.events_delivered),
            ),
            (
                "arena_realtime_slow_consumers_total",
                "counter",
                "Realtime connections dropped because they did not keep up.",
                load_u(&m.slow_consumers),
            ),
            (
                "arena_realtime_events_sequenced_total",
                "counter",
                "Events this process's sequencer gave a log position.",
                load_u(&m.events_sequenced),
            ),
            (
                "arena_realtime_events_read_total",
                "counter",
                "Events the log reader read and fanned out.",
                load_u(&m.events_read),
            ),
            (
                "arena_realtime_log_position",
                "gauge",
                "The last event position the log reader fanned out.",
                load_i(&m.log_position) as u64,
            ),
            (
                "arena_realtime_log_reconnects_total",
                "counter",
                "Times the log reader lost its database connection.",
                load_u(&m.log_reconnects),
            ),
        ];
        for (name, kind, help, value) in metrics {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
            );
        }
    }
    out.push_str(
        "# HELP arena_http_requests_total HTTP requests answered, by status class.\n\
         # TYPE arena_http_requests_total counter\n",
    );
    for (i, count) in http.by_class.iter().enumerate() {
        let _ = writeln!(
            out,
            "arena_http_requests_total{{class=\"{}xx\"}} {}",
            i + 1,
            count.load(Ordering::Relaxed)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_names_every_metric_once_with_its_type() {
        let metrics = Metrics::default();
        metrics.connections.store(3, Ordering::Relaxed);
        Metrics::add(&metrics.events_delivered, 7);
        let http = HttpMetrics {
            by_class: [const { AtomicU64::new(0) }; 5],
        };
        http.record(http::StatusCode::OK);
        http.record(http::StatusCode::NOT_FOUND);
        http.record(http::StatusCode::SWITCHING_PROTOCOLS);
        let text = render(Some(&metrics), &http);
        for name in [
            "arena_realtime_connections",
            "arena_realtime_subscriptions",
            "arena_realtime_events_delivered_total",
            "arena_realtime_slow_consumers_total",
            "arena_realtime_events_sequenced_total",
        ] {
            assert_eq!(
                text.matches(&format!("# TYPE {name} ")).count(),
                1,
                "{name}:\n{text}"
            );
        }
        assert!(text.contains("\narena_realtime_connections 3\n"), "{text}");
        assert!(
            text.contains("\narena_realtime_events_delivered_total 7\n"),
            "{text}"
        );
        assert!(
            text.contains("arena_http_requests_total{class=\"2xx\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("arena_http_requests_total{class=\"4xx\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("arena_http_requests_total{class=\"1xx\"} 1\n"),
            "{text}"
        );
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn without_a_hub_only_the_request_counts_are_shown() {
        let text = render(None, &HTTP);
        assert!(!text.contains("arena_realtime_"), "{text}");
        assert!(text.contains("# TYPE arena_http_requests_total counter"));
    }
}
