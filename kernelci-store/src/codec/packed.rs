//! Records compressed one by one with zstd dictionaries trained on the store's own
//! records (layout 4).
//!
//! sled 0.34 can compress its log, but it creates and frees a zstd context for every
//! log message, inside the batch that every reader waits for: it cost a compressed
//! store about half its write throughput (docs/PERFORMANCE.md). New stores leave
//! sled's log plain and compress node documents and events here instead, on the
//! writer's thread, with a context kept per thread. One record alone (a node is
//! about 600 bytes in the binary codec) compresses poorly (to ~75 %); with a
//! dictionary trained on records like it, to 20–40 %.
//!
//! A packed record is [`FORMAT_PACKED`], the dictionary's id (varint), then one
//! zstd frame (with its content size) holding the record as it was before packing.
//! Records written before a store had a dictionary stay as they are: every reader
//! tells the forms apart by their first byte.
//!
//! Dictionaries are trained in the background, from a random sample of the records
//! written since the last one (reservoir sampling), once [`FIRST_TRAINING`] records
//! of a kind were written and then each time the records written since reach three
//! times those before (2 k, 8 k, 32 k, ... records: about a dozen dictionaries for
//! tens of millions of records). Trainings are spaced by the store's node count
//! and event sequence, so the count goes on across restarts: a store that opens
//! with a training due (one written by an earlier version, or by processes that
//! each wrote little) trains on its newest stored records in the current forms. A trained dictionary is stored (`M` `dict` kind id)
//! by the first write after it is ready, in a batch applied before that write's own
//! (with layout 4, the first time; the engine's writes hold its writer lock), and
//! only then used: a record never
//! reaches the disk before the dictionary that reads it. Dictionaries are never
//! deleted; old records keep the one they were packed with.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use zstd::dict::{DecoderDictionary, EncoderDictionary};
use zstd::zstd_safe::{self, CCtx, DCtx};

use super::CodecError;

/// First byte of a packed record. Node documents start with [`super::FORMAT_BINARY`]
/// or `{`, events with [`super::FORMAT_EVENT`] or `{`.
pub const FORMAT_PACKED: u8 = 0xD1;

/// The largest record a packed frame may unpack to: a frame that says more is
/// damaged (the API refuses bodies far smaller), and is refused before any
/// allocation.
pub const MAX_UNPACKED: u64 = 64 << 20;

/// Records of a kind written before its first dictionary is trained.
pub const FIRST_TRAINING: u64 = 2_000;

/// Fewest sampled records a training during writes starts with (a store reopened
/// with a training due samples its stored records instead).
const MIN_SAMPLES: usize = 500;

/// Most records a training sample holds, and most bytes.
pub(crate) const SAMPLE_RECORDS: usize = 4_000;
pub(crate) const SAMPLE_BYTES: usize = 8 << 20;

/// Records larger than this are packed but not sampled: one large log excerpt
/// would crowd out the shapes every record shares.
pub(crate) const SAMPLE_MAX_RECORD: usize = 32 << 10;

/// Size of a trained dictionary. 16, 64 and 112 KiB on the workload's records:
/// 143, 128 and 124 bytes per node document (compress_probe).
const DICT_BYTES: usize = 64 << 10;

/// zstd level records are packed at (level 1 gave 5–10 % larger records for
/// 0.2–0.4 µs less per record).
const LEVEL: i32 = 3;

/// What a dictionary packs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Node documents (`N` keys).
    Node = 0,
    /// Events (`E` keys).
    Event = 1,
}

impl Kind {
    const ALL: [Kind; 2] = [Kind::Node, Kind::Event];

    fn name(self) -> &'static str {
        match self {
            Kind::Node => "node",
            Kind::Event => "event",
        }
    }
}

/// Name of the metadata key holding dictionary `id` of `kind` (after the `M`
/// prefix): `dict`, the kind's byte, the id (4 bytes, big-endian).
pub(crate) fn meta_name(kind: Kind, id: u32) -> Vec<u8> {
    let mut k = b"dict".to_vec();
    k.push(kind as u8);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// Parses a [`meta_name`] (`None`: not a dictionary's).
pub(crate) fn parse_meta_name(name: &[u8]) -> Option<(Kind, u32)> {
    let rest = name.strip_prefix(b"dict")?;
    let (&kind, id) = rest.split_first()?;
    let kind = Kind::ALL.into_iter().find(|k| *k as u8 == kind)?;
    Some((kind, u32::from_be_bytes(id.try_into().ok()?)))
}

/// The stored value of a dictionary: the number of records of its kind written
/// before it was trained (8 bytes, big-endian), then the zstd dictionary.
fn meta_value(records_before: u64, dict: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + dict.len());
    v.extend_from_slice(&records_before.to_be_bytes());
    v.extend_from_slice(dict);
    v
}

