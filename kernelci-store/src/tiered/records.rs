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
//! answers are already ordered. Bounded: at most [`RecordCache::MAX`] records of
//! at most [`RecordCache::MAX_VALUE`] bytes; when full, nothing more is kept.

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
    generation: u64,
}

/// What a reader that missed must hand back to [`RecordCache::keep`].
pub(crate) struct Miss(u64);

impl RecordCache {
    /// Most records kept.
    const MAX: usize = 65_536;
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
        if inner.generation == miss.0 && inner.records.len() < Self::MAX {
            inner.records.insert(key.to_vec(), Arc::clone(value));
        }
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
                inner
            }
        };
        inner.generation += 1;
        for k in keys {
            inner.records.remove(k);
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.inner.read().map_or(0, |i| i.records.len())
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
        // A write of other keys leaves the generation alone.
        let Err(Some(miss)) = c.get(&user(1)) else {
            panic!()
        };
        c.forget([&[keys::NODE, 1][..]].into_iter());
        c.keep(miss, &user(1), &Arc::from(&b"u"[..]));
        assert_eq!(c.len(), 1);
    }
}
