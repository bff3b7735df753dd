//! Telemetry endpoints over real HTTP (API.md §8): posting, the paginated list and
//! its filters, stats, anomalies, the TTL trim, and a restart.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

mod common;

use common::{every_backend, TestServer, SECRET};
use hyper::Method;
use kernelci_core::time::Timestamp;
use kernelci_http::HttpConfig;
use serde_json::{json, Value};

fn ids(r: &common::TestResponse) -> Vec<String> {
    r.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["extra"]["n"].to_string())
        .collect()
}

every_backend!(posting_events);
async fn posting_events() {
    let s = TestServer::start().await;
    let (_, token) = s.user("lab-bot", false, true, &[]).await;
    let tok = Some(token.as_str());
    let one = json!([{"kind": "job_result", "runtime": "lava-a"}]);

    // No token: 401; malformed JSON is 422 even without one.
    let r = s.post("/latest/telemetry", None, &one).await;
    assert_eq!(
        (r.code(), r.json()),
        (401, json!({"detail": "Unauthorized"}))
    );
    let r = s
        .request(
            Method::POST,
            "/latest/telemetry",
            &[("content-type", "application/json")],
            "[{",
        )
        .await;
    assert_eq!(r.code(), 422);
    assert_eq!(r.detail()[0]["type"], "json_invalid");

    // Shape errors: 422 with pydantic's list.
    let r = s
        .post("/latest/telemetry", tok, &json!({"kind": "x"}))
        .await;
    assert_eq!(r.code(), 422);
    assert_eq!(
        r.detail(),
        json!([{"type": "list_type", "loc": ["body"], "msg": "Input should be a valid list",
                "input": {"kind": "x"}}])
    );
    let r = s
        .post(
            "/latest/telemetry",
            tok,
            &json!([{"kind": "k", "runtime": "r"}, 7]),
        )
        .await;
    assert_eq!(r.code(), 422);
    assert_eq!(r.detail()[0]["loc"], json!(["body", 1]));
    assert_eq!(r.detail()[0]["type"], "dict_type");
    let r = s
        .request(
            Method::POST,
            "/latest/telemetry",
            &[("authorization", &format!("Bearer {token}"))],
            "",
        )
        .await;
    assert_eq!(
        (r.code(), r.detail()[0]["type"].clone()),
        (422, json!("missing"))
    );

    // Handler errors: 400, nothing stored.
    let r = s.post("/latest/telemetry", tok, &json!([])).await;
    assert_eq!(
        (r.code(), r.json()),
        (400, json!({"detail": "Events list cannot be empty"}))
    );
    let r = s
        .post(
            "/latest/telemetry",
            tok,
            &json!([{"kind": "job_result", "runtime": "lava-a"}, {"kind": "job_result"}]),
        )
        .await;
    assert_eq!(r.code(), 400);
    assert_eq!(
        r.detail(),
        json!("Invalid telemetry event: 1 validation error for TelemetryEvent\nruntime\n  Field required")
    );
    let r = s
        .post(
            "/latest/telemetry",
            tok,
            &json!([{"kind": "k", "runtime": "r", "retry": "many", "is_infra_error": []}]),
        )
        .await;
    assert_eq!(
        r.detail(),
        json!(
            "Invalid telemetry event: 2 validation errors for TelemetryEvent\nis_infra_error\n  \
               Input should be a valid boolean\nretry\n  \
               Input should be a valid integer, unable to parse string as an integer"
        )
    );
    assert_eq!(s.get("/latest/telemetry", None).await.json()["total"], 0);

    // Success: defaults filled, the client's id ignored, `ts` kept to the millisecond.
    let r = s
        .post(
            "/latest/telemetry",
            tok,
            &json!([
                {"kind": "job_result", "runtime": "lava-a", "id": "65a1355ee98651d0fe81e412",
                 "ts": "2024-05-01T10:00:00.123456+02:00", "result": "pass",
                 "device_type": "rpi4", "extra": {"n": 1}, "unknown": "ignored"},
                {"kind": "runtime_error", "runtime": "lava-a", "is_infra_error": "true",
                 "retry": 2, "error_type": "Timeout"},
            ]),
        )
        .await;
    assert_eq!((r.code(), r.json()), (200, json!({"inserted": 2})));
    let r = s.get("/latest/telemetry", None).await;
    let items = r.json()["items"].clone();
    assert_eq!(items.as_array().unwrap().len(), 2);
    let first = &items[0];
    assert_ne!(first["id"], "65a1355ee98651d0fe81e412");
    assert_eq!(first["id"].as_str().unwrap().len(), 24);
    assert_eq!(first["ts"], "2024-05-01T08:00:00.123000");
    assert_eq!(first["device_type"], "rpi4");
    assert_eq!(first["job_name"], Value::Null);
    assert_eq!(
        (&first["is_infra_error"], &first["retry"]),
        (&json!(false), &json!(0))
    );
    assert!(first.get("unknown").is_none());
    let second = &items[1];
    assert_eq!(
        (&second["is_infra_error"], &second["retry"]),
        (&json!(true), &json!(2))
    );
    assert_eq!(second["extra"], json!({}));
    // The default `ts` is the posting time.
    assert!(second["ts"].as_str().unwrap() > "2025-01-01");
    // Also served without a prefix and under /v0.
    assert_eq!(s.get("/v0/telemetry", None).await.json()["total"], 2);
    s.stop().await;
}

