//! Tests of the telemetry validation, query and reports.

use serde_json::{json, Value};

use super::*;
use crate::error::{Error, ValidationErrors};
use crate::id::ObjectId;
use crate::time::{parse_query_datetime, Timestamp};

fn pairs(qs: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(qs.as_bytes()).into_owned().collect()
}

fn t(s: &str) -> Timestamp {
    parse_query_datetime(s).unwrap()
}

fn event(v: Value) -> TelemetryEvent {
    TelemetryEvent::from_json(&v, ObjectId::new(), t("2024-05-01T12:00:00")).unwrap()
}

fn invalid(v: Value) -> String {
    TelemetryEvent::from_json(&v, ObjectId::new(), Timestamp::now())
        .unwrap_err()
        .describe(MODEL_NAME)
}

#[test]
fn defaults_and_coercions() {
    let now = t("2024-05-01T12:00:00.123456");
    let e = TelemetryEvent::from_json(
        &json!({"kind": "job_result", "runtime": "lava-collabora", "id": "ignored"}),
        ObjectId::from_bytes([1; 12]),
        now,
    )
    .unwrap();
    assert_eq!(e.id, ObjectId::from_bytes([1; 12]));
    assert_eq!(e.ts.to_string(), "2024-05-01T12:00:00.123000");
    assert!(!e.is_infra_error && e.retry == 0 && e.extra.is_empty());
    assert_eq!(e.device_type, None);
    let doc = e.document();
    assert_eq!(doc.as_object().unwrap().len(), 19);
    assert_eq!(doc["id"], "010101010101010101010101");
    assert_eq!(doc["device_type"], Value::Null);
    assert_eq!(serde_json::from_value::<TelemetryEvent>(doc).unwrap(), e);

    let e = event(json!({
        "kind": "k", "runtime": "r", "ts": "2024-01-01T10:00:00+02:00",
        "is_infra_error": "yes", "retry": "2", "extra": {"a": [1]}, "arch": null,
        "device_type": "qemu"
    }));
    assert_eq!(e.ts, t("2024-01-01T08:00:00"));
    assert!(e.is_infra_error);
    assert_eq!(e.retry, 2);
    assert_eq!(e.extra["a"], json!([1]));
    assert_eq!(e.device_type.as_deref(), Some("qemu"));
    assert_eq!(
        event(json!({"kind": "k", "runtime": "r", "retry": 3.0})).retry,
        3
    );
    assert_eq!(
        event(json!({"kind": "k", "runtime": "r", "retry": true})).retry,
        1
    );
}

#[test]
fn validation_texts() {
    assert_eq!(
        invalid(json!({"runtime": "r"})),
        "1 validation error for TelemetryEvent\nkind\n  Field required"
    );
    assert_eq!(
        invalid(json!({})),
        "2 validation errors for TelemetryEvent\nkind\n  Field required\nruntime\n  Field required"
    );
    assert_eq!(
        invalid(json!({"kind": 1, "runtime": "r", "device_id": 5})),
        "2 validation errors for TelemetryEvent\nkind\n  Input should be a valid string\n\
         device_id\n  Input should be a valid string"
    );
    assert_eq!(
        invalid(json!({"kind": "k", "runtime": "r", "ts": "yesterday"})),
        "1 validation error for TelemetryEvent\nts\n  Input should be a valid datetime"
    );
    assert_eq!(
        invalid(json!({"kind": "k", "runtime": "r", "is_infra_error": "maybe"})),
        "1 validation error for TelemetryEvent\nis_infra_error\n  \
         Input should be a valid boolean, unable to interpret input"
    );
    assert_eq!(
        invalid(json!({"kind": "k", "runtime": "r", "retry": 1.5})),
        "1 validation error for TelemetryEvent\nretry\n  \
         Input should be a valid integer, got a number with a fractional part"
    );
    assert_eq!(
        invalid(json!({"kind": "k", "runtime": "r", "retry": "x"})),
        "1 validation error for TelemetryEvent\nretry\n  \
         Input should be a valid integer, unable to parse string as an integer"
    );
    assert_eq!(
        invalid(json!({"kind": "k", "runtime": "r", "extra": []})),
        "1 validation error for TelemetryEvent\nextra\n  Input should be a valid dictionary"
    );
    assert_eq!(
        invalid(json!({"kind": "k", "runtime": null})),
        "1 validation error for TelemetryEvent\nruntime\n  Input should be a valid string"
    );
}

