//! [`MeteredStore`]: a [`Store`] that times every operation of the store it wraps
//! (`kci_store_operation_duration_seconds{operation}`) and counts its errors
//! (`kci_store_operation_errors_total{operation}`: storage errors and outages,
//! not the conflicts and refusals that are answers), labelled by method name.
//!
//! Every method is forwarded, the trait's provided ones included (the
//! `clippy::missing_trait_methods` lint below keeps it so: a backend's own
//! `insert_node_with_event` must not be replaced by the trait's default). Not
//! timed: `wait_events`, which waits for new events as long as its caller asks,
//! and `is_shared`. An operation whose caller gave up (a dropped future) is not
//! recorded.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use kernelci_core::auth::{User, UserGroup};
use kernelci_core::error::{Error, Result};
use kernelci_core::events::{Event, EventQuery, NewEvent};
use kernelci_core::exact::ExactFilter;
use kernelci_core::id::ObjectId;
use kernelci_core::node::Node;
use kernelci_core::query::Query;
use kernelci_core::state::ChildrenSummary;
use kernelci_core::store::{
    ExportCursor, FieldSet, ImportStats, Page, Record, Section, Store, SubscriberState,
    SubscriptionRecord, TokenRecord, Version, Versioned,
};
use kernelci_core::telemetry::{TelemetryEvent, TelemetryQuery};
use kernelci_core::time::Timestamp;

/// Bucket bounds of the store latency histogram, in seconds (20 µs to 5 s).
const STORE_BUCKETS: [f64; 14] = [
    0.00002, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 1.0,
    5.0,
];

/// A store operation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabel {
    operation: &'static str,
}

type OperationHistograms = Family<OperationLabel, Histogram, fn() -> Histogram>;

fn store_histogram() -> Histogram {
    Histogram::new(STORE_BUCKETS)
}

/// The store's latency histograms and error counters.
#[derive(Debug)]
pub struct StoreMetrics {
    durations: OperationHistograms,
    errors: Family<OperationLabel, Counter>,
}

impl Default for StoreMetrics {
    fn default() -> Self {
        StoreMetrics {
            durations: OperationHistograms::new_with_constructor(store_histogram),
            errors: Family::default(),
        }
    }
}

impl StoreMetrics {
    /// Adds the families to `registry`.
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "kci_store_operation_duration_seconds",
            "Time the store took for each operation, by Store method",
            self.durations.clone(),
        );
        registry.register(
            "kci_store_operation_errors",
            "Store operations that failed in the store (storage errors, outages), by Store method",
            self.errors.clone(),
        );
    }

    /// Records one operation.
    pub fn observe(&self, operation: &'static str, seconds: f64, ok: bool) {
        let label = OperationLabel { operation };
        self.durations.get_or_create(&label).observe(seconds);
        if !ok {
            self.errors.get_or_create(&label).inc();
        }
    }
}

/// A store whose operations are timed (see the module docs).
pub struct MeteredStore {
    inner: Arc<dyn Store>,
    metrics: Arc<StoreMetrics>,
}

impl std::fmt::Debug for MeteredStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeteredStore").finish_non_exhaustive()
    }
}

impl MeteredStore {
    /// `inner`, timed into `metrics`.
    pub fn new(inner: Arc<dyn Store>, metrics: Arc<StoreMetrics>) -> Self {
        MeteredStore { inner, metrics }
    }

    async fn timed<T>(
        &self,
        operation: &'static str,
        call: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let started = Instant::now();
        let out = call.await;
        // Only the store's own failures count as errors: a conflict, a missing
        // record or a refused value is an answer, whatever the client asked.
        let failed = matches!(out, Err(Error::Storage(_) | Error::Unavailable(_)));
        self.metrics
            .observe(operation, started.elapsed().as_secs_f64(), !failed);
        out
    }
}

#[async_trait]
#[warn(clippy::missing_trait_methods)]
impl Store for MeteredStore {
    async fn insert_node(&self, node: &Node) -> Result<()> {
        self.timed("insert_node", self.inner.insert_node(node))
            .await
    }

    async fn insert_nodes(&self, nodes: &[Node]) -> Result<()> {
        self.timed("insert_nodes", self.inner.insert_nodes(nodes))
            .await
    }

