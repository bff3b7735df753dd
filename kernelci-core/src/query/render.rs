//! Rendering a [`Query`] back to a query string that parses to the same query.

use super::{Cond, FieldFilter, Mode, QValue, Query};

impl Query {
    /// The `(key, value)` pairs of this query; parsing them in the same mode gives an
    /// equal query.
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for f in &self.filters {
            render_filter(f, &mut out);
        }
        if let Some(s) = &self.sort {
            let sign = if s.descending { "-" } else { "" };
            out.push(("sort".into(), format!("{sign}{}", s.field)));
        }
        match self.mode {
            Mode::Page | Mode::Fast => {
                if let Some(limit) = self.limit {
                    out.push(("limit".into(), limit.to_string()));
                }
                if self.offset != 0 {
                    out.push(("offset".into(), self.offset.to_string()));
                }
            }
            Mode::Count => {}
        }
        out
    }

    /// The form-encoded query string of [`Query::to_pairs`].
    pub fn to_query_string(&self) -> String {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(self.to_pairs())
            .finish()
    }
}

fn render_filter(f: &FieldFilter, out: &mut Vec<(String, String)>) {
    let field = f.field.as_str();
    // Only `retry_counter` turns a plain value into an integer; elsewhere integer
    // equality comes from `__int`.
    let plain_int = f.field.is_top_level() && f.field.root() == super::Root::RetryCounter;
    for c in &f.conds {
        let (op, value) = match c {
            Cond::Eq(QValue::Doc(doc)) => {
                for (op, v) in doc {
                    let v = match v {
                        serde_json::Value::Null => "null".to_owned(),
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    out.push((format!("{field}__{op}"), v));
                }
                continue;
            }
            Cond::Eq(v @ QValue::Int(_)) if !plain_int => ("int", value(v)),
            Cond::Eq(v) => ("", value(v)),
            Cond::Ne(v) => ("ne", value(v)),
            Cond::Lt(v) => ("lt", value(v)),
            Cond::Lte(v) => ("lte", value(v)),
            Cond::Gt(v) => ("gt", value(v)),
            Cond::Gte(v) => ("gte", value(v)),
            Cond::In(vs) => ("in", list(vs)),
            Cond::Nin(vs) => ("nin", list(vs)),
            Cond::Regex(p) => ("re", p.as_str().to_owned()),
        };
        let key = if op.is_empty() {
            field.to_owned()
        } else {
            format!("{field}__{op}")
        };
        out.push((key, value));
    }
}

fn value(v: &QValue) -> String {
    match v {
        QValue::Null => "null".into(),
        QValue::Bool(b) => b.to_string(),
        QValue::Int(n) => n.to_string(),
        QValue::Str(s) => s.clone(),
        QValue::Date(t) => t.to_string(),
        QValue::Id(id) => id.to_string(),
        QValue::Doc(d) => serde_json::Value::Object(d.clone()).to_string(),
    }
}

fn list(vs: &[QValue]) -> String {
    vs.iter().map(value).collect::<Vec<_>>().join(",")
}
