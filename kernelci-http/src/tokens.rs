//! Access tokens (AUTH.md §1): HS256/384/512 JWTs with `sub` = the user's id,
//! `aud` = `["fastapi-users:auth"]` and `exp`, signed with `SECRET_KEY`; verified
//! with `SECRET_KEY` and then, if that fails, with `UNIFIED_SECRET`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jsonwebtoken::{decode, Algorithm, DecodingKey, EncodingKey, Validation};
use serde::{Deserialize, Serialize};

use kernelci_core::id::ObjectId;
use kernelci_core::time::Timestamp;

use crate::config::HttpConfig;

/// The audience of access tokens.
pub const ACCESS_AUDIENCE: &str = "fastapi-users:auth";

#[derive(Debug, Serialize, Deserialize)]
struct AccessClaims {
    sub: String,
    aud: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exp: Option<i64>,
}

/// A JWT's `iat` as Python's `int()` reads it (PyJWT and python-jose both do): an
/// integer, a float (truncated), a boolean, or a string of an integer; `None` for
/// anything else (text, `null`, objects), which both libraries refuse.
pub fn python_int(v: &serde_json::Value) -> Option<i64> {
    kernelci_core::validation::text::python_int(v).ok()
}

/// PyJWT's `iat` rule for access tokens: when present, an integer ([`python_int`])
/// not later than now ("The token is not yet valid (iat)").
fn iat_acceptable(iat: Option<&serde_json::Value>, now_secs: i64) -> bool {
    match iat {
        None => true,
        Some(v) => python_int(v).is_some_and(|t| t <= now_secs),
    }
}

/// Signs and verifies access tokens.
#[derive(Clone)]
pub struct Tokens {
    algorithm: Algorithm,
    encoding: EncodingKey,
    decoding: Vec<DecodingKey>,
    secret: Vec<u8>,
    expire_seconds: u64,
    verified: Arc<Verified>,
}

/// Tokens already verified, with the user ids they name: a client sends the same
/// token with each request, and checking its signature and claims again (HMAC,
/// base64, JSON) was about a twentieth of a `POST /node`'s CPU. Only what cannot
/// change is kept: the keys are the process's, and a token that verified keeps
/// verifying until its `exp` (the `nbf` and `iat` checks, once passed, stay
/// passed while the clock goes forward). An entry is used while `verified_at <=
/// now < exp` and otherwise checked again the full way. Tokens that fail are
/// never kept, so only signed tokens take room; at most [`Verified::MAX`]
/// entries of at most [`Verified::MAX_TOKEN`] bytes.
#[derive(Default)]
struct Verified(Mutex<HashMap<Box<str>, VerifiedToken>>);

struct VerifiedToken {
    ids: Vec<ObjectId>,
    /// The token's `exp` (Unix seconds), if it has one.
    exp: Option<i64>,
    /// When it was verified (Unix seconds).
    verified_at: i64,
}

impl Verified {
    /// Most tokens kept; the map is emptied when full.
    const MAX: usize = 4096;
    /// Longest token kept.
    const MAX_TOKEN: usize = 2048;

    /// The ids `token` named when verified, if that still holds at `now`.
    fn get(&self, token: &str, now: i64) -> Option<Vec<ObjectId>> {
        let map = self.0.lock().ok()?;
        let v = map.get(token)?;
        let current = v.verified_at <= now && v.exp.is_none_or(|exp| now < exp);
        current.then(|| v.ids.clone())
    }

    /// Keeps `token`'s ids, verified at `now`.
    fn put(&self, token: &str, ids: &[ObjectId], exp: Option<i64>, now: i64) {
        if token.len() > Self::MAX_TOKEN {
            return;
        }
        let Ok(mut map) = self.0.lock() else {
            return;
        };
        if map.len() >= Self::MAX {
            map.clear();
        }
        map.insert(
            token.into(),
            VerifiedToken {
                ids: ids.to_vec(),
                exp,
                verified_at: now,
            },
        );
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.lock().map_or(0, |m| m.len())
    }
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// The jsonwebtoken algorithm for a configured name (HMAC only).
pub fn algorithm(name: &str) -> Option<Algorithm> {
    match name {
        "HS256" => Some(Algorithm::HS256),
        "HS384" => Some(Algorithm::HS384),
        "HS512" => Some(Algorithm::HS512),
        _ => None,
    }
}

impl Tokens {
    /// Keys from the configuration (`None` for an unsupported algorithm).
    pub fn new(config: &HttpConfig) -> Option<Self> {
        let algorithm = algorithm(&config.algorithm)?;
        let mut decoding = vec![DecodingKey::from_secret(config.secret_key.as_bytes())];
        if !config.unified_secret.is_empty() {
            decoding.push(DecodingKey::from_secret(config.unified_secret.as_bytes()));
        }
        Some(Tokens {
            algorithm,
            encoding: EncodingKey::from_secret(config.secret_key.as_bytes()),
            decoding,
            secret: config.secret_key.as_bytes().to_vec(),
            expire_seconds: config.access_token_expire_seconds,
            verified: Arc::default(),
        })
    }

