//! UTC timestamps and the datetime formats of the API (API.md §1.5, QUERY.md §4).
//!
//! A [`Timestamp`] is a UTC instant with microsecond precision, kept as a signed count
//! of microseconds since the Unix epoch: cheap to copy and compare, and its order is
//! time order (storage backends use it directly in index keys). Years 1 to 9999 only,
//! as in Python.
//!
//! Three text forms exist:
//!
//! - **output** ([`Timestamp`]'s `Display`): naive ISO-8601 without zone,
//!   `2024-02-01T09:58:28.479000`, the fraction omitted when the microsecond is zero;
//! - **CloudEvent output** ([`Timestamp::to_cloudevent_string`]): 6-digit fraction and
//!   `+00:00`;
//! - **input**: [`parse_query_datetime`] follows Python 3.11 `datetime.fromisoformat`
//!   (query strings); [`parse_body_datetime`] follows pydantic's lax datetime parsing
//!   (JSON bodies: ISO strings, or Unix seconds / milliseconds as numbers or numeric
//!   strings).
//!
//! Naive inputs are UTC; aware inputs are converted to UTC. Stored nodes and events
//! keep millisecond precision ([`Timestamp::truncate_to_millis`]), as the reference's
//! MongoDB does; query datetimes are truncated the same way, so comparisons agree.

use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Timelike, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Microseconds in one second.
const MICROS: i64 = 1_000_000;
/// Earliest and latest representable instants: 0001-01-01 and 9999-12-31T23:59:59.999999.
const MIN_MICROS: i64 = -62_135_596_800 * MICROS;
const MAX_MICROS: i64 = 253_402_300_800 * MICROS - 1;

/// A UTC instant with microsecond precision (see the module docs).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Timestamp(i64);

/// Why a text is not an accepted datetime.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid isoformat string: '{input}'")]
pub struct DateTimeError {
    /// The rejected input.
    pub input: String,
}

impl Timestamp {
    /// The instant `micros` microseconds after the Unix epoch, if within years 1–9999.
    pub fn from_micros(micros: i64) -> Option<Self> {
        (MIN_MICROS..=MAX_MICROS)
            .contains(&micros)
            .then_some(Self(micros))
    }

    /// Microseconds since the Unix epoch.
    pub const fn as_micros(&self) -> i64 {
        self.0
    }

    /// The current time.
    pub fn now() -> Self {
        Self::from_chrono(Utc::now())
    }

    /// Converts from chrono (clamped to the representable range).
    pub fn from_chrono(dt: DateTime<Utc>) -> Self {
        Self(dt.timestamp_micros().clamp(MIN_MICROS, MAX_MICROS))
    }

    /// Converts to chrono.
    pub fn to_chrono(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(self.0).unwrap_or_default()
    }

    /// This instant plus `secs` seconds (saturating at the representable range).
    pub fn plus_seconds(&self, secs: i64) -> Self {
        Self(
            self.0
                .saturating_add(secs.saturating_mul(MICROS))
                .clamp(MIN_MICROS, MAX_MICROS),
        )
    }

    /// This instant truncated to the millisecond, the precision stored documents
    /// keep (as MongoDB's BSON dates do in the reference: values read back always end
    /// in `000` microseconds, and query datetimes are truncated the same way).
    pub fn truncate_to_millis(&self) -> Self {
        Self(self.0 - self.0.rem_euclid(1000))
    }

    /// The CloudEvent rendering: `2024-01-04T10:48:39.974782+00:00`.
    pub fn to_cloudevent_string(&self) -> String {
        let dt = self.to_chrono();
        format!(
            "{}.{:06}+00:00",
            dt.format("%Y-%m-%dT%H:%M:%S"),
            dt.timestamp_subsec_micros()
        )
    }

    fn from_naive(dt: NaiveDateTime) -> Option<Self> {
        Self::from_micros(dt.and_utc().timestamp_micros())
    }
}

/// A timestamp's output form ([`Timestamp::to_text`]): at most 26 ASCII bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TimestampText {
    bytes: [u8; 26],
    len: u8,
}

