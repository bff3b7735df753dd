//! `verify()` and `rebuild_indexes()`: the index checker and its repair.

use std::collections::BTreeMap;

use kernelci_core::node::Node;
use kernelci_core::telemetry::TelemetryEvent;

use crate::engine::{count_key, irregular_key, lossy_key, Engine};
use crate::error::StoreError;
use crate::index::{entries, entry_key, INDEXES};
use crate::keys::{self, key, prefix_end, read_u64};
use crate::kv::Kv;

/// What [`crate::IndexedStore::verify`] found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VerifyReport {
    /// Documents read.
    pub nodes: u64,
    /// Index entries checked.
    pub entries: u64,
    /// Every disagreement found (empty when the store is consistent).
    pub problems: Vec<String>,
}

impl VerifyReport {
    /// True when no problem was found.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Reports at most this many problems (the count of the rest is summarised).
const MAX_PROBLEMS: usize = 100;

impl<K: Kv> Engine<K> {
    fn all_nodes(&self, report: &mut VerifyReport) -> Result<Vec<Node>, StoreError> {
        let mut nodes = Vec::new();
        for item in self
            .kv
            .scan(&[keys::NODE], &prefix_end(&[keys::NODE]), false)
        {
            let (k, v) = item?;
            match self.decode_doc(k.as_ref(), v.as_ref()) {
                Ok((n, _)) => nodes.push(n),
                Err(e) => report.problems.push(e.to_string()),
            }
        }
        Ok(nodes)
    }

    pub(crate) fn verify(&self) -> Result<VerifyReport, StoreError> {
        let mut report = VerifyReport::default();
        let nodes = self.all_nodes(&mut report)?;
        report.nodes = nodes.len() as u64;
        let counted = self.count_all()?;
        if counted != report.nodes {
            report.problems.push(format!(
                "node counter says {counted}, {} documents found",
                report.nodes
            ));
        }
        for (index, paths) in INDEXES.iter().zip(&self.paths) {
            let mut expected: Vec<Vec<u8>> = Vec::new();
            let mut counts: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
            let mut irregular = 0u64;
            let mut lossy = 0u64;
            for n in &nodes {
                let (tuples, irr) = entries(index, paths, n);
                irregular += u64::from(irr.irregular);
                lossy += u64::from(irr.lossy);
                for t in tuples {
                    expected.push(entry_key(index, &t, &n.id.bytes()));
                    *counts.entry(count_key(index, &t)).or_insert(0) += 1;
                }
            }
            expected.sort_unstable();
            let lo = key(keys::INDEX, &[&[index.id]]);
            let mut actual = Vec::new();
            for item in self.kv.scan(&lo, &prefix_end(&lo), false) {
                actual.push(item?.0.as_ref().to_vec());
            }
            report.entries += actual.len() as u64;
            if actual != expected {
                let (missing, extra) = differences(&expected, &actual);
                report.problems.push(format!(
                    "index {} ({}): {missing} entries missing, {extra} entries without a matching document",
                    index.id,
                    index.fields.join("+")
                ));
            }
            let clo = key(keys::COUNT, &[&[index.id]]);
            let chi = lossy_key(index);
            let mut actual_counts = BTreeMap::new();
            for item in self.kv.scan(&clo, &chi, false) {
                let (k, v) = item?;
                let n = read_u64(v.as_ref())
                    .ok_or_else(|| StoreError::corrupt("counter", k.as_ref(), "short value"))?;
                actual_counts.insert(k.as_ref().to_vec(), n);
            }
            if actual_counts != counts {
                report.problems.push(format!(
                    "index {} ({}): counters disagree with the entries",
                    index.id,
                    index.fields.join("+")
                ));
            }
            let stored_lossy = self.read_counter(&chi)?;
            if stored_lossy != lossy {
                report.problems.push(format!(
                    "index {}: lossy counter says {stored_lossy}, {lossy} found",
                    index.id
                ));
            }
            let stored_irregular = self.read_counter(&irregular_key(index))?;
            if stored_irregular != irregular {
                report.problems.push(format!(
                    "index {} ({}): irregular counter says {stored_irregular}, {irregular} found",
                    index.id,
                    index.fields.join("+")
                ));
            }
        }
        self.verify_telemetry(&mut report)?;
        if report.problems.len() > MAX_PROBLEMS {
            let more = report.problems.len() - MAX_PROBLEMS;
            report.problems.truncate(MAX_PROBLEMS);
            report.problems.push(format!("... and {more} more"));
        }
        Ok(report)
    }

