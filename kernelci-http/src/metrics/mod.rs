//! What `GET /metrics` exposes (API.md §3, docs/OPERATIONS.md "Monitoring").
//!
//! First the reference's counters, unchanged ([`ReferenceCounters`]: `http_requests_total`,
//! `subscriptions_cleaned`, `nodes_purged` as `<name>{instance="api"} <n>`), then
//! ours in the Prometheus text format 0.0.4 with `# HELP`/`# TYPE`, from one
//! [`prometheus_client`] registry per server (so several servers in one process,
//! as the tests run them, keep their own figures):
//!
//! | Metric | Type | Labels |
//! |---|---|---|
//! | `kci_http_request_duration_seconds` | histogram | `method`, `route` (the route pattern, `unmatched` for 404s), `status` |
//! | `kci_http_requests_in_flight` | gauge | |
//! | `kci_store_operation_duration_seconds` | histogram | `operation` (the [`Store`](kernelci_core::store::Store) method) |
//! | `kci_store_operation_errors_total` | counter | `operation` |
//! | `kci_subscriptions` | gauge | `kind`: `live` (listen subscriptions), `durable` (subscriber ids) |
//! | `kci_event_sequence` | gauge | | the newest event's sequence id |
//! | `kci_durable_subscriber_lag_events` | gauge | `subscriber_id`: events of the log (every channel) after its position |
//! | `kci_durable_subscriber_idle_seconds` | gauge | `subscriber_id`: time since its last listen |
//! | `kci_durable_subscribers_max_lag_events`, `kci_durable_subscribers_max_idle_seconds` | gauge | | the largest of each over every durable subscriber (series of their own: the first 1,000 by id) |
//! | `kci_job_runs_total` | counter | `job` (`state_machine`, `housekeeping`, `purge`), `result` (`ok`, `failed`) |
//! | `kci_job_last_success_timestamp_seconds` | gauge | `job` |
//! | `kci_emails_total` | counter | `result` (`sent`, `failed`) |
//! | `kci_jobs_leader`, `kci_server_info` | gauge | `server` on the info |
//! | `kci_event_streams` | gauge | | open `GET /events/stream` answers |
//!
//! The subscription and lag gauges are read from the broker and the store when
//! `/metrics` is scraped ([`Metrics::observe_pubsub`]); the rest are updated as
//! things happen.

mod legacy;
pub mod store;

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

pub use legacy::ReferenceCounters;
pub use store::{MeteredStore, StoreMetrics};

/// Bucket bounds of the request latency histogram, in seconds (0.5 ms to 10 s).
const REQUEST_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A durable subscriber's figures (see [`Metrics::observe_pubsub`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriberFigures {
    /// The subscriber id.
    pub subscriber_id: String,
    /// Events of the log (every channel) after its position.
    pub behind: u64,
    /// Seconds since its last listen (or its creation).
    pub idle_seconds: f64,
}

/// The most durable subscribers with series of their own (the first by id; the
/// aggregates cover them all). Subscriber ids are chosen by clients: this bounds
/// what a scrape writes however many they make.
pub const MAX_SUBSCRIBER_SERIES: usize = 1000;

/// Labels of a request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: &'static str,
    status: u16,
}

/// A job and its outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    job: &'static str,
    result: &'static str,
}

/// A job.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobName {
    job: &'static str,
}

/// An outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// A kind of subscription.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

/// A durable subscriber.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SubscriberLabel {
    subscriber_id: String,
}

/// The server's.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServerLabel {
    server: String,
}

type RequestHistograms = Family<RequestLabels, Histogram, fn() -> Histogram>;

fn request_histogram() -> Histogram {
    Histogram::new(REQUEST_BUCKETS)
}

/// Every metric of one server (see the module docs).
pub struct Metrics {
    reference: ReferenceCounters,
    registry: Registry,
    requests: RequestHistograms,
    in_flight: Gauge,
    store: std::sync::Arc<StoreMetrics>,
    jobs: Family<JobLabels, Counter>,
    job_success: Family<JobName, Gauge<f64, AtomicU64>>,
    emails: Family<ResultLabel, Counter>,
    subscriptions: Family<KindLabel, Gauge>,
    sequence: Gauge,
    lag: Family<SubscriberLabel, Gauge>,
    idle: Family<SubscriberLabel, Gauge<f64, AtomicU64>>,
    max_behind: Gauge,
    max_idle: Gauge<f64, AtomicU64>,
    leader: Gauge,
    event_streams: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("reference", &self.reference)
            .finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new("")
    }
}