    /// The signing algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The raw `SECRET_KEY` bytes (for the server's other self-issued tokens).
    pub fn secret(&self) -> &[u8] {
        &self.secret
    }

    /// A new access token for `user`, issued at `now`.
    pub fn issue_access(&self, user: ObjectId, now: Timestamp) -> String {
        let exp = (self.expire_seconds > 0)
            .then(|| now.to_chrono().timestamp() + self.expire_seconds as i64);
        let claims = AccessClaims {
            sub: user.to_string(),
            aud: vec![ACCESS_AUDIENCE.to_owned()],
            exp,
        };
        sign_compact(&claims, self.algorithm, &self.encoding)
    }

    /// The user ids the token names, one per key that verifies it (`SECRET_KEY`
    /// first, then `UNIFIED_SECRET`). The caller takes the first id that names an
    /// existing user (AUTH.md §1.2 step 3).
    pub fn verify_access(&self, token: &str) -> Vec<ObjectId> {
        let now = Timestamp::now().to_chrono().timestamp();
        if let Some(ids) = self.verified.get(token, now) {
            return ids;
        }
        let mut v = Validation::new(self.algorithm);
        v.set_audience(&[ACCESS_AUDIENCE]);
        v.set_required_spec_claims(&["sub", "aud"]);
        v.leeway = 0;
        v.validate_exp = true;
        v.validate_nbf = true;
        let mut out = Vec::new();
        // Every key reads the same claims: `exp` is the token's.
        let mut exp = Ok(None);
        for key in &self.decoding {
            if let Ok(data) = decode::<serde_json::Map<String, serde_json::Value>>(token, key, &v) {
                if !iat_acceptable(data.claims.get("iat"), now) {
                    continue;
                }
                exp = match data.claims.get("exp") {
                    None => Ok(None),
                    Some(e) => e.as_i64().map(Some).ok_or(()),
                };
                let sub = data.claims.get("sub").and_then(serde_json::Value::as_str);
                if let Some(Ok(id)) = sub.map(ObjectId::parse) {
                    if !out.contains(&id) {
                        out.push(id);
                    }
                }
            }
        }
        // An `exp` this cannot compare (beyond i64) is not kept.
        if let (false, Ok(exp)) = (out.is_empty(), exp) {
            self.verified.put(token, &out, exp, now);
        }
        out
    }
}

/// The header text of the reference's tokens: `alg` before `typ` (PyJWT's order;
/// jsonwebtoken's own header puts `typ` first).
fn header_json(algorithm: Algorithm) -> String {
    let alg = match algorithm {
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        _ => "HS256",
    };
    format!("{{\"alg\":\"{alg}\",\"typ\":\"JWT\"}}")
}

/// Base64url without padding (RFC 7515 §2).
pub fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// A compact JWS (`header.payload.signature`) of `claims` with the reference's header
/// layout. Serialising plain claims and signing with an HMAC key cannot fail; if it
/// ever did, the empty token returned is refused by every verifier.
pub fn sign_compact<T: Serialize>(claims: &T, algorithm: Algorithm, key: &EncodingKey) -> String {
    let Ok(payload) = serde_json::to_vec(claims) else {
        return String::new();
    };
    let message = format!(
        "{}.{}",
        base64url(header_json(algorithm).as_bytes()),
        base64url(&payload)
    );
    match jsonwebtoken::crypto::sign(message.as_bytes(), key, algorithm) {
        Ok(sig) => format!("{message}.{sig}"),
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, Header};

    fn config(secret: &str, unified: &str) -> HttpConfig {
        HttpConfig {
            secret_key: secret.into(),
            unified_secret: unified.into(),
            ..HttpConfig::default()
        }
    }

    #[test]
    fn iat_as_python_reads_it() {
        use serde_json::json;
        for (v, want) in [
            (json!(12), Some(12)),
            (json!(12.9), Some(12)),
            (json!(true), Some(1)),
            (json!(" -7 "), Some(-7)),
            (json!("1_000"), Some(1000)),
            (json!("1.5"), None),
            (json!("_1"), None),
            (json!("1__0"), None),
            (json!("1_"), None),
            (json!("soon"), None),
            (json!(null), None),
            (json!([1]), None),
        ] {
            assert_eq!(python_int(&v), want, "{v}");
        }
        assert!(iat_acceptable(None, 100));
        assert!(iat_acceptable(Some(&json!(100)), 100));
        assert!(!iat_acceptable(Some(&json!(101)), 100));
        assert!(!iat_acceptable(Some(&json!("yesterday")), 100));
    }

    #[test]
    fn round_trip_and_claims() {
        let t = Tokens::new(&config("s3cret", "")).unwrap();
        let id = ObjectId::new();
        let token = t.issue_access(id, Timestamp::now());
        assert_eq!(t.verify_access(&token), vec![id]);
        // The payload is exactly sub, aud (array), exp.
        let payload = token.split('.').nth(1).unwrap();
        let bytes = base64_url_decode(payload);
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.starts_with("{\"sub\":"), "{text}");
        let header =
            String::from_utf8(base64_url_decode(token.split('.').next().unwrap())).unwrap();
        assert_eq!(header, "{\"alg\":\"HS256\",\"typ\":\"JWT\"}");
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v.as_object().unwrap().len(), 3);
        assert!(v["exp"].is_i64());
        assert_eq!(v["aud"], serde_json::json!(["fastapi-users:auth"]));
        // Another key does not verify it; the unified secret does.
        let other = Tokens::new(&config("other", "")).unwrap();
        assert!(other.verify_access(&token).is_empty());
        let fallback = Tokens::new(&config("other", "s3cret")).unwrap();
        assert_eq!(fallback.verify_access(&token), vec![id]);
    }

    #[test]
    fn base64url_matches_rfc4648() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg"),
            ("fooba", "Zm9vYmE"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64url(input.as_bytes()), want);
        }
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn expired_and_audience_less_tokens_fail() {
        let t = Tokens::new(&config("k", "")).unwrap();
        let past = Timestamp::from_micros(0).unwrap();
        let token = Tokens {
            expire_seconds: 10,
            ..t.clone()
        }
        .issue_access(ObjectId::new(), past);
        assert!(t.verify_access(&token).is_empty());
        #[derive(Serialize)]
        struct NoAud {
            sub: String,
        }
        let bad = encode(
            &Header::new(Algorithm::HS256),
            &NoAud { sub: "bob".into() },
            &EncodingKey::from_secret(b"k"),
        )
        .unwrap();
        assert!(t.verify_access(&bad).is_empty());
        assert!(t.verify_access("garbage").is_empty());
    }

    #[test]
    fn verified_tokens_are_kept_until_their_exp_and_only_then() {
        let t = Tokens::new(&config("k", "")).unwrap();
        let id = ObjectId::new();
        let token = t.issue_access(id, Timestamp::now());
        assert_eq!(t.verify_access(&token), vec![id]);
        assert_eq!(t.verified.len(), 1);
        assert_eq!(t.verify_access(&token), vec![id], "the kept answer");
        // Failures take no room.
        assert!(t.verify_access("garbage").is_empty());
        let other = Tokens::new(&config("other", "")).unwrap();
        assert!(t
            .verify_access(&other.issue_access(id, Timestamp::now()))
            .is_empty());
        assert_eq!(t.verified.len(), 1);
        // Kept answers hold while verified_at <= now < exp.
        let v = Verified::default();
        v.put("a", &[id], Some(100), 50);
        assert_eq!(v.get("a", 50), Some(vec![id]));
        assert_eq!(v.get("a", 99), Some(vec![id]));
        assert_eq!(v.get("a", 100), None, "at exp: checked again");
        assert_eq!(v.get("a", 49), None, "the clock went back: checked again");
        v.put("b", &[id], None, 50);
        assert_eq!(v.get("b", i64::MAX), Some(vec![id]), "no exp");
        // Bounded: emptied when full; long tokens are not kept.
        for i in 0..Verified::MAX + 10 {
            v.put(&format!("t{i}"), &[id], None, 0);
        }
        assert!(v.len() <= Verified::MAX);
        v.put(&"x".repeat(Verified::MAX_TOKEN + 1), &[id], None, 0);
        assert_eq!(v.get(&"x".repeat(Verified::MAX_TOKEN + 1), 0), None);
    }

    #[test]
    fn a_kept_token_still_expires() {
        // Issued 9 s before now with a 10 s life: kept, then refused once its exp
        // passes (the kept entry is not used at or after exp).
        let t = Tokens {
            expire_seconds: 10,
            ..Tokens::new(&config("k", "")).unwrap()
        };
        let id = ObjectId::new();
        let issued = Timestamp::now().plus_seconds(-9);
        let token = t.issue_access(id, issued);
        assert_eq!(t.verify_access(&token), vec![id]);
        assert_eq!(t.verified.len(), 1);
        std::thread::sleep(std::time::Duration::from_millis(2100));
        assert!(t.verify_access(&token).is_empty(), "expired while kept");
    }

    fn base64_url_decode(s: &str) -> Vec<u8> {
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut bits = 0u32;
        let mut n = 0;
        let mut out = Vec::new();
        for c in s.bytes() {
            let v = alphabet.iter().position(|a| *a == c).unwrap() as u32;
            bits = (bits << 6) | v;
            n += 6;
            if n >= 8 {
                n -= 8;
                out.push((bits >> n) as u8);
                bits &= (1 << n) - 1;
            }
        }
        out
    }
}
