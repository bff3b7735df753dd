//! The documents of a MongoDB dump, streamed one at a time.
//!
//! Two formats, as an operator makes them:
//!
//! - `mongodump`: a directory holding `<collection>.bson` files (or
//!   `<collection>.bson.gz` with `--gzip`), directly or in a `<db>` directory below
//!   (`dump/kernelci/node.bson`). A BSON file is a sequence of documents, each
//!   starting with its length, so one undecodable document is reported and the next
//!   one read; a length that cannot be right ends the file with an error.
//! - `mongoexport`: `<collection>.json` files (or a single file named after its
//!   collection) in Extended JSON v2, canonical or relaxed, one document per line or
//!   `--jsonArray`. The text is cut into top-level objects by a small scanner (so an
//!   array is streamed too), and each object is read with the BSON crate's Extended
//!   JSON rules.
//!
//! Memory is one document at a time (at most [`MAX_DOCUMENT`] bytes).

use std::fs::File;
use std::io::{BufReader, ErrorKind, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bson::{Bson, Document};

use super::convert::Collection;

/// The largest document read: MongoDB's limit is 16 MiB; a dump may hold slightly
/// larger ones written by old servers, and JSON text is longer than BSON.
pub const MAX_DOCUMENT: usize = 64 * 1024 * 1024;

/// How a collection file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `mongodump` BSON.
    Bson,
    /// `mongodump --gzip` BSON.
    BsonGz,
    /// `mongoexport` Extended JSON (lines or array).
    Json,
}

/// One collection's file in a dump.
#[derive(Debug, Clone)]
pub struct CollectionFile {
    /// The collection.
    pub collection: Collection,
    /// The file.
    pub path: PathBuf,
    /// Its format.
    pub format: Format,
    /// Its size in bytes (for progress).
    pub size: u64,
}

fn classify(path: &Path) -> Option<(Collection, Format)> {
    let name = path.file_name()?.to_str()?;
    let (stem, format) = if let Some(s) = name.strip_suffix(".bson.gz") {
        (s, Format::BsonGz)
    } else if let Some(s) = name.strip_suffix(".bson") {
        (s, Format::Bson)
    } else if let Some(s) = name.strip_suffix(".jsonl") {
        (s, Format::Json)
    } else if let Some(s) = name.strip_suffix(".json") {
        (s, Format::Json)
    } else {
        return None;
    };
    // mongodump's `<collection>.metadata.json` is not a collection.
    Collection::from_name(stem).map(|c| (c, format))
}

/// The collection files at `path`: a file named after its collection, or a
/// directory holding them (directly, or in one database directory below, where
/// `kernelci` is preferred). Sorted in import order; a collection found twice (BSON
/// and JSON) is an error.
pub fn discover(path: &Path) -> Result<Vec<CollectionFile>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let candidates: Vec<PathBuf> = if meta.is_file() {
        vec![path.to_path_buf()]
    } else {
        let mut files = list(path)?;
        if !files.iter().any(|p| classify(p).is_some()) {
            // A mongodump root: `<root>/<db>/...`.
            let db = ["kernelci"]
                .iter()
                .map(|d| path.join(d))
                .find(|d| d.is_dir())
                .or_else(|| list(path).ok()?.into_iter().find(|d| d.is_dir()));
            if let Some(db) = db {
                files = list(&db)?;
            }
        }
        files
    };
    let mut found: Vec<CollectionFile> = Vec::new();
    for p in candidates {
        let Some((collection, format)) = classify(&p) else {
            continue;
        };
        if let Some(other) = found.iter().find(|f| f.collection == collection) {
            return Err(format!(
                "collection {} is in both {} and {}: keep one",
                collection.name(),
                other.path.display(),
                p.display()
            ));
        }
        let size = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        found.push(CollectionFile {
            collection,
            path: p,
            format,
            size,
        });
    }
    if found.is_empty() {
        return Err(format!(
            "{}: no collection of the reference's database found (node.bson, node.json, \
             user.bson.gz...)",
            path.display()
        ));
    }
    found.sort_by_key(|f| f.collection);
    Ok(found)
}

fn list(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    out.sort();
    Ok(out)
}

/// Counts the bytes read from the file (before decompression): the progress.
struct Counting<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// One item of a collection file: a document, or why one could not be read (and
/// where). A fatal error (the file cannot be read on) ends the stream after it.
#[derive(Debug)]
pub enum Item {
    /// A document.
    Doc(Document),
    /// A document that could not be decoded; the next one is readable.
    Bad {
        /// Byte offset of the document in the (decompressed) stream.
        offset: u64,
        /// Why.
        reason: String,
    },
    /// The file cannot be read on.
    Fatal(String),
}

/// The documents of one collection file.
pub struct Documents {
    reader: Box<dyn Read + Send>,
    format: Format,
    offset: u64,
    done: bool,
    started_json: bool,
    /// Bytes of the file read so far.
    pub bytes_read: Arc<AtomicU64>,
}