/// Seven events: n = 0..6, runtimes a/a/a/b/b/c/c, `ts` 2024-05-01 + n hours, n = 4
/// an infrastructure error.
async fn seed(s: &TestServer, token: &str) {
    let runtimes = [
        "lab-a", "lab-a", "lab-a", "lab-b", "lab-b", "lab-c", "lab-c",
    ];
    let results = ["pass", "fail", "pass", "incomplete", "fail", "skip", "pass"];
    let events: Vec<Value> = (0..7)
        .map(|n| {
            json!({
                "kind": if n % 2 == 0 { "job_result" } else { "test_result" },
                "runtime": runtimes[n],
                "device_type": if n < 5 { "qemu" } else { "rpi" },
                "result": results[n],
                "is_infra_error": n == 4,
                "ts": format!("2024-05-01T{:02}:00:00", n),
                "extra": {"n": n},
            })
        })
        .collect();
    let r = s
        .post("/latest/telemetry", Some(token), &Value::Array(events))
        .await;
    assert_eq!(r.json(), json!({"inserted": 7}));
}

every_backend!(listing_pages_and_filters);
async fn listing_pages_and_filters() {
    let s = TestServer::start().await;
    let (_, token) = s.user("lab-bot", false, true, &[]).await;
    seed(&s, &token).await;

    let r = s.get("/latest/telemetry", None).await;
    assert_eq!(r.code(), 200);
    let body = r.json();
    assert_eq!(
        (&body["total"], &body["limit"], &body["offset"]),
        (&json!(7), &json!(50), &json!(0))
    );
    assert_eq!(ids(&r), ["0", "1", "2", "3", "4", "5", "6"]);
    let r = s.get("/latest/telemetry?limit=3&offset=2", None).await;
    assert_eq!(ids(&r), ["2", "3", "4"]);
    assert_eq!(
        (&r.json()["total"], &r.json()["limit"], &r.json()["offset"]),
        (&json!(7), &json!(3), &json!(2))
    );
    let r = s.get("/latest/telemetry?offset=100", None).await;
    assert_eq!(
        (r.json()["items"].clone(), r.json()["total"].clone()),
        (json!([]), json!(7))
    );

    // Bad pagination values: FastAPI's 422 list.
    let r = s.get("/latest/telemetry?limit=0", None).await;
    assert_eq!(r.code(), 422);
    assert_eq!(
        r.detail(),
        json!([{"type": "greater_than_equal", "loc": ["query", "limit"],
                "msg": "Input should be greater than or equal to 1", "input": "0",
                "ctx": {"ge": 1}}])
    );
    let r = s.get("/latest/telemetry?offset=-1&limit=abc", None).await;
    assert_eq!(r.code(), 422);
    let locs: Vec<Value> = r.detail_locs();
    assert_eq!(
        locs,
        vec![json!(["query", "limit"]), json!(["query", "offset"])]
    );
    assert_eq!(r.detail()[0]["type"], "int_parsing");

    // Time bounds (inclusive), exact filters, booleans.
    let r = s
        .get(
            "/latest/telemetry?since=2024-05-01T02:00:00&until=2024-05-01T04:00:00",
            None,
        )
        .await;
    assert_eq!(ids(&r), ["2", "3", "4"]);
    let r = s
        .get("/latest/telemetry?since=2024-05-01T03:00:00%2B01:00", None)
        .await;
    assert_eq!(r.json()["total"], 5, "aware bounds are converted to UTC");
    let r = s.get("/latest/telemetry?since=yesterday", None).await;
    assert_eq!(
        (r.code(), r.detail()),
        (400, json!("Invalid isoformat string: 'yesterday'"))
    );
    let r = s.get("/latest/telemetry?until=1714550400", None).await;
    assert_eq!(r.code(), 400, "epoch numbers are not ISO");
    let r = s.get("/latest/telemetry?is_infra_error=TRUE", None).await;
    assert_eq!(ids(&r), ["4"]);
    let r = s
        .get("/latest/telemetry?is_infra_error=false&runtime=lab-b", None)
        .await;
    assert_eq!(ids(&r), ["3"]);
    let r = s.get("/latest/telemetry?is_infra_error=yes", None).await;
    assert_eq!(
        (r.code(), r.detail()),
        (
            400,
            json!("Bad is_infra_error value, use 'true' or 'false'")
        )
    );
    let r = s
        .get(
            "/latest/telemetry?kind=job_result&device_type=qemu&limit=1&offset=1",
            None,
        )
        .await;
    assert_eq!(
        (ids(&r), r.json()["total"].clone()),
        (vec!["2".to_string()], json!(3))
    );
    let r = s.get("/latest/telemetry?extra.n=5", None).await;
    assert_eq!(r.json()["total"], 0, "strings are not converted to numbers");
    let r = s.get("/latest/telemetry?foo=bar", None).await;
    assert_eq!(r.json()["total"], 0, "unknown fields match nothing");
    s.stop().await;
}

