//! The ordered key-value layer under the engine (an implementation detail, public only
//! because the store types are generic over it): an in-memory B-tree, or one sled
//! tree. The engine writes only through [`Kv::apply`], an atomic batch, so a reader
//! never sees a document without its index entries or the reverse.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, RwLock};

use crate::error::StoreError;

mod pending;
mod sled;

pub use self::sled::SledKv;

/// One write of a batch: `Some` puts, `None` deletes.
pub type Write = (Vec<u8>, Option<Vec<u8>>);

/// Boxed iterator over `(key, value)` pairs.
pub type Scan<'a, B> = Box<dyn Iterator<Item = Result<(B, B), StoreError>> + Send + 'a>;

pub(crate) mod sealed {
    pub trait Sealed {}
    impl Sealed for super::MemKv {}
    impl Sealed for super::SledKv {}
}

/// Holds off writers while a multi-key read runs (a no-op for plain spaces).
pub struct ViewGuard<'a>(
    // Held for its Drop: releasing it lets writers in.
    #[allow(dead_code)] pub(crate) Option<std::sync::RwLockReadGuard<'a, ()>>,
);

/// An ordered key-value space under the engine. Sealed: implemented by [`MemKv`] and
/// [`SledKv`] only.
pub trait Kv: sealed::Sealed + Send + Sync + 'static {
    /// Bytes handed out by reads (cheap to clone).
    type Bytes: AsRef<[u8]> + Clone + Send + Sync;

    /// The value under `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Self::Bytes>, StoreError>;

    /// Keys in `[lo, hi)` in ascending order, or descending when `rev`.
    fn scan(&self, lo: &[u8], hi: &[u8], rev: bool) -> Scan<'_, Self::Bytes>;

    /// Applies all writes atomically (all visible at once, or none).
    fn apply(&self, writes: Vec<Write>) -> Result<(), StoreError>;

    /// Makes every applied write durable (no-op for volatile spaces).
    fn flush(&self) -> Result<(), StoreError>;

    /// A consistent view for a multi-key read (see [`crate::tiered`]).
    fn read_view(&self) -> Result<ViewGuard<'_>, StoreError> {
        Ok(ViewGuard(None))
    }

    /// The sorted ids of one value tuple of one index, when the space holds postings
    /// directly (`None`: scan the `I` keys instead).
    fn posting_ids(
        &self,
        _index_id: u8,
        _tuple: &[u8],
    ) -> Result<Option<Vec<kernelci_core::id::ObjectId>>, StoreError> {
        Ok(None)
    }

    /// The ids of the `I` keys in `[lo, hi)` (both within one index, or `hi` past
    /// its end), in key order, when the space can list them without building keys
    /// (`None`: scan instead).
    fn range_ids(
        &self,
        _lo: &[u8],
        _hi: &[u8],
    ) -> Result<Option<Vec<kernelci_core::id::ObjectId>>, StoreError> {
        Ok(None)
    }

    /// How many `I` keys `[lo, hi)` holds, counting at most `cap` (`None`: the space
    /// cannot count without scanning).
    fn range_count(&self, _lo: &[u8], _hi: &[u8], _cap: u64) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }

    /// True when value counters are derived from the index entries (the engine then
    /// skips maintaining them).
    fn derives_counts(&self) -> bool {
        false
    }

    /// Called when a rebuild of every index entry and counter has completed.
    fn indexes_rebuilt(&self) {}

    /// Removes every index entry and counter.
    fn clear_indexes(&self) -> Result<(), StoreError> {
        for prefix in [crate::keys::INDEX, crate::keys::COUNT] {
            let mut doomed = Vec::new();
            for item in self.scan(&[prefix], &crate::keys::prefix_end(&[prefix]), false) {
                doomed.push((item?.0.as_ref().to_vec(), None));
            }
            self.apply(doomed)?;
        }
        Ok(())
    }
}

/// Shared bytes of the memory space.
type Bytes = Arc<[u8]>;
/// The memory space's map.
type Map = BTreeMap<Bytes, Bytes>;

/// A volatile ordered space: a B-tree behind a read-write lock.
#[derive(Default, Clone)]
pub struct MemKv {
    map: Arc<RwLock<Map>>,
}

/// How many entries a memory scan copies per lock acquisition.
const SCAN_CHUNK: usize = 256;

impl MemKv {
    fn read(&self) -> Result<std::sync::RwLockReadGuard<'_, Map>, StoreError> {
        self.map.read().map_err(|_| StoreError::Poisoned)
    }
}

/// A chunked scan: each chunk re-takes the read lock and continues after the last key
/// seen, so a long scan never blocks writers for long (like sled, a scan is not a
/// snapshot across chunks).
struct MemScan {
    kv: MemKv,
    lo: Bound<Arc<[u8]>>,
    hi: Bound<Arc<[u8]>>,
    rev: bool,
    buf: std::vec::IntoIter<(Bytes, Bytes)>,
    done: bool,
}

impl Iterator for MemScan {
    type Item = Result<(Arc<[u8]>, Arc<[u8]>), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(item) = self.buf.next() {
            return Some(Ok(item));
        }
        if self.done {
            return None;
        }
        let inverted = match (&self.lo, &self.hi) {
            (Bound::Included(l) | Bound::Excluded(l), Bound::Included(h) | Bound::Excluded(h)) => {
                l >= h
            }
            _ => false,
        };
        if inverted {
            self.done = true;
            return None;
        }
        let map = match self.kv.read() {
            Ok(m) => m,
            Err(e) => {
                self.done = true;
                return Some(Err(e));
            }
        };
        let range = map.range::<[u8], _>((
            self.lo.as_ref().map(|k| &k[..]),
            self.hi.as_ref().map(|k| &k[..]),
        ));
        let chunk: Vec<(Bytes, Bytes)> = if self.rev {
            range
                .rev()
                .take(SCAN_CHUNK)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        } else {
            range
                .take(SCAN_CHUNK)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        drop(map);
        if chunk.len() < SCAN_CHUNK {
            self.done = true;
        }
        if let Some((last, _)) = chunk.last() {
            if self.rev {
                self.hi = Bound::Excluded(last.clone());
            } else {
                self.lo = Bound::Excluded(last.clone());
            }
        }
        self.buf = chunk.into_iter();
        self.buf.next().map(Ok)
    }
}

impl Kv for MemKv {
    type Bytes = Arc<[u8]>;

    fn get(&self, key: &[u8]) -> Result<Option<Arc<[u8]>>, StoreError> {
        Ok(self.read()?.get(key).cloned())
    }

    fn scan(&self, lo: &[u8], hi: &[u8], rev: bool) -> Scan<'_, Arc<[u8]>> {
        if lo >= hi {
            // An empty (or inverted, e.g. `created__gt=B&created__lt=A` with A < B)
            // range: B-tree ranges panic on it.
            return Box::new(std::iter::empty());
        }
        Box::new(MemScan {
            kv: self.clone(),
            lo: Bound::Included(Arc::from(lo)),
            hi: Bound::Excluded(Arc::from(hi)),
            rev,
            buf: Vec::new().into_iter(),
            done: false,
        })
    }

    fn apply(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        let mut map = self.map.write().map_err(|_| StoreError::Poisoned)?;
        for (k, v) in writes {
            match v {
                Some(v) => {
                    map.insert(Arc::from(k), Arc::from(v));
                }
                None => {
                    map.remove(&k[..]);
                }
            }
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
