//! Node-specific value checks (artifact URLs, repository URLs) over the shared
//! extractors of [`crate::validation::value`].

use std::collections::BTreeMap;

use serde_json::Value;

use crate::validation::value::{object, string};
use crate::validation::{at, Loc, ValidationErrors};

/// The longest node name, group or path element accepted, in characters.
pub const MAX_NAME_CHARS: usize = 1024;

/// A map of artifact names to http(s) URLs, normalised.
pub(crate) fn artifacts(
    errs: &mut ValidationErrors,
    loc: Loc,
    v: &Value,
) -> Option<Option<BTreeMap<String, String>>> {
    if v.is_null() {
        return Some(None);
    }
    let map = object(errs, loc.clone(), v)?;
    let before = errs.0.len();
    let mut out = BTreeMap::new();
    for (name, url) in &map {
        let loc = at(&loc, name.as_str());
        let Some(s) = string(errs, loc.clone(), url) else {
            continue;
        };
        match super::url::http_url(&s) {
            Ok(norm) => {
                out.insert(name.clone(), norm);
            }
            Err((kind, msg)) => errs.push(loc, kind, msg, url.clone()),
        }
    }
    (errs.0.len() == before).then_some(Some(out))
}

/// Any absolute URL (`git://`, `https://`...), returned as given.
pub(crate) fn any_url(errs: &mut ValidationErrors, loc: Loc, v: &Value) -> Option<String> {
    let s = string(errs, loc.clone(), v)?;
    match super::url::any_url(&s) {
        Ok(_) => Some(s),
        Err((kind, msg)) => {
            errs.push(loc, kind, msg, v.clone());
            None
        }
    }
}
