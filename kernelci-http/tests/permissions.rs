//! The access classes of AUTH.md §1.2/§9, endpoint by endpoint, written from the
//! spec (not from the code): anonymous and bad tokens get 401 on every
//! non-public endpoint; unverified users get 403 where verification is required;
//! non-superusers get 403 on admin endpoints; inactive users get 401 everywhere.
//! Public endpoints never answer 401/403.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

mod common;

use common::{every_backend, TestServer};
use hyper::Method;

const ID: &str = "65a1355ee98651d0fe81e412";

#[derive(Clone, Copy, PartialEq, Debug)]
enum Access {
    Public,
    User,
    Verified,
    Admin,
}

fn endpoints() -> Vec<(Method, String, Access)> {
    use Access::*;
    let id = ID;
    vec![
        (Method::GET, "/".into(), Public),
        (Method::GET, "/metrics".into(), Public),
        (Method::GET, format!("/node/{id}"), Public),
        (Method::GET, "/nodes".into(), Public),
        (Method::GET, "/nodes/fast".into(), Public),
        (Method::GET, "/count".into(), Public),
        (Method::GET, "/events".into(), Public),
        (Method::GET, "/telemetry".into(), Public),
        (
            Method::GET,
            "/telemetry/stats?group_by=runtime".into(),
            Public,
        ),
        (Method::GET, "/telemetry/anomalies".into(), Public),
        (Method::GET, "/viewer".into(), Public),
        (Method::POST, "/user/logout".into(), Verified),
        (Method::GET, "/whoami".into(), Verified),
        (Method::POST, "/node".into(), User),
        (Method::PUT, format!("/node/{id}"), User),
        (Method::PATCH, format!("/node/{id}"), User),
        (Method::PUT, format!("/nodes/{id}"), User),
        (Method::PUT, "/batch/nodeset".into(), User),
        (Method::GET, "/users".into(), User),
        (Method::GET, format!("/user/{id}"), User),
        (Method::PATCH, "/user/me".into(), User),
        (Method::POST, "/telemetry".into(), User),
        (Method::GET, "/kv/ns/key".into(), User),
        (Method::POST, "/kv/ns/key".into(), User),
        (Method::DELETE, "/kv/ns/key".into(), User),
        (Method::POST, "/subscribe/chan".into(), User),
        (Method::POST, "/unsubscribe/999999".into(), User),
        (Method::POST, "/publish/chan".into(), User),
        (Method::POST, "/push/list".into(), User),
        (Method::POST, "/user/register".into(), Admin),
        (Method::POST, "/user/invite".into(), Admin),
        (Method::GET, "/user/invite/url".into(), Admin),
        (Method::PATCH, format!("/user/{id}"), Admin),
        (Method::DELETE, format!("/user/{id}"), Admin),
        (Method::GET, "/user-groups".into(), Admin),
        (Method::GET, format!("/user-groups/{id}"), Admin),
        (Method::POST, "/user-groups".into(), Admin),
        (Method::DELETE, format!("/user-groups/{id}"), Admin),
        (Method::GET, "/stats/subscriptions".into(), Admin),
    ]
}

/// A body that is valid JSON (so no endpoint stops at a 422 before authentication).
fn body_for(method: &Method, path: &str) -> Option<serde_json::Value> {
    if *method == Method::GET || *method == Method::DELETE {
        return None;
    }
    Some(if path == "/telemetry" {
        serde_json::json!([])
    } else if path.starts_with("/kv/") {
        serde_json::json!("v")
    } else {
        serde_json::json!({})
    })
}

every_backend!(access_matrix);
async fn access_matrix() {
    let s = TestServer::start().await;
    let (_, unverified) = s.user("unverified", false, false, &[]).await;
    let (_, verified) = s.user("verified", false, true, &[]).await;
    let (_, admin_unverified) = s.user("root", true, false, &[]).await;
    let (mut gone, inactive) = s.user("inactive", false, true, &[]).await;
    gone.is_active = false;
    s.state.store().update_user(&gone).await.unwrap();
    let code = |r: &common::TestResponse| r.code();
    for (method, path, access) in endpoints() {
        let body = body_for(&method, &path);
        let call = |token: Option<String>| {
            let (method, path, body) = (method.clone(), path.clone(), body.clone());
            let s = &s;
            async move {
                s.send_json(method, &path, token.as_deref(), body.as_ref())
                    .await
            }
        };
        let anon = call(None).await;
        let bad = call(Some("x.y.z".into())).await;
        let off = call(Some(inactive.clone())).await;
        let unv = call(Some(unverified.clone())).await;
        let ver = call(Some(verified.clone())).await;
        let adm = call(Some(admin_unverified.clone())).await;
        let label = format!("{method} {path}");
        match access {
            Access::Public => {
                for r in [&anon, &bad, &off] {
                    assert!(![401, 403].contains(&code(r)), "{label}: {}", r.text());
                }
            }
            _ => {
                for r in [&anon, &bad, &off] {
                    assert_eq!(code(r), 401, "{label}: {}", r.text());
                    assert_eq!(r.json()["detail"], "Unauthorized", "{label}");
                }
            }
        }
        match access {
            Access::User => {
                assert!(![401, 403].contains(&code(&unv)), "{label}: {}", unv.text());
                assert!(![401, 403].contains(&code(&ver)), "{label}: {}", ver.text());
            }
            Access::Verified => {
                assert_eq!(code(&unv), 403, "{label}");
                assert_eq!(unv.json()["detail"], "Forbidden", "{label}");
                assert!(![401, 403].contains(&code(&ver)), "{label}: {}", ver.text());
                // A superuser still needs verification here.
                assert_eq!(code(&adm), 403, "{label}");
            }
            Access::Admin => {
                assert_eq!(code(&ver), 403, "{label}");
                assert_eq!(ver.json()["detail"], "Forbidden", "{label}");
                // Admin endpoints do not need verification.
                assert!(![401, 403].contains(&code(&adm)), "{label}: {}", adm.text());
            }
            Access::Public => {}
        }
    }
    s.stop().await;
}