/// Figures of one kind's dictionaries (for statistics and tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PackStats {
    /// Dictionaries stored.
    pub dictionaries: u32,
    /// The id new records are packed with (0: none yet).
    pub current: u32,
    /// Records of the kind written by this process.
    pub written: u64,
    /// Of them, packed.
    pub packed: u64,
}

/// A dictionary new records are packed with.
struct Encoder {
    id: u32,
    cdict: EncoderDictionary<'static>,
}

/// A trained dictionary waiting to be stored.
struct Trained {
    dict: Vec<u8>,
}

/// Which records the next training learns from.
#[derive(Default)]
struct Sampler {
    /// Records since the last training: written by this process, plus, from the
    /// store's opening, its count beyond what the last dictionary recorded.
    since: u64,
    /// Records before the last training (the store's count its dictionary
    /// recorded, or this count plus `since` when a training starts).
    before: u64,
    samples: Vec<Vec<u8>>,
    bytes: usize,
    /// State of the sampler's pseudo-random sequence (splitmix64).
    rng: u64,
    written: u64,
    packed: u64,
}

impl Sampler {
    fn next_random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Counts `record` and keeps it in the sample with the probability that leaves
    /// every record since the last training equally likely to be there.
    fn observe(&mut self, record: &[u8]) {
        self.since += 1;
        self.written += 1;
        if record.len() > SAMPLE_MAX_RECORD {
            return;
        }
        if self.samples.len() < SAMPLE_RECORDS && self.bytes + record.len() <= SAMPLE_BYTES {
            self.bytes += record.len();
            self.samples.push(record.to_vec());
            return;
        }
        if self.samples.is_empty() {
            return;
        }
        let slot = self.next_random() % self.since;
        if let Some(old) = usize::try_from(slot)
            .ok()
            .and_then(|i| self.samples.get_mut(i))
        {
            if self.bytes - old.len() + record.len() <= SAMPLE_BYTES {
                self.bytes = self.bytes - old.len() + record.len();
                old.clear();
                old.extend_from_slice(record);
            }
        }
    }

    fn due(&self) -> bool {
        self.since >= FIRST_TRAINING.max(self.before.saturating_mul(3))
    }
}

/// One kind's dictionaries.
struct Shelf {
    kind: Kind,
    /// Every stored dictionary, by id - 1 (ids are dense from 1).
    decoders: RwLock<Vec<Arc<DecoderDictionary<'static>>>>,
    current: RwLock<Option<Arc<Encoder>>>,
    sampler: Mutex<Sampler>,
    ready: Mutex<Option<Trained>>,
    training: AtomicBool,
}

impl Shelf {
    fn new(kind: Kind) -> Self {
        Self {
            kind,
            decoders: RwLock::new(Vec::new()),
            current: RwLock::new(None),
            sampler: Mutex::new(Sampler {
                rng: 0x5EED ^ kind as u64,
                ..Sampler::default()
            }),
            ready: Mutex::new(None),
            training: AtomicBool::new(false),
        }
    }

    /// Adds stored dictionary `id`; it packs new records if it is the newest.
    fn install(&self, id: u32, records_before: u64, dict: &[u8]) -> Result<(), CodecError> {
        // Prepared outside the locks: reads of packed records never wait for it.
        let ddict = Arc::new(DecoderDictionary::copy(dict));
        let encoder = Arc::new(Encoder {
            id,
            cdict: EncoderDictionary::copy(dict, LEVEL),
        });
        let mut decoders = self
            .decoders
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if usize::try_from(id).ok() != Some(decoders.len() + 1) {
            return Err(CodecError::Invalid {
                at: 0,
                what: "dictionary id out of sequence",
            });
        }
        decoders.push(ddict);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(encoder);
        drop(decoders);
        let mut s = self.sampler.lock().unwrap_or_else(PoisonError::into_inner);
        s.before = records_before;
        Ok(())
    }
}