every_backend!(stats_group_and_count);
async fn stats_group_and_count() {
    let s = TestServer::start().await;
    let (_, token) = s.user("lab-bot", false, true, &[]).await;
    seed(&s, &token).await;

    let r = s.get("/latest/telemetry/stats", None).await;
    assert_eq!(
        (r.code(), r.detail()),
        (400, json!("'group_by' parameter is required"))
    );
    let r = s
        .get("/latest/telemetry/stats?group_by=runtime,color", None)
        .await;
    assert_eq!(
        (r.code(), r.detail()),
        (400, json!("Invalid group_by fields: {'color'}"))
    );
    let r = s
        .get(
            "/latest/telemetry/stats?group_by=lab&lab=lab-a&runtime=lab-b",
            None,
        )
        .await;
    assert_eq!(
        (r.code(), r.detail()),
        (
            400,
            json!("'lab' and 'runtime' must match when both are provided")
        )
    );
    let r = s
        .get("/latest/telemetry/stats?group_by=lab&since=x", None)
        .await;
    assert_eq!(
        (r.code(), r.detail()),
        (400, json!("Invalid isoformat string: 'x'"))
    );

    let r = s
        .get("/latest/telemetry/stats?group_by=lab,runtime", None)
        .await;
    assert_eq!(r.code(), 200);
    assert_eq!(
        r.json(),
        json!([
            {"lab": "lab-a", "runtime": "lab-a", "total": 3, "pass": 2, "fail": 1,
             "incomplete": 0, "skip": 0, "infra_error": 0},
            {"lab": "lab-b", "runtime": "lab-b", "total": 2, "pass": 0, "fail": 1,
             "incomplete": 1, "skip": 0, "infra_error": 1},
            {"lab": "lab-c", "runtime": "lab-c", "total": 2, "pass": 1, "fail": 0,
             "incomplete": 0, "skip": 1, "infra_error": 0},
        ])
    );
    // `lab` filters like `runtime`; both given and equal is fine.
    for qs in ["lab=lab-b", "runtime=lab-b", "lab=lab-b&runtime=lab-b"] {
        let r = s
            .get(
                &format!("/latest/telemetry/stats?group_by=kind,device_type&{qs}"),
                None,
            )
            .await;
        assert_eq!(
            r.json(),
            json!([
                {"kind": "test_result", "device_type": "qemu", "total": 1, "pass": 0,
                 "fail": 0, "incomplete": 1, "skip": 0, "infra_error": 0},
                {"kind": "job_result", "device_type": "qemu", "total": 1, "pass": 0,
                 "fail": 1, "incomplete": 0, "skip": 0, "infra_error": 1},
            ]),
            "{qs}"
        );
    }
    let r = s
        .get(
            "/latest/telemetry/stats?group_by=device_type,error_type&until=2024-05-01T04:59:59",
            None,
        )
        .await;
    assert_eq!(
        r.json(),
        json!([{"device_type": "qemu", "error_type": null, "total": 5, "pass": 2, "fail": 2,
                "incomplete": 1, "skip": 0, "infra_error": 1}])
    );
    let r = s
        .get("/latest/telemetry/stats?group_by=kind&kind=nothing", None)
        .await;
    assert_eq!((r.code(), r.json()), (200, json!([])));
    s.stop().await;
}