    async fn get_node(&self, id: ObjectId) -> Result<Option<Versioned<Node>>> {
        self.timed("get_node", self.inner.get_node(id)).await
    }

    async fn get_node_json(&self, id: ObjectId) -> Result<Option<Vec<u8>>> {
        self.timed("get_node_json", self.inner.get_node_json(id))
            .await
    }

    async fn replace_node(&self, node: &Node, expected: Version) -> Result<Version> {
        self.timed("replace_node", self.inner.replace_node(node, expected))
            .await
    }

    async fn insert_node_with_event(&self, node: &Node, event: NewEvent) -> Result<Result<Event>> {
        self.timed(
            "insert_node_with_event",
            self.inner.insert_node_with_event(node, event),
        )
        .await
    }

    async fn replace_node_with_event(
        &self,
        node: &Node,
        expected: Version,
        event: NewEvent,
    ) -> Result<(Version, Result<Event>)> {
        self.timed(
            "replace_node_with_event",
            self.inner.replace_node_with_event(node, expected, event),
        )
        .await
    }

    async fn write_nodes_with_event(
        &self,
        nodes: &[(&Node, Option<Version>)],
        event: NewEvent,
    ) -> Result<(Vec<Version>, Result<Event>)> {
        self.timed(
            "write_nodes_with_event",
            self.inner.write_nodes_with_event(nodes, event),
        )
        .await
    }

    async fn find_nodes(&self, query: &Query) -> Result<Vec<Node>> {
        self.timed("find_nodes", self.inner.find_nodes(query)).await
    }

    async fn count_nodes(&self, query: &Query) -> Result<u64> {
        self.timed("count_nodes", self.inner.count_nodes(query))
            .await
    }

    async fn count_nodes_from_counters(&self, query: &Query) -> Result<Option<u64>> {
        self.timed(
            "count_nodes_from_counters",
            self.inner.count_nodes_from_counters(query),
        )
        .await
    }

    async fn find_page(&self, query: &Query) -> Result<Page<Node>> {
        self.timed("find_page", self.inner.find_page(query)).await
    }

    async fn find_nodes_json(&self, query: &Query) -> Result<Vec<Vec<u8>>> {
        self.timed("find_nodes_json", self.inner.find_nodes_json(query))
            .await
    }

    async fn find_page_json(&self, query: &Query) -> Result<Page<Vec<u8>>> {
        self.timed("find_page_json", self.inner.find_page_json(query))
            .await
    }

    async fn count_all_nodes(&self) -> Result<u64> {
        self.timed("count_all_nodes", self.inner.count_all_nodes())
            .await
    }

    async fn set_field_many(&self, ids: &[ObjectId], set: FieldSet, now: Timestamp) -> Result<u64> {
        self.timed("set_field_many", self.inner.set_field_many(ids, set, now))
            .await
    }

    async fn children(&self, parent: ObjectId) -> Result<Vec<Node>> {
        self.timed("children", self.inner.children(parent)).await
    }

    async fn descendants_summary(&self, id: ObjectId) -> Result<ChildrenSummary> {
        self.timed("descendants_summary", self.inner.descendants_summary(id))
            .await
    }

    async fn delete_nodes_created_before(
        &self,
        before: Timestamp,
        keep_kinds: &[&str],
        max: usize,
    ) -> Result<u64> {
        self.timed(
            "delete_nodes_created_before",
            self.inner
                .delete_nodes_created_before(before, keep_kinds, max),
        )
        .await
    }

    async fn append_event(&self, event: NewEvent) -> Result<Event> {
        self.timed("append_event", self.inner.append_event(event))
            .await
    }

