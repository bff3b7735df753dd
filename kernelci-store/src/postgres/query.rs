//! From core's typed [`Query`] to SQL.
//!
//! Each field filter becomes either an **exact** predicate (true for a row exactly when
//! [`kernelci_core::query::matches`] accepts the node on that filter) or a
//! **superset** predicate (true for every node that matches, maybe for others), in
//! which case the rows are checked again in Rust with `matches` (the *residual*).
//! Every value is a bind parameter; the only non-parameter text in the SQL comes from
//! this module and from the declared index paths of [`crate::INDEXES`].
//!
//! What is exact:
//! - typed top-level columns (`kind`, `name`, `state`, `result`, `owner`, `group`,
//!   `submitter`, `treeid`, `parent`, the datetimes, `retry_counter`,
//!   `processed_by_kcidb_bridge`): every operator but `re`, with the query language's
//!   rules (a value of another type never matches, `null` matches a missing value,
//!   `ne`/`nin` are two-valued negations);
//! - the arrays `path` and `user_groups`: equality, `in`, `ne`, `nin` (GIN), and
//!   ranges (any element);
//! - the `data.*` paths of the declared indexes, compared as text at a constant path
//!   (the btree expression indexes), **for regular rows**: a row whose value at such a
//!   path is not one string, null or missing reached through objects only (an array
//!   on the way, a number) carries a bit in `irregular`; a query that relies on a
//!   path first checks that no row has that bit (a partial index answers) and is
//!   otherwise planned with that path in the residual;
//! - a field that cannot exist (`kind.x`, an unknown top-level name): the constant the
//!   evaluator gives a missing value;
//! - `re` on a text column or declared path whose pattern is only plain text, anchored or not: `^dmesg` is exactly
//!   `>= 'dmesg' AND < 'dmesh'` (an index range), `x86` exactly `strpos(f, 'x86') > 0`.
//!
//! What is checked in Rust: any other `re` (PostgreSQL's regex dialect is not the
//! `regex` crate's, so patterns are never handed to the engine; the pre-filter is
//! "the field is a string", plus the index range of an anchored literal prefix, or
//! else `strpos` of the longest literal every match contains), other
//! `data`/`debug`/`artifacts` paths, `jobfilter`,
//! `platform_filter`, numeric array positions (`path.0`).
//!
//! Sorting is done by the engine on typed columns and declared `data` paths (nulls
//! first ascending, ties by id, the whole order reversed when descending, which is
//! `sort_nodes`' order); any other sort key is sorted in Rust after the filter.

use std::sync::OnceLock;

use kernelci_core::node::Node;
use kernelci_core::query::{matches, Cond, FieldFilter, FieldPath, Mode, QValue, Query, Root};
use kernelci_core::time::Timestamp;
use tokio_postgres::types::ToSql;

use super::schema::{column_name, data_text_expr, is_array_root};
use crate::INDEXES;

/// A bind parameter.
pub(crate) type Param = Box<dyn ToSql + Sync + Send>;

/// The bind parameters of one statement.
#[derive(Default)]
pub(crate) struct Params(pub Vec<Param>);

impl Params {
    /// Adds a parameter and returns its placeholder (`$n`).
    pub fn bind<T: ToSql + Sync + Send + 'static>(&mut self, v: T) -> String {
        self.0.push(Box::new(v));
        format!("${}", self.0.len())
    }

    /// The parameters as tokio-postgres takes them.
    pub fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.0
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}

/// A SQL boolean expression; `nullable` when it may evaluate to NULL (so a negation
/// must be written `IS NOT TRUE`).
#[derive(Debug, Clone)]
struct Pred {
    sql: String,
    nullable: bool,
}