every_backend!(anomalies_report);
async fn anomalies_report() {
    let s = TestServer::start().await;
    let (_, token) = s.user("lab-bot", false, true, &[]).await;
    let tok = Some(token.as_str());

    // Parameter errors: all 422 items at once, before the window check.
    let r = s
        .get(
            "/latest/telemetry/anomalies?window=2h&threshold=1.5&min_total=0&scope=lab",
            None,
        )
        .await;
    assert_eq!(r.code(), 422);
    assert_eq!(
        r.detail(),
        json!([
            {"type": "less_than_equal", "loc": ["query", "threshold"],
             "msg": "Input should be less than or equal to 1", "input": "1.5", "ctx": {"le": 1.0}},
            {"type": "greater_than_equal", "loc": ["query", "min_total"],
             "msg": "Input should be greater than or equal to 1", "input": "0", "ctx": {"ge": 1}},
            {"type": "literal_error", "loc": ["query", "scope"],
             "msg": "Input should be 'device_type' or 'device'", "input": "lab",
             "ctx": {"expected": "'device_type' or 'device'"}},
        ])
    );
    let r = s
        .get("/latest/telemetry/anomalies?threshold=-0.5", None)
        .await;
    assert_eq!(
        (r.code(), r.detail()[0]["type"].clone()),
        (422, json!("greater_than_equal"))
    );
    let r = s
        .get("/latest/telemetry/anomalies?threshold=high", None)
        .await;
    assert_eq!(
        (r.code(), r.detail()[0]["type"].clone()),
        (422, json!("float_parsing"))
    );
    let r = s.get("/latest/telemetry/anomalies?window=2h", None).await;
    assert_eq!(
        (r.code(), r.detail()),
        (
            400,
            json!("Invalid window '2h'. Use: 1h, 3h, 6h, 12h, 24h, 48h")
        )
    );

    // Empty store: an empty report.
    let r = s.get("/latest/telemetry/anomalies", None).await;
    assert_eq!(r.code(), 200);
    let report = r.json();
    assert_eq!(
        (
            &report["window"],
            &report["threshold"],
            &report["min_total"],
            &report["scope"]
        ),
        (&json!("6h"), &json!(0.5), &json!(3), &json!("device_type"))
    );
    assert!(report["since"].as_str().unwrap().ends_with("+00:00"));
    assert_eq!(report["result_anomalies"], json!([]));
    assert_eq!(report["error_anomalies"], json!([]));

    // Recent events (`ts` = now): only lab-a/rpi crosses the 0.5 threshold.
    let result = |runtime: &str, dt: &str, dev: &str, result: &str, infra: bool| {
        json!({"kind": "job_result", "runtime": runtime, "device_type": dt, "device_id": dev,
               "result": result, "is_infra_error": infra,
               "error_type": if infra { Value::from("Infrastructure") } else { Value::Null },
               "error_msg": format!("{runtime} {result}")})
    };
    let recent = json!([
        result("lab-a", "rpi", "rpi-1", "fail", true),
        result("lab-a", "rpi", "rpi-2", "incomplete", true),
        result("lab-a", "rpi", "rpi-1", "pass", false),
        result("lab-a", "rpi", "rpi-2", "fail", true),
        result("lab-b", "qemu", "q-1", "pass", false),
        result("lab-b", "qemu", "q-1", "pass", false),
        result("lab-b", "qemu", "q-1", "fail", false),
        result("lab-b", "qemu", "q-1", "pass", false),
        // Every one failed, but too few.
        result("lab-c", "x15", "x-1", "fail", true),
        result("lab-c", "x15", "x-1", "fail", true),
        {"kind": "runtime_error", "runtime": "lab-b", "error_type": "Timeout"},
        {"kind": "job_skip", "runtime": "lab-b", "error_type": "Timeout"},
        {"kind": "runtime_error", "runtime": "lab-b", "error_type": "Timeout"},
        {"kind": "runtime_error", "runtime": "lab-b", "error_type": "Other"},
    ]);
    assert_eq!(s.post("/latest/telemetry", tok, &recent).await.code(), 200);
    // Old failures of lab-b/qemu: outside 6 h, inside 48 h.
    let old = Timestamp::now().plus_seconds(-30 * 3600).to_string();
    let old_events: Vec<Value> = (0..4)
        .map(|_| {
            let mut e = result("lab-b", "qemu", "q-1", "fail", false);
            e["ts"] = json!(old);
            e
        })
        .collect();
    assert_eq!(
        s.post("/latest/telemetry", tok, &Value::Array(old_events))
            .await
            .code(),
        200
    );
    let lab_a = s
        .get("/latest/telemetry?runtime=lab-a&limit=100", None)
        .await;
    let newest = lab_a.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["ts"].as_str().unwrap().to_owned())
        .max()
        .unwrap();

    let report = s.get("/latest/telemetry/anomalies", None).await.json();
    assert_eq!(
        report["result_anomalies"],
        json!([{
            "runtime": "lab-a", "lab": "lab-a", "device_type": "rpi",
            "total": 4, "pass": 1, "fail": 2, "incomplete": 1, "skip": 0, "infra_error": 3,
            "infra_rate": 0.75, "fail_rate": 0.75,
            "constant_failure": false, "constant_infra_failure": false,
            "last_seen": newest,
            "latest_error_type": "Infrastructure", "latest_error_msg": "lab-a fail",
        }])
    );
    assert_eq!(
        report["error_anomalies"],
        json!([{"runtime": "lab-b", "error_type": "Timeout", "count": 3}])
    );

    // 48 h brings the old lab-b failures in: 5 of 8 failed.
    let report = s
        .get("/latest/telemetry/anomalies?window=48h", None)
        .await
        .json();
    let rows = report["result_anomalies"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (&rows[1]["runtime"], &rows[1]["total"]),
        (&json!("lab-b"), &json!(8))
    );
    assert_eq!(rows[1]["fail_rate"], 0.625);

    // min_total 2 lets lab-c in (every event an infrastructure failure: first).
    let report = s
        .get(
            "/latest/telemetry/anomalies?min_total=2&threshold=0.9",
            None,
        )
        .await
        .json();
    let rows = report["result_anomalies"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (
            &rows[0]["runtime"],
            &rows[0]["constant_failure"],
            &rows[0]["constant_infra_failure"]
        ),
        (&json!("lab-c"), &json!(true), &json!(true))
    );
    assert_eq!(report["threshold"], 0.9);

    // Device scope: one row per device; rpi-2 failed every time.
    let report = s
        .get("/latest/telemetry/anomalies?scope=device&min_total=2", None)
        .await
        .json();
    let rows = report["result_anomalies"].as_array().unwrap();
    let keys: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r["lab"].as_str().unwrap(), r["device_id"].as_str().unwrap()))
        .collect();
    assert_eq!(
        keys,
        [("lab-a", "rpi-2"), ("lab-c", "x-1"), ("lab-a", "rpi-1")]
    );
    assert_eq!(report["scope"], "device");
    s.stop().await;
}