    async fn events_after(
        &self,
        after: u64,
        channel: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Event>> {
        self.timed(
            "events_after",
            self.inner.events_after(after, channel, limit),
        )
        .await
    }

    async fn find_events(&self, query: &EventQuery) -> Result<Vec<Event>> {
        self.timed("find_events", self.inner.find_events(query))
            .await
    }

    async fn last_event_sequence(&self) -> Result<u64> {
        self.timed("last_event_sequence", self.inner.last_event_sequence())
            .await
    }

    async fn trim_events(&self, before: Timestamp) -> Result<u64> {
        self.timed("trim_events", self.inner.trim_events(before))
            .await
    }

    async fn get_subscriber(&self, subscriber_id: &str) -> Result<Option<SubscriberState>> {
        self.timed("get_subscriber", self.inner.get_subscriber(subscriber_id))
            .await
    }

    async fn put_subscriber(&self, state: &SubscriberState) -> Result<()> {
        self.timed("put_subscriber", self.inner.put_subscriber(state))
            .await
    }

    async fn create_subscriber(&self, state: &SubscriberState) -> Result<Option<SubscriberState>> {
        self.timed("create_subscriber", self.inner.create_subscriber(state))
            .await
    }

    async fn advance_subscriber(
        &self,
        subscriber_id: &str,
        sequence_id: u64,
        now: Timestamp,
    ) -> Result<()> {
        self.timed(
            "advance_subscriber",
            self.inner
                .advance_subscriber(subscriber_id, sequence_id, now),
        )
        .await
    }

    async fn delete_subscriber(&self, subscriber_id: &str) -> Result<bool> {
        self.timed(
            "delete_subscriber",
            self.inner.delete_subscriber(subscriber_id),
        )
        .await
    }

    async fn list_subscribers(&self) -> Result<Vec<SubscriberState>> {
        self.timed("list_subscribers", self.inner.list_subscribers())
            .await
    }

    async fn next_counter(&self, name: &str) -> Result<u64> {
        self.timed("next_counter", self.inner.next_counter(name))
            .await
    }

    async fn insert_user(&self, user: &User) -> Result<()> {
        self.timed("insert_user", self.inner.insert_user(user))
            .await
    }

    async fn get_user(&self, id: ObjectId) -> Result<Option<User>> {
        self.timed("get_user", self.inner.get_user(id)).await
    }

    async fn get_user_by_username(&self, username: &str) -> Result<Option<User>> {
        self.timed(
            "get_user_by_username",
            self.inner.get_user_by_username(username),
        )
        .await
    }

    async fn get_user_by_email(&self, email: &str) -> Result<Option<User>> {
        self.timed("get_user_by_email", self.inner.get_user_by_email(email))
            .await
    }

    async fn update_user(&self, user: &User) -> Result<()> {
        self.timed("update_user", self.inner.update_user(user))
            .await
    }

    async fn replace_user(&self, expected: &User, user: &User) -> Result<bool> {
        self.timed("replace_user", self.inner.replace_user(expected, user))
            .await
    }

    async fn delete_user(&self, id: ObjectId) -> Result<bool> {
        self.timed("delete_user", self.inner.delete_user(id)).await
    }

    async fn find_users(
        &self,
        filter: &ExactFilter,
        limit: u64,
        offset: u64,
    ) -> Result<Page<User>> {
        self.timed("find_users", self.inner.find_users(filter, limit, offset))
            .await
    }

    async fn insert_group(&self, group: &UserGroup) -> Result<()> {
        self.timed("insert_group", self.inner.insert_group(group))
            .await
    }

    async fn get_group(&self, id: ObjectId) -> Result<Option<UserGroup>> {
        self.timed("get_group", self.inner.get_group(id)).await
    }

    async fn get_group_by_name(&self, name: &str) -> Result<Option<UserGroup>> {
        self.timed("get_group_by_name", self.inner.get_group_by_name(name))
            .await
    }

    async fn delete_group(&self, id: ObjectId) -> Result<bool> {
        self.timed("delete_group", self.inner.delete_group(id))
            .await
    }

    async fn find_groups(
        &self,
        filter: &ExactFilter,
        limit: u64,
        offset: u64,
    ) -> Result<Page<UserGroup>> {
        self.timed("find_groups", self.inner.find_groups(filter, limit, offset))
            .await
    }

    async fn put_token(&self, token: &TokenRecord) -> Result<()> {
        self.timed("put_token", self.inner.put_token(token)).await
    }

    async fn get_token(&self, id: &str) -> Result<Option<TokenRecord>> {
        self.timed("get_token", self.inner.get_token(id)).await
    }

    async fn consume_token(&self, id: &str, now: Timestamp) -> Result<Option<TokenRecord>> {
        self.timed("consume_token", self.inner.consume_token(id, now))
            .await
    }

    async fn insert_telemetry(&self, events: &[TelemetryEvent]) -> Result<()> {
        self.timed("insert_telemetry", self.inner.insert_telemetry(events))
            .await
    }

    async fn find_telemetry(&self, query: &TelemetryQuery) -> Result<Page<TelemetryEvent>> {
        self.timed("find_telemetry", self.inner.find_telemetry(query))
            .await
    }

    async fn scan_telemetry(
        &self,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
        filter: &ExactFilter,
    ) -> Result<Vec<TelemetryEvent>> {
        self.timed(
            "scan_telemetry",
            self.inner.scan_telemetry(since, until, filter),
        )
        .await
    }

    async fn trim_telemetry(&self, before: Timestamp) -> Result<u64> {
        self.timed("trim_telemetry", self.inner.trim_telemetry(before))
            .await
    }

    async fn kv_get(&self, namespace: &str, key: &str) -> Result<Option<String>> {
        self.timed("kv_get", self.inner.kv_get(namespace, key))
            .await
    }

    async fn kv_set(&self, namespace: &str, key: &str, value: &str) -> Result<()> {
        self.timed("kv_set", self.inner.kv_set(namespace, key, value))
            .await
    }

    async fn kv_delete(&self, namespace: &str, key: &str) -> Result<bool> {
        self.timed("kv_delete", self.inner.kv_delete(namespace, key))
            .await
    }

    async fn queue_push(&self, name: &str, value: &str) -> Result<()> {
        self.timed("queue_push", self.inner.queue_push(name, value))
            .await
    }

    async fn queue_pop(&self, name: &str) -> Result<Option<String>> {
        self.timed("queue_pop", self.inner.queue_pop(name)).await
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<bool> {
        self.timed("acquire_lease", self.inner.acquire_lease(name, holder, ttl))
            .await
    }

    fn is_shared(&self) -> bool {
        self.inner.is_shared()
    }

    async fn put_subscription(&self, record: &SubscriptionRecord) -> Result<()> {
        self.timed("put_subscription", self.inner.put_subscription(record))
            .await
    }

    async fn get_subscription(&self, id: u64) -> Result<Option<SubscriptionRecord>> {
        self.timed("get_subscription", self.inner.get_subscription(id))
            .await
    }

    async fn delete_subscription(&self, id: u64) -> Result<bool> {
        self.timed("delete_subscription", self.inner.delete_subscription(id))
            .await
    }

    async fn list_subscriptions(&self) -> Result<Vec<SubscriptionRecord>> {
        self.timed("list_subscriptions", self.inner.list_subscriptions())
            .await
    }

    async fn advance_subscription(
        &self,
        id: u64,
        from: u64,
        to: u64,
        now: Timestamp,
    ) -> Result<bool> {
        self.timed(
            "advance_subscription",
            self.inner.advance_subscription(id, from, to, now),
        )
        .await
    }

    async fn delete_idle_subscriptions(&self, before: Timestamp) -> Result<u64> {
        self.timed(
            "delete_idle_subscriptions",
            self.inner.delete_idle_subscriptions(before),
        )
        .await
    }

    async fn wait_events(&self, after: u64, timeout: std::time::Duration) -> Result<u64> {
        self.inner.wait_events(after, timeout).await
    }

    async fn export_records(
        &self,
        section: Section,
        after: Option<&ExportCursor>,
        limit: usize,
    ) -> Result<(Vec<Record>, Option<ExportCursor>)> {
        self.timed(
            "export_records",
            self.inner.export_records(section, after, limit),
        )
        .await
    }

    async fn import_records(&self, records: &[Record]) -> Result<ImportStats> {
        self.timed("import_records", self.inner.import_records(records))
            .await
    }

    async fn count_records(&self, section: Section) -> Result<u64> {
        self.timed("count_records", self.inner.count_records(section))
            .await
    }

    async fn flush(&self) -> Result<()> {
        self.timed("flush", self.inner.flush()).await
    }
}
