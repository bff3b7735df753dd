//! Access tokens (AUTH.md §1): HS256/384/512 JWTs with `sub` = the user's id,
//! `aud` = `["fastapi-users:auth"]` and `exp`, signed with `SECRET_KEY`; verified
//! with `SECRET_KEY` and then, if that fails, with `UNIFIED_SECRET`.

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
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

#[derive(Debug, Deserialize)]
struct VerifiedClaims {
    sub: String,
}

/// Signs and verifies access tokens.
#[derive(Clone)]
pub struct Tokens {
    algorithm: Algorithm,
    encoding: EncodingKey,
    decoding: Vec<DecodingKey>,
    secret: Vec<u8>,
    expire_seconds: u64,
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
        // Encoding claims of plain strings and integers with an HMAC key cannot
        // fail; an empty token is refused by every verifier if it ever did.
        encode(&Header::new(self.algorithm), &claims, &self.encoding).unwrap_or_default()
    }

    /// The user ids the token names, one per key that verifies it (`SECRET_KEY`
    /// first, then `UNIFIED_SECRET`). The caller takes the first id that names an
    /// existing user (AUTH.md §1.2 step 3).
    pub fn verify_access(&self, token: &str) -> Vec<ObjectId> {
        let mut v = Validation::new(self.algorithm);
        v.set_audience(&[ACCESS_AUDIENCE]);
        v.set_required_spec_claims(&["sub", "aud"]);
        v.leeway = 0;
        v.validate_exp = true;
        v.validate_nbf = true;
        let mut out = Vec::new();
        for key in &self.decoding {
            if let Ok(data) = decode::<VerifiedClaims>(token, key, &v) {
                if let Ok(id) = ObjectId::parse(&data.claims.sub) {
                    if !out.contains(&id) {
                        out.push(id);
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(secret: &str, unified: &str) -> HttpConfig {
        HttpConfig {
            secret_key: secret.into(),
            unified_secret: unified.into(),
            ..HttpConfig::default()
        }
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
