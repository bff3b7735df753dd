//! MongoDB-compatible object identifiers.
//!
//! An [`ObjectId`] is 12 bytes: 4 bytes of big-endian Unix seconds, 5 bytes chosen at
//! random once per process, and a 3-byte big-endian counter. On the wire it is 24
//! lowercase hex characters; parsing accepts either case. Byte order equals creation
//! order for ids made by one [`IdGenerator`], which the default node order relies on.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A 12-byte ObjectId (see the module docs for its layout).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectId([u8; 12]);

/// Why a string is not an [`ObjectId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "'{input}' is not a valid ObjectId, it must be a 12-byte input or a 24-character hex string"
)]
pub struct ObjectIdError {
    /// The rejected input, as given (used verbatim in the reference's message).
    pub input: String,
}

impl ObjectId {
    /// Builds an id from its 12 raw bytes.
    pub const fn from_bytes(bytes: [u8; 12]) -> Self {
        Self(bytes)
    }

    /// The 12 raw bytes; their lexicographic order is the id order.
    pub const fn bytes(&self) -> [u8; 12] {
        self.0
    }

    /// Parses 24 hex characters (either case).
    pub fn parse(s: &str) -> Result<Self, ObjectIdError> {
        let err = || ObjectIdError {
            input: s.to_owned(),
        };
        let raw = s.as_bytes();
        if raw.len() != 24 {
            return Err(err());
        }
        let mut out = [0u8; 12];
        for (i, pair) in raw.chunks_exact(2).enumerate() {
            let hi = hex_value(pair[0]).ok_or_else(err)?;
            let lo = hex_value(pair[1]).ok_or_else(err)?;
            out[i] = (hi << 4) | lo;
        }
        Ok(Self(out))
    }

    /// The 24 lowercase hex characters, in a buffer of their own (no allocation;
    /// what `Display` and `Serialize` write).
    pub fn to_hex(&self) -> IdText {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut text = [0u8; 24];
        for (pair, b) in text.chunks_exact_mut(2).zip(self.0) {
            pair[0] = DIGITS[usize::from(b >> 4)];
            pair[1] = DIGITS[usize::from(b & 0xf)];
        }
        IdText(text)
    }

    /// The creation time in Unix seconds, from the first four bytes.
    pub fn timestamp_secs(&self) -> u32 {
        u32::from_be_bytes([self.0[0], self.0[1], self.0[2], self.0[3]])
    }

    /// A new id from the process-wide generator.
    pub fn new() -> Self {
        IdGenerator::global().next_id()
    }
}

impl Default for ObjectId {
    /// A fresh id (same as [`ObjectId::new`]).
    fn default() -> Self {
        Self::new()
    }
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// An id's hex form ([`ObjectId::to_hex`]).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct IdText([u8; 24]);

impl IdText {
    /// The 24 characters.
    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever written into it.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.to_hex().as_str())
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId({self})")
    }
}

impl FromStr for ObjectId {
    type Err = ObjectIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for ObjectId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.to_hex().as_str())
    }
}

impl<'de> Deserialize<'de> for ObjectId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Makes ids that are unique and strictly increasing within the generator.
///
/// The state (seconds and counter) lives in one atomic word, so concurrent callers
/// never see the same id and every id is greater than all ids handed out before it.
/// If the clock goes backwards the generator keeps the last second it used; if the
/// 24-bit counter overflows within a second it borrows the next second.
#[derive(Debug)]
pub struct IdGenerator {
    process_random: [u8; 5],
    /// `seconds << 24 | counter`.
    state: AtomicU64,
}

impl IdGenerator {
    /// A generator with a fresh random 5-byte process part.
    pub fn new() -> Self {
        let mut random = [0u8; 8];
        // A failing OS random source leaves the part zero: ids stay unique within
        // this generator, only cross-process uniqueness then rests on the clock.
        let _ = getrandom::getrandom(&mut random);
        let mut process_random = [0u8; 5];
        process_random.copy_from_slice(&random[..5]);
        let start_counter = u64::from(u32::from_le_bytes([random[5], random[6], random[7], 0]));
        Self::with_parts(process_random, start_counter)
    }

