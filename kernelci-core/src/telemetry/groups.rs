//! Result counts by group, in order of first appearance (shared by the stats and
//! anomaly reports).

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::TelemetryEvent;

/// Result counts of a group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Counts {
    pub(super) total: u64,
    pub(super) pass: u64,
    pub(super) fail: u64,
    pub(super) incomplete: u64,
    pub(super) skip: u64,
    pub(super) infra_error: u64,
}

impl Counts {
    /// Counts one more event.
    pub(super) fn add(&mut self, e: &TelemetryEvent) {
        self.total += 1;
        match e.result.as_deref() {
            Some("pass") => self.pass += 1,
            Some("fail") => self.fail += 1,
            Some("incomplete") => self.incomplete += 1,
            Some("skip") => self.skip += 1,
            _ => {}
        }
        self.infra_error += u64::from(e.is_infra_error);
    }

    /// Writes the counts into a report row.
    pub(super) fn put(&self, row: &mut Map<String, Value>) {
        for (k, v) in [
            ("total", self.total),
            ("pass", self.pass),
            ("fail", self.fail),
            ("incomplete", self.incomplete),
            ("skip", self.skip),
            ("infra_error", self.infra_error),
        ] {
            row.insert(k.into(), v.into());
        }
    }
}

/// Groups in order of first appearance.
pub(super) struct Groups<K, G> {
    index: HashMap<K, usize>,
    /// The groups, in order of first appearance.
    pub(super) items: Vec<(K, G)>,
}

impl<K: std::hash::Hash + Eq + Clone, G: Default> Groups<K, G> {
    /// No group yet.
    pub(super) fn new() -> Self {
        Self {
            index: HashMap::new(),
            items: Vec::new(),
        }
    }

    /// The group of `key`, created empty when new.
    pub(super) fn entry(&mut self, key: K) -> &mut G {
        let i = *self.index.entry(key.clone()).or_insert_with(|| {
            self.items.push((key, G::default()));
            self.items.len() - 1
        });
        &mut self.items[i].1
    }
}