    /// Every telemetry document decodes under its own id and has exactly its one
    /// time-index entry, and every time-index entry has its document.
    fn verify_telemetry(&self, report: &mut VerifyReport) -> Result<(), StoreError> {
        let mut expected = Vec::new();
        let lo = [keys::TELEMETRY];
        for item in self.kv.scan(&lo, &prefix_end(&lo), false) {
            let (k, v) = item?;
            match serde_json::from_slice::<TelemetryEvent>(v.as_ref()) {
                Ok(e) if Self::telemetry_key(e.id) == k.as_ref() => {
                    expected.push(Self::telemetry_ts_key(e.ts, e.id));
                }
                Ok(e) => report
                    .problems
                    .push(format!("telemetry event {} stored under another key", e.id)),
                Err(e) => report
                    .problems
                    .push(StoreError::corrupt("telemetry", k.as_ref(), e).to_string()),
            }
        }
        expected.sort_unstable();
        let lo = [keys::TELEMETRY_TS];
        let mut actual = Vec::new();
        for item in self.kv.scan(&lo, &prefix_end(&lo), false) {
            actual.push(item?.0.as_ref().to_vec());
        }
        if actual != expected {
            let (missing, extra) = differences(&expected, &actual);
            report.problems.push(format!(
                "telemetry time index: {missing} entries missing, {extra} entries without a matching event"
            ));
        }
        Ok(())
    }

    /// Deletes every index entry and counter, then writes them again from the
    /// documents (in batches of about 10,000 nodes). Readers may see incomplete
    /// indexes while it runs; writers wait.
    pub(crate) fn rebuild_indexes(&self) -> Result<(), StoreError> {
        let _guard = self.lock()?;
        self.kv.clear_indexes()?;
        let mut report = VerifyReport::default();
        let nodes = self.all_nodes(&mut report)?;
        for chunk in nodes.chunks(10_000) {
            let mut writes = Vec::new();
            let mut deltas = crate::engine::Deltas::default();
            for n in chunk {
                self.index_changes(None, Some(n), &mut writes, &mut deltas);
            }
            self.counter_writes(deltas, &mut writes)?;
            self.kv.apply(writes)?;
        }
        let count_key = key(keys::META, &[b"nodes"]);
        self.kv.apply(vec![(
            count_key,
            Some((nodes.len() as u64).to_be_bytes().to_vec()),
        )])?;
        self.kv.indexes_rebuilt();
        Ok(())
    }
}

/// How many sorted `expected` keys are missing from sorted `actual`, and how many of
/// `actual` are not expected.
fn differences(expected: &[Vec<u8>], actual: &[Vec<u8>]) -> (usize, usize) {
    let absent = |from: &[Vec<u8>], of: &[Vec<u8>]| {
        from.iter().filter(|k| of.binary_search(k).is_err()).count()
    };
    (absent(expected, actual), absent(actual, expected))
}

#[cfg(test)]
mod tests {
    use kernelci_core::id::ObjectId;
    use kernelci_core::telemetry::TelemetryEvent;
    use kernelci_core::time::Timestamp;

    use crate::engine::Engine;
    use crate::kv::Kv;
    use crate::MemoryStore;

    #[test]
    fn telemetry_time_index_damage_is_reported() {
        let store = MemoryStore::new();
        let body = serde_json::json!({"kind": "job_result", "runtime": "lab"});
        let events: Vec<TelemetryEvent> = (0..2)
            .map(|_| TelemetryEvent::from_json(&body, ObjectId::new(), Timestamp::now()).unwrap())
            .collect();
        store.engine.insert_telemetry(&events).unwrap();
        assert!(store.verify().unwrap().is_clean());
        let (e0, e1) = (&events[0], &events[1]);
        store
            .engine
            .kv
            .apply(vec![
                (
                    Engine::<crate::Tiered<crate::MemKv>>::telemetry_ts_key(e0.ts, e0.id),
                    None,
                ),
                (
                    Engine::<crate::Tiered<crate::MemKv>>::telemetry_ts_key(
                        e1.ts.plus_seconds(1),
                        e1.id,
                    ),
                    Some(Vec::new()),
                ),
            ])
            .unwrap();
        let report = store.verify().unwrap();
        assert_eq!(
            report.problems,
            vec!["telemetry time index: 1 entries missing, 1 entries without a matching event"]
        );
    }
}