impl Pred {
    fn new(sql: String, nullable: bool) -> Self {
        Self { sql, nullable }
    }
    fn constant(b: bool) -> Self {
        Self::new(if b { "TRUE" } else { "FALSE" }.to_owned(), false)
    }
    fn is_true(&self) -> bool {
        self.sql == "TRUE"
    }
    fn not(self) -> Self {
        match self.sql.as_str() {
            "TRUE" => Self::constant(false),
            "FALSE" => Self::constant(true),
            _ if self.nullable => Self::new(format!("({}) IS NOT TRUE", self.sql), false),
            _ => Self::new(format!("NOT ({})", self.sql), false),
        }
    }
    fn or(parts: Vec<Pred>) -> Self {
        let parts: Vec<Pred> = parts.into_iter().filter(|p| p.sql != "FALSE").collect();
        if parts.iter().any(Pred::is_true) {
            return Self::constant(true);
        }
        match parts.len() {
            0 => Self::constant(false),
            1 => parts
                .into_iter()
                .next()
                .unwrap_or_else(|| Self::constant(false)),
            _ => Self::new(
                parts
                    .iter()
                    .map(|p| format!("({})", p.sql))
                    .collect::<Vec<_>>()
                    .join(" OR "),
                parts.iter().any(|p| p.nullable),
            ),
        }
    }
}

/// A query planned for PostgreSQL.
pub(crate) struct Translation {
    /// The `WHERE` condition (`TRUE` when none).
    pub where_sql: String,
    /// Its parameters.
    pub params: Params,
    /// `where_sql` is exactly the query's filter: no residual check in Rust.
    pub exact: bool,
    /// `ORDER BY` terms, when the engine can sort as the query asks; `None`: sort the
    /// filtered rows in Rust.
    pub order: Option<String>,
    /// Bits of [`data_paths`] this plan trusts to be regular (see the module docs).
    pub irregular_mask: i32,
}

/// The `data.*` paths of the declared indexes, each with its bit in `irregular`.
pub(crate) fn data_paths() -> &'static [FieldPath] {
    static PATHS: OnceLock<Vec<FieldPath>> = OnceLock::new();
    PATHS.get_or_init(|| {
        let mut out: Vec<FieldPath> = Vec::new();
        for def in INDEXES {
            for p in def.paths() {
                if p.root() == Root::Data && !p.rest().is_empty() && !out.contains(&p) {
                    out.push(p);
                }
            }
        }
        out.truncate(31);
        out
    })
}

fn data_bit(path: &FieldPath) -> Option<i32> {
    data_paths()
        .iter()
        .position(|p| p == path)
        .map(|i| 1i32 << i)
}

/// The column type of a typed top-level field, and whether it may be null.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Text,
    Time,
    Id,
    Int,
    Bool,
}

fn scalar_type(root: Root) -> Option<(Ty, bool)> {
    Some(match root {
        Root::Kind | Root::Name | Root::State => (Ty::Text, false),
        Root::Result | Root::Owner | Root::Submitter | Root::Treeid | Root::Group => {
            (Ty::Text, true)
        }
        Root::Created | Root::Updated | Root::Timeout => (Ty::Time, false),
        Root::Holdoff => (Ty::Time, true),
        Root::Parent => (Ty::Id, true),
        Root::RetryCounter => (Ty::Int, false),
        Root::ProcessedByKcidbBridge => (Ty::Bool, false),
        _ => return None,
    })
}

/// Binds `v` when it has the column's type (a value of another type never matches).
fn bind_scalar(v: &QValue, ty: Ty, p: &mut Params) -> Option<String> {
    Some(match (ty, v) {
        (Ty::Text, QValue::Str(s)) => p.bind(s.clone()),
        (Ty::Time, QValue::Date(t)) => p.bind(t.to_chrono()),
        (Ty::Id, QValue::Id(id)) => p.bind(id.bytes().to_vec()),
        (Ty::Int, QValue::Int(n)) => p.bind(*n),
        (Ty::Bool, QValue::Bool(b)) => p.bind(*b),
        _ => return None,
    })
}

/// Binds the values of `vs` that have the column's type, as one array parameter.
fn bind_list(vs: &[QValue], ty: Ty, p: &mut Params) -> Option<String> {
    macro_rules! collect {
        ($variant:ident, $map:expr) => {{
            let items: Vec<_> = vs
                .iter()
                .filter_map(|v| match v {
                    QValue::$variant(x) => Some($map(x)),
                    _ => None,
                })
                .collect();
            (!items.is_empty()).then(|| p.bind(items))
        }};
    }
    match ty {
        Ty::Text => collect!(Str, |s: &String| s.clone()),
        Ty::Time => collect!(Date, |t: &Timestamp| t.to_chrono()),
        Ty::Id => collect!(Id, |id: &kernelci_core::id::ObjectId| id.bytes().to_vec()),
        Ty::Int => collect!(Int, |n: &i64| *n),
        Ty::Bool => collect!(Bool, |b: &bool| *b),
    }
}