impl Documents {
    /// Opens `file` for reading.
    pub fn open(file: &CollectionFile) -> Result<Self, String> {
        let f = File::open(&file.path).map_err(|e| format!("{}: {e}", file.path.display()))?;
        let bytes_read = Arc::new(AtomicU64::new(0));
        let counted = Counting {
            inner: f,
            read: bytes_read.clone(),
        };
        let reader: Box<dyn Read + Send> = match file.format {
            Format::BsonGz => Box::new(BufReader::with_capacity(
                1 << 20,
                flate2::read::MultiGzDecoder::new(BufReader::new(counted)),
            )),
            Format::Bson | Format::Json => Box::new(BufReader::with_capacity(1 << 20, counted)),
        };
        Ok(Documents {
            reader,
            format: file.format,
            offset: 0,
            done: false,
            started_json: false,
            bytes_read,
        })
    }

    fn next_bson(&mut self) -> Option<Item> {
        let mut len = [0u8; 4];
        match read_full(&mut self.reader, &mut len) {
            Ok(0) => return None,
            Ok(4) => {}
            Ok(_) => return Some(self.fatal("the file ends inside a document")),
            Err(e) => return Some(self.fatal(&e.to_string())),
        }
        let n = i32::from_le_bytes(len);
        let size = match usize::try_from(n) {
            Ok(s) if (5..=MAX_DOCUMENT).contains(&s) => s,
            _ => {
                return Some(self.fatal(&format!(
                    "a document length of {n} bytes cannot be right (corrupt file?)"
                )))
            }
        };
        let mut buf = vec![0u8; size];
        buf[..4].copy_from_slice(&len);
        match read_full(&mut self.reader, &mut buf[4..]) {
            Ok(k) if k == size - 4 => {}
            Ok(_) => return Some(self.fatal("the file ends inside a document")),
            Err(e) => return Some(self.fatal(&e.to_string())),
        }
        let offset = self.offset;
        self.offset += size as u64;
        Some(match Document::from_reader(&mut buf.as_slice()) {
            Ok(d) => Item::Doc(d),
            Err(e) => Item::Bad {
                offset,
                reason: format!("undecodable BSON: {e}"),
            },
        })
    }

    /// The next top-level JSON object's text (skipping blanks, commas and the
    /// brackets of an array), or `None` at the end.
    fn next_json_text(&mut self) -> Result<Option<(u64, Vec<u8>)>, String> {
        let mut byte = [0u8; 1];
        // Find the start of the next object.
        loop {
            if read_full(&mut self.reader, &mut byte).map_err(|e| e.to_string())? == 0 {
                return Ok(None);
            }
            self.offset += 1;
            match byte[0] {
                b'{' => break,
                b' ' | b'\t' | b'\r' | b'\n' | b',' | b']' => {}
                b'[' if !self.started_json => self.started_json = true,
                other => {
                    return Err(format!(
                        "unexpected {:?} at byte {} (not Extended JSON documents)",
                        other as char,
                        self.offset - 1
                    ))
                }
            }
        }
        self.started_json = true;
        let start = self.offset - 1;
        let mut text = vec![b'{'];
        let (mut depth, mut in_string, mut escaped) = (1usize, false, false);
        while depth > 0 {
            if read_full(&mut self.reader, &mut byte).map_err(|e| e.to_string())? == 0 {
                return Err(format!("the file ends inside the document at byte {start}"));
            }
            self.offset += 1;
            let b = byte[0];
            text.push(b);
            if text.len() > MAX_DOCUMENT {
                return Err(format!(
                    "the document at byte {start} is larger than {MAX_DOCUMENT} bytes"
                ));
            }
            if in_string {
                match b {
                    _ if escaped => escaped = false,
                    b'\\' => escaped = true,
                    b'"' => in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => in_string = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' => depth -= 1,
                _ => {}
            }
        }
        Ok(Some((start, text)))
    }

    fn next_json(&mut self) -> Option<Item> {
        let (offset, text) = match self.next_json_text() {
            Ok(Some(t)) => t,
            Ok(None) => return None,
            Err(e) => return Some(self.fatal(&e)),
        };
        let parsed = serde_json::from_slice::<serde_json::Value>(&text)
            .map_err(|e| format!("invalid JSON: {e}"))
            .and_then(|v| Bson::try_from(v).map_err(|e| format!("invalid Extended JSON: {e}")));
        Some(match parsed {
            Ok(Bson::Document(d)) => Item::Doc(d),
            Ok(_) => Item::Bad {
                offset,
                reason: "not a document".into(),
            },
            Err(reason) => Item::Bad { offset, reason },
        })
    }

    fn fatal(&mut self, reason: &str) -> Item {
        self.done = true;
        Item::Fatal(format!("at byte {}: {reason}", self.offset))
    }
}

impl Iterator for Documents {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        if self.done {
            return None;
        }
        let item = match self.format {
            Format::Bson | Format::BsonGz => self.next_bson(),
            Format::Json => self.next_json(),
        };
        if item.is_none() {
            self.done = true;
        }
        item
    }
}

/// Reads until `buf` is full or the end; how many bytes were read.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
