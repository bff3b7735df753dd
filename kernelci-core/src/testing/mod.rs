//! A naive, scan-only [`Store`] (feature `test-util`).
//!
//! Everything lives in vectors and maps behind one mutex and every query is a full
//! scan with [`crate::query::matches()`]: obviously correct, deliberately slow. It is
//! the reference model for this crate's tests and for the model-based tests of the
//! real backends (which must return exactly what this one returns). Volatile: nothing
//! survives the process.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

pub mod conformance;

use async_trait::async_trait;

use crate::auth::{User, UserGroup};
use crate::error::{Error, Result};
use crate::events::{Event, EventQuery, NewEvent};
use crate::exact::ExactFilter;
use crate::id::ObjectId;
use crate::node::{Node, State};
use crate::query::{matches, sort_nodes, Query};
use crate::state::{set_processed, ChildrenSummary};
use crate::store::{
    node_not_found, queue_gap, ExportCursor, FieldSet, ImportStats, Page, Record, Section, Store,
    SubscriberState, SubscriptionRecord, TokenRecord, Version, Versioned,
};
use crate::telemetry::{in_range, TelemetryEvent, TelemetryQuery};
use crate::time::Timestamp;

#[derive(Default, Clone)]
struct Inner {
    nodes: BTreeMap<ObjectId, (Node, Version)>,
    events: Vec<Event>,
    last_sequence: u64,
    subscribers: BTreeMap<String, SubscriberState>,
    counters: BTreeMap<String, u64>,
    users: BTreeMap<ObjectId, User>,
    groups: BTreeMap<ObjectId, UserGroup>,
    tokens: BTreeMap<String, TokenRecord>,
    kv: BTreeMap<(String, String), String>,
    telemetry: BTreeMap<ObjectId, TelemetryEvent>,
    queues: BTreeMap<String, std::collections::VecDeque<String>>,
    subscriptions: BTreeMap<u64, SubscriptionRecord>,
}

/// The naive store (see the module docs).
#[derive(Default)]
pub struct NaiveStore {
    inner: Mutex<Inner>,
    shared: bool,
}

impl NaiveStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store that says it is shared ([`Store::is_shared`]): brokers over it
    /// register their subscriptions in it, as servers sharing a database do (it has
    /// no event notifications: its users re-read the log).
    pub fn shared() -> Self {
        Self {
            shared: true,
            ..Self::default()
        }
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner>> {
        self.inner
            .lock()
            .map_err(|_| Error::Storage("naive store mutex poisoned".into()))
    }
}

fn page<T: Clone>(items: Vec<T>, limit: Option<u64>, offset: u64) -> Vec<T> {
    let take = limit.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
    items
        .into_iter()
        .skip(usize::try_from(offset).unwrap_or(usize::MAX))
        .take(take)
        .collect()
}

#[async_trait]
impl Store for NaiveStore {
    async fn insert_node(&self, node: &Node) -> Result<()> {
        self.insert_nodes(std::slice::from_ref(node)).await
    }

    async fn insert_nodes(&self, nodes: &[Node]) -> Result<()> {
        let mut g = self.lock()?;
        let mut seen = std::collections::HashSet::new();
        for n in nodes {
            if g.nodes.contains_key(&n.id) || !seen.insert(n.id) {
                return Err(Error::Conflict(format!(
                    "Node already exists with id: {}",
                    n.id
                )));
            }
        }
        for n in nodes {
            g.nodes.insert(n.id, (n.clone(), Version(1)));
        }
        Ok(())
    }

    async fn get_node(&self, id: ObjectId) -> Result<Option<Versioned<Node>>> {
        Ok(self.lock()?.nodes.get(&id).map(|(n, v)| Versioned {
            value: n.clone(),
            version: *v,
        }))
    }

    async fn replace_node(&self, node: &Node, expected: Version) -> Result<Version> {
        let mut g = self.lock()?;
        let Some((stored, version)) = g.nodes.get_mut(&node.id) else {
            return Err(node_not_found(node.id));
        };
        if *version != expected {
            return Err(Error::Conflict(format!(
                "Node {} was modified concurrently",
                node.id
            )));
        }
        *stored = node.clone();
        version.0 += 1;
        Ok(*version)
    }