/// The dictionaries of a store's node documents and events.
pub(crate) struct Dictionaries {
    shelves: [Arc<Shelf>; 2],
}

impl Default for Dictionaries {
    fn default() -> Self {
        Self {
            shelves: Kind::ALL.map(|k| Arc::new(Shelf::new(k))),
        }
    }
}

thread_local! {
    static CCTX: RefCell<Option<CCtx<'static>>> = const { RefCell::new(None) };
    static DCTX: RefCell<Option<DCtx<'static>>> = const { RefCell::new(None) };
    static PLAIN: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Capacity over which a thread's unpacking buffer is given back after use.
const KEEP_BUFFER: usize = 1 << 20;

impl Dictionaries {
    fn shelf(&self, kind: Kind) -> &Arc<Shelf> {
        &self.shelves[kind as usize]
    }

    /// Loads a stored dictionary (`name` after the `M` prefix, as [`meta_name`]
    /// writes it). Dictionaries must come in id order, as a key scan gives them.
    pub(crate) fn load(&self, name: &[u8], value: &[u8]) -> Result<bool, CodecError> {
        let Some((kind, id)) = parse_meta_name(name) else {
            return Ok(false);
        };
        let (before, dict) = value.split_at_checked(8).ok_or(CodecError::Truncated(0))?;
        let before = u64::from_be_bytes(before.try_into().unwrap_or([0; 8]));
        self.shelf(kind).install(id, before, dict)?;
        Ok(true)
    }

    /// A trained dictionary of `kind` not yet stored, as its id, metadata key name
    /// and value, with `records()` (the store's count of that kind now: its nodes,
    /// or its last event sequence; only read when a dictionary is ready) as the
    /// records before it, the measure [`Dictionaries::opened`] compares with: the
    /// caller stores it, then calls [`Dictionaries::stored`].
    pub(crate) fn take_ready(
        &self,
        kind: Kind,
        records: impl FnOnce() -> u64,
    ) -> Option<(u32, Vec<u8>, Vec<u8>)> {
        let shelf = self.shelf(kind);
        let t = shelf
            .ready
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()?;
        let id = u32::try_from(
            shelf
                .decoders
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .len()
                + 1,
        )
        .ok()?;
        Some((id, meta_name(kind, id), meta_value(records(), &t.dict)))
    }

    /// Uses dictionary `id` of `kind` (its stored `value`) from now on.
    pub(crate) fn stored(&self, kind: Kind, id: u32, value: &[u8]) -> Result<(), CodecError> {
        self.load(&meta_name(kind, id), value).map(|_| ())
    }

    /// Packs `record` of `kind` with its current dictionary (appending to `out`), or
    /// appends it as it is while there is none; counts it toward the next training
    /// (started in the background when due).
    pub(crate) fn pack(&self, kind: Kind, record: &[u8], out: &mut Vec<u8>) {
        let shelf = self.shelf(kind);
        let due = {
            let mut s = shelf.sampler.lock().unwrap_or_else(PoisonError::into_inner);
            s.observe(record);
            s.due() && s.samples.len() >= MIN_SAMPLES
        };
        if due && !shelf.training.swap(true, Ordering::AcqRel) {
            start_training(shelf);
        }
        let current = shelf
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(enc) = current.filter(|_| packable(record)) {
            if pack_with(&enc, record, out) {
                let mut s = shelf.sampler.lock().unwrap_or_else(PoisonError::into_inner);
                s.packed += 1;
                return;
            }
        }
        out.extend_from_slice(record);
    }

    /// Calls `f` with the record `b` as it was before packing: `b` itself when it is
    /// not packed.
    pub(crate) fn unpack<T>(
        &self,
        kind: Kind,
        b: &[u8],
        f: impl FnOnce(&[u8]) -> T,
    ) -> Result<T, CodecError> {
        if b.first() != Some(&FORMAT_PACKED) {
            return Ok(f(b));
        }
        let (id, frame) = read_header(b)?;
        let decoders = self
            .shelf(kind)
            .decoders
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let ddict = usize::try_from(id)
            .ok()
            .and_then(|i| i.checked_sub(1))
            .and_then(|i| decoders.get(i))
            .cloned()
            .ok_or(CodecError::Invalid {
                at: 1,
                what: "unknown dictionary",
            })?;
        drop(decoders);
        let size = content_size(frame)?;
        PLAIN.with(|cell| match cell.try_borrow_mut() {
            Ok(mut buf) => {
                let r = unpack_into(&ddict, frame, size, &mut buf).map(|()| f(&buf));
                if buf.capacity() > KEEP_BUFFER {
                    *buf = Vec::new();
                }
                r
            }
            // Unpacking inside `f` of an outer unpack: a buffer of its own.
            Err(_) => {
                let mut buf = Vec::new();
                unpack_into(&ddict, frame, size, &mut buf).map(|()| f(&buf))
            }
        })
    }

    /// Tells the dictionaries of `kind` how many records of it the store held when
    /// it opened (records written since the last dictionary count toward the next
    /// training, across restarts). True when a training is due now: the caller
    /// then hands [`Dictionaries::train_from`] a sample of the stored records.
    pub(crate) fn opened(&self, kind: Kind, total: u64) -> bool {
        let mut s = self
            .shelf(kind)
            .sampler
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        s.since = total.saturating_sub(s.before);
        s.due()
    }

    /// Starts training the next dictionary of `kind` on `samples` (unpacked
    /// records), in the background; too few samples (under [`MIN_SAMPLES`]) leave
    /// the training to the writes.
    pub(crate) fn train_from(&self, kind: Kind, samples: Vec<Vec<u8>>) {
        let shelf = self.shelf(kind);
        if samples.len() < MIN_SAMPLES || shelf.training.swap(true, Ordering::AcqRel) {
            return;
        }
        {
            let mut s = shelf.sampler.lock().unwrap_or_else(PoisonError::into_inner);
            s.samples = samples;
        }
        start_training(shelf);
    }

    /// Figures of `kind`'s dictionaries.
    pub(crate) fn stats(&self, kind: Kind) -> PackStats {
        let shelf = self.shelf(kind);
        let s = shelf.sampler.lock().unwrap_or_else(PoisonError::into_inner);
        PackStats {
            dictionaries: u32::try_from(
                shelf
                    .decoders
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .len(),
            )
            .unwrap_or(u32::MAX),
            current: shelf
                .current
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .as_ref()
                .map_or(0, |e| e.id),
            written: s.written,
            packed: s.packed,
        }
    }
}

/// Clears a shelf's `training` flag when dropped.
struct TrainingDone<'a>(&'a AtomicBool);

