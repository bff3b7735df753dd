//! User records (`U` keys) kept in memory in front of the base.
//!
//! Every authenticated request reads its user's record; on sled that read was
//! about a thirtieth of a `POST /node`'s CPU (the tree descent, for a record that
//! changes a few times in its life). The tiered space keeps the records it has
//! read, and every write of a `U` key goes through [`super::Tiered::apply`], which
//! forgets those keys before and after the base batch (the only process writing
//! a sled store is this one: sled locks its directory).
//!
//! Why before *and* after, with a generation: a reader that missed notes the
//! generation, reads the base, and keeps what it read only if no write of a user
//! came in between (the generation is unchanged). So a value read before a write
//! is never kept after it; and during the write, readers go to the base, whose
//! answers are already ordered. Bounded: at most [`RecordCache::MAX_BYTES`] of
//! records, each at most [`RecordCache::MAX_VALUE`] bytes; when full, nothing
//! more is kept.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::keys;

/// The kept records and the generation of user writes.
#[derive(Default)]
pub(crate) struct RecordCache {
    inner: RwLock<Inner>,
}

#[derive(Default)]
struct Inner {
    records: HashMap<Vec<u8>, Arc<[u8]>>,
    /// The bytes of the kept keys and records.
    bytes: usize,
    generation: u64,
}

/// What a reader that missed must hand back to [`RecordCache::keep`].
pub(crate) struct Miss(u64);

impl RecordCache {
    /// Most bytes of keys and records kept (a user record is a few hundred bytes
    /// plus its groups).
    const MAX_BYTES: usize = 16 << 20;
    /// Largest record kept.
    const MAX_VALUE: usize = 64 * 1024;

    /// Whether `key` is one this cache keeps (a user record).
    pub(crate) fn covers(key: &[u8]) -> bool {
        key.first() == Some(&keys::USER)
    }

    /// The kept record of `key`, or the [`Miss`] to keep what the base answers.
    /// A poisoned lock is a miss that keeps nothing.
    pub(crate) fn get(&self, key: &[u8]) -> Result<Arc<[u8]>, Option<Miss>> {
        let Ok(inner) = self.inner.read() else {
            return Err(None);
        };
        match inner.records.get(key) {
            Some(v) => Ok(Arc::clone(v)),
            None => Err(Some(Miss(inner.generation))),
        }
    }

    /// Keeps `value`, read from the base for `key` after `miss`, unless a user was
    /// written since.
    pub(crate) fn keep(&self, miss: Miss, key: &[u8], value: &Arc<[u8]>) {
        if value.len() > Self::MAX_VALUE {
            return;
        }
        let Ok(mut inner) = self.inner.write() else {
            return;
        };
        let size = key.len() + value.len();
        if inner.generation != miss.0 || inner.bytes + size > Self::MAX_BYTES {
            return;
        }
        if let Some(old) = inner.records.insert(key.to_vec(), Arc::clone(value)) {
            inner.bytes -= key.len() + old.len();
        }
        inner.bytes += size;
    }