    async fn write_nodes_with_event(
        &self,
        nodes: &[(&Node, Option<Version>)],
        event: NewEvent,
    ) -> Result<(Vec<Version>, Result<Event>)> {
        let mut g = self.lock()?;
        // Every check first: all or nothing.
        let mut seen = std::collections::HashSet::new();
        let mut versions = Vec::with_capacity(nodes.len());
        for (n, expected) in nodes {
            if !seen.insert(n.id) {
                return Err(Error::Conflict(format!(
                    "Node {} is written twice in one submission",
                    n.id
                )));
            }
            match (expected, g.nodes.get(&n.id)) {
                (None, None) => versions.push(Version(1)),
                (None, Some(_)) => {
                    return Err(Error::Conflict(format!(
                        "Node already exists with id: {}",
                        n.id
                    )))
                }
                (Some(_), None) => return Err(node_not_found(n.id)),
                (Some(e), Some((_, v))) if e != v => {
                    return Err(Error::Conflict(format!(
                        "Node {} was modified concurrently",
                        n.id
                    )))
                }
                (Some(_), Some((_, v))) => versions.push(Version(v.0 + 1)),
            }
        }
        for ((n, _), v) in nodes.iter().zip(&versions) {
            g.nodes.insert(n.id, ((*n).clone(), *v));
        }
        g.last_sequence += 1;
        let e = event.with_sequence(g.last_sequence);
        g.events.push(e.clone());
        Ok((versions, Ok(e)))
    }

    async fn find_nodes(&self, query: &Query) -> Result<Vec<Node>> {
        let g = self.lock()?;
        let mut found: Vec<Node> = g
            .nodes
            .values()
            .filter(|(n, _)| matches(n, query))
            .map(|(n, _)| n.clone())
            .collect();
        sort_nodes(&mut found, query.sort.as_ref());
        Ok(page(found, query.limit, query.offset))
    }

    async fn count_nodes(&self, query: &Query) -> Result<u64> {
        let g = self.lock()?;
        Ok(g.nodes.values().filter(|(n, _)| matches(n, query)).count() as u64)
    }

    async fn count_all_nodes(&self) -> Result<u64> {
        Ok(self.lock()?.nodes.len() as u64)
    }

    async fn set_field_many(&self, ids: &[ObjectId], set: FieldSet, now: Timestamp) -> Result<u64> {
        let mut g = self.lock()?;
        let mut changed = 0;
        for id in ids {
            if let Some((n, v)) = g.nodes.get_mut(id) {
                match set {
                    FieldSet::ProcessedByKcidbBridge(b) => set_processed(n, b, now),
                }
                v.0 += 1;
                changed += 1;
            }
        }
        Ok(changed)
    }

    async fn children(&self, parent: ObjectId) -> Result<Vec<Node>> {
        let g = self.lock()?;
        Ok(g.nodes
            .values()
            .filter(|(n, _)| n.parent == Some(parent))
            .map(|(n, _)| n.clone())
            .collect())
    }

    async fn descendants_summary(&self, id: ObjectId) -> Result<ChildrenSummary> {
        let g = self.lock()?;
        let mut summary = ChildrenSummary::default();
        let mut frontier = vec![id];
        let mut seen = std::collections::HashSet::from([id]);
        while let Some(parent) = frontier.pop() {
            for (n, _) in g.nodes.values().filter(|(n, _)| n.parent == Some(parent)) {
                if !seen.insert(n.id) {
                    continue;
                }
                summary.total += 1;
                summary.done += u64::from(n.state == State::Done);
                frontier.push(n.id);
            }
        }
        Ok(summary)
    }

    async fn delete_nodes_created_before(
        &self,
        before: Timestamp,
        keep_kinds: &[&str],
        max: usize,
    ) -> Result<u64> {
        let mut g = self.lock()?;
        let mut victims: Vec<(Timestamp, ObjectId)> = g
            .nodes
            .values()
            .filter(|(n, _)| n.created < before && !keep_kinds.contains(&n.kind.as_str()))
            .map(|(n, _)| (n.created, n.id))
            .collect();
        victims.sort();
        victims.truncate(max);
        for (_, id) in &victims {
            g.nodes.remove(id);
        }
        Ok(victims.len() as u64)
    }

    async fn append_event(&self, event: NewEvent) -> Result<Event> {
        let mut g = self.lock()?;
        g.last_sequence += 1;
        let e = event.with_sequence(g.last_sequence);
        g.events.push(e.clone());
        Ok(e)
    }