impl Drop for TrainingDone<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Trains the next dictionary of `shelf` on its sample, on a thread of its own; the
/// result waits in `ready` for the next write to store it.
fn start_training(shelf: &Arc<Shelf>) {
    let samples = {
        let mut s = shelf.sampler.lock().unwrap_or_else(PoisonError::into_inner);
        let samples = std::mem::take(&mut s.samples);
        s.bytes = 0;
        s.before += s.since;
        s.since = 0;
        samples
    };
    let worker = Arc::clone(shelf);
    let spawned = std::thread::Builder::new()
        .name(format!("kci-dict-{}", shelf.kind.name()))
        .spawn(move || {
            // A sample zstd cannot learn from (too few or too alike records) leaves
            // the current dictionary in use until the next training is due.
            // Cleared however the training ends (a panic in zstd included).
            let _done = TrainingDone(&worker.training);
            if let Ok(dict) = zstd::dict::from_samples(&samples, DICT_BYTES) {
                *worker.ready.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some(Trained { dict });
            }
        });
    if spawned.is_err() {
        shelf.training.store(false, Ordering::Release);
    }
}

/// Whether a record is packed at all: one larger than [`MAX_UNPACKED`] would not
/// unpack, so it is stored as it is.
fn packable(record: &[u8]) -> bool {
    u64::try_from(record.len()).is_ok_and(|n| n <= MAX_UNPACKED)
}

/// Appends `record` packed with `enc` to `out`; false (and `out` unchanged) when
/// zstd fails or the packed form would not be smaller.
fn pack_with(enc: &Encoder, record: &[u8], out: &mut Vec<u8>) -> bool {
    let start = out.len();
    out.push(FORMAT_PACKED);
    let mut id = u64::from(enc.id);
    while id >= 0x80 {
        out.push((id as u8) | 0x80);
        id >>= 7;
    }
    out.push(id as u8);
    let header = out.len() - start;
    out.resize(start + header + zstd_safe::compress_bound(record.len()), 0);
    let written = CCTX.with(|cell| {
        let mut slot = cell.try_borrow_mut().ok()?;
        let cctx = slot.get_or_insert_with(zstd_safe::create_cctx);
        cctx.compress_using_cdict(&mut out[start + header..], record, enc.cdict.as_cdict())
            .ok()
    });
    match written {
        Some(n) if header + n < record.len() => {
            out.truncate(start + header + n);
            true
        }
        _ => {
            out.truncate(start);
            false
        }
    }
}