impl TimestampText {
    /// The text.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits and separators are ever written into it.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

/// Writes `value`'s last `width` decimal digits at `out[at..at + width]`.
fn put_digits(out: &mut [u8], at: usize, width: usize, mut value: u32) {
    for slot in out[at..at + width].iter_mut().rev() {
        // A digit: `value % 10` is below 10.
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

impl Timestamp {
    /// The output form (`2024-02-01T09:58:28.479000`, no fraction when the
    /// microsecond is zero) in a buffer of its own: what `Display` and `Serialize`
    /// write, without the formatting machinery (4 per node of every answer).
    pub fn to_text(&self) -> TimestampText {
        let dt = self.to_chrono();
        let mut bytes = *b"0000-00-00T00:00:00.000000";
        // Years 1 to 9999 (the representable range): four digits.
        put_digits(&mut bytes, 0, 4, dt.year().unsigned_abs());
        put_digits(&mut bytes, 5, 2, dt.month());
        put_digits(&mut bytes, 8, 2, dt.day());
        put_digits(&mut bytes, 11, 2, dt.hour());
        put_digits(&mut bytes, 14, 2, dt.minute());
        put_digits(&mut bytes, 17, 2, dt.second());
        let micros = dt.timestamp_subsec_micros();
        let len = if micros == 0 {
            19
        } else {
            put_digits(&mut bytes, 20, 6, micros);
            26
        };
        TimestampText { bytes, len }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.to_text().as_str())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.to_text().as_str())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    /// Accepts what [`parse_body_datetime`] accepts.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        parse_body_datetime(&v).map_err(serde::de::Error::custom)
    }
}

/// Parses a query-string datetime with Python 3.11 `datetime.fromisoformat` rules.
///
/// Accepted: `YYYY-MM-DD`, `YYYYMMDD`, ISO week dates (`2024-W01`, `2024-W01-1`,
/// `2024W011`), optionally followed by any single separator character and a time
/// `HH[:MM[:SS[.f…]]]` (or basic `HHMMSS`), a fraction of any length (truncated to
/// microseconds) after `.` or `,`, and a zone `Z`, `±HH`, `±HH:MM`, `±HHMM` (with
/// optional seconds). Epoch numbers, `2024-01` and `now` are rejected.
pub fn parse_query_datetime(s: &str) -> Result<Timestamp, DateTimeError> {
    let err = || DateTimeError {
        input: s.to_owned(),
    };
    if !s.is_ascii() || s.len() < 7 {
        return Err(err());
    }
    let b = s.as_bytes();
    let sep = find_date_end(b).ok_or_else(err)?;
    let date = parse_iso_date(&s[..sep.min(s.len())]).ok_or_else(err)?;
    let (time_micros, offset_micros) = if sep < s.len() {
        // One separator character, then the time.
        parse_iso_time(&s[sep + 1..]).ok_or_else(err)?
    } else {
        (0, 0)
    };
    let naive = date.and_hms_opt(0, 0, 0).ok_or_else(err)?;
    let base = Timestamp::from_naive(naive).ok_or_else(err)?;
    let micros = base.0 + time_micros - offset_micros;
    Timestamp::from_micros(micros).ok_or_else(err)
}

/// Where the date part of a `fromisoformat` string ends (Python's
/// `_find_isoformat_datetime_separator`).
fn find_date_end(b: &[u8]) -> Option<usize> {
    let len = b.len();
    if len == 7 {
        return Some(7);
    }
    if b[4] == b'-' {
        if b[5] == b'W' {
            if len > 8 && b[8] == b'-' {
                if len == 9 {
                    return None;
                }
                if len > 10 && b[10].is_ascii_digit() {
                    return Some(8);
                }
                return Some(10);
            }
            return Some(8);
        }
        return Some(10);
    }
    if b[4] == b'W' {
        // YYYYWww or YYYYWwwD: CPython scans the run of digits and decides by parity.
        let mut idx = 7;
        while idx < len && b[idx].is_ascii_digit() {
            idx += 1;
        }
        if idx < 9 {
            return Some(idx);
        }
        return Some(if idx % 2 == 0 { 7 } else { 8 });
    }
    Some(8)
}

fn digits(s: &str, from: usize, n: usize) -> Option<u32> {
    let part = s.get(from..from + n)?;
    if !part.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    part.parse().ok()
}

/// `YYYY-MM-DD`, `YYYYMMDD`, `YYYY-Www[-D]`, `YYYYWww[D]`.
fn parse_iso_date(s: &str) -> Option<NaiveDate> {
    let year = digits(s, 0, 4)? as i32;
    let b = s.as_bytes();
    let has_sep = b.get(4) == Some(&b'-');
    let mut pos = 4 + usize::from(has_sep);
    if b.get(pos) == Some(&b'W') {
        pos += 1;
        let week = digits(s, pos, 2)?;
        pos += 2;
        let mut weekday = 1;
        if pos < s.len() {
            if has_sep {
                if b[pos] != b'-' {
                    return None;
                }
                pos += 1;
            }
            weekday = digits(s, pos, 1)?;
            pos += 1;
        }
        if pos != s.len() || !(1..=7).contains(&weekday) {
            return None;
        }
        let wd = chrono::Weekday::try_from(u8::try_from(weekday - 1).ok()?).ok()?;
        return NaiveDate::from_isoywd_opt(year, week, wd);
    }
    let month = digits(s, pos, 2)?;
    pos += 2;
    if has_sep {
        if b.get(pos) != Some(&b'-') {
            return None;
        }
        pos += 1;
    }
    let day = digits(s, pos, 2)?;
    pos += 2;
    if pos != s.len() || year == 0 {
        return None;
    }
    NaiveDate::from_ymd_opt(year, month, day)
}

/// A time with optional zone: returns (microseconds since midnight, zone offset in
/// microseconds east of UTC). The zone takes the same `HH[:MM[:SS[.f]]]` form as the
/// time, and must be less than 24 hours (Python's `timezone` rule).
fn parse_iso_time(s: &str) -> Option<(i64, i64)> {
    if s.len() < 2 {
        return None;
    }
    let tz_pos = s.find(['-', '+', 'Z']);
    let (time, tz) = match tz_pos {
        Some(p) => (&s[..p], Some(&s[p..])),
        None => (s, None),
    };
    let (h, m, sec, frac) = parse_hh_mm_ss_ff(time)?;
    if h > 23 || m > 59 || sec > 59 {
        return None;
    }
    let micros = ((i64::from(h) * 60 + i64::from(m)) * 60 + i64::from(sec)) * MICROS + frac;
    let offset = match tz {
        None | Some("Z") => 0,
        Some(tz) => {
            let sign: i64 = if tz.starts_with('-') { -1 } else { 1 };
            let body = &tz[1..];
            if tz.starts_with('Z') || matches!(body.len(), 0 | 1 | 3) {
                return None;
            }
            let (th, tm, ts, tf) = parse_hh_mm_ss_ff(body)?;
            let off = ((i64::from(th) * 60 + i64::from(tm)) * 60 + i64::from(ts)) * MICROS + tf;
            if off >= 24 * 3600 * MICROS {
                return None;
            }
            sign * off
        }
    };
    Some((micros, offset))
}

/// `HH[:MM[:SS]]` or `HH[MM[SS]]`, then optionally a fraction after `.` or `,` (after
/// any component, as CPython's C implementation allows) → (h, m, s, fraction in µs).
fn parse_hh_mm_ss_ff(s: &str) -> Option<(u32, u32, u32, i64)> {
    let b = s.as_bytes();
    let mut comps = [0u32; 3];
    let mut pos = 0;
    let mut has_sep = false;
    let mut fraction_at = None;
    for (i, comp) in comps.iter_mut().enumerate() {
        *comp = digits(s, pos, 2)?;
        pos += 2;
        let Some(&c) = b.get(pos) else {
            break;
        };
        if i == 0 {
            has_sep = c == b':';
        }
        if c == b'.' || c == b',' {
            fraction_at = Some(pos + 1);
            break;
        }
        if i == 2 {
            return None;
        }
        if has_sep {
            if c != b':' {
                return None;
            }
            pos += 1;
        }
    }
    let Some(start) = fraction_at else {
        return Some((comps[0], comps[1], comps[2], 0));
    };
    let frac = &s[start..];
    if frac.is_empty() || !frac.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let mut micros = 0i64;
    for i in 0..6 {
        let d = frac.as_bytes().get(i).map_or(0, |c| i64::from(c - b'0'));
        micros = micros * 10 + d;
    }
    Some((comps[0], comps[1], comps[2], micros))
}

/// Parses a datetime from a JSON body value (pydantic lax mode).
///
/// Strings: `YYYY-MM-DD`, optionally followed by `T`, `t`, `_` or a space and
/// `HH:MM[:SS[.f…]]`, then optionally `Z`/`z` or `±HH:MM`/`±HHMM`/`±HH`. Numbers and
/// numeric strings are Unix seconds, or milliseconds when their magnitude exceeds
/// 2·10¹⁰ (pydantic's rule).
pub fn parse_body_datetime(v: &serde_json::Value) -> Result<Timestamp, DateTimeError> {
    match v {
        serde_json::Value::String(s) => parse_body_datetime_str(s),
        serde_json::Value::Number(n) => {
            let f = n.as_f64().ok_or_else(|| DateTimeError {
                input: n.to_string(),
            })?;
            epoch_to_timestamp(f).ok_or_else(|| DateTimeError {
                input: n.to_string(),
            })
        }
        other => Err(DateTimeError {
            input: other.to_string(),
        }),
    }
}

fn epoch_to_timestamp(mut f: f64) -> Option<Timestamp> {
    if !f.is_finite() {
        return None;
    }
    if f.abs() > 2e10 {
        f /= 1000.0;
    }
    let micros = (f * 1e6).round();
    if micros < MIN_MICROS as f64 || micros > MAX_MICROS as f64 {
        return None;
    }
    Timestamp::from_micros(micros as i64)
}

fn parse_body_datetime_str(s: &str) -> Result<Timestamp, DateTimeError> {
    let err = || DateTimeError {
        input: s.to_owned(),
    };
    let t = s.trim();
    let unsigned = t.strip_prefix('-').unwrap_or(t);
    if unsigned.bytes().any(|c| c.is_ascii_digit())
        && unsigned.bytes().all(|c| c.is_ascii_digit() || c == b'.')
    {
        let f: f64 = t.parse().map_err(|_| err())?;
        return epoch_to_timestamp(f).ok_or_else(err);
    }
    if !s.is_ascii() || s.len() < 10 {
        return Err(err());
    }
    let date = NaiveDate::from_ymd_opt(
        digits(s, 0, 4).ok_or_else(err)? as i32,
        digits(s, 5, 2).ok_or_else(err)?,
        digits(s, 8, 2).ok_or_else(err)?,
    )
    .filter(|_| &s[4..5] == "-" && &s[7..8] == "-")
    .ok_or_else(err)?;
    let base = Timestamp::from_naive(date.and_hms_opt(0, 0, 0).ok_or_else(err)?).ok_or_else(err)?;
    if s.len() == 10 {
        return Ok(base);
    }
    if !matches!(s.as_bytes()[10], b'T' | b't' | b' ' | b'_') {
        return Err(err());
    }
    let rest = &s[11..];
    let tz_pos = rest.find(['-', '+', 'Z', 'z']);
    let (time, tz) = match tz_pos {
        Some(p) => (&rest[..p], &rest[p..]),
        None => (rest, ""),
    };
    // pydantic needs at least hours and minutes, with colons.
    if time.len() < 5 || time.as_bytes()[2] != b':' {
        return Err(err());
    }
    let (h, m, sec, frac) = parse_hh_mm_ss_ff(time).ok_or_else(err)?;
    if h > 23 || m > 59 || sec > 59 {
        return Err(err());
    }
    let offset = match tz {
        "" | "Z" | "z" => 0,
        _ => {
            let sign: i64 = if tz.starts_with('-') { -1 } else { 1 };
            let body = &tz[1..];
            let (th, tm) = match body.len() {
                2 => (digits(body, 0, 2), Some(0)),
                4 => (digits(body, 0, 2), digits(body, 2, 2)),
                5 if &body[2..3] == ":" => (digits(body, 0, 2), digits(body, 3, 2)),
                _ => (None, None),
            };
            let (th, tm) = (th.ok_or_else(err)?, tm.ok_or_else(err)?);
            if th > 23 || tm > 59 {
                return Err(err());
            }
            sign * (i64::from(th) * 3600 + i64::from(tm) * 60)
        }
    };
    let micros =
        base.0 + ((i64::from(h) * 60 + i64::from(m)) * 60 + i64::from(sec)) * MICROS + frac
            - offset * MICROS;
    Timestamp::from_micros(micros).ok_or_else(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The output form as chrono's formatter writes it (what `Display` wrote
    /// before [`Timestamp::to_text`]).
    fn chrono_text(t: Timestamp) -> String {
        let dt = t.to_chrono();
        let micros = dt.timestamp_subsec_micros();
        let whole = dt.format("%Y-%m-%dT%H:%M:%S").to_string();
        if micros == 0 {
            whole
        } else {
            format!("{whole}.{micros:06}")
        }
    }

    proptest::proptest! {
        #[test]
        fn the_output_form_is_chronos(micros in MIN_MICROS..=MAX_MICROS) {
            let Some(t) = Timestamp::from_micros(micros) else { unreachable!() };
            proptest::prop_assert_eq!(t.to_string(), chrono_text(t));
            proptest::prop_assert_eq!(
                serde_json::to_string(&t).unwrap_or_default(),
                format!("\"{}\"", chrono_text(t))
            );
        }
    }

    #[test]
    fn the_output_form_at_the_edges() {
        for (micros, want) in [
            (MIN_MICROS, "0001-01-01T00:00:00"),
            (MAX_MICROS, "9999-12-31T23:59:59.999999"),
            (0, "1970-01-01T00:00:00"),
            (-1, "1969-12-31T23:59:59.999999"),
            (1, "1970-01-01T00:00:00.000001"),
            (1_706_781_508_479_000, "2024-02-01T09:58:28.479000"),
        ] {
            let t = Timestamp::from_micros(micros).unwrap_or_else(|| unreachable!());
            assert_eq!(t.to_string(), want);
            assert_eq!(t.to_text().as_str(), want);
        }
        let t = Timestamp::from_micros(0).unwrap_or_else(|| unreachable!());
        assert_eq!(format!("[{t:>20}]"), "[ 1970-01-01T00:00:00]");
    }

    fn q(s: &str) -> String {
        parse_query_datetime(s)
            .map(|t| t.to_string())
            .unwrap_or_else(|e| format!("ERR {e}"))
    }

    fn b(v: serde_json::Value) -> String {
        parse_body_datetime(&v)
            .map(|t| t.to_string())
            .unwrap_or_else(|e| format!("ERR {e}"))
    }

    #[test]
    fn query_datetimes_follow_python_fromisoformat() {
        let table = [
            ("2024-01-01", "2024-01-01T00:00:00"),
            ("2024-01-01T10", "2024-01-01T10:00:00"),
            ("2024-01-01T10:00", "2024-01-01T10:00:00"),
            ("2024-01-01 10:00:00", "2024-01-01T10:00:00"),
            ("2024-01-01x10:00:00", "2024-01-01T10:00:00"),
            ("2024-01-01T00:00:00.1", "2024-01-01T00:00:00.100000"),
            (
                "2024-01-01T00:00:00.123456789",
                "2024-01-01T00:00:00.123456",
            ),
            ("2024-01-01T00:00:00,5", "2024-01-01T00:00:00.500000"),
            ("2024-01-01T00:00:00Z", "2024-01-01T00:00:00"),
            ("2024-01-01T00:00:00+02:00", "2023-12-31T22:00:00"),
            ("2024-01-01T00:00:00+0200", "2023-12-31T22:00:00"),
            ("2024-01-01T00:00:00-01", "2024-01-01T01:00:00"),
            ("2024-01-02 03:04:05.678901", "2024-01-02T03:04:05.678901"),
            (
                "2024-01-02 03:04:05.678901+00:00",
                "2024-01-02T03:04:05.678901",
            ),
            ("20240101T000000Z", "2024-01-01T00:00:00"),
            ("20240101", "2024-01-01T00:00:00"),
            ("2024-W01-1", "2024-01-01T00:00:00"),
            ("2024-W01", "2024-01-01T00:00:00"),
            ("2024W013", "2024-01-03T00:00:00"),
            ("2000-01-01T00:00:00.000000", "2000-01-01T00:00:00"),
            // CPython's C implementation (checked with Python 3.11.7):
            ("2024-01-01T10.5", "2024-01-01T10:00:00.500000"),
            ("2024-01-01T10:30.5", "2024-01-01T10:30:00.500000"),
            ("2024-01-01T1030.25", "2024-01-01T10:30:00.250000"),
            ("2024-01-01T10:00:00+00:99", "2024-01-01T08:21:00"),
            ("2024W01100:00", "2024-01-01T00:00:00"),
            (
                "2024-01-01T10:00:00+02:00:00.5",
                "2024-01-01T07:59:59.500000",
            ),
            (
                "2024-01-01T10:00:00+23:59:59.999999",
                "2023-12-31T10:00:00.000001",
            ),
        ];
        for (input, want) in table {
            assert_eq!(q(input), want, "{input}");
        }
        for bad in [
            "1700000000",
            "2024-01",
            "now",
            "bad",
            "",
            "2024-13-01",
            "2024-02-30",
            "2024-01-01T25:00",
            "2024-01-01T10:00:00Zjunk",
            "2024-01-01T1",
            "2024-01-01T10:0",
            "2024-01-01T10:00:00.",
            "2024-01-01T10:00:00+1",
            "0000-01-01",
            "2024-01-01T10:0030",
            "2024-01-01T10:00:00+24:00",
        ] {
            assert_eq!(
                q(bad),
                format!("ERR Invalid isoformat string: '{bad}'"),
                "{bad}"
            );
        }
    }

    #[test]
    fn body_datetimes_follow_pydantic() {
        use serde_json::json;
        let table = [
            (json!("2024-01-01"), "2024-01-01T00:00:00"),
            (json!("2024-01-01T10:20"), "2024-01-01T10:20:00"),
            (json!("2024-01-01 10:20:30.5"), "2024-01-01T10:20:30.500000"),
            (json!("2020-01-01T00:00:00Z"), "2020-01-01T00:00:00"),
            (json!("2030-01-01T00:00:00+02:00"), "2029-12-31T22:00:00"),
            (json!("2030-01-01T00:00:00-0130"), "2030-01-01T01:30:00"),
            (json!(1_700_000_000), "2023-11-14T22:13:20"),
            (json!(1_700_000_000.25), "2023-11-14T22:13:20.250000"),
            (json!(1_700_000_000_000i64), "2023-11-14T22:13:20"),
            (json!("1700000000"), "2023-11-14T22:13:20"),
            (json!(0), "1970-01-01T00:00:00"),
        ];
        for (input, want) in table {
            assert_eq!(b(input.clone()), want, "{input}");
        }
        for bad in [
            json!("yesterday"),
            json!(true),
            json!(null),
            json!("2024-01-01T10"),
            json!("2024-1-1"),
            json!([]),
            json!(1e300),
        ] {
            assert!(b(bad.clone()).starts_with("ERR"), "{bad}");
        }
    }

    #[test]
    fn output_omits_a_zero_fraction_and_cloudevents_keep_utc_offset() {
        let t = parse_query_datetime("2024-01-04T10:48:39.974782").unwrap();
        assert_eq!(t.to_string(), "2024-01-04T10:48:39.974782");
        assert_eq!(t.to_cloudevent_string(), "2024-01-04T10:48:39.974782+00:00");
        let t = parse_query_datetime("2024-01-01").unwrap();
        assert_eq!(t.to_cloudevent_string(), "2024-01-01T00:00:00.000000+00:00");
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            "\"2024-01-01T00:00:00\""
        );
    }

    #[test]
    fn range_is_years_1_to_9999() {
        assert!(Timestamp::from_micros(MIN_MICROS).is_some());
        assert!(Timestamp::from_micros(MIN_MICROS - 1).is_none());
        assert_eq!(
            Timestamp::from_micros(MAX_MICROS).unwrap().to_string(),
            "9999-12-31T23:59:59.999999"
        );
        assert_eq!(
            Timestamp::from_micros(MAX_MICROS)
                .unwrap()
                .plus_seconds(10)
                .as_micros(),
            MAX_MICROS
        );
    }
}