every_backend!(housekeeping_trims_old_telemetry);
async fn housekeeping_trims_old_telemetry() {
    let s = TestServer::start().await;
    let (_, token) = s.user("lab-bot", false, true, &[]).await;
    seed(&s, &token).await;
    let far = json!([{"kind": "job_result", "runtime": "lab-z", "ts": "2999-01-01T00:00:00",
                      "extra": {"n": 99}}]);
    assert_eq!(
        s.post("/latest/telemetry", Some(&token), &far).await.code(),
        200
    );

    // At the real now, the 2024 events are past the 14-day TTL; the 2999 one is not.
    let round = kernelci_http::jobs::run_housekeeping(&s.state, Timestamp::now())
        .await
        .unwrap();
    assert_eq!(round.telemetry_trimmed, 7);
    let r = s.get("/latest/telemetry", None).await;
    assert_eq!(ids(&r), ["99"]);
    let round = kernelci_http::jobs::run_housekeeping(&s.state, Timestamp::now())
        .await
        .unwrap();
    assert_eq!(round.telemetry_trimmed, 0);
    // Far in the future, past the event's TTL.
    let later = Timestamp::from_micros(0)
        .unwrap()
        .plus_seconds(32_503_680_000 + 15 * 86_400); // 3000-01-15
    let round = kernelci_http::jobs::run_housekeeping(&s.state, later)
        .await
        .unwrap();
    assert_eq!(round.telemetry_trimmed, 1);
    assert_eq!(s.get("/latest/telemetry", None).await.json()["total"], 0);
    s.stop().await;
}