/// The dictionary id and the zstd frame of a packed record.
fn read_header(b: &[u8]) -> Result<(u32, &[u8]), CodecError> {
    let mut id: u64 = 0;
    let mut shift = 0;
    let mut at = 1;
    loop {
        let byte = *b.get(at).ok_or(CodecError::Truncated(at))?;
        at += 1;
        id |= u64::from(byte & 0x7F) << shift;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 28 {
            return Err(CodecError::Invalid {
                at,
                what: "dictionary id",
            });
        }
    }
    let id = u32::try_from(id).map_err(|_| CodecError::Invalid {
        at,
        what: "dictionary id",
    })?;
    Ok((id, &b[at..]))
}

/// The size a frame says it unpacks to, refused over [`MAX_UNPACKED`].
fn content_size(frame: &[u8]) -> Result<usize, CodecError> {
    let size = zstd_safe::get_frame_content_size(frame);
    // zstd's ZSTD_CONTENTSIZE_UNKNOWN and ZSTD_CONTENTSIZE_ERROR.
    if size >= u64::MAX - 1 {
        return Err(CodecError::Invalid {
            at: 0,
            what: "packed frame header",
        });
    }
    if size > MAX_UNPACKED {
        return Err(CodecError::Invalid {
            at: 0,
            what: "packed record size",
        });
    }
    usize::try_from(size).map_err(|_| CodecError::Invalid {
        at: 0,
        what: "packed record size",
    })
}

fn unpack_into(
    ddict: &DecoderDictionary<'static>,
    frame: &[u8],
    size: usize,
    buf: &mut Vec<u8>,
) -> Result<(), CodecError> {
    buf.clear();
    buf.reserve(size);
    let n = DCTX.with(|cell| {
        let mut fresh;
        let mut slot = cell.try_borrow_mut();
        let dctx = match slot.as_deref_mut() {
            Ok(s) => s.get_or_insert_with(zstd_safe::create_dctx),
            Err(_) => {
                fresh = zstd_safe::create_dctx();
                &mut fresh
            }
        };
        dctx.decompress_using_ddict(buf, frame, ddict.as_ddict())
    });
    match n {
        Ok(n) if n == size => Ok(()),
        _ => Err(CodecError::Invalid {
            at: 0,
            what: "packed frame",
        }),
    }
}

/// The dictionaries of [`exercise_unpack`]: one node dictionary (id 1), trained
/// once per process on 2,000 generated KernelCI-shaped documents.
fn fuzz_dictionaries() -> &'static Dictionaries {
    static D: std::sync::OnceLock<Dictionaries> = std::sync::OnceLock::new();
    D.get_or_init(|| {
        let d = Dictionaries::default();
        let t0 = kernelci_core::time::Timestamp::from_micros(1_733_000_000_000_000)
            .unwrap_or_else(kernelci_core::time::Timestamp::now);
        let samples: Vec<Vec<u8>> = (0..2_000u32)
            .filter_map(|i| {
                let mut n = kernelci_core::node::Node::new(
                    ["checkout", "kbuild", "job", "test"][i as usize % 4],
                    &format!("baseline.login.{}", i % 53),
                    t0.plus_seconds(i64::from(i)),
                );
                n.path = vec!["checkout".into(), format!("kbuild-gcc-12-{}", i % 7)];
                n.data = serde_json::json!({
                    "kernel_revision": {"tree": "mainline", "branch": "master",
                        "url": "https://git.kernel.org/pub/scm/linux/kernel/git/torvalds/linux.git",
                        "commit": format!("{:040x}", i / 20)},
                    "arch": "x86_64", "platform": format!("board-{}", i % 31),
                })
                .as_object()
                .cloned();
                let mut b = Vec::new();
                super::encode_node(&n, &mut b).ok().map(|()| b)
            })
            .collect();
        if let Ok(dict) = zstd::dict::from_samples(&samples, DICT_BYTES) {
            let _ = d.stored(Kind::Node, 1, &meta_value(0, &dict));
        }
        d
    })
}