/// A scalar column or expression: one value per row, `nullable` if it may be null.
struct Scalar<'a> {
    expr: &'a str,
    ty: Ty,
    nullable: bool,
}

impl Scalar<'_> {
    fn eq(&self, v: &QValue, p: &mut Params) -> Pred {
        if matches!(v, QValue::Null) {
            return if self.nullable {
                Pred::new(format!("{} IS NULL", self.expr), false)
            } else {
                Pred::constant(false)
            };
        }
        match bind_scalar(v, self.ty, p) {
            Some(ph) => Pred::new(format!("{} = {ph}", self.expr), self.nullable),
            None => Pred::constant(false),
        }
    }

    fn in_list(&self, vs: &[QValue], p: &mut Params) -> Pred {
        let mut parts = Vec::new();
        if let Some(ph) = bind_list(vs, self.ty, p) {
            parts.push(Pred::new(
                format!("{} = ANY({ph})", self.expr),
                self.nullable,
            ));
        }
        if vs.iter().any(|v| matches!(v, QValue::Null)) {
            parts.push(self.eq(&QValue::Null, p));
        }
        Pred::or(parts)
    }

    fn cmp(&self, op: &str, inclusive: bool, v: &QValue, p: &mut Params) -> Pred {
        if matches!(v, QValue::Null) {
            // `lte`/`gte` null are equality with null; `lt`/`gt` null match nothing.
            return if inclusive {
                self.eq(v, p)
            } else {
                Pred::constant(false)
            };
        }
        match bind_scalar(v, self.ty, p) {
            Some(ph) => Pred::new(format!("{} {op} {ph}", self.expr), self.nullable),
            None => Pred::constant(false),
        }
    }

    /// `None` for conditions that need the residual (regex), with its pre-filter.
    fn cond(&self, c: &Cond, p: &mut Params) -> Result<Pred, Pred> {
        Ok(match c {
            Cond::Eq(v) => self.eq(v, p),
            Cond::Ne(v) => self.eq(v, p).not(),
            Cond::In(vs) => self.in_list(vs, p),
            Cond::Nin(vs) => self.in_list(vs, p).not(),
            Cond::Lt(v) => self.cmp("<", false, v, p),
            Cond::Lte(v) => self.cmp("<=", true, v, p),
            Cond::Gt(v) => self.cmp(">", false, v, p),
            Cond::Gte(v) => self.cmp(">=", true, v, p),
            Cond::Regex(pattern) => {
                // Only a string can match a regex; an anchored literal prefix also
                // bounds it to an index range.
                if self.ty != Ty::Text {
                    return Err(Pred::constant(false));
                }
                let mut parts = Vec::new();
                if self.nullable {
                    parts.push(Pred::new(format!("{} IS NOT NULL", self.expr), false));
                }
                if let Some(literal) = plain_literal(pattern.as_str()) {
                    // The whole pattern is a literal (`^dmesg`, `x86`): the range or
                    // the substring test is exactly the regex, no residual needed.
                    let exact = match literal.strip_prefix('^') {
                        Some(prefix) => {
                            let prefix = prefix.to_owned();
                            let upper = prefix_upper_bound(&prefix);
                            parts.push(Pred::new(
                                format!("{} >= {}", self.expr, p.bind(prefix)),
                                self.nullable,
                            ));
                            if let Some(upper) = upper {
                                parts.push(Pred::new(
                                    format!("{} < {}", self.expr, p.bind(upper)),
                                    self.nullable,
                                ));
                            }
                            and(parts)
                        }
                        None => {
                            parts.push(Pred::new(
                                format!(
                                    "strpos({}, {}) > 0",
                                    self.expr,
                                    p.bind(literal.to_owned())
                                ),
                                self.nullable,
                            ));
                            and(parts)
                        }
                    };
                    return Ok(exact);
                }
                if let Some(prefix) = literal_prefix(pattern.as_str()) {
                    parts.push(Pred::new(
                        format!("{} >= {}", self.expr, p.bind(prefix.clone())),
                        self.nullable,
                    ));
                    if let Some(upper) = prefix_upper_bound(&prefix) {
                        parts.push(Pred::new(
                            format!("{} < {}", self.expr, p.bind(upper)),
                            self.nullable,
                        ));
                    }
                } else if let Some(literal) = required_literal(pattern.as_str()) {
                    // Not an index range, but the engine drops the rows that cannot
                    // match instead of sending them to be matched in Rust.
                    parts.push(Pred::new(
                        format!("strpos({}, {}) > 0", self.expr, p.bind(literal)),
                        self.nullable,
                    ));
                }
                return Err(and(parts));
            }
        })
    }
}