impl Metrics {
    /// The metrics of the server `server_id` (its `kci_server_info` label).
    pub fn new(server_id: &str) -> Self {
        let mut registry = Registry::default();
        let requests = RequestHistograms::new_with_constructor(request_histogram);
        registry.register(
            "kci_http_request_duration_seconds",
            "Time from a request's arrival to its answer, by method, route pattern and status",
            requests.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "kci_http_requests_in_flight",
            "Requests being answered",
            in_flight.clone(),
        );
        let store = std::sync::Arc::new(StoreMetrics::default());
        store.register(&mut registry);
        let jobs = Family::<JobLabels, Counter>::default();
        registry.register(
            "kci_job_runs",
            "Background job rounds, by job and result",
            jobs.clone(),
        );
        let job_success = Family::<JobName, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "kci_job_last_success_timestamp_seconds",
            "Unix time of each job's last successful round",
            job_success.clone(),
        );
        let emails = Family::<ResultLabel, Counter>::default();
        registry.register(
            "kci_emails",
            "E-mails the server tried to send, by result",
            emails.clone(),
        );
        let subscriptions = Family::<KindLabel, Gauge>::default();
        registry.register(
            "kci_subscriptions",
            "Pub/sub subscriptions: live (listen) and durable (subscriber ids)",
            subscriptions.clone(),
        );
        let sequence = Gauge::default();
        registry.register(
            "kci_event_sequence",
            "Sequence id of the newest event in the event log",
            sequence.clone(),
        );
        let lag = Family::<SubscriberLabel, Gauge>::default();
        registry.register(
            "kci_durable_subscriber_lag_events",
            "Events of the log (every channel) after a durable subscriber's position",
            lag.clone(),
        );
        let idle = Family::<SubscriberLabel, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "kci_durable_subscriber_idle_seconds",
            "Seconds since a durable subscriber last listened",
            idle.clone(),
        );
        let max_behind = Gauge::default();
        registry.register(
            "kci_durable_subscribers_max_lag_events",
            "The largest kci_durable_subscriber_lag_events over every durable subscriber",
            max_behind.clone(),
        );
        let max_idle = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "kci_durable_subscribers_max_idle_seconds",
            "The largest kci_durable_subscriber_idle_seconds over every durable subscriber",
            max_idle.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "kci_jobs_leader",
            "1 when this server runs the time-driven jobs",
            leader.clone(),
        );
        let event_streams = Gauge::default();
        registry.register(
            "kci_event_streams",
            "Open event streams (GET /events/stream)",
            event_streams.clone(),
        );
        let info = Family::<ServerLabel, Gauge>::default();
        info.get_or_create(&ServerLabel {
            server: server_id.to_owned(),
        })
        .set(1);
        registry.register("kci_server_info", "This server's id (always 1)", info);
        for job in ["state_machine", "housekeeping", "purge"] {
            for result in ["ok", "failed"] {
                drop(jobs.get_or_create(&JobLabels { job, result }));
            }
        }
        for result in ["sent", "failed"] {
            drop(emails.get_or_create(&ResultLabel { result }));
        }
        Metrics {
            reference: ReferenceCounters::default(),
            registry,
            requests,
            in_flight,
            store,
            jobs,
            job_success,
            emails,
            subscriptions,
            sequence,
            lag,
            idle,
            max_behind,
            max_idle,
            leader,
            event_streams,
        }
    }

    /// Counts one request in the reference's `http_requests_total` (the handlers
    /// API.md §1.8 lists).
    pub fn count_request(&self) {
        self.reference.count_request();
    }

    /// Adds `n` to the reference counter `name`.
    pub fn add(&self, name: &'static str, n: u64) {
        self.reference.add(name, n);
    }

    /// The value of `http_requests_total`.
    pub fn requests(&self) -> u64 {
        self.reference.requests()
    }

    /// The value of a reference counter (0 when never set).
    pub fn get(&self, name: &str) -> u64 {
        self.reference.get(name)
    }

    /// The store's operation metrics, for [`MeteredStore`].
    pub fn store(&self) -> std::sync::Arc<StoreMetrics> {
        std::sync::Arc::clone(&self.store)
    }

    /// A request starts: counted in flight until the guard is dropped.
    pub fn request_started(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }

    /// A request was answered (methods other than the five the API uses, HEAD
    /// and OPTIONS are labelled `other`).
    pub fn observe_request(&self, method: &str, route: &'static str, status: u16, took: Duration) {
        let method = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
            .into_iter()
            .find(|m| *m == method)
            .unwrap_or("other");
        self.requests
            .get_or_create(&RequestLabels {
                method,
                route,
                status,
            })
            .observe(took.as_secs_f64());
    }

    /// A background job's round ended.
    pub fn job_run(&self, job: &'static str, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.jobs.get_or_create(&JobLabels { job, result }).inc();
        if ok {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            self.job_success
                .get_or_create(&JobName { job })
                .set(now.as_secs_f64());
        }
    }

    /// An e-mail was sent (or not).
    pub fn email(&self, sent: bool) {
        let result = if sent { "sent" } else { "failed" };
        self.emails.get_or_create(&ResultLabel { result }).inc();
    }

    /// The pub/sub figures read at scrape time: the live subscriptions, the newest
    /// sequence id, and each durable subscriber's distance behind the log and idle
    /// time (series for the first [`MAX_SUBSCRIBER_SERIES`] by id, the largest
    /// of both over all of them).
    pub fn observe_pubsub(&self, live: u64, sequence: u64, subscribers: &[SubscriberFigures]) {
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.subscriptions
            .get_or_create(&KindLabel { kind: "live" })
            .set(gauge(live));
        self.subscriptions
            .get_or_create(&KindLabel { kind: "durable" })
            .set(gauge(subscribers.len() as u64));
        self.sequence.set(gauge(sequence));
        self.max_behind.set(gauge(
            subscribers.iter().map(|s| s.behind).max().unwrap_or(0),
        ));
        self.max_idle.set(
            subscribers
                .iter()
                .map(|s| s.idle_seconds)
                .fold(0.0, f64::max),
        );
        // Subscribers deleted since the last scrape disappear.
        self.lag.clear();
        self.idle.clear();
        let mut by_id: Vec<&SubscriberFigures> = subscribers.iter().collect();
        by_id.sort_by(|a, b| a.subscriber_id.cmp(&b.subscriber_id));
        for s in by_id.into_iter().take(MAX_SUBSCRIBER_SERIES) {
            let label = SubscriberLabel {
                subscriber_id: s.subscriber_id.clone(),
            };
            self.lag.get_or_create(&label).set(gauge(s.behind));
            self.idle.get_or_create(&label).set(s.idle_seconds);
        }
    }

    /// Whether this server holds the jobs lease.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// Sets `kci_event_streams`, the open event streams (read when scraped).
    pub fn set_event_streams(&self, open: usize) {
        self.event_streams
            .set(i64::try_from(open).unwrap_or(i64::MAX));
    }

    /// The exposition: the reference's lines, then ours (Prometheus text 0.0.4).
    pub fn render(&self) -> String {
        let mut out = self.reference.render();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

/// A request in flight; dropping it (also when the client went away) ends it.
#[derive(Debug)]
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reference_lines_first_then_ours() {
        let m = Metrics::new("host:1:abc");
        m.count_request();
        m.add("nodes_purged", 3);
        {
            let _a = m.request_started();
            m.observe_request("GET", "/node/{id}", 200, Duration::from_micros(700));
        }
        m.job_run("purge", false);
        m.email(true);
        m.observe_pubsub(
            2,
            10,
            &[SubscriberFigures {
                subscriber_id: "svc".into(),
                behind: 3,
                idle_seconds: 1.5,
            }],
        );
        let text = m.render();
        assert!(
            text.starts_with(
                "http_requests_total{instance=\"api\"} 1\nnodes_purged{instance=\"api\"} 3\n"
            ),
            "{text}"
        );
        for line in [
            "# TYPE kci_http_request_duration_seconds histogram",
            "kci_http_request_duration_seconds_bucket{method=\"GET\",route=\"/node/{id}\",status=\"200\",le=\"0.0005\"} 0",
            "kci_http_request_duration_seconds_bucket{method=\"GET\",route=\"/node/{id}\",status=\"200\",le=\"0.001\"} 1",
            "kci_http_request_duration_seconds_count{method=\"GET\",route=\"/node/{id}\",status=\"200\"} 1",
            "kci_http_requests_in_flight 0",
            "kci_job_runs_total{job=\"purge\",result=\"failed\"} 1",
            "kci_job_runs_total{job=\"purge\",result=\"ok\"} 0",
            "kci_emails_total{result=\"sent\"} 1",
            "kci_subscriptions{kind=\"live\"} 2",
            "kci_subscriptions{kind=\"durable\"} 1",
            "kci_event_sequence 10",
            "kci_durable_subscriber_lag_events{subscriber_id=\"svc\"} 3",
            "kci_durable_subscriber_idle_seconds{subscriber_id=\"svc\"} 1.5",
            "kci_durable_subscribers_max_lag_events 3",
            "kci_durable_subscribers_max_idle_seconds 1.5",
            "kci_server_info{server=\"host:1:abc\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
    }
}
