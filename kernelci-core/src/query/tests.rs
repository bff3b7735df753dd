//! Table tests: every worked example of QUERY.md §8, the client queries of §9, and
//! the error texts.

use serde_json::json;

use super::*;
use crate::id::ObjectId;
use crate::node::{Node, NodeResult, State};
use crate::time::Timestamp;

/// The five-node data set of QUERY.md §8.
fn dataset() -> Vec<Node> {
    let t0 = parse_query_datetime("2024-01-01T00:00:00").unwrap();
    let mut checkout = Node::new("checkout", "checkout", t0);
    checkout.id = ObjectId::from_bytes([0x65, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    checkout.state = State::Done;
    checkout.result = Some(NodeResult::Pass);
    checkout.processed_by_kcidb_bridge = true;
    checkout.data = json!({"kernel_revision": {"tree": "next"}})
        .as_object()
        .cloned();
    let mut nodes = vec![checkout.clone()];
    let rows = [
        (
            "kbuild-gcc-x86",
            "kbuild",
            State::Done,
            Some(NodeResult::Fail),
            1,
            false,
            "x86_64",
            1,
        ),
        (
            "kbuild-clang-arm64",
            "kbuild",
            State::Running,
            None,
            2,
            true,
            "arm64",
            2,
        ),
        (
            "baseline-x86",
            "job",
            State::Available,
            Some(NodeResult::Pass),
            3,
            false,
            "x86_64",
            3,
        ),
        (
            "123",
            "test",
            State::Done,
            Some(NodeResult::Skip),
            0,
            true,
            "x86_64",
            4,
        ),
    ];
    for (i, (name, kind, state, result, rc, processed, arch, patchlevel)) in
        rows.into_iter().enumerate()
    {
        let mut n = Node::new(kind, name, t0.plus_seconds(i as i64 + 1));
        n.id = ObjectId::from_bytes([0x65, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, i as u8 + 2]);
        n.state = state;
        n.result = result;
        n.retry_counter = rc;
        n.processed_by_kcidb_bridge = processed;
        n.parent = Some(checkout.id);
        n.path = vec!["checkout".into(), name.into()];
        n.data = json!({"arch": arch, "kernel_revision": {"version": {"patchlevel": patchlevel}}})
            .as_object()
            .cloned();
        nodes.push(n);
    }
    nodes
}

fn run(nodes: &[Node], qs: &str, mode: Mode) -> Result<Vec<String>, QueryError> {
    let q = Query::parse_str(qs, mode)?;
    let mut found: Vec<Node> = nodes.iter().filter(|n| matches(n, &q)).cloned().collect();
    sort_nodes(&mut found, q.sort.as_ref());
    let skip = q.offset as usize;
    let take = q.limit.map_or(usize::MAX, |l| l as usize);
    Ok(found
        .into_iter()
        .skip(skip)
        .take(take)
        .map(|n| n.name)
        .collect())
}

/// The `check(input, expect)` helper: the names a `/nodes` query returns, or `ERR
/// <message>`.
fn check(qs: &str, expect: &[&str]) {
    let nodes = dataset();
    let got = run(&nodes, qs, Mode::Page).unwrap_or_else(|e| vec![format!("ERR {e}")]);
    assert_eq!(got, expect, "query: {qs}");
}

fn check_err(qs: &str, mode: Mode, kind: QueryErrorKind, message: &str) {
    let err = Query::parse_str(qs, mode).unwrap_err();
    assert_eq!(
        (err.kind, err.to_string().as_str()),
        (kind, message),
        "query: {qs}"
    );
}

const ALL: [&str; 5] = [
    "checkout",
    "kbuild-gcc-x86",
    "kbuild-clang-arm64",
    "baseline-x86",
    "123",
];

#[test]
fn worked_examples_of_query_md() {
    let checkout_id = dataset()[0].id;
    check("", &ALL);
    check("kind=kbuild", &["kbuild-gcc-x86", "kbuild-clang-arm64"]);
    check("name__re=x86", &["kbuild-gcc-x86", "baseline-x86"]);
    check("name__re=^KB", &[]);
    check(
        "name__re=(?i)^KB",
        &["kbuild-gcc-x86", "kbuild-clang-arm64"],
    );
    check("result=null", &["kbuild-clang-arm64"]);
    check(
        "result__ne=null",
        &["checkout", "kbuild-gcc-x86", "baseline-x86", "123"],
    );
    check("foo=null", &ALL);
    check("foo=bar", &[]);
    check("retry_counter=2", &["kbuild-clang-arm64"]);
    check(
        "data.kernel_revision.version.patchlevel__gt=2",
        &["baseline-x86", "123"],
    );
    check("data.kernel_revision.version.patchlevel=2", &[]);
    check(
        "data.kernel_revision.version.patchlevel__int=2",
        &["kbuild-clang-arm64"],
    );
    check(
        "kind__in=kbuild,job",
        &["kbuild-gcc-x86", "kbuild-clang-arm64", "baseline-x86"],
    );
    check("kind__nin=kbuild,job", &["checkout", "123"]);
    check("state__ne=done", &["kbuild-clang-arm64", "baseline-x86"]);
    check("name=123", &["123"]);
    check("name__ne=123", &ALL);
    check("name__in=123,checkout", &["checkout", "123"]);
    check(
        "processed_by_kcidb_bridge=true",
        &["checkout", "kbuild-clang-arm64", "123"],
    );
    check(
        "processed_by_kcidb_bridge=False",
        &["kbuild-gcc-x86", "baseline-x86"],
    );
    check("processed_by_kcidb_bridge__ne=true", &ALL);
    check(&format!("parent={checkout_id}"), &ALL[1..]);
    check("created__gt=2000-01-01", &ALL);
    check("created__gt=2000-01-01T00:00:00Z", &ALL);
    check("created__lt=2000-01-01 10:00:00", &[]);
    check("created__gt=2000-01-01&created__lt=2100-01-01", &ALL);
    check("timeout__lt=2100-01-01T00:00:00%2B02:00", &ALL);
    check("name__foo=bar", &[]);
    check(
        "name__re=x86&name__foo=bar",
        &["kbuild-gcc-x86", "baseline-x86"],
    );
    check("name__re=x86&name__ne=kbuild-gcc-x86", &["baseline-x86"]);
    check("data.arch=x86_64&kind=kbuild", &["kbuild-gcc-x86"]);
    check("data__arch=x86_64", &[]);
    check("data.arch__in=arm64,x86_64", &ALL[1..]);
    check(
        "limit=2&offset=1",
        &["kbuild-gcc-x86", "kbuild-clang-arm64"],
    );
    check(&format!("id={checkout_id}"), &[]);
    check(&format!("_id={checkout_id}"), &[]);
    check("kind=KBUILD", &[]);
    check("path=checkout", &ALL);
    check("path__in=kbuild-gcc-x86,zzz", &["kbuild-gcc-x86"]);
    check("state=done&state=running", &["kbuild-clang-arm64"]);
    // /count and /nodes/fast
    let nodes = dataset();
    assert_eq!(run(&nodes, "kind=kbuild", Mode::Count).unwrap().len(), 2);
    assert_eq!(run(&nodes, "limit=1", Mode::Count).unwrap().len(), 0);
    assert_eq!(
        run(&nodes, "limit=2&offset=3", Mode::Fast).unwrap(),
        ["baseline-x86", "123"]
    );
    assert_eq!(
        run(&nodes, "", Mode::Fast).unwrap().len(),
        5,
        "no default limit"
    );
}

#[test]
fn where_we_fix_the_reference() {
    // parent=null: root nodes (the documented meaning), not nothing.
    check("parent=null", &["checkout"]);
    // Operators on parent and retry_counter work instead of failing.
    let checkout_id = dataset()[0].id;
    check(&format!("parent__ne={checkout_id}"), &["checkout"]);
    check(&format!("parent__in={checkout_id}"), &ALL[1..]);
    check(
        "retry_counter__gt=1",
        &["kbuild-clang-arm64", "baseline-x86"],
    );
    check(
        "retry_counter__in=1,2",
        &["kbuild-gcc-x86", "kbuild-clang-arm64"],
    );
    check("retry_counter__int=2", &["kbuild-clang-arm64"]);
    // A digit-only regex is a regex.
    check("name__re=12", &["123"]);
    // Datetime lists are split.
    check(
        "created__in=2024-01-01,2024-01-01T00:00:01",
        &["checkout", "kbuild-gcc-x86"],
    );
    // Explicit sort, newest first.
    check("sort=-created&limit=2", &["123", "baseline-x86"]);
    check(
        "sort=name",
        &[
            "123",
            "baseline-x86",
            "checkout",
            "kbuild-clang-arm64",
            "kbuild-gcc-x86",
        ],
    );
    // Ties follow the direction: newest first within x86_64.
    check(
        "sort=-data.arch&kind__ne=checkout",
        &[
            "123",
            "baseline-x86",
            "kbuild-gcc-x86",
            "kbuild-clang-arm64",
        ],
    );
    // `__in=null` is the list [null].
    check("result__in=null", &["kbuild-clang-arm64"]);
    check(
        "result__nin=null",
        &["checkout", "kbuild-gcc-x86", "baseline-x86", "123"],
    );
    // A later plain key replaces earlier operators.
    check("name__re=x86&name=123", &["123"]);
}

#[test]
fn errors_name_the_parameter() {
    use QueryErrorKind::*;
    check_err(
        "name__re=[",
        Mode::Page,
        Malformed,
        "Invalid regular expression in 'name__re': unclosed character class",
    );
    check_err(
        "holdoff=null",
        Mode::Page,
        Malformed,
        "'holdoff' compares a datetime field with null, which is not supported",
    );
    check_err(
        "created__gt=null",
        Mode::Count,
        Malformed,
        "'created__gt' compares a datetime field with null, which is not supported",
    );
    check_err(
        "created__gt=bad",
        Mode::Page,
        Malformed,
        "Invalid isoformat string: 'bad'",
    );
    check_err(
        "created=1700000000",
        Mode::Page,
        Malformed,
        "Invalid isoformat string: '1700000000'",
    );
    check_err(
        "parent=zz",
        Mode::Page,
        Malformed,
        "'zz' is not a valid ObjectId, it must be a 12-byte input or a 24-character hex string",
    );
    check_err(
        "retry_counter=x",
        Mode::Page,
        Malformed,
        "invalid literal for int() with base 10: 'x'",
    );
    check_err(
        "x__int=abc",
        Mode::Page,
        Malformed,
        "invalid literal for int() with base 10: 'abc'",
    );
    check_err(
        "limit=abc",
        Mode::Fast,
        Malformed,
        "invalid literal for int() with base 10: 'abc'",
    );
    check_err(
        "limit=0",
        Mode::Page,
        Pagination,
        "Input should be greater than or equal to 1",
    );
    check_err(
        "limit=2&offset=-1",
        Mode::Page,
        Pagination,
        "Input should be greater than or equal to 0",
    );
    check_err(
        "limit=x",
        Mode::Page,
        Pagination,
        "Input should be a valid integer, unable to parse string as an integer",
    );
    check_err(
        "name=x&name__gt=a",
        Mode::Page,
        Malformed,
        "'name__gt' cannot follow 'name': give either the plain field or operators",
    );
    check_err(
        "name__re=null",
        Mode::Page,
        Malformed,
        "'name__re' needs a regular expression, not null",
    );
    check_err(
        "data..arch=1",
        Mode::Page,
        Malformed,
        "Invalid field name 'data..arch': empty path segment",
    );
    check_err(
        "__gt=1",
        Mode::Page,
        Malformed,
        "Invalid field name '': empty path segment",
    );
    check_err(
        "x__gt=99999999999999999999",
        Mode::Page,
        Malformed,
        "Integer in 'x__gt' does not fit in 64 bits: '99999999999999999999'",
    );
    check_err(
        "created__int=5",
        Mode::Page,
        Malformed,
        "Invalid isoformat string: '5'",
    );
    check_err(
        "created__int=2024-01-01",
        Mode::Page,
        Malformed,
        "'created__int': __int does not apply to the datetime field 'created'",
    );
    check_err(
        "created__foo=bar",
        Mode::Page,
        Malformed,
        "Invalid isoformat string: 'bar'",
    );
    check_err(
        "limit=-1&offset=-2",
        Mode::Fast,
        Malformed,
        "'offset' must not be negative",
    );
    check_err("name__re=(?=x)", Mode::Page, Malformed, "Invalid regular expression in 'name__re': look-around, including look-ahead and look-behind, is not supported");
}

#[test]
fn limits_are_enforced() {
    let many: Vec<String> = (0..=MAX_TERMS).map(|i| format!("f{i}=1")).collect();
    assert_eq!(
        Query::parse_str(&many.join("&"), Mode::Page)
            .unwrap_err()
            .kind,
        QueryErrorKind::TooLarge
    );
    let long = format!("name={}", "x".repeat(MAX_QUERY_LEN));
    assert_eq!(
        Query::parse_str(&long, Mode::Page).unwrap_err().kind,
        QueryErrorKind::TooLarge
    );
    let deep = format!("data.{}=1", vec!["a"; MAX_PATH_SEGMENTS].join("."));
    assert_eq!(
        Query::parse_str(&deep, Mode::Page).unwrap_err().kind,
        QueryErrorKind::TooLarge
    );
    let big_regex = format!("name__re={}", "a".repeat(MAX_REGEX_LEN + 1));
    assert_eq!(
        Query::parse_str(&big_regex, Mode::Page).unwrap_err().kind,
        QueryErrorKind::TooLarge
    );
    let huge = "name__re=(\\w{100}){100}";
    assert!(
        Query::parse_str(huge, Mode::Page).is_err(),
        "compiled size is limited"
    );
    let items = vec!["a"; MAX_IN_ITEMS + 1].join(",");
    assert_eq!(
        Query::parse_str(&format!("name__in={items}"), Mode::Page)
            .unwrap_err()
            .kind,
        QueryErrorKind::TooLarge
    );
}

#[test]
fn client_queries_keep_working() {
    // kernelci-pipeline's KCIDB bridge: capitalised False, space-separated datetimes.
    let q = Query::parse_str(
        "state=done&processed_by_kcidb_bridge=False&created__gt=2024-01-02+03:04:05.678901&updated__lt=2024-01-03+00:00:00&limit=100",
        Mode::Fast,
    )
    .unwrap();
    assert_eq!(q.limit, Some(100));
    assert_eq!(
        q.filter("processed_by_kcidb_bridge").unwrap().conds,
        vec![Cond::Eq(QValue::Bool(false))]
    );
    let created = q.filter("created").unwrap().range().unwrap();
    // Query datetimes are truncated to the millisecond, like stored ones.
    assert_eq!(
        created.lower.unwrap().value,
        &QValue::Date(parse_query_datetime("2024-01-02T03:04:05.678").unwrap())
    );
    assert!(!created.lower.unwrap().inclusive);
    // The timeout service: aware datetimes with +00:00.
    let q = Query::parse_str(
        "state=available&holdoff__lt=2024-01-02T03:04:05.678901%2B00:00&limit=100&offset=200",
        Mode::Page,
    )
    .unwrap();
    assert_eq!((q.limit, q.offset), (Some(100), 200));
    // The scheduler's lookup.
    let q = Query::parse_str(
        "name=baseline&data.kernel_revision.tree=mainline&data.kernel_revision.branch=master&data.platform=qemu&created__gte=2024-01-01T00:00:00.000000&limit=1",
        Mode::Page,
    )
    .unwrap();
    assert_eq!(q.filters.len(), 5);
    assert_eq!(
        q.filter("data.kernel_revision.tree")
            .unwrap()
            .equality_values(),
        Some(vec![&QValue::Str("mainline".into())])
    );
    assert_eq!(q.filter("name").unwrap().field.root(), Root::Name);
}

#[test]
fn inspection_for_planners() {
    let q = Query::parse_str(
        "kind__in=kbuild,job&created__gte=2024-01-01&created__lt=2024-02-01&name__re=x",
        Mode::Page,
    )
    .unwrap();
    let kind = q.filter("kind").unwrap();
    assert_eq!(kind.equality_values().unwrap().len(), 2);
    assert_eq!(kind.range(), None);
    let r = q.filter("created").unwrap().range().unwrap();
    assert!(r.lower.unwrap().inclusive && !r.upper.unwrap().inclusive);
    assert_eq!(q.filter("name").unwrap().equality_values(), None);
}

#[test]
fn rendering_round_trips() {
    for qs in [
        "kind=kbuild&created__gt=2024-01-01&name__re=x86&data.arch__in=arm64,x86_64&result=null",
        "name__foo=bar&x__int=-3&parent=null&retry_counter=4&sort=-created&limit=7&offset=3",
        "a__b__c=1&name__ne=123&processed_by_kcidb_bridge=TRUE&holdoff__lte=2024-01-01T10:00:00%2B02:00",
        "name=a%26b%3Dc+d",
        "parent__int=1&retry_counter__int=2&created__foo=2024-01-01",
    ] {
        let q = Query::parse_str(qs, Mode::Page).unwrap();
        let again = Query::parse_str(&q.to_query_string(), Mode::Page).unwrap();
        assert_eq!(q, again, "{qs} -> {}", q.to_query_string());
    }
    let q = Query::parse_str("name=a%26b%3Dc+d", Mode::Page).unwrap();
    assert_eq!(
        q.filter("name").unwrap().conds,
        vec![Cond::Eq(QValue::Str("a&b=c d".into()))]
    );
}

#[test]
fn mongodb_semantics_on_nested_data() {
    let mut n = Node::new("test", "t", Timestamp::now());
    n.data = json!({"list": [{"a": 1}, {"a": 2}, {"b": 3}], "nums": [1, 5], "f": 2.5, "s": "2"})
        .as_object()
        .cloned();
    n.artifacts = Some([("log".to_string(), "http://x/".to_string())].into());
    let m = |qs: &str| matches(&n, &Query::parse_str(qs, Mode::Count).unwrap());
    assert!(m("data.list.a__int=2"));
    assert!(m("data.list.a=null"), "an element without `a` matches null");
    assert!(m("data.list.1.a__int=2"));
    assert!(!m("data.list.0.a__int=2"));
    assert!(m("data.nums__gt=4") && !m("data.nums__gt=5"));
    assert!(m("data.nums__int=5"));
    assert!(m("data.f__gt=2") && !m("data.f__gt=3"));
    assert!(!m("data.s__gt=1"), "strings never compare with numbers");
    assert!(m("data.s=2"), "plain equality is a string match");
    assert!(m("artifacts.log=http://x/"));
    assert!(m("artifacts.missing=null"));
    assert!(
        !m("data.nothing__lt=5"),
        "missing fields never satisfy comparisons"
    );
    assert!(m("data.nothing__lte=null") && !m("data.nothing__lt=null"));
    assert!(
        m("holdoff__ne=2024-01-01"),
        "null holdoff is not equal to a date"
    );
}

/// Found by review: comparing integers with floats through `as f64` is not a total
/// order beyond 2^53, and sorting with such an order panics.
#[test]
fn int_float_comparison_is_exact_and_total() {
    use std::cmp::Ordering::*;
    let big = 1i64 << 53;
    assert_eq!(
        compare_values(Val::Int(big + 1), Val::Float(big as f64)),
        Greater
    );
    assert_eq!(compare_values(Val::Int(big), Val::Float(big as f64)), Equal);
    assert_eq!(compare_values(Val::Int(0), Val::Float(-0.0)), Equal);
    assert_eq!(compare_values(Val::Float(-0.0), Val::Float(0.0)), Equal);
    assert_eq!(compare_values(Val::Int(2), Val::Float(2.5)), Less);
    assert_eq!(compare_values(Val::Int(-3), Val::Float(-2.5)), Less);
    assert_eq!(compare_values(Val::Int(i64::MAX), Val::Float(1e19)), Less);
    let mut nodes: Vec<Node> = (0..300)
        .map(|k| {
            let mut n = Node::new("test", "n", Timestamp::now());
            let v = match k % 3 {
                0 => json!(big + 1 + k),
                1 => json!(9007199254740992.0),
                _ => json!(big),
            };
            n.data = json!({"x": v}).as_object().cloned();
            n
        })
        .collect();
    let q = Query::parse_str("sort=data.x", Mode::Fast).unwrap();
    sort_nodes(&mut nodes, q.sort.as_ref());
    let q = Query::parse_str("data.x__int=0", Mode::Fast).unwrap();
    let mut zero = Node::new("test", "z", Timestamp::now());
    zero.data = serde_json::from_str(r#"{"x": -0.0}"#).ok();
    assert!(matches(&zero, &q), "-0.0 equals 0");
}