/// The text every match of `pattern` starts with, when the pattern is anchored (`^`)
/// and begins with plain characters: `^dmesg` → `dmesg`, `^baseline.login` →
/// `baseline`, `^ab?c` → `a`. `None` for anything else (flags, alternation anywhere,
/// no anchor), which only costs the pre-filter its range.
fn literal_prefix(pattern: &str) -> Option<String> {
    let rest = pattern.strip_prefix('^')?;
    if pattern.contains('|') {
        return None;
    }
    let mut prefix = String::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        if !is_plain(c) {
            // A quantifier makes the character before it optional.
            if matches!(c, '?' | '*' | '{') {
                prefix.pop();
            }
            break;
        }
        if matches!(chars.peek(), Some('?' | '*' | '{')) {
            break;
        }
        prefix.push(c);
    }
    (!prefix.is_empty()).then_some(prefix)
}

/// `pattern` itself when it is nothing but plain characters, optionally anchored at
/// the start (`^dmesg`, `x86`): then it matches exactly the strings that start with
/// (or contain) that text. The characters are those [`literal_prefix`] takes as
/// plain; `None` for anything else.
fn plain_literal(pattern: &str) -> Option<&str> {
    let body = pattern.strip_prefix('^').unwrap_or(pattern);
    (!body.is_empty() && body.chars().all(is_plain)).then_some(pattern)
}

/// A character that stands for itself in a pattern and needs no escape.
fn is_plain(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '-' | '_' | '/' | ':' | ' ' | ',' | '=' | '@')
}

/// The longest run of plain characters every match of `pattern` contains: `x86` →
/// `x86`, `arm64.*defconfig` → `defconfig`, `ab?cd` → `cd`. Only for patterns
/// without groups, classes, escapes, alternation or repetition braces (a flag such as
/// `(?i)` could change what matches), which then only lose the pre-filter.
fn required_literal(pattern: &str) -> Option<String> {
    if pattern.contains(['|', '(', ')', '[', ']', '\\', '{', '}']) {
        return None;
    }
    let mut best = String::new();
    let mut run = String::new();
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        if matches!(c, '.' | '^' | '$' | '?' | '*' | '+') {
            run.clear();
            continue;
        }
        if matches!(chars.peek(), Some('?' | '*')) {
            // Optional: the run so far is required, this character is not.
            if run.chars().count() > best.chars().count() {
                best = run.clone();
            }
            run.clear();
            continue;
        }
        run.push(c);
        if run.chars().count() > best.chars().count() {
            best = run.clone();
        }
    }
    (!best.is_empty()).then_some(best)
}