every_backend!(telemetry_survives_a_restart);
async fn telemetry_survives_a_restart() {
    let s = TestServer::start().await;
    let (_, token) = s.user("lab-bot", false, true, &[]).await;
    seed(&s, &token).await;
    let before = s.get("/latest/telemetry", None).await.json();
    let stats_before = s
        .get(
            "/latest/telemetry/stats?group_by=runtime&since=2024-05-01T03:00:00",
            None,
        )
        .await
        .json();
    let data = s.stop().await;

    let s = TestServer::start_at(data, HttpConfig::for_tests(SECRET)).await;
    assert_eq!(s.get("/latest/telemetry", None).await.json(), before);
    assert_eq!(
        s.get(
            "/latest/telemetry/stats?group_by=runtime&since=2024-05-01T03:00:00",
            None
        )
        .await
        .json(),
        stats_before,
        "the time index survives too"
    );
    // Posting still works with the same token and continues the order.
    let r = s
        .post(
            "/latest/telemetry",
            Some(&token),
            &json!([{"kind": "k", "runtime": "r", "extra": {"n": 7}}]),
        )
        .await;
    assert_eq!(r.code(), 200);
    let r = s.get("/latest/telemetry?offset=7", None).await;
    assert_eq!(ids(&r), ["7"]);
    s.stop().await;
}