#[test]
fn batches() {
    let now = Timestamp::now();
    let err = |v: Value| parse_batch(&v, now).unwrap_err();
    match err(json!({"kind": "k"})) {
        Error::Validation(e) => {
            assert_eq!(
                (e.0[0].kind, e.0[0].loc.clone()),
                ("list_type", vec![json!("body")])
            )
        }
        other => panic!("{other:?}"),
    }
    match err(json!([{"kind": "k", "runtime": "r"}, 1, "x"])) {
        Error::Validation(e) => {
            assert_eq!(e.0.len(), 2);
            assert_eq!(e.0[1].loc, vec![json!("body"), json!(2)]);
            assert_eq!(e.0[1].kind, "dict_type");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        err(json!([])),
        Error::Invalid("Events list cannot be empty".into())
    );
    assert_eq!(
        err(json!([{"kind": "k", "runtime": "r"}, {"kind": "k"}])).to_string(),
        "Invalid telemetry event: 1 validation error for TelemetryEvent\nruntime\n  Field required"
    );
    let ok = parse_batch(
        &json!([{"kind": "a", "runtime": "r"}, {"kind": "b", "runtime": "r"}]),
        now,
    )
    .unwrap();
    assert_eq!(ok.len(), 2);
    assert!(ok[0].id < ok[1].id, "ids in posting order");
}

#[test]
fn telemetry_query() {
    let q = |qs: &str| TelemetryQuery::parse(&pairs(qs), 50, 0);
    assert_eq!(
        q("is_infra_error=maybe").unwrap_err().to_string(),
        "Bad is_infra_error value, use 'true' or 'false'"
    );
    assert_eq!(
        q("since=yesterday").unwrap_err().to_string(),
        "Invalid isoformat string: 'yesterday'"
    );
    let e = event(
        json!({"kind": "job_result", "runtime": "lab-a", "is_infra_error": true,
                         "ts": "2024-05-01T10:00:00"}),
    );
    let m = |qs: &str| q(qs).unwrap().matches(&e);
    assert!(m("is_infra_error=TRUE&kind=job_result&limit=5&offset=1"));
    assert!(!m("is_infra_error=False"));
    assert!(
        m("since=2024-05-01T10:00:00&until=2024-05-01T10:00:00"),
        "inclusive"
    );
    assert!(!m("since=2024-05-01T10:00:00.001"));
    assert!(!m("until=2024-05-01T09:59:59"));
    assert!(m("since=&runtime=lab-a"));
    assert!(!m("runtime=lab-b"));
    assert!(!m("retry=0"), "no conversion of numbers");
    assert!(m(&format!("id={}", e.id)));
}

#[test]
fn stats_query_rules() {
    let e = |qs: &str| StatsQuery::parse(&pairs(qs)).unwrap_err().to_string();
    assert_eq!(e("kind=x"), "'group_by' parameter is required");
    assert_eq!(e("group_by="), "'group_by' parameter is required");
    assert_eq!(e("group_by=,"), "'group_by' parameter is required");
    assert_eq!(
        e("group_by=runtime,foo"),
        "Invalid group_by fields: {'foo'}"
    );
    assert_eq!(
        e("group_by=foo,bar,foo,it's"),
        "Invalid group_by fields: {'foo', 'bar', \"it's\"}"
    );
    assert_eq!(
        e("group_by=lab&lab=a&runtime=b"),
        "'lab' and 'runtime' must match when both are provided"
    );
    assert_eq!(e("group_by=lab&until=x"), "Invalid isoformat string: 'x'");
    let q = StatsQuery::parse(&pairs("group_by= lab , runtime,lab&lab=a&runtime=a")).unwrap();
    assert_eq!(q.group_by, vec!["lab", "runtime"]);
    assert_eq!(q.filter.terms, vec![("runtime".into(), json!("a"))]);
    let q = StatsQuery::parse(&pairs("group_by=kind&lab=a&result=fail&kind=")).unwrap();
    assert_eq!(
        q.filter.terms,
        vec![("runtime".into(), json!("a"))],
        "lab is runtime; result is not a stats filter; empty values are ignored"
    );
}

fn sample() -> Vec<TelemetryEvent> {
    let mk = |runtime: &str, dt: &str, result: &str, infra: bool| {
        event(
            json!({"kind": "job_result", "runtime": runtime, "device_type": dt,
                     "result": result, "is_infra_error": infra}),
        )
    };
    vec![
        mk("lab-a", "qemu", "pass", false),
        mk("lab-b", "rpi", "fail", true),
        mk("lab-b", "rpi", "incomplete", false),
        mk("lab-b", "bbb", "skip", false),
        mk("lab-a", "qemu", "pass", false),
        event(json!({"kind": "runtime_error", "runtime": "lab-b", "error_type": "Timeout"})),
    ]
}

#[test]
fn stats_rows() {
    let events = sample();
    let rows = |qs: &str| stats(&StatsQuery::parse(&pairs(qs)).unwrap(), &events);
    assert_eq!(
        rows("group_by=lab,runtime"),
        vec![
            json!({"lab": "lab-b", "runtime": "lab-b", "total": 4, "pass": 0, "fail": 1,
                   "incomplete": 1, "skip": 1, "infra_error": 1}),
            json!({"lab": "lab-a", "runtime": "lab-a", "total": 2, "pass": 2, "fail": 0,
                   "incomplete": 0, "skip": 0, "infra_error": 0}),
        ]
    );
    let r = rows("group_by=device_type,error_type&lab=lab-b");
    assert_eq!(r.len(), 3);
    assert_eq!(
        (&r[0]["device_type"], &r[0]["total"]),
        (&json!("rpi"), &json!(2))
    );
    assert_eq!(
        r[1]["device_type"],
        json!("bbb"),
        "ties keep first-seen order"
    );
    assert_eq!(
        (&r[2]["device_type"], &r[2]["error_type"]),
        (&Value::Null, &json!("Timeout"))
    );
    assert!(rows("group_by=kind&kind=test_result").is_empty());
    assert_eq!(rows("group_by=kind&since=2030-01-01").len(), 0);
}

fn aq(qs: &str) -> AnomalyQuery {
    AnomalyQuery::parse(&pairs(qs)).unwrap()
}

#[test]
fn anomaly_query_rules() {
    let q = aq("");
    assert_eq!(
        (q.window, q.hours, q.threshold, q.min_total, q.scope),
        ("6h", 6, 0.5, 3, Scope::DeviceType)
    );
    assert_eq!(aq("window=48h&scope=device").scope, Scope::Device);
    match AnomalyQuery::parse(&pairs("window=2h")) {
        Err(e @ Error::Invalid(_)) => assert_eq!(
            e.to_string(),
            "Invalid window '2h'. Use: 1h, 3h, 6h, 12h, 24h, 48h"
        ),
        other => panic!("{other:?}"),
    }
    match AnomalyQuery::parse(&pairs("window=2h&threshold=2&min_total=0&scope=lab")) {
        Err(Error::Validation(ValidationErrors(errs))) => {
            let kinds: Vec<_> = errs.iter().map(|e| (e.loc[1].clone(), e.kind)).collect();
            assert_eq!(
                kinds,
                vec![
                    (json!("threshold"), "less_than_equal"),
                    (json!("min_total"), "greater_than_equal"),
                    (json!("scope"), "literal_error"),
                ],
                "422 before the window check"
            );
            assert_eq!(
                errs[2].to_json(),
                json!({"type": "literal_error", "loc": ["query", "scope"],
                       "msg": "Input should be 'device_type' or 'device'", "input": "lab",
                       "ctx": {"expected": "'device_type' or 'device'"}})
            );
        }
        other => panic!("{other:?}"),
    }
    match AnomalyQuery::parse(&pairs("threshold=-0.1&min_total=x")) {
        Err(Error::Validation(ValidationErrors(errs))) => {
            assert_eq!(errs[0].msg, "Input should be greater than or equal to 0");
            assert_eq!(errs[0].ctx, Some(json!({"ge": 0.0})));
            assert_eq!(errs[1].kind, "int_parsing");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(aq("threshold=0&threshold=1").threshold, 1.0);
}

#[test]
fn python_rounding() {
    assert_eq!(round3(2.0 / 3.0), 0.667);
    assert_eq!(round3(1.0 / 16.0), 0.062, "exact tie: half to even");
    assert_eq!(round3(3.0 / 16.0), 0.188);
    assert_eq!(
        round3(9.0 / 2000.0),
        0.004,
        "0.0045 is stored below the tie"
    );
    assert_eq!(round3(1.0), 1.0);
}

fn at(ts: &str, v: Value) -> TelemetryEvent {
    let mut v = v;
    v["ts"] = json!(ts);
    event(v)
}

#[test]
fn anomaly_rows() {
    let now = t("2024-05-01T12:00:00.5");
    let r = |runtime: &str, dt: &str, dev: &str, result: &str, infra: bool, ts: &str| {
        at(
            ts,
            json!({"kind": "job_result", "runtime": runtime, "device_type": dt,
                   "device_id": dev, "result": result, "is_infra_error": infra,
                   "error_type": if infra { Some("Infra") } else { None::<&str> },
                   "error_msg": format!("{result} at {ts}")}),
        )
    };
    let events = vec![
        // Before the 6 h window: ignored.
        r("lab-a", "rpi", "rpi-1", "fail", true, "2024-05-01T05:00:00"),
        // lab-a/rpi: 3 of 4 infra failures -> infra_rate 0.75.
        r("lab-a", "rpi", "rpi-1", "fail", true, "2024-05-01T07:00:00"),
        r(
            "lab-a",
            "rpi",
            "rpi-2",
            "incomplete",
            true,
            "2024-05-01T09:00:00",
        ),
        r(
            "lab-a",
            "rpi",
            "rpi-1",
            "pass",
            false,
            "2024-05-01T11:00:00",
        ),
        r("lab-a", "rpi", "rpi-2", "fail", true, "2024-05-01T10:00:00"),
        // lab-b/qemu: every one failed (no infra) -> constant failure.
        r("lab-b", "qemu", "q-1", "fail", false, "2024-05-01T08:00:00"),
        r(
            "lab-b",
            "qemu",
            "q-1",
            "incomplete",
            false,
            "2024-05-01T09:00:00",
        ),
        r("lab-b", "qemu", "", "fail", false, "2024-05-01T10:00:00"),
        // lab-c/bbb: healthy.
        r("lab-c", "bbb", "b-1", "pass", false, "2024-05-01T08:00:00"),
        r("lab-c", "bbb", "b-1", "pass", false, "2024-05-01T09:00:00"),
        r("lab-c", "bbb", "b-1", "fail", false, "2024-05-01T10:00:00"),
        // lab-d: too few.
        r("lab-d", "x", "x-1", "fail", true, "2024-05-01T10:00:00"),
        // Errors.
        at(
            "2024-05-01T10:00:00",
            json!({"kind": "runtime_error", "runtime": "lab-a", "error_type": "Timeout"}),
        ),
        at(
            "2024-05-01T10:00:01",
            json!({"kind": "job_skip", "runtime": "lab-a", "error_type": "Timeout"}),
        ),
        at(
            "2024-05-01T10:00:02",
            json!({"kind": "runtime_error", "runtime": "lab-a", "error_type": "Timeout"}),
        ),
        at(
            "2024-05-01T10:00:03",
            json!({"kind": "runtime_error", "runtime": "lab-b"}),
        ),
        at(
            "2024-05-01T02:00:03",
            json!({"kind": "runtime_error", "runtime": "lab-b"}),
        ),
    ];
    let report = anomalies(&aq(""), now, &events);
    assert_eq!(report["since"], "2024-05-01T06:00:00.500000+00:00");
    assert_eq!(
        (
            &report["window"],
            &report["threshold"],
            &report["min_total"],
            &report["scope"]
        ),
        (&json!("6h"), &json!(0.5), &json!(3), &json!("device_type"))
    );
    let rows = report["result_anomalies"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:#?}");
    assert_eq!(
        rows[0],
        json!({"runtime": "lab-a", "lab": "lab-a", "device_type": "rpi", "total": 4,
               "pass": 1, "fail": 2, "incomplete": 1, "skip": 0, "infra_error": 3,
               "infra_rate": 0.75, "fail_rate": 0.75, "constant_failure": false,
               "constant_infra_failure": false, "last_seen": "2024-05-01T11:00:00",
               "latest_error_type": null, "latest_error_msg": "pass at 2024-05-01T11:00:00"})
    );
    assert_eq!(rows[1]["runtime"], "lab-b");
    assert_eq!(
        (&rows[1]["infra_rate"], &rows[1]["fail_rate"]),
        (&json!(0.0), &json!(1.0))
    );
    assert_eq!(rows[1]["constant_failure"], true);
    assert_eq!(rows[1]["last_seen"], "2024-05-01T10:00:00");
    assert_eq!(
        report["error_anomalies"],
        json!([{"runtime": "lab-a", "error_type": "Timeout", "count": 3}])
    );

    // A higher threshold keeps only the constant failure; a lower min_total
    // brings lab-d and the lab-b runtime errors in.
    let rows = anomalies(&aq("threshold=0.8"), now, &events)["result_anomalies"].clone();
    assert_eq!(rows.as_array().unwrap().len(), 1);
    assert_eq!(rows[0]["runtime"], "lab-b");
    let report = anomalies(&aq("min_total=1&threshold=1"), now, &events);
    let rows = report["result_anomalies"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (&rows[0]["runtime"], &rows[0]["constant_infra_failure"]),
        (&json!("lab-d"), &json!(true))
    );
    assert_eq!(
        report["error_anomalies"][1],
        json!({"runtime": "lab-b", "error_type": null, "count": 1})
    );

    // Device scope: job results naming a device only, one row per device.
    let report = anomalies(&aq("scope=device&min_total=2"), now, &events);
    let rows = report["result_anomalies"].as_array().unwrap();
    let keys: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                r["runtime"].as_str().unwrap(),
                r["device_id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        keys,
        vec![("lab-a", "rpi-2"), ("lab-a", "rpi-1"), ("lab-b", "q-1")]
    );
    assert_eq!(
        rows[1]["total"], 2,
        "the event before the window is not counted"
    );

    // Test results count in device_type scope, not in device scope.
    let tests: Vec<_> = (0..3)
        .map(|i| {
            at(
                &format!("2024-05-01T11:00:0{i}"),
                json!({"kind": "test_result", "runtime": "l",
            "device_id": "d", "result": "fail"}),
            )
        })
        .collect();
    assert_eq!(
        anomalies(&aq(""), now, &tests)["result_anomalies"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert!(
        anomalies(&aq("scope=device"), now, &tests)["result_anomalies"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}