/// The smallest string greater than every string that starts with `prefix`, in
/// byte (code point) order; `None` when there is none.
fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let mut next = u32::from(last) + 1;
        if (0xD800..0xE000).contains(&next) {
            next = 0xE000;
        }
        if let Some(c) = char::from_u32(next) {
            chars.push(c);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// Conditions on a non-null array of strings (`path`, `user_groups`).
fn array_cond(col: &str, c: &Cond, p: &mut Params) -> Result<Pred, Pred> {
    let strings = |vs: &[QValue]| -> Vec<String> {
        vs.iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    };
    let contains_any = |vs: &[QValue], p: &mut Params| {
        let items = strings(vs);
        if items.is_empty() {
            Pred::constant(false)
        } else {
            Pred::new(format!("{col} && {}", p.bind(items)), false)
        }
    };
    let element = |op: &str, inclusive: bool, v: &QValue, p: &mut Params| match v {
        QValue::Str(s) => Pred::new(
            format!(
                "EXISTS (SELECT 1 FROM unnest({col}) AS e(v) WHERE e.v COLLATE \"C\" {op} {})",
                p.bind(s.clone())
            ),
            false,
        ),
        // The array itself is neither null nor missing, and no element is.
        QValue::Null if inclusive => Pred::constant(false),
        _ => Pred::constant(false),
    };
    Ok(match c {
        Cond::Eq(v) => contains_any(std::slice::from_ref(v), p),
        Cond::Ne(v) => contains_any(std::slice::from_ref(v), p).not(),
        Cond::In(vs) => contains_any(vs, p),
        Cond::Nin(vs) => contains_any(vs, p).not(),
        Cond::Lt(v) => element("<", false, v, p),
        Cond::Lte(v) => element("<=", true, v, p),
        Cond::Gt(v) => element(">", false, v, p),
        Cond::Gte(v) => element(">=", true, v, p),
        Cond::Regex(_) => return Err(Pred::constant(true)),
    })
}

/// What a filter on a field that no node can have gives: the evaluator's answer for a
/// missing value, computed by the evaluator itself on a bare node.
fn missing_value_answer(f: &FieldFilter) -> bool {
    let mut q = Query::all(Mode::Count);
    q.filters = vec![f.clone()];
    matches(
        &Node::new(
            "",
            "",
            Timestamp::from_micros(0).unwrap_or_else(Timestamp::now),
        ),
        &q,
    )
}

/// One field filter: `Ok` exact, `Err` a superset pre-filter.
fn filter_pred(
    f: &FieldFilter,
    p: &mut Params,
    trust_data: bool,
    mask: &mut i32,
) -> Result<Pred, Pred> {
    let root = f.field.root();
    let rest = f.field.rest();
    let data_expr;
    let scalar = if let (Some((ty, nullable)), true) = (scalar_type(root), rest.is_empty()) {
        let col = column_name(root).unwrap_or("id");
        data_expr = format!("\"{col}\"");
        Some(Scalar {
            expr: &data_expr,
            ty,
            nullable,
        })
    } else if let (Some(bit), true) = (data_bit(&f.field), trust_data) {
        *mask |= bit;
        data_expr = data_text_expr(rest);
        Some(Scalar {
            expr: &data_expr,
            ty: Ty::Text,
            nullable: true,
        })
    } else {
        None
    };
    let mut exact = true;
    let mut parts = Vec::new();
    if let Some(s) = scalar {
        for c in &f.conds {
            match s.cond(c, p) {
                Ok(pred) => parts.push(pred),
                Err(pre) => {
                    exact = false;
                    parts.push(pre);
                }
            }
        }
    } else if is_array_root(root) && rest.is_empty() {
        let col = format!("\"{}\"", column_name(root).unwrap_or("path"));
        for c in &f.conds {
            match array_cond(&col, c, p) {
                Ok(pred) => parts.push(pred),
                Err(pre) => {
                    exact = false;
                    parts.push(pre);
                }
            }
        }
    } else if root == Root::Other || (scalar_type(root).is_some() && !rest.is_empty()) {
        // No node has this field: every condition sees a missing value.
        return Ok(Pred::constant(missing_value_answer(f)));
    } else {
        return Err(Pred::constant(true));
    }
    let pred = and(parts);
    if exact {
        Ok(pred)
    } else {
        Err(pred)
    }
}

fn and(parts: Vec<Pred>) -> Pred {
    let parts: Vec<Pred> = parts.into_iter().filter(|p| !p.is_true()).collect();
    if parts.iter().any(|p| p.sql == "FALSE") {
        return Pred::constant(false);
    }
    match parts.len() {
        0 => Pred::constant(true),
        _ => Pred::new(
            parts
                .iter()
                .map(|p| format!("({})", p.sql))
                .collect::<Vec<_>>()
                .join(" AND "),
            parts.iter().any(|p| p.nullable),
        ),
    }
}

/// The `ORDER BY` terms for the query's sort, when the engine can produce it.
fn order_by(q: &Query, trust_data: bool, mask: &mut i32) -> Option<String> {
    let Some(sort) = &q.sort else {
        return Some("id ASC".to_owned());
    };
    let root = sort.field.root();
    let rest = sort.field.rest();
    let expr = if scalar_type(root).is_some() && rest.is_empty() {
        format!("\"{}\"", column_name(root)?)
    } else if root == Root::Other || (scalar_type(root).is_some() && !rest.is_empty()) {
        // Every node sorts as missing: the order is the id order (reversed when
        // descending).
        return Some(if sort.descending { "id DESC" } else { "id ASC" }.to_owned());
    } else if let (Some(bit), true) = (data_bit(&sort.field), trust_data) {
        *mask |= bit;
        data_text_expr(rest)
    } else {
        return None;
    };
    Some(if sort.descending {
        format!("{expr} DESC NULLS LAST, id DESC")
    } else {
        format!("{expr} ASC NULLS FIRST, id ASC")
    })
}

/// Plans `q`. With `trust_data`, declared `data` paths are compared in SQL (valid
/// only while no row has their `irregular` bit: see [`Translation::irregular_mask`]).
pub(crate) fn translate(q: &Query, trust_data: bool) -> Translation {
    let mut params = Params::default();
    let mut mask = 0;
    let mut exact = true;
    let mut parts = Vec::new();
    for f in &q.filters {
        match filter_pred(f, &mut params, trust_data, &mut mask) {
            Ok(pred) => parts.push(pred),
            Err(pre) => {
                exact = false;
                parts.push(pre);
            }
        }
    }
    let order = order_by(q, trust_data, &mut mask);
    let (where_sql, params) = compact(&and(parts).sql, params);
    Translation {
        where_sql,
        params,
        exact,
        order,
        irregular_mask: mask,
    }
}

/// Drops the parameters `sql` no longer refers to (a condition folded into a
/// constant) and renumbers the placeholders in order of appearance. Placeholders are
/// the only `$` this module writes.
fn compact(sql: &str, params: Params) -> (String, Params) {
    let mut slots: Vec<Option<Param>> = params.0.into_iter().map(Some).collect();
    let mut out = String::with_capacity(sql.len());
    let mut kept = Params::default();
    let mut renumbered: Vec<Option<usize>> = vec![None; slots.len()];
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let digits = rest[at + 1..]
            .bytes()
            .take_while(u8::is_ascii_digit)
            .count();
        let number: Option<usize> = rest[at + 1..at + 1 + digits].parse().ok();
        match number
            .and_then(|n| n.checked_sub(1))
            .filter(|i| *i < slots.len())
        {
            Some(i) => {
                let new = match renumbered[i] {
                    Some(new) => new,
                    None => {
                        if let Some(p) = slots[i].take() {
                            kept.0.push(p);
                        }
                        renumbered[i] = Some(kept.0.len());
                        kept.0.len()
                    }
                };
                out.push_str(&format!("${new}"));
            }
            None => out.push_str(&rest[at..at + 1 + digits]),
        }
        rest = &rest[at + 1 + digits..];
    }
    out.push_str(rest);
    (out, kept)
}

