//! User groups over real HTTP (API.md §5): list, get, create, delete, their errors
//! and access class, and the start-up side effect (`node:edit:any` and its legacy
//! members).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use serde_json::{json, Value};

use common::{every_backend, TestServer, SECRET};
use kernelci_http::HttpConfig;

const BAD_ID: &str =
    "'nope' is not a valid ObjectId, it must be a 12-byte input or a 24-character hex string";
const IN_USE: &str =
    "User group is assigned to users and cannot be deleted. Remove it from users first.";

fn names(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap().to_owned())
        .collect()
}

every_backend!(create_get_list_delete);
async fn create_get_list_delete() {
    let s = TestServer::start().await;
    let (_, admin) = s.user("admin", true, true, &[]).await;
    let a = Some(admin.as_str());
    // The built-in group exists from the start.
    let r = s.get("/latest/user-groups", a).await;
    assert_eq!(r.code(), 200);
    assert_eq!(names(&r.json()), ["node:edit:any"]);

    let r = s
        .post("/latest/user-groups", a, &json!({"name": "team-a"}))
        .await;
    assert_eq!(r.code(), 200, "{}", r.text());
    let team_a = r.json();
    assert_eq!(team_a.as_object().unwrap().len(), 2);
    assert_eq!(team_a["name"], "team-a");
    let id = team_a["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 24);
    for name in ["team-b", "runtime:lava:node-editor"] {
        let r = s
            .post("/user-groups", a, &json!({"name": name, "ignored": 1}))
            .await;
        assert_eq!(r.code(), 200);
    }

    let r = s.get(&format!("/latest/user-groups/{id}"), a).await;
    assert_eq!((r.code(), r.json()), (200, team_a.clone()));
    let upper = id.to_uppercase();
    assert_eq!(
        s.get(&format!("/latest/user-groups/{upper}"), a)
            .await
            .json(),
        team_a
    );

    let r = s.get("/latest/user-groups", a).await.json();
    assert_eq!(
        (r["total"].clone(), r["limit"].clone(), r["offset"].clone()),
        (json!(4), json!(50), json!(0))
    );
    assert_eq!(
        names(&r),
        [
            "node:edit:any",
            "team-a",
            "team-b",
            "runtime:lava:node-editor"
        ]
    );
    let r = s
        .get("/latest/user-groups?limit=2&offset=1", a)
        .await
        .json();
    assert_eq!(names(&r), ["team-a", "team-b"]);
    assert_eq!(
        (r["total"].clone(), r["limit"].clone(), r["offset"].clone()),
        (json!(4), json!(2), json!(1))
    );
    let r = s.get("/latest/user-groups?name=team-b", a).await.json();
    assert_eq!(
        (names(&r), r["total"].clone()),
        (vec!["team-b".to_owned()], json!(1))
    );
    let r = s
        .get(&format!("/latest/user-groups?id={id}"), a)
        .await
        .json();
    assert_eq!(names(&r), ["team-a"]);
    let r = s.get("/latest/user-groups?name=none", a).await.json();
    assert_eq!(
        (r["items"].clone(), r["total"].clone()),
        (json!([]), json!(0))
    );
    let r = s.get("/latest/user-groups?limit=0", a).await;
    assert_eq!(
        (r.code(), r.detail()[0]["loc"].clone()),
        (422, json!(["query", "limit"]))
    );
    let r = s.get("/latest/user-groups?offset=x", a).await;
    assert_eq!(
        (r.code(), r.detail()[0]["loc"].clone()),
        (422, json!(["query", "offset"]))
    );

    let r = s.delete(&format!("/latest/user-groups/{id}"), a).await;
    assert_eq!(r.code(), 204);
    assert!(r.body.is_empty());
    let missing = json!(format!("User group not found with id: {id}"));
    let r = s.get(&format!("/latest/user-groups/{id}"), a).await;
    assert_eq!((r.code(), r.detail()), (404, missing.clone()));
    let r = s.delete(&format!("/latest/user-groups/{id}"), a).await;
    assert_eq!((r.code(), r.detail()), (404, missing));
    // The name is free again.
    assert_eq!(
        s.post("/latest/user-groups", a, &json!({"name": "team-a"}))
            .await
            .code(),
        200
    );
    s.stop().await;
}

every_backend!(group_errors);
async fn group_errors() {
    let s = TestServer::start().await;
    let (_, admin) = s.user("admin", true, true, &[]).await;
    let a = Some(admin.as_str());
    assert_eq!(
        s.post("/latest/user-groups", a, &json!({"name": "dup"}))
            .await
            .code(),
        200
    );
    let r = s
        .post("/latest/user-groups", a, &json!({"name": "dup"}))
        .await;
    assert_eq!(
        (r.code(), r.detail()),
        (400, json!("User group already exists with name: dup"))
    );
    let r = s
        .post("/latest/user-groups", a, &json!({"name": "node:edit:any"}))
        .await;
    assert_eq!(r.code(), 400);
    let r = s.post("/latest/user-groups", a, &json!({})).await;
    assert_eq!(r.code(), 422);
    assert_eq!(
        (r.detail()[0]["type"].clone(), r.detail()[0]["loc"].clone()),
        (json!("missing"), json!(["body", "name"]))
    );
    let r = s.post("/latest/user-groups", a, &json!({"name": 3})).await;
    assert_eq!(
        (r.code(), r.detail()[0]["type"].clone()),
        (422, json!("string_type"))
    );
    // Malformed JSON is 422 before authentication; valid JSON without a token 401.
    let r = s
        .request(
            hyper::Method::POST,
            "/latest/user-groups",
            &[("content-type", "application/json")],
            "{",
        )
        .await;
    assert_eq!(
        (r.code(), r.detail()[0]["type"].clone()),
        (422, json!("json_invalid"))
    );
    assert_eq!(
        s.post("/latest/user-groups", None, &json!({"name": "x"}))
            .await
            .code(),
        401
    );
    for path in ["/latest/user-groups/nope"] {
        let r = s.get(path, a).await;
        assert_eq!((r.code(), r.detail()), (400, json!(BAD_ID)));
        let r = s.delete(path, a).await;
        assert_eq!((r.code(), r.detail()), (400, json!(BAD_ID)));
    }
    let unknown = "0123456789abcdef01234567";
    let r = s.get(&format!("/latest/user-groups/{unknown}"), a).await;
    assert_eq!(
        (r.code(), r.detail()),
        (
            404,
            json!(format!("User group not found with id: {unknown}"))
        )
    );
    s.stop().await;
}

every_backend!(deleting_a_group_in_use_is_a_conflict);
/// A group that a user has cannot be deleted (409); once the user's groups are
/// replaced, it can.
async fn deleting_a_group_in_use_is_a_conflict() {
    let s = TestServer::start().await;
    let (_, admin) = s.user("admin", true, true, &[]).await;
    let a = Some(admin.as_str());
    let (member, _) = s.user("member", false, true, &["busy"]).await;
    let busy = s.store.get_group_by_name("busy").await.unwrap().unwrap();
    let path = format!("/latest/user-groups/{}", busy.id);
    let r = s.delete(&path, a).await;
    assert_eq!((r.code(), r.detail()), (409, json!(IN_USE)));
    assert!(s.store.get_group(busy.id).await.unwrap().is_some());
    // Replacing the member's groups frees "busy" and makes "spare" in use.
    assert_eq!(
        s.post("/latest/user-groups", a, &json!({"name": "spare"}))
            .await
            .code(),
        200
    );
    let r = s
        .patch(
            &format!("/latest/user/{}", member.id),
            a,
            &json!({"groups": ["spare"]}),
        )
        .await;
    assert_eq!(r.code(), 200, "{}", r.text());
    let r = s.delete(&path, a).await;
    assert_eq!(r.code(), 204);
    let spare = s.store.get_group_by_name("spare").await.unwrap().unwrap();
    let r = s
        .delete(&format!("/latest/user-groups/{}", spare.id), a)
        .await;
    assert_eq!((r.code(), r.detail()), (409, json!(IN_USE)));
    s.stop().await;
}

every_backend!(groups_are_for_administrators);
/// All group endpoints are for administrators: 401 without a token (or inactive),
/// 403 for other users; unverified administrators are allowed.
async fn groups_are_for_administrators() {
    let s = TestServer::start().await;
    let (_, user) = s.user("user", false, true, &[]).await;
    let (_, unverified_admin) = s.user("root", true, false, &[]).await;
    let id = "0123456789abcdef01234567";
    for token in [None, Some("x"), Some(user.as_str())] {
        let want = if token == Some(user.as_str()) {
            403
        } else {
            401
        };
        assert_eq!(s.get("/latest/user-groups", token).await.code(), want);
        assert_eq!(
            s.get(&format!("/latest/user-groups/{id}"), token)
                .await
                .code(),
            want
        );
        assert_eq!(
            s.post("/latest/user-groups", token, &json!({"name": "n"}))
                .await
                .code(),
            want
        );
        assert_eq!(
            s.delete(&format!("/latest/user-groups/{id}"), token)
                .await
                .code(),
            want
        );
    }
    let a = Some(unverified_admin.as_str());
    assert_eq!(s.get("/latest/user-groups", a).await.code(), 200);
    assert_eq!(
        s.post("/latest/user-groups", a, &json!({"name": "n"}))
            .await
            .code(),
        200
    );
    s.stop().await;
}

every_backend!(startup_grants_node_edit_any_to_legacy_users);
/// API.md §5's start-up side effect: `node:edit:any` is created and given to the
/// users `staging.kernelci.org` and `production` (and nobody else), once.
async fn startup_grants_node_edit_any_to_legacy_users() {
    let s = TestServer::start().await;
    assert_eq!(s.get("/latest/", None).await.code(), 200); // bootstrapped
    let edit_any = s
        .store
        .get_group_by_name("node:edit:any")
        .await
        .unwrap()
        .unwrap();
    let (staging, _) = s.user("staging.kernelci.org", false, true, &[]).await;
    let (production, _) = s.user("production", false, true, &["kernelci"]).await;
    let (other, _) = s.user("other", false, true, &[]).await;
    // Restart on the same data: the start-up step runs again.
    let data = s.stop().await;
    let s = TestServer::start_at(data, HttpConfig::for_tests(SECRET)).await;
    assert_eq!(s.get("/latest/", None).await.code(), 200);
    let group_names =
        |u: kernelci_core::auth::User| u.groups.into_iter().map(|g| g.name).collect::<Vec<_>>();
    let get = |id| {
        let s = &s;
        async move { s.store.get_user(id).await.unwrap().unwrap() }
    };
    assert_eq!(group_names(get(staging.id).await), ["node:edit:any"]);
    assert_eq!(
        group_names(get(production.id).await),
        ["kernelci", "node:edit:any"]
    );
    assert!(group_names(get(other.id).await).is_empty());
    // The same group (not a new one), and no duplicates on another restart.
    assert_eq!(get(staging.id).await.groups[0].id, edit_any.id);
    let data = s.stop().await;
    let s = TestServer::start_at(data, HttpConfig::for_tests(SECRET)).await;
    assert_eq!(s.get("/latest/", None).await.code(), 200);
    assert_eq!(
        group_names(get_again(&s, production.id).await),
        ["kernelci", "node:edit:any"]
    );
    let page = s
        .store
        .find_groups(&Default::default(), 100, 0)
        .await
        .unwrap();
    assert_eq!(
        page.items
            .iter()
            .filter(|g| g.name == "node:edit:any")
            .count(),
        1
    );
    s.stop().await;
}

async fn get_again(s: &TestServer, id: kernelci_core::id::ObjectId) -> kernelci_core::auth::User {
    s.store.get_user(id).await.unwrap().unwrap()
}
