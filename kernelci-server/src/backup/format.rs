//! The backup file: JSON lines, versioned, checksummed.
//!
//! ```text
//! {"format":"kernelci-backup","version":1,"created":"2026-12-03T16:00:00.000000","source":"http://..."}
//! {"type":"subscriber","record":{...}}        one line per record (core's Record JSON)
//! {"type":"node","record":{...}}
//! ...
//! {"end":{"records":12345,"sections":{"nodes":10000,...},"crc32":"1a2b3c4d"}}
//! ```
//!
//! The last line closes the file: a backup without it was cut short. `crc32` is
//! the CRC-32 of every byte before the last line, so a changed, missing or extra
//! byte anywhere is found. `version` is raised when a reader of this version could
//! not restore the file; a reader refuses versions it does not know.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use kernelci_core::store::Record;

/// The `format` of the header line.
pub const FORMAT: &str = "kernelci-backup";
/// The version this server writes and the newest it reads.
pub const VERSION: u64 = 1;

/// The first line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Header {
    /// Always [`FORMAT`].
    pub format: String,
    /// The format version.
    pub version: u64,
    /// When the backup started (UTC).
    pub created: String,
    /// Where it was taken from.
    pub source: String,
}

/// The last line's content.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct End {
    /// Records in the file.
    pub records: u64,
    /// Records per section name.
    pub sections: BTreeMap<String, u64>,
    /// CRC-32 of every byte before the last line, 8 hex digits.
    pub crc32: String,
}

#[derive(Serialize, Deserialize)]
struct EndLine {
    end: End,
}

/// Writes a backup to `<path>.partial`, renamed to `path` when complete.
pub struct Writer {
    out: BufWriter<File>,
    crc: crc32fast::Hasher,
    end: End,
    partial: PathBuf,
    path: PathBuf,
}

impl Writer {
    /// Starts a backup file with its header.
    pub fn create(path: &Path, source: &str) -> Result<Self, String> {
        let partial = PathBuf::from(format!("{}.partial", path.display()));
        let file = File::create(&partial)
            .map_err(|e| format!("cannot create {}: {e}", partial.display()))?;
        let mut w = Writer {
            out: BufWriter::with_capacity(1 << 20, file),
            crc: crc32fast::Hasher::new(),
            end: End::default(),
            partial,
            path: path.to_path_buf(),
        };
        let header = Header {
            format: FORMAT.into(),
            version: VERSION,
            created: kernelci_core::time::Timestamp::now().to_string(),
            source: source.into(),
        };
        w.line(&serde_json::to_string(&header).map_err(|e| e.to_string())?)?;
        Ok(w)
    }

    fn line(&mut self, text: &str) -> Result<(), String> {
        self.crc.update(text.as_bytes());
        self.crc.update(b"\n");
        writeln!(self.out, "{text}").map_err(|e| format!("{}: {e}", self.partial.display()))
    }

    /// Appends one record.
    pub fn record(&mut self, r: &Record) -> Result<(), String> {
        let text = serde_json::to_string(r).map_err(|e| e.to_string())?;
        self.line(&text)?;
        self.end.records += 1;
        *self
            .end
            .sections
            .entry(r.section().name().to_owned())
            .or_default() += 1;
        Ok(())
    }

    /// Writes the last line, syncs the file to disk and gives it its name.
    pub fn finish(mut self) -> Result<End, String> {
        self.end.crc32 = format!("{:08x}", self.crc.clone().finalize());
        let last = serde_json::to_string(&EndLine {
            end: self.end.clone(),
        })
        .map_err(|e| e.to_string())?;
        writeln!(self.out, "{last}").map_err(|e| e.to_string())?;
        let file = self.out.into_inner().map_err(|e| e.to_string())?;
        file.sync_all().map_err(|e| e.to_string())?;
        std::fs::rename(&self.partial, &self.path)
            .map_err(|e| format!("cannot name the backup {}: {e}", self.path.display()))?;
        Ok(self.end)
    }
}

/// Reads the backup at `path`, handing each record to `each` in file order, and
/// checks it whole: the header's format and version, every line a record, the
/// last line present with the right counts and checksum. The first problem is
/// the error, naming the line. (A caller that must not act on a bad file reads it
/// twice: once to check, with an `each` that does nothing.)
pub fn read(
    path: &Path,
    mut each: impl FnMut(Record) -> Result<(), String>,
) -> Result<(Header, End), String> {
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut lines = BufReader::with_capacity(1 << 20, file);
    let mut crc = crc32fast::Hasher::new();
    let mut buf = String::new();
    let mut n = 0u64;
    let mut next = |buf: &mut String| -> Result<bool, String> {
        buf.clear();
        n += 1;
        let k = lines.read_line(buf).map_err(|e| format!("line {n}: {e}"))?;
        Ok(k > 0)
    };
    if !next(&mut buf)? {
        return Err("an empty file, not a backup".into());
    }
    let header: Header = serde_json::from_str(buf.trim_end())
        .map_err(|_| "not a kernelci-server backup (no header line)".to_string())?;
    if header.format != FORMAT {
        return Err(format!(
            "not a kernelci-server backup (format {:?})",
            header.format
        ));
    }
    if header.version > VERSION {
        return Err(format!(
            "backup format version {} is newer than this server reads ({VERSION}): restore \
             it with a newer kernelci-server",
            header.version
        ));
    }
    crc.update(buf.as_bytes());
    let mut seen = End::default();
    let mut line = 1u64;
    loop {
        line += 1;
        if !next(&mut buf)? {
            return Err(format!(
                "the backup ends at line {line} without its last line: it was cut short"
            ));
        }
        if !buf.ends_with('\n') {
            return Err(format!("line {line} is cut short"));
        }
        if buf.starts_with("{\"end\":") {
            let end: EndLine =
                serde_json::from_str(buf.trim_end()).map_err(|e| format!("line {line}: {e}"))?;
            let mut rest = String::new();
            if next(&mut rest)? {
                return Err(format!("data after the last line (line {})", line + 1));
            }
            seen.crc32 = format!("{:08x}", crc.finalize());
            if seen.crc32 != end.end.crc32 {
                return Err(format!(
                    "checksum mismatch: the file says {}, its content gives {}: the file \
                     was changed or damaged",
                    end.end.crc32, seen.crc32
                ));
            }
            if seen.records != end.end.records || seen.sections != end.end.sections {
                return Err(format!(
                    "record counts differ from the last line's ({} read, {} announced)",
                    seen.records, end.end.records
                ));
            }
            return Ok((header, end.end));
        }
        crc.update(buf.as_bytes());
        let r: Record = serde_json::from_str(buf.trim_end())
            .map_err(|e| format!("line {line}: not a record: {e}"))?;
        seen.records += 1;
        *seen
            .sections
            .entry(r.section().name().to_owned())
            .or_default() += 1;
        each(r).map_err(|e| format!("line {line}: {e}"))?;
    }
}