/// A node document packed with [`exercise_unpack`]'s dictionary, without the
/// packed header: the form the `packed_decode` fuzz target takes.
pub fn fuzz_frame(doc: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    fuzz_dictionaries().pack(Kind::Node, doc, &mut out);
    match read_header(&out) {
        Ok((_, frame)) if out.first() == Some(&FORMAT_PACKED) => frame.to_vec(),
        _ => Vec::new(),
    }
}

/// The body of the `packed_decode` fuzz target (and of its replay test): any bytes,
/// as the zstd frame of a packed node document, unpack to a document or an error,
/// never a panic or an allocation past [`MAX_UNPACKED`]; a document that unpacks
/// and decodes packs and unpacks back to the same bytes.
pub fn exercise_unpack(data: &[u8]) {
    let d = fuzz_dictionaries();
    let mut record = vec![FORMAT_PACKED, 1];
    record.extend_from_slice(data);
    let Ok(Some(doc)) = d.unpack(Kind::Node, &record, |doc| {
        super::decode_node(doc).is_ok().then(|| doc.to_vec())
    }) else {
        return;
    };
    let mut again = Vec::new();
    d.pack(Kind::Node, &doc, &mut again);
    let back = d.unpack(Kind::Node, &again, <[u8]>::to_vec);
    assert_eq!(back.as_deref(), Ok(&doc[..]), "repacked document differs");
}

