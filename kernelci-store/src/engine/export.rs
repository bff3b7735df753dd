//! Export and import ([`kernelci_core::store::Store::export_records`] and
//! `import_records`) over the key space.
//!
//! A section is one key prefix (see the crate's layout table) walked in key order;
//! the cursor is the last key returned (for the counters section, empty when only
//! the sequence mark was). An import computes every write of its records under the
//! writer lock, through the same helpers as the ordinary writes (node documents with
//! [`Engine::index_changes`] and the node count, users with their unique keys,
//! telemetry with its time index), and applies them in one batch.

use std::collections::{HashMap, HashSet};

use kernelci_core::store::{queue_gap, ImportStats, Record, Section};

use super::*;

/// The key prefix holding a section.
fn prefix(section: Section) -> u8 {
    match section {
        Section::Nodes => keys::NODE,
        Section::Events => keys::EVENT,
        Section::Subscribers => keys::SUBSCRIBER,
        Section::Users => keys::USER,
        Section::Groups => keys::GROUP,
        Section::Tokens => keys::TOKEN,
        Section::Kv => keys::KV,
        Section::Telemetry => keys::TELEMETRY,
        Section::Queues => keys::QUEUE,
        Section::Counters => keys::COUNTER,
    }
}

fn utf8(what: &'static str, k: &[u8], b: &[u8]) -> Result<String, StoreError> {
    String::from_utf8(b.to_vec()).map_err(|e| StoreError::corrupt(what, k, e))
}

/// A queue key's name and position.
fn queue_parts(k: &[u8]) -> Result<(&[u8], u64), StoreError> {
    let bad = || StoreError::corrupt("queue key", k, "malformed");
    let len: [u8; 4] = k.get(1..5).ok_or_else(bad)?.try_into().map_err(|_| bad())?;
    let end = 5 + u32::from_be_bytes(len) as usize;
    let name = k.get(5..end).ok_or_else(bad)?;
    let pos = read_u64(k.get(end..).ok_or_else(bad)?).ok_or_else(bad)?;
    Ok((name, pos))
}

/// The first and last positions of the queue under `prefix`, if it has items.
fn queue_bounds<K: Kv>(kv: &K, prefix: &[u8]) -> Result<Option<(u64, u64)>, StoreError> {
    let end = prefix_end(prefix);
    let bound = |rev: bool| -> Result<Option<u64>, StoreError> {
        match kv.scan(prefix, &end, rev).next() {
            None => Ok(None),
            Some(item) => {
                let (k, _) = item?;
                Ok(Some(queue_parts(k.as_ref())?.1))
            }
        }
    };
    let first = bound(false)?;
    let last = bound(true)?;
    Ok(first.zip(last))
}