    async fn events_after(
        &self,
        after: u64,
        channel: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Event>> {
        let g = self.lock()?;
        Ok(g.events
            .iter()
            .filter(|e| e.sequence_id > after && channel.is_none_or(|c| c == e.channel))
            .take(limit)
            .cloned()
            .collect())
    }

    async fn find_events(&self, query: &EventQuery) -> Result<Vec<Event>> {
        let g = self.lock()?;
        let found: Vec<Event> = g
            .events
            .iter()
            .filter(|e| query.matches(e))
            .cloned()
            .collect();
        Ok(page(found, query.limit, query.offset))
    }

    async fn last_event_sequence(&self) -> Result<u64> {
        Ok(self.lock()?.last_sequence)
    }

    async fn trim_events(&self, before: Timestamp) -> Result<u64> {
        let mut g = self.lock()?;
        let n = g.events.len();
        g.events.retain(|e| e.timestamp >= before);
        Ok((n - g.events.len()) as u64)
    }

    async fn get_subscriber(&self, id: &str) -> Result<Option<SubscriberState>> {
        Ok(self.lock()?.subscribers.get(id).cloned())
    }

    async fn put_subscriber(&self, state: &SubscriberState) -> Result<()> {
        self.lock()?
            .subscribers
            .insert(state.subscriber_id.clone(), state.clone());
        Ok(())
    }

    async fn advance_subscriber(&self, id: &str, sequence_id: u64, now: Timestamp) -> Result<()> {
        let mut g = self.lock()?;
        let s = g
            .subscribers
            .get_mut(id)
            .ok_or_else(|| Error::NotFound(format!("Subscriber not found: {id}")))?;
        s.last_event_id = s.last_event_id.max(sequence_id);
        s.last_poll = Some(now);
        Ok(())
    }

    async fn delete_subscriber(&self, id: &str) -> Result<bool> {
        Ok(self.lock()?.subscribers.remove(id).is_some())
    }

    async fn list_subscribers(&self) -> Result<Vec<SubscriberState>> {
        Ok(self.lock()?.subscribers.values().cloned().collect())
    }

    async fn next_counter(&self, name: &str) -> Result<u64> {
        let mut g = self.lock()?;
        let c = g.counters.entry(name.to_owned()).or_insert(0);
        *c += 1;
        Ok(*c)
    }

    async fn insert_user(&self, user: &User) -> Result<()> {
        let mut g = self.lock()?;
        if g.users
            .values()
            .any(|u| u.id == user.id || u.username == user.username || u.email == user.email)
        {
            return Err(Error::Conflict(
                "User with this id, username or e-mail already exists".into(),
            ));
        }
        g.users.insert(user.id, user.clone());
        Ok(())
    }

    async fn get_user(&self, id: ObjectId) -> Result<Option<User>> {
        Ok(self.lock()?.users.get(&id).cloned())
    }

    async fn get_user_by_username(&self, username: &str) -> Result<Option<User>> {
        Ok(self
            .lock()?
            .users
            .values()
            .find(|u| u.username == username)
            .cloned())
    }

    async fn get_user_by_email(&self, email: &str) -> Result<Option<User>> {
        Ok(self
            .lock()?
            .users
            .values()
            .find(|u| u.email == email)
            .cloned())
    }

    async fn replace_user(&self, expected: &User, user: &User) -> Result<bool> {
        let mut g = self.lock()?;
        match g.users.get(&user.id) {
            None => {
                return Err(Error::NotFound(format!(
                    "User not found with id: {}",
                    user.id
                )))
            }
            Some(stored) if stored != expected => return Ok(false),
            Some(_) => {}
        }
        if g.users
            .values()
            .any(|u| u.id != user.id && (u.username == user.username || u.email == user.email))
        {
            return Err(Error::Conflict("Username or e-mail already taken".into()));
        }
        g.users.insert(user.id, user.clone());
        Ok(true)
    }

    async fn update_user(&self, user: &User) -> Result<()> {
        let mut g = self.lock()?;
        if !g.users.contains_key(&user.id) {
            return Err(Error::NotFound(format!(
                "User not found with id: {}",
                user.id
            )));
        }
        if g.users
            .values()
            .any(|u| u.id != user.id && (u.username == user.username || u.email == user.email))
        {
            return Err(Error::Conflict("Username or e-mail already taken".into()));
        }
        g.users.insert(user.id, user.clone());
        Ok(())
    }

    async fn delete_user(&self, id: ObjectId) -> Result<bool> {
        Ok(self.lock()?.users.remove(&id).is_some())
    }

    async fn find_users(
        &self,
        filter: &ExactFilter,
        limit: u64,
        offset: u64,
    ) -> Result<Page<User>> {
        let g = self.lock()?;
        let found: Vec<User> = g
            .users
            .values()
            .filter(|u| filter.matches(&u.to_public_json()))
            .cloned()
            .collect();
        let total = found.len() as u64;
        Ok(Page {
            items: page(found, Some(limit), offset),
            total,
        })
    }

    async fn insert_group(&self, group: &UserGroup) -> Result<()> {
        let mut g = self.lock()?;
        if g.groups
            .values()
            .any(|x| x.id == group.id || x.name == group.name)
        {
            return Err(Error::Conflict(format!(
                "Group already exists: {}",
                group.name
            )));
        }
        g.groups.insert(group.id, group.clone());
        Ok(())
    }

    async fn get_group(&self, id: ObjectId) -> Result<Option<UserGroup>> {
        Ok(self.lock()?.groups.get(&id).cloned())
    }

    async fn get_group_by_name(&self, name: &str) -> Result<Option<UserGroup>> {
        Ok(self
            .lock()?
            .groups
            .values()
            .find(|x| x.name == name)
            .cloned())
    }

    async fn delete_group(&self, id: ObjectId) -> Result<bool> {
        let mut g = self.lock()?;
        if g.users
            .values()
            .any(|u| u.groups.iter().any(|x| x.id == id))
        {
            return Err(Error::Conflict(
                "Group is in use by at least one user".into(),
            ));
        }
        Ok(g.groups.remove(&id).is_some())
    }

    async fn find_groups(
        &self,
        filter: &ExactFilter,
        limit: u64,
        offset: u64,
    ) -> Result<Page<UserGroup>> {
        let g = self.lock()?;
        let found: Vec<UserGroup> = g
            .groups
            .values()
            .filter(|x| filter.matches(&serde_json::to_value(x).unwrap_or_default()))
            .cloned()
            .collect();
        let total = found.len() as u64;
        Ok(Page {
            items: page(found, Some(limit), offset),
            total,
        })
    }

    async fn put_token(&self, token: &TokenRecord) -> Result<()> {
        self.lock()?.tokens.insert(token.id.clone(), token.clone());
        Ok(())
    }

    async fn get_token(&self, id: &str) -> Result<Option<TokenRecord>> {
        Ok(self.lock()?.tokens.get(id).cloned())
    }

    async fn consume_token(&self, id: &str, now: Timestamp) -> Result<Option<TokenRecord>> {
        let mut g = self.lock()?;
        match g.tokens.get_mut(id) {
            Some(t) if !t.used && t.expires > now => {
                t.used = true;
                Ok(Some(t.clone()))
            }
            _ => Ok(None),
        }
    }

    async fn insert_telemetry(&self, events: &[TelemetryEvent]) -> Result<()> {
        let mut g = self.lock()?;
        let mut seen = std::collections::HashSet::new();
        for e in events {
            if g.telemetry.contains_key(&e.id) || !seen.insert(e.id) {
                return Err(Error::Conflict(format!(
                    "Telemetry event already exists with id: {}",
                    e.id
                )));
            }
        }
        for e in events {
            g.telemetry.insert(e.id, e.clone());
        }
        Ok(())
    }

    async fn find_telemetry(&self, query: &TelemetryQuery) -> Result<Page<TelemetryEvent>> {
        let g = self.lock()?;
        let found: Vec<TelemetryEvent> = g
            .telemetry
            .values()
            .filter(|e| query.matches(e))
            .cloned()
            .collect();
        let total = found.len() as u64;
        Ok(Page {
            items: page(found, Some(query.limit), query.offset),
            total,
        })
    }

    async fn scan_telemetry(
        &self,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
        filter: &ExactFilter,
    ) -> Result<Vec<TelemetryEvent>> {
        let g = self.lock()?;
        Ok(g.telemetry
            .values()
            .filter(|e| in_range(e.ts, since, until) && filter.matches(&e.document()))
            .cloned()
            .collect())
    }

    async fn trim_telemetry(&self, before: Timestamp) -> Result<u64> {
        let mut g = self.lock()?;
        let n = g.telemetry.len();
        g.telemetry.retain(|_, e| e.ts >= before);
        Ok((n - g.telemetry.len()) as u64)
    }

    async fn kv_get(&self, namespace: &str, key: &str) -> Result<Option<String>> {
        Ok(self
            .lock()?
            .kv
            .get(&(namespace.to_owned(), key.to_owned()))
            .cloned())
    }

    async fn kv_set(&self, namespace: &str, key: &str, value: &str) -> Result<()> {
        self.lock()?
            .kv
            .insert((namespace.to_owned(), key.to_owned()), value.to_owned());
        Ok(())
    }

    async fn kv_delete(&self, namespace: &str, key: &str) -> Result<bool> {
        Ok(self
            .lock()?
            .kv
            .remove(&(namespace.to_owned(), key.to_owned()))
            .is_some())
    }

    async fn queue_push(&self, name: &str, value: &str) -> Result<()> {
        self.lock()?
            .queues
            .entry(name.to_owned())
            .or_default()
            .push_back(value.to_owned());
        Ok(())
    }

    async fn queue_pop(&self, name: &str) -> Result<Option<String>> {
        let mut g = self.lock()?;
        let Some(q) = g.queues.get_mut(name) else {
            return Ok(None);
        };
        let v = q.pop_front();
        if q.is_empty() {
            g.queues.remove(name);
        }
        Ok(v)
    }

    async fn export_records(
        &self,
        section: Section,
        after: Option<&ExportCursor>,
        limit: usize,
    ) -> Result<(Vec<Record>, Option<ExportCursor>)> {
        // The model's cursor is the number of records returned so far (8 bytes BE).
        let skip = match after {
            None => 0,
            Some(c) => {
                let b: [u8; 8] = c
                    .as_bytes()
                    .try_into()
                    .map_err(|_| Error::Invalid("bad export cursor".into()))?;
                usize::try_from(u64::from_be_bytes(b)).unwrap_or(usize::MAX)
            }
        };
        let g = self.lock()?;
        let all: Vec<Record> = match section {
            Section::Nodes => g
                .nodes
                .values()
                .map(|(n, v)| Record::Node {
                    node: n.clone(),
                    version: *v,
                })
                .collect(),
            Section::Events => g.events.iter().cloned().map(Record::Event).collect(),
            Section::Subscribers => g
                .subscribers
                .values()
                .cloned()
                .map(Record::Subscriber)
                .collect(),
            Section::Users => g.users.values().cloned().map(Record::User).collect(),
            Section::Groups => g.groups.values().cloned().map(Record::Group).collect(),
            Section::Tokens => g.tokens.values().cloned().map(Record::Token).collect(),
            Section::Kv => {
                g.kv.iter()
                    .map(|((ns, k), v)| Record::Kv {
                        namespace: ns.clone(),
                        key: k.clone(),
                        value: v.clone(),
                    })
                    .collect()
            }
            Section::Telemetry => g
                .telemetry
                .values()
                .cloned()
                .map(Record::Telemetry)
                .collect(),
            Section::Queues => g
                .queues
                .iter()
                .flat_map(|(name, q)| {
                    q.iter().enumerate().map(|(i, v)| Record::QueueItem {
                        name: name.clone(),
                        index: i as u64,
                        value: v.clone(),
                    })
                })
                .collect(),
            Section::Counters => std::iter::once(Record::EventSequence(g.last_sequence))
                .chain(g.counters.iter().map(|(name, v)| Record::Counter {
                    name: name.clone(),
                    value: *v,
                }))
                .collect(),
        };
        let page: Vec<Record> = all.into_iter().skip(skip).take(limit.max(1)).collect();
        let next = skip + page.len();
        let more = page.len() == limit.max(1);
        Ok((
            page,
            more.then(|| ExportCursor::from_bytes((next as u64).to_be_bytes().to_vec())),
        ))
    }

    async fn import_records(&self, records: &[Record]) -> Result<ImportStats> {
        let mut g = self.lock()?;
        // All or nothing: work on a copy, keep it only when every record went in.
        let mut w = g.clone();
        let mut stats = ImportStats::default();
        for r in records {
            let fresh = match r {
                Record::Node { node, version } => {
                    let fresh = !w.nodes.contains_key(&node.id);
                    if fresh {
                        w.nodes.insert(node.id, (node.clone(), *version));
                    }
                    fresh
                }
                Record::Event(e) => {
                    match w
                        .events
                        .binary_search_by_key(&e.sequence_id, |x| x.sequence_id)
                    {
                        Ok(_) => false,
                        Err(at) => {
                            w.events.insert(at, e.clone());
                            w.last_sequence = w.last_sequence.max(e.sequence_id);
                            true
                        }
                    }
                }
                Record::Subscriber(s) => {
                    let fresh = !w.subscribers.contains_key(&s.subscriber_id);
                    if fresh {
                        w.subscribers.insert(s.subscriber_id.clone(), s.clone());
                    }
                    fresh
                }
                Record::User(u) => {
                    if w.users.contains_key(&u.id) {
                        false
                    } else if w
                        .users
                        .values()
                        .any(|o| o.username == u.username || o.email == u.email)
                    {
                        return Err(Error::Conflict(
                            "User with this id, username or e-mail already exists".into(),
                        ));
                    } else {
                        w.users.insert(u.id, u.clone());
                        true
                    }
                }
                Record::Group(gr) => {
                    if w.groups.contains_key(&gr.id) {
                        false
                    } else if w.groups.values().any(|o| o.name == gr.name) {
                        return Err(Error::Conflict(format!(
                            "Group already exists: {}",
                            gr.name
                        )));
                    } else {
                        w.groups.insert(gr.id, gr.clone());
                        true
                    }
                }
                Record::Token(t) => {
                    let fresh = !w.tokens.contains_key(&t.id);
                    if fresh {
                        w.tokens.insert(t.id.clone(), t.clone());
                    }
                    fresh
                }
                Record::Kv {
                    namespace,
                    key,
                    value,
                } => {
                    let k = (namespace.clone(), key.clone());
                    let fresh = !w.kv.contains_key(&k);
                    if fresh {
                        w.kv.insert(k, value.clone());
                    }
                    fresh
                }
                Record::Telemetry(e) => {
                    let fresh = !w.telemetry.contains_key(&e.id);
                    if fresh {
                        w.telemetry.insert(e.id, e.clone());
                    }
                    fresh
                }
                Record::QueueItem { name, index, value } => {
                    let q = w.queues.entry(name.clone()).or_default();
                    let len = q.len() as u64;
                    if *index < len {
                        false
                    } else if *index == len {
                        q.push_back(value.clone());
                        true
                    } else {
                        return Err(queue_gap(name, len, *index));
                    }
                }
                Record::Counter { name, value } => {
                    let c = w.counters.entry(name.clone()).or_insert(0);
                    let raised = *value > *c;
                    *c = (*c).max(*value);
                    raised
                }
                Record::EventSequence(n) => {
                    let raised = *n > w.last_sequence;
                    w.last_sequence = w.last_sequence.max(*n);
                    raised
                }
            };
            if fresh {
                stats.imported += 1;
            } else {
                stats.skipped_existing += 1;
            }
        }
        *g = w;
        Ok(stats)
    }

    fn is_shared(&self) -> bool {
        self.shared
    }

    async fn put_subscription(&self, record: &SubscriptionRecord) -> Result<()> {
        self.lock()?.subscriptions.insert(record.id, record.clone());
        Ok(())
    }

    async fn get_subscription(&self, id: u64) -> Result<Option<SubscriptionRecord>> {
        Ok(self.lock()?.subscriptions.get(&id).cloned())
    }

    async fn delete_subscription(&self, id: u64) -> Result<bool> {
        Ok(self.lock()?.subscriptions.remove(&id).is_some())
    }

    async fn list_subscriptions(&self) -> Result<Vec<SubscriptionRecord>> {
        Ok(self.lock()?.subscriptions.values().cloned().collect())
    }

    async fn advance_subscription(
        &self,
        id: u64,
        from: u64,
        to: u64,
        now: Timestamp,
    ) -> Result<bool> {
        let mut g = self.lock()?;
        let rec = g
            .subscriptions
            .get_mut(&id)
            .ok_or_else(|| Error::NotFound(format!("Subscription not found: {id}")))?;
        if rec.position != from {
            return Ok(false);
        }
        rec.position = to;
        rec.last_poll = Some(now);
        Ok(true)
    }

    async fn delete_idle_subscriptions(&self, before: Timestamp) -> Result<u64> {
        let mut g = self.lock()?;
        let n = g.subscriptions.len();
        g.subscriptions
            .retain(|_, r| r.last_poll.is_none_or(|t| t >= before));
        Ok((n - g.subscriptions.len()) as u64)
    }

    async fn flush(&self) -> Result<()> {
        Ok(())
    }
}