/// The `irregular` bits of a node: one per declared `data` path whose value in this
/// node is not exactly what `data #>> path` gives a regular row (one string reached
/// through objects, or null/missing).
pub(crate) fn irregular_bits(node: &Node) -> i32 {
    use kernelci_core::query::{resolve, Val};
    let mut bits = 0;
    for (i, path) in data_paths().iter().enumerate() {
        let mut cur = node.data.as_ref().map(|m| m as &serde_json::Map<_, _>);
        let mut leaf: Option<&serde_json::Value> = None;
        let segs = path.rest();
        for (k, seg) in segs.iter().enumerate() {
            let Some(obj) = cur else {
                leaf = None;
                break;
            };
            let v = obj.get(seg);
            if k + 1 == segs.len() {
                leaf = v;
            } else {
                cur = v.and_then(serde_json::Value::as_object);
                if cur.is_none() {
                    leaf = None;
                    break;
                }
            }
        }
        let leaves = resolve(node, path);
        let regular = match (leaf, leaves.as_slice()) {
            (Some(serde_json::Value::String(s)), [Val::Str(x)]) => s == x,
            (None | Some(serde_json::Value::Null), [Val::Missing | Val::Null]) => true,
            _ => false,
        };
        if !regular {
            bits |= 1 << i;
        }
    }
    bits
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(q: &str) -> Translation {
        translate(
            &Query::parse_str(q, Mode::Page).unwrap_or_else(|e| panic!("{e}")),
            true,
        )
    }

    #[test]
    fn folded_conditions_leave_no_unused_parameter() {
        // `name=5` on a string column can never match: the whole filter is FALSE.
        let t = plan("kind=kbuild&name__int=5&state=done");
        assert_eq!(t.where_sql, "FALSE");
        assert!(t.params.0.is_empty());
        // `in` with null and a string: both kept, numbered from 1.
        let t = plan("kind=x&result__in=pass,null");
        assert_eq!(t.params.0.len(), 2, "{}", t.where_sql);
        assert!(t.where_sql.contains("$1") && t.where_sql.contains("$2"));
        assert!(t.exact);
    }

    #[test]
    fn regexes_and_undeclared_paths_are_checked_in_rust() {
        let t = plan("name__re=^a.c&kind=test");
        assert!(!t.exact);
        assert!(t.where_sql.contains("\"kind\" = $"), "{}", t.where_sql);
        // A pattern that is only a literal is answered exactly by the engine.
        for q in ["name__re=^a&kind=test", "name__re=x86"] {
            let t = plan(q);
            assert!(t.exact, "{q}");
        }
        let t = plan("data.misc.foo=bar");
        assert!(!t.exact);
        assert_eq!(t.where_sql, "TRUE");
    }

    #[test]
    fn anchored_regexes_get_an_index_range() {
        for (pattern, want) in [
            ("^dmesg", Some("dmesg")),
            ("^baseline.login", Some("baseline")),
            ("^ab?c", Some("a")),
            ("^a*", None),
            ("^(?i)dmesg", None),
            ("^a|b", None),
            ("dmesg", None),
            ("^x86_64", Some("x86_64")),
        ] {
            assert_eq!(literal_prefix(pattern).as_deref(), want, "{pattern}");
        }
        for (pattern, want) in [
            ("x86", Some("x86")),
            ("arm64.*defconfig", Some("defconfig")),
            ("ab?cd", Some("cd")),
            ("abc*", Some("ab")),
            ("ab+c", Some("ab")),
            ("kbuild-gcc-12-x86$", Some("kbuild-gcc-12-x86")),
            ("a|b", None),
            ("(?i)x86", None),
            ("[xy]86", None),
            ("x\\d", None),
            ("a{2}", None),
            (".*", None),
        ] {
            assert_eq!(required_literal(pattern).as_deref(), want, "{pattern}");
        }
        for (pattern, want) in [
            ("^dmesg", Some("^dmesg")),
            ("x86", Some("x86")),
            ("^é-x", Some("^é-x")),
            ("^", None),
            ("", None),
            ("^dmesg$", None),
            ("^dmesg.", None),
            ("x86_64|arm", None),
        ] {
            assert_eq!(plain_literal(pattern), want, "{pattern}");
        }
        assert_eq!(prefix_upper_bound("dmesg").as_deref(), Some("dmesh"));
        assert_eq!(prefix_upper_bound("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_upper_bound("\u{D7FF}").as_deref(), Some("\u{E000}"));
        assert_eq!(prefix_upper_bound("\u{10FFFF}"), None);
        let t = plan("kind=test&name__re=^dmesg");
        assert!(t.exact, "a literal prefix alone is the range exactly");
        assert!(t.where_sql.contains("\"name\" >= $2"), "{}", t.where_sql);
        assert!(t.where_sql.contains("\"name\" < $3"), "{}", t.where_sql);
    }

    #[test]
    fn declared_data_paths_use_the_index_expression() {
        let t = plan("data.kernel_revision.tree=mainline&sort=-created");
        assert!(t.exact);
        assert_ne!(t.irregular_mask, 0);
        assert!(t.where_sql.contains("#>>"), "{}", t.where_sql);
        assert_eq!(
            t.order.as_deref(),
            Some("\"created\" DESC NULLS LAST, id DESC")
        );
        let untrusted = translate(
            &Query::parse_str("data.kernel_revision.tree=mainline", Mode::Page)
                .unwrap_or_else(|e| panic!("{e}")),
            false,
        );
        assert!(!untrusted.exact);
    }
}