impl<K: Kv> Engine<K> {
    /// Up to `limit` records of `section` after the key `after` (see the module docs),
    /// and the cursor to continue from.
    pub(crate) fn export_records(
        &self,
        section: Section,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Res<(Vec<Record>, Option<Vec<u8>>)> {
        let limit = limit.max(1);
        let p = [prefix(section)];
        let hi = prefix_end(&p);
        let lo = match after {
            None => p.to_vec(),
            Some([]) => p.to_vec(),
            Some(c) => {
                let mut lo = c.to_vec();
                lo.push(0);
                // A cursor is a client's text: one from outside the section must not
                // walk another section's keys (below it: from the start; above it:
                // nothing, the scan's range is empty).
                lo.max(p.to_vec())
            }
        };
        let mut out = Vec::new();
        let mut last_key: Vec<u8> = Vec::new();
        if section == Section::Counters && after.is_none() {
            out.push(Record::EventSequence(self.last_event_sequence()?));
        }
        // The first position of the queue being walked (its items' indexes count
        // from it).
        let mut queue: Option<(Vec<u8>, u64)> = None;
        if out.len() < limit {
            for item in self.kv.scan(&lo, &hi, false) {
                let (k, v) = item?;
                let (k, v) = (k.as_ref(), v.as_ref());
                let record = match section {
                    Section::Nodes => {
                        let (node, version) = self.decode_doc(k, v)?;
                        Record::Node { node, version }
                    }
                    Section::Events => Record::Event(self.decode_event_value(k, v)?),
                    Section::Subscribers => Record::Subscriber(from_json("subscriber", k, v)?),
                    Section::Users => Record::User(from_json("user", k, v)?),
                    Section::Groups => Record::Group(from_json("group", k, v)?),
                    Section::Tokens => Record::Token(from_json("token", k, v)?),
                    Section::Telemetry => Record::Telemetry(from_json("telemetry", k, v)?),
                    Section::Kv => {
                        let Some((keys::Decoded::Str(namespace), key)) = keys::decode_one(&k[1..])
                        else {
                            return Err(StoreError::corrupt("kv key", k, "bad namespace").into());
                        };
                        Record::Kv {
                            namespace,
                            key: utf8("kv key", k, key)?,
                            value: utf8("kv value", k, v)?,
                        }
                    }
                    Section::Queues => {
                        let (name, pos) = queue_parts(k)?;
                        let qp = &k[..k.len() - 8];
                        let first = match &queue {
                            Some((p, first)) if p.as_slice() == qp => *first,
                            _ => {
                                let first = queue_bounds(&self.kv, qp)?.map_or(pos, |b| b.0);
                                queue = Some((qp.to_vec(), first));
                                first
                            }
                        };
                        Record::QueueItem {
                            name: utf8("queue name", k, name)?,
                            index: pos.saturating_sub(first),
                            value: utf8("queue value", k, v)?,
                        }
                    }
                    Section::Counters => Record::Counter {
                        name: utf8("counter name", k, &k[1..])?,
                        value: read_u64(v)
                            .ok_or_else(|| StoreError::corrupt("counter", k, "short value"))?,
                    },
                };
                out.push(record);
                last_key = k.to_vec();
                if out.len() >= limit {
                    break;
                }
            }
        }
        let more = out.len() >= limit;
        Ok((out, more.then_some(last_key)))
    }

    /// The number of records of `section` (keys counted, nothing decoded).
    pub(crate) fn count_records(&self, section: Section) -> Res<u64> {
        if section == Section::Nodes {
            return Ok(self.count_all()?);
        }
        let p = [prefix(section)];
        let mut n = u64::from(section == Section::Counters);
        for item in self.kv.scan(&p, &prefix_end(&p), false) {
            item?;
            n += 1;
        }
        Ok(n)
    }

    /// Writes `records` (see `Store::import_records`) in one batch.
    pub(crate) fn import_records(&self, records: &[Record]) -> Res<ImportStats> {
        let _guard = self.lock()?;
        let mut writes: Vec<Write> = Vec::new();
        let mut deltas = Deltas::default();
        // Keys this batch writes (an import never deletes), and the values of the
        // counters it raises.
        let mut written: HashSet<Vec<u8>> = HashSet::new();
        let mut counters: HashMap<Vec<u8>, u64> = HashMap::new();
        let mut queues: HashMap<Vec<u8>, Option<(u64, u64)>> = HashMap::new();
        let mut stats = ImportStats::default();
        let seq_key = key(keys::META, &[META_EVENT_SEQ]);
        let exists = |written: &HashSet<Vec<u8>>, k: &[u8]| -> Result<bool, StoreError> {
            Ok(written.contains(k) || self.kv.get(k)?.is_some())
        };
        fn put(written: &mut HashSet<Vec<u8>>, writes: &mut Vec<Write>, k: Vec<u8>, v: Vec<u8>) {
            written.insert(k.clone());
            writes.push((k, Some(v)));
        }
        // Raises the counter `k` to `value`; whether it was lower.
        let raise = |counters: &mut HashMap<Vec<u8>, u64>, k: Vec<u8>, value: u64| {
            let current = match counters.get(&k) {
                Some(v) => *v,
                None => self.read_counter(&k)?,
            };
            counters.insert(k, current.max(value));
            Ok::<bool, StoreError>(value > current)
        };
        for r in records {
            let fresh = match r {
                Record::Node { node, version } => {
                    let k = node_key(node.id);
                    if exists(&written, &k)? {
                        false
                    } else {
                        put(
                            &mut written,
                            &mut writes,
                            k,
                            self.encode_doc(node, *version)?,
                        );
                        self.index_changes(None, Some(node), &mut writes, &mut deltas);
                        deltas.add(Self::node_count_key(), 1);
                        true
                    }
                }
                Record::Event(e) => {
                    let k = key(keys::EVENT, &[&e.sequence_id.to_be_bytes()]);
                    if exists(&written, &k)? {
                        false
                    } else {
                        put(&mut written, &mut writes, k, self.encode_event_value(e)?);
                        raise(&mut counters, seq_key.clone(), e.sequence_id)?;
                        true
                    }
                }
                Record::EventSequence(n) => raise(&mut counters, seq_key.clone(), *n)?,
                Record::Counter { name, value } => raise(
                    &mut counters,
                    key(keys::COUNTER, &[name.as_bytes()]),
                    *value,
                )?,
                Record::Subscriber(s) => {
                    let k = key(keys::SUBSCRIBER, &[s.subscriber_id.as_bytes()]);
                    let fresh = !exists(&written, &k)?;
                    if fresh {
                        put(&mut written, &mut writes, k, to_json(s));
                    }
                    fresh
                }
                Record::Token(t) => {
                    let k = key(keys::TOKEN, &[t.id.as_bytes()]);
                    let fresh = !exists(&written, &k)?;
                    if fresh {
                        put(&mut written, &mut writes, k, to_json(t));
                    }
                    fresh
                }
                Record::Kv {
                    namespace,
                    key: kv_key,
                    value,
                } => {
                    let k = Self::kv_key(namespace, kv_key);
                    let fresh = !exists(&written, &k)?;
                    if fresh {
                        put(&mut written, &mut writes, k, value.as_bytes().to_vec());
                    }
                    fresh
                }
                Record::Telemetry(e) => {
                    let k = Self::telemetry_key(e.id);
                    let fresh = !exists(&written, &k)?;
                    if fresh {
                        put(&mut written, &mut writes, k, to_json(e));
                        put(
                            &mut written,
                            &mut writes,
                            Self::telemetry_ts_key(e.ts, e.id),
                            Vec::new(),
                        );
                    }
                    fresh
                }
                Record::User(u) => {
                    let k = Self::user_key(u.id);
                    if exists(&written, &k)? {
                        false
                    } else {
                        let (nk, ek) = (
                            Self::user_name_key(&u.username),
                            Self::user_email_key(&u.email),
                        );
                        if exists(&written, &nk)? || exists(&written, &ek)? {
                            return Err(Error::Conflict(
                                "User with this id, username or e-mail already exists".into(),
                            ));
                        }
                        let id = u.id.bytes().to_vec();
                        put(&mut written, &mut writes, k, to_json(u));
                        put(&mut written, &mut writes, nk, id.clone());
                        put(&mut written, &mut writes, ek, id);
                        true
                    }
                }
                Record::Group(g) => {
                    let k = Self::group_key(g.id);
                    if exists(&written, &k)? {
                        false
                    } else {
                        let nk = Self::group_name_key(&g.name);
                        if exists(&written, &nk)? {
                            return Err(Error::Conflict(format!(
                                "Group already exists: {}",
                                g.name
                            )));
                        }
                        put(&mut written, &mut writes, k, to_json(g));
                        put(&mut written, &mut writes, nk, g.id.bytes().to_vec());
                        true
                    }
                }
                Record::QueueItem { name, index, value } => {
                    let qp = Self::queue_prefix(name)?;
                    let bounds = match queues.get(&qp) {
                        Some(b) => *b,
                        None => queue_bounds(&self.kv, &qp)?,
                    };
                    let len = bounds.map_or(0, |(first, last)| last - first + 1);
                    if *index < len {
                        false
                    } else if *index == len {
                        let pos = bounds.map_or(1, |(_, last)| last + 1);
                        let mut k = qp.clone();
                        k.extend_from_slice(&pos.to_be_bytes());
                        put(&mut written, &mut writes, k, value.as_bytes().to_vec());
                        queues.insert(qp, Some((bounds.map_or(1, |b| b.0), pos)));
                        true
                    } else {
                        return Err(queue_gap(name, len, *index));
                    }
                }
            };
            if fresh {
                stats.imported += 1;
            } else {
                stats.skipped_existing += 1;
            }
        }
        for (k, v) in counters {
            writes.push((k, Some(v.to_be_bytes().to_vec())));
        }
        self.counter_writes(deltas, &mut writes)?;
        if !writes.is_empty() {
            self.kv.apply(writes)?;
        }
        Ok(stats)
    }
}