/// Trains a dictionary of `kind` on `samples` now, on this thread, and stores it as
/// ready (tests: no waiting on the background training).
#[cfg(test)]
pub(crate) fn train_now(d: &Dictionaries, kind: Kind, samples: &[Vec<u8>]) -> bool {
    match zstd::dict::from_samples(samples, DICT_BYTES) {
        Ok(dict) => {
            *d.shelf(kind)
                .ready
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(Trained { dict });
            true
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                format!(
                    "{{\"kind\":\"test\",\"name\":\"baseline.login-{i}\",\"path\":[\"checkout\",\"kbuild-gcc-12-x86\",\"baseline-x86\",\"login\"],\"tree\":\"https://git.kernel.org/pub/scm/linux/kernel/git/torvalds/linux.git\",\"n\":{}}}",
                    i * 7919 % 1000
                )
                .into_bytes()
            })
            .collect()
    }

    fn with_dictionary(recs: &[Vec<u8>]) -> Dictionaries {
        let d = Dictionaries::default();
        assert!(train_now(&d, Kind::Node, recs));
        let (id, name, value) = d.take_ready(Kind::Node, || 0).unwrap();
        assert_eq!(id, 1);
        assert_eq!(parse_meta_name(&name), Some((Kind::Node, 1)));
        d.stored(Kind::Node, id, &value).unwrap();
        d
    }

    #[test]
    fn packed_records_unpack_to_themselves_and_are_smaller() {
        let recs = records(3000);
        let d = with_dictionary(&recs);
        let (mut raw, mut packed) = (0, 0);
        for r in &recs {
            let mut out = Vec::new();
            d.pack(Kind::Node, r, &mut out);
            assert_eq!(out[0], FORMAT_PACKED);
            raw += r.len();
            packed += out.len();
            let back = d.unpack(Kind::Node, &out, <[u8]>::to_vec).unwrap();
            assert_eq!(&back, r);
        }
        assert!(packed * 3 < raw, "{packed} packed bytes of {raw}");
        // Another kind has no dictionary: its records stay as they are.
        let mut out = Vec::new();
        d.pack(Kind::Event, &recs[0], &mut out);
        assert_eq!(out, recs[0]);
        assert_eq!(
            d.unpack(Kind::Event, &out, <[u8]>::to_vec).unwrap(),
            recs[0]
        );
    }

    #[test]
    fn damaged_packed_records_are_errors() {
        let recs = records(3000);
        let d = with_dictionary(&recs);
        let mut out = Vec::new();
        d.pack(Kind::Node, &recs[5], &mut out);
        for cut in 0..out.len() {
            let r = d.unpack(Kind::Node, &out[..cut], <[u8]>::to_vec);
            assert!(r.is_err() || cut == 0, "cut at {cut}");
        }
        for i in 1..out.len() {
            let mut bad = out.clone();
            bad[i] ^= 0x5A;
            match d.unpack(Kind::Node, &bad, <[u8]>::to_vec) {
                Err(_) => {}
                // zstd frames carry no checksum here: a flipped literal unpacks to
                // other bytes of the same length, which the codec then checks.
                Ok(back) => assert_eq!(back.len(), recs[5].len()),
            }
        }
        // An unknown dictionary, and one packed for another kind.
        let mut unknown = out.clone();
        unknown[1] = 9;
        assert!(d.unpack(Kind::Node, &unknown, <[u8]>::to_vec).is_err());
        assert!(d.unpack(Kind::Event, &out, <[u8]>::to_vec).is_err());
    }

    #[test]
    fn a_frame_claiming_a_huge_record_is_refused_before_allocating() {
        let d = with_dictionary(&records(3000));
        // A frame header whose content size field says 2^40 bytes.
        let mut frame = vec![FORMAT_PACKED, 1];
        frame.extend_from_slice(&0xFD2F_B528u32.to_le_bytes());
        frame.push(0xE0); // descriptor: 8-byte content size, single segment
        frame.extend_from_slice(&(1u64 << 40).to_le_bytes());
        frame.extend_from_slice(&[0; 8]);
        let e = d.unpack(Kind::Node, &frame, <[u8]>::to_vec).unwrap_err();
        assert!(e.to_string().contains("packed record size"), "{e}");
    }

    #[test]
    fn records_too_large_to_unpack_are_stored_as_they_are() {
        assert!(packable(&[0; 1000]));
        // A view of the bound without allocating it: lengths around the limit.
        let limit = usize::try_from(MAX_UNPACKED).unwrap();
        let big = vec![b'x'; limit + 1];
        assert!(!packable(&big));
        assert!(packable(&big[..limit]));
        let d = with_dictionary(&records(3000));
        let mut out = Vec::new();
        d.pack(Kind::Node, &big, &mut out);
        assert_eq!(out.len(), big.len());
        assert_eq!(out[0], b'x');
    }

    #[test]
    fn training_starts_once_enough_records_are_written() {
        let d = Dictionaries::default();
        let recs = records(FIRST_TRAINING as usize + 10);
        let mut out = Vec::new();
        for r in &recs[..FIRST_TRAINING as usize - 1] {
            d.pack(Kind::Event, r, &mut out);
        }
        assert!(!d.shelf(Kind::Event).training.load(Ordering::Acquire));
        for r in &recs[FIRST_TRAINING as usize - 1..] {
            d.pack(Kind::Event, r, &mut out);
        }
        let started = std::time::Instant::now();
        let ready = loop {
            if let Some(r) = d.take_ready(Kind::Event, || 1234) {
                break r;
            }
            assert!(started.elapsed().as_secs() < 60, "no dictionary trained");
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        let (id, _, value) = ready;
        assert_eq!(u64::from_be_bytes(value[..8].try_into().unwrap()), 1234);
        d.stored(Kind::Event, id, &value).unwrap();
        let s = d.stats(Kind::Event);
        assert_eq!((s.dictionaries, s.current, s.packed), (1, 1, 0));
        out.clear();
        d.pack(Kind::Event, &recs[0], &mut out);
        assert_eq!(out[0], FORMAT_PACKED);
        // The next training waits for three times the records the store held when
        // the first was stored.
        let sampler = d.shelf(Kind::Event).sampler.lock().unwrap();
        assert!(!sampler.due());
        assert_eq!(sampler.before, 1234);
    }

    #[test]
    fn the_sample_stays_bounded_and_uniform() {
        let mut s = Sampler::default();
        for i in 0..100_000u32 {
            s.observe(&i.to_be_bytes());
        }
        assert_eq!(s.samples.len(), SAMPLE_RECORDS);
        // About as many from each half of the records seen.
        let late = s
            .samples
            .iter()
            .filter(|r| u32::from_be_bytes(r[..4].try_into().unwrap()) >= 50_000)
            .count();
        assert!(
            (1_700..2_300).contains(&late),
            "{late} of 4000 from the second half"
        );
    }

    #[test]
    fn dictionary_names_round_trip() {
        for kind in Kind::ALL {
            for id in [1, 2, 300, u32::MAX] {
                assert_eq!(parse_meta_name(&meta_name(kind, id)), Some((kind, id)));
            }
        }
        assert_eq!(parse_meta_name(b"schema"), None);
        assert_eq!(parse_meta_name(b"dict\x07\0\0\0\x01"), None);
        assert_eq!(parse_meta_name(b"dict\0\0\0\x01"), None);
    }
}