    /// A generator with a fixed process part and counter start (for tests).
    pub fn with_parts(process_random: [u8; 5], start_counter: u64) -> Self {
        Self {
            process_random,
            state: AtomicU64::new(start_counter & 0xff_ffff),
        }
    }

    /// The process-wide generator used by [`ObjectId::new`].
    pub fn global() -> &'static IdGenerator {
        static GLOBAL: OnceLock<IdGenerator> = OnceLock::new();
        GLOBAL.get_or_init(IdGenerator::new)
    }

    /// The next id, stamped with the current time.
    pub fn next_id(&self) -> ObjectId {
        let now = u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0) & 0xffff_ffff;
        self.next_id_at(now)
    }

    /// The next id, as if the clock read `now_secs`.
    pub fn next_id_at(&self, now_secs: u64) -> ObjectId {
        let mut current = self.state.load(Ordering::Relaxed);
        loop {
            let (secs, counter) = (current >> 24, current & 0xff_ffff);
            let next = if now_secs > secs {
                (now_secs << 24) | ((counter + 1) & 0xff_ffff)
            } else {
                // Same or earlier second: keep counting; overflow carries into seconds.
                current + 1
            };
            match self.state.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return self.compose(next),
                Err(seen) => current = seen,
            }
        }
    }

    fn compose(&self, state: u64) -> ObjectId {
        let secs = ((state >> 24) & 0xffff_ffff) as u32;
        let counter = (state & 0xff_ffff) as u32;
        let mut b = [0u8; 12];
        b[..4].copy_from_slice(&secs.to_be_bytes());
        b[4..9].copy_from_slice(&self.process_random);
        b[9..].copy_from_slice(&counter.to_be_bytes()[1..]);
        ObjectId(b)
    }
}

impl Default for IdGenerator {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_lowercase_and_parses_either_case() {
        let id = ObjectId::parse("65A1355EE98651D0FE81E412").unwrap();
        assert_eq!(id.to_string(), "65a1355ee98651d0fe81e412");
        assert_eq!(ObjectId::parse(&id.to_string()).unwrap(), id);
        assert_eq!(id.timestamp_secs(), 0x65a1355e);
        assert_eq!(
            serde_json::to_string(&id).unwrap_or_default(),
            "\"65a1355ee98651d0fe81e412\""
        );
    }

    proptest::proptest! {
        #[test]
        fn hex_is_each_byte_in_two_lowercase_digits(bytes in proptest::array::uniform12(0u8..)) {
            let id = ObjectId::from_bytes(bytes);
            let want: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            let hex = id.to_hex();
            proptest::prop_assert_eq!(hex.as_str(), want.as_str());
            proptest::prop_assert_eq!(id.to_string(), want);
        }
    }

    #[test]
    fn rejects_bad_input_with_the_reference_message() {
        for bad in [
            "",
            "zz",
            "65a1355ee98651d0fe81e41",
            "65a1355ee98651d0fe81e41g",
            "é5a1355ee98651d0fe81e41",
        ] {
            let err = ObjectId::parse(bad).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("'{bad}' is not a valid ObjectId, it must be a 12-byte input or a 24-character hex string")
            );
        }
    }

    #[test]
    fn generator_is_monotonic_even_when_the_clock_goes_back() {
        let g = IdGenerator::with_parts([1, 2, 3, 4, 5], 0xff_fffe);
        let a = g.next_id_at(100);
        let b = g.next_id_at(100);
        let c = g.next_id_at(99);
        let d = g.next_id_at(101);
        assert!(a < b && b < c && c < d, "{a} {b} {c} {d}");
        assert_eq!(&a.bytes()[4..9], &[1, 2, 3, 4, 5]);
    }

    #[test]
    fn serde_uses_hex_strings() {
        let id = ObjectId::from_bytes([0xab; 12]);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"abababababababababababab\"");
        assert_eq!(serde_json::from_str::<ObjectId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<ObjectId>("\"nope\"").is_err());
    }
}