    /// Forgets the user records `writes` writes now and again when the returned
    /// guard is dropped: after the base batch, also when it fails or panics.
    pub(crate) fn around_write<'c>(&'c self, writes: &[crate::kv::Write]) -> Forget<'c> {
        let keys: Vec<Vec<u8>> = writes
            .iter()
            .filter(|(k, _)| Self::covers(k))
            .map(|(k, _)| k.clone())
            .collect();
        self.forget(keys.iter().map(Vec::as_slice));
        Forget { cache: self, keys }
    }

    /// Forgets the records of the user keys among `keys` (called before and after
    /// the base batch that writes them).
    pub(crate) fn forget<'k>(&self, keys: impl Iterator<Item = &'k [u8]>) {
        let mut keys = keys.filter(|k| Self::covers(k)).peekable();
        if keys.peek().is_none() {
            return;
        }
        // Poisoned: a panic while holding it; drop everything rather than trust it.
        let mut inner = match self.inner.write() {
            Ok(inner) => inner,
            Err(poisoned) => {
                let mut inner = poisoned.into_inner();
                inner.records.clear();
                inner.bytes = 0;
                inner
            }
        };
        inner.generation += 1;
        for k in keys {
            if let Some(old) = inner.records.remove(k) {
                inner.bytes -= k.len() + old.len();
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.inner.read().map_or(0, |i| i.records.len())
    }
}

/// Forgets its user keys again when dropped (see [`RecordCache::around_write`]).
pub(crate) struct Forget<'c> {
    cache: &'c RecordCache,
    keys: Vec<Vec<u8>>,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.cache.forget(self.keys.iter().map(Vec::as_slice));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(n: u8) -> Vec<u8> {
        vec![keys::USER, n]
    }

    #[test]
    fn a_read_before_a_write_is_not_kept_after_it() {
        let c = RecordCache::default();
        let old: Arc<[u8]> = Arc::from(&b"old"[..]);
        let Err(Some(miss)) = c.get(&user(1)) else {
            panic!("empty cache hit")
        };
        // A write of that user lands between the base read and `keep`.
        c.forget([&user(1)[..]].into_iter());
        c.keep(miss, &user(1), &old);
        assert!(c.get(&user(1)).is_err(), "the stale read was kept");
        // Without a write in between, it is kept; a write forgets it.
        let Err(Some(miss)) = c.get(&user(1)) else {
            panic!()
        };
        c.keep(miss, &user(1), &old);
        assert_eq!(c.get(&user(1)).ok().as_deref(), Some(&b"old"[..]));
        c.forget([&b"N-not-a-user"[..], &user(2)[..], &user(1)[..]].into_iter());
        assert!(c.get(&user(1)).is_err());
    }

    #[test]
    fn a_write_forgets_before_and_after_even_when_it_panics() {
        let c = RecordCache::default();
        let keep = |c: &RecordCache| {
            let Err(Some(miss)) = c.get(&user(1)) else {
                panic!()
            };
            c.keep(miss, &user(1), &Arc::from(&b"old"[..]));
        };
        keep(&c);
        let writes = vec![(user(1), Some(b"new".to_vec()))];
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _forget = c.around_write(&writes);
            assert!(c.get(&user(1)).is_err(), "forgotten before the batch");
            // A reader that missed before the batch...
            let Err(Some(miss)) = c.get(&user(1)) else {
                panic!()
            };
            // ...keeps its read before the batch panics.
            c.keep(miss, &user(1), &Arc::from(&b"old"[..]));
            panic!("the batch failed");
        }));
        assert!(result.is_err());
        assert!(c.get(&user(1)).is_err(), "forgotten again on unwind");
    }

    #[test]
    fn only_user_keys_and_bounded() {
        assert!(RecordCache::covers(&user(0)));
        assert!(!RecordCache::covers(&[keys::NODE, 1]));
        assert!(!RecordCache::covers(&[]));
        let c = RecordCache::default();
        let big: Arc<[u8]> = Arc::from(vec![0u8; RecordCache::MAX_VALUE + 1]);
        let Err(Some(miss)) = c.get(&user(1)) else {
            panic!()
        };
        c.keep(miss, &user(1), &big);
        assert_eq!(c.len(), 0, "a record over the bound is not kept");
        // The total is bounded too, and forgetting gives the room back.
        let record: Arc<[u8]> = Arc::from(vec![1u8; RecordCache::MAX_VALUE]);
        let fits = RecordCache::MAX_BYTES / (RecordCache::MAX_VALUE + 3);
        for i in 0..fits + 10 {
            let key = [keys::USER, (i >> 8) as u8, i as u8];
            let Err(Some(miss)) = c.get(&key) else {
                panic!()
            };
            c.keep(miss, &key, &record);
        }
        assert_eq!(c.len(), fits);
        c.forget([&[keys::USER, 0, 0][..]].into_iter());
        assert_eq!(c.len(), fits - 1);
        let Err(Some(miss)) = c.get(&[keys::USER, 0, 0]) else {
            panic!()
        };
        c.keep(miss, &[keys::USER, 0, 0], &record);
        assert_eq!(c.len(), fits);
        c.forget(
            (0..fits)
                .map(|i| vec![keys::USER, (i >> 8) as u8, i as u8])
                .collect::<Vec<_>>()
                .iter()
                .map(Vec::as_slice),
        );
        assert_eq!(c.len(), 0);
        // A write of other keys leaves the generation alone.
        let Err(Some(miss)) = c.get(&user(1)) else {
            panic!()
        };
        c.forget([&[keys::NODE, 1][..]].into_iter());
        c.keep(miss, &user(1), &Arc::from(&b"u"[..]));
        assert_eq!(c.len(), 1);
    }
}
