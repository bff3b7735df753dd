//! Exact-match filters of the simpler endpoints (`/users`, `/user-groups`, the
//! free parameters of `/events`; QUERY.md §7): `key=value` pairs compared for
//! equality against a JSON document, dotted keys traversing objects and arrays.
//! No operators; `true`/`false` (any case) are booleans, everything else a string.

use serde_json::Value;

use crate::error::{Error, Result};

/// Conjunction of `path = value` terms.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExactFilter {
    /// `(dotted path, value)` pairs, ANDed; a repeated key keeps its last value.
    pub terms: Vec<(String, Value)>,
}

impl ExactFilter {
    /// Builds a filter from decoded query pairs, skipping the `reserved` keys. The
    /// query length and term limits of [`crate::query`] apply.
    pub fn from_pairs(pairs: &[(String, String)], reserved: &[&str]) -> Result<Self> {
        use crate::query::{MAX_QUERY_LEN, MAX_TERMS};
        if pairs.len() > MAX_TERMS {
            return Err(Error::Invalid(format!(
                "Query has more than {MAX_TERMS} parameters"
            )));
        }
        if pairs.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>() > MAX_QUERY_LEN {
            return Err(Error::Invalid(format!(
                "Query longer than {MAX_QUERY_LEN} bytes"
            )));
        }
        let mut terms: Vec<(String, Value)> = Vec::new();
        for (k, v) in pairs {
            if reserved.contains(&k.as_str()) {
                continue;
            }
            let value = if v.eq_ignore_ascii_case("true") {
                Value::Bool(true)
            } else if v.eq_ignore_ascii_case("false") {
                Value::Bool(false)
            } else {
                Value::String(v.clone())
            };
            match terms.iter_mut().find(|(key, _)| key == k) {
                Some(slot) => slot.1 = value,
                None => terms.push((k.clone(), value)),
            }
        }
        Ok(Self { terms })
    }

    /// Whether `doc` satisfies every term.
    pub fn matches(&self, doc: &Value) -> bool {
        self.terms.iter().all(|(path, want)| {
            let segments: Vec<&str> = path.split('.').collect();
            json_path_any(doc, &segments, &|v| v == want)
        })
    }
}

/// Whether any value that `path` reaches in `doc` (fanning out over arrays, and
/// looking inside arrays at the end) satisfies `pred`.
pub fn json_path_any(doc: &Value, path: &[&str], pred: &dyn Fn(&Value) -> bool) -> bool {
    match path.split_first() {
        None => pred(doc) || matches!(doc, Value::Array(items) if items.iter().any(pred)),
        Some((seg, rest)) => match doc {
            Value::Object(o) => o.get(*seg).is_some_and(|v| json_path_any(v, rest, pred)),
            Value::Array(items) => {
                let by_index = seg
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| items.get(i))
                    .is_some_and(|v| json_path_any(v, rest, pred));
                by_index
                    || items
                        .iter()
                        .any(|v| v.is_object() && json_path_any(v, path, pred))
            }
            _ => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pairs(qs: &[(&str, &str)]) -> Vec<(String, String)> {
        qs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
    }

    #[test]
    fn users_style_filters() {
        let user = json!({"username": "alice", "is_superuser": false, "groups": [{"id": "1", "name": "kernelci"}]});
        let f = |qs: &[(&str, &str)]| {
            ExactFilter::from_pairs(&pairs(qs), &["limit", "offset"])
                .unwrap()
                .matches(&user)
        };
        assert!(f(&[("username", "alice"), ("limit", "5")]));
        assert!(f(&[("is_superuser", "False")]));
        assert!(!f(&[("is_superuser", "0")]));
        assert!(f(&[("groups.name", "kernelci")]));
        assert!(!f(&[("groups.name", "other")]));
        assert!(
            !f(&[("username", "alice"), ("username", "bob")]),
            "last value wins"
        );
        assert!(!f(&[("sequence_id__gt", "5")]), "no operators");
        let many: Vec<(String, String)> = (0..100)
            .map(|i| (format!("k{i}"), "v".to_string()))
            .collect();
        assert!(ExactFilter::from_pairs(&many, &[]).is_err());
    }
}
