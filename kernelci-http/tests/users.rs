//! Users and authentication over real HTTP (API.md §4, AUTH.md): every endpoint,
//! every error case, the AUTH.md §4 user-state table, the access classes, token
//! verification, the invitation and password-reset flows, password hash upgrades,
//! e-mail delivery through a fake SMTP server, and start-up bootstrapping.
//!
//! Reset tokens are only ever e-mailed: the tests read them from the fake SMTP
//! server's messages where the flow sends mail, and mint them with
//! `kernelci_http::account_tokens::reset_token` where it does not.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod fake_smtp;

use hyper::Method;
use serde_json::{json, Value};

use common::{every_backend, TestServer, SECRET};
use fake_smtp::{Behaviour, FakeSmtp};
use kernelci_core::auth::User;
use kernelci_core::time::Timestamp;
use kernelci_http::{account_tokens, passwords, HttpConfig, PasswordCost};

// ---- helpers -------------------------------------------------------------------------

/// Stores a password for `user` (Argon2id with the test cost) and returns the user.
async fn set_password(s: &TestServer, user: &User, password: &str) -> User {
    let mut u = s.store.get_user(user.id).await.unwrap().unwrap();
    u.hashed_password = passwords::hash(password, PasswordCost::TESTING)
        .await
        .unwrap();
    s.store.update_user(&u).await.unwrap();
    u
}

/// A user with a password; returns the user and an access token.
async fn account(
    s: &TestServer,
    name: &str,
    superuser: bool,
    verified: bool,
    password: &str,
) -> (User, String) {
    let (u, token) = s.user(name, superuser, verified, &[]).await;
    (set_password(s, &u, password).await, token)
}

async fn stored(s: &TestServer, user: &User) -> User {
    s.store.get_user(user.id).await.unwrap().unwrap()
}

async fn deactivate(s: &TestServer, user: &User) {
    let mut u = stored(s, user).await;
    u.is_active = false;
    s.store.update_user(&u).await.unwrap();
}

async fn login(s: &TestServer, username: &str, password: &str) -> common::TestResponse {
    s.post_form(
        "/latest/user/login",
        None,
        &[("username", username), ("password", password)],
    )
    .await
}

async fn update_password(
    s: &TestServer,
    username: &str,
    password: &str,
    new: &str,
) -> common::TestResponse {
    s.post_form(
        "/latest/user/update-password",
        None,
        &[
            ("username", username),
            ("password", password),
            ("new_password", new),
        ],
    )
    .await
}

/// An HMAC JWT with `claims`, signed with `key`.
fn mint(claims: &Value, key: &str, alg: jsonwebtoken::Algorithm) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(alg),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()),
    )
    .unwrap()
}

fn hs256(claims: &Value, key: &str) -> String {
    mint(claims, key, jsonwebtoken::Algorithm::HS256)
}

/// The JSON payload of a JWT (not verified).
fn payload(token: &str) -> Value {
    let part = token.split('.').nth(1).unwrap();
    let std = part.replace('-', "+").replace('_', "/");
    serde_json::from_str(&fake_smtp::decode64(&std)).unwrap()
}

fn now_secs() -> i64 {
    Timestamp::now().to_chrono().timestamp()
}

async fn admin(s: &TestServer) -> String {
    s.user("admin", true, true, &[]).await.1
}

/// Invites `username` (no e-mail) and returns the response body.
async fn invite(s: &TestServer, admin: &str, username: &str, extra: Value) -> Value {
    let mut body = json!({
        "username": username,
        "email": format!("{username}@example.org"),
        "send_email": false,
        "return_token": true,
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let r = s.post("/latest/user/invite", Some(admin), &body).await;
    assert_eq!(r.code(), 200, "{}", r.text());
    r.json()
}

fn smtp_config(smtp: &FakeSmtp) -> HttpConfig {
    HttpConfig {
        smtp: Some(smtp.config("")),
        ..HttpConfig::for_tests(SECRET)
    }
}

// ---- login, logout, register ---------------------------------------------------------

every_backend!(login_returns_a_bearer_token_for_the_user_id);
async fn login_returns_a_bearer_token_for_the_user_id() {
    let s = TestServer::start().await;
    let (alice, _) = account(&s, "alice", false, true, "pw").await;
    let r = login(&s, "alice", "pw").await;
    assert_eq!(r.code(), 200, "{}", r.text());
    let body = r.json();
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body.as_object().unwrap().len(), 2);
    let token = body["access_token"].as_str().unwrap();
    let claims = payload(token);
    assert_eq!(claims["sub"], alice.id.to_string());
    assert_eq!(claims["aud"], json!(["fastapi-users:auth"]));
    let who = s.get("/latest/whoami", Some(token)).await;
    assert_eq!(who.code(), 200);
    assert_eq!(who.json()["username"], "alice");
    // grant_type=password is accepted; the other OAuth2 fields are ignored.
    let r = s
        .post_form(
            "/user/login",
            None,
            &[
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", "pw"),
                ("scope", "x"),
                ("client_id", "y"),
                ("client_secret", "z"),
            ],
        )
        .await;
    assert_eq!(r.code(), 200, "{}", r.text());
    s.stop().await;
}

every_backend!(login_errors);
async fn login_errors() {
    let s = TestServer::start().await;
    let (_, _) = account(&s, "alice", false, true, "pw").await;
    let (_, _) = account(&s, "uv", false, false, "pw").await;
    let (off, _) = account(&s, "off", false, true, "pw").await;
    deactivate(&s, &off).await;
    let cases: &[(&str, &str, &str)] = &[
        ("nobody", "pw", "LOGIN_BAD_CREDENTIALS"),
        ("alice", "wrong", "LOGIN_BAD_CREDENTIALS"),
        ("alice", "", "LOGIN_BAD_CREDENTIALS"),
        ("Alice", "pw", "LOGIN_BAD_CREDENTIALS"),
        // Lookup is by username only.
        ("alice@example.org", "pw", "LOGIN_BAD_CREDENTIALS"),
        ("off", "pw", "LOGIN_BAD_CREDENTIALS"),
        ("uv", "wrong", "LOGIN_BAD_CREDENTIALS"),
        ("uv", "pw", "LOGIN_USER_NOT_VERIFIED"),
    ];
    for (user, pw, detail) in cases {
        let r = login(&s, user, pw).await;
        assert_eq!((r.code(), r.detail()), (400, json!(detail)), "{user}/{pw}");
    }
    // grant_type must be "password".
    let r = s
        .post_form(
            "/latest/user/login",
            None,
            &[
                ("grant_type", "client_credentials"),
                ("username", "alice"),
                ("password", "pw"),
            ],
        )
        .await;
    assert_eq!(r.code(), 422);
    assert_eq!(r.detail()[0]["type"], "string_pattern_mismatch");
    assert_eq!(r.detail()[0]["loc"], json!(["body", "grant_type"]));
    // A JSON body has no form fields: both are reported missing.
    let r = s
        .post(
            "/latest/user/login",
            None,
            &json!({"username": "alice", "password": "pw"}),
        )
        .await;
    assert_eq!(r.code(), 422);
    let locs: Vec<Value> = r.detail_locs();
    assert_eq!(
        locs,
        vec![json!(["body", "username"]), json!(["body", "password"])]
    );
    let r = s
        .post_form("/latest/user/login", None, &[("username", "alice")])
        .await;
    assert_eq!(r.code(), 422);
    assert_eq!(r.detail()[0]["loc"], json!(["body", "password"]));
    assert_eq!(r.detail()[0]["type"], "missing");
    s.stop().await;
}

every_backend!(login_upgrades_bcrypt_hashes_to_argon2id);
/// AUTH.md §3: a bcrypt hash (from the reference's admin tool or an old database)
/// verifies and is replaced by Argon2id with the current cost at login.
async fn login_upgrades_bcrypt_hashes_to_argon2id() {
    let s = TestServer::start().await;
    let (u, _) = s.user("legacy", false, true, &[]).await;
    let mut stored_user = stored(&s, &u).await;
    stored_user.hashed_password = bcrypt::hash("old-secret", 4).unwrap();
    s.store.update_user(&stored_user).await.unwrap();
    // A wrong password changes nothing.
    assert_eq!(login(&s, "legacy", "wrong").await.code(), 400);
    assert!(stored(&s, &u).await.hashed_password.starts_with("$2b$04$"));
    let r = login(&s, "legacy", "old-secret").await;
    assert_eq!(r.code(), 200, "{}", r.text());
    let now = stored(&s, &u).await.hashed_password;
    assert!(now.starts_with("$argon2id$v=19$m=256,t=1,p=1$"), "{now}");
    assert_eq!(login(&s, "legacy", "old-secret").await.code(), 200);
    assert_eq!(
        stored(&s, &u).await.hashed_password,
        now,
        "a current hash is kept"
    );
    // `$2y$` (PHP/htpasswd style) hashes verify too, and argon2i ones are upgraded.
    let mut again = stored(&s, &u).await;
    let b = bcrypt::hash("y-secret", 4).unwrap();
    again.hashed_password = format!("$2y${}", &b[4..]);
    s.store.update_user(&again).await.unwrap();
    assert_eq!(login(&s, "legacy", "y-secret").await.code(), 200);
    assert!(stored(&s, &u)
        .await
        .hashed_password
        .starts_with("$argon2id$"));
    s.stop().await;
}

every_backend!(update_password_accepts_bcrypt_credentials);
/// The credential check of update-password upgrades a bcrypt hash as login does
/// (and the new password is then stored as Argon2id).
async fn update_password_accepts_bcrypt_credentials() {
    let s = TestServer::start().await;
    let (u, _) = s.user("legacy", false, false, &[]).await;
    let mut su = stored(&s, &u).await;
    su.hashed_password = bcrypt::hash("old", 4).unwrap();
    s.store.update_user(&su).await.unwrap();
    let r = update_password(&s, "legacy", "old", "new").await;
    assert_eq!((r.code(), r.json()), (200, Value::Null), "{}", r.text());
    let h = stored(&s, &u).await.hashed_password;
    assert!(h.starts_with("$argon2id$v=19$m=256,t=1,p=1$"), "{h}");
    assert!(passwords::verify("new", &h).await);
    s.stop().await;
}

every_backend!(logout_and_whoami);
async fn logout_and_whoami() {
    let s = TestServer::start().await;
    let (alice, token) = s.user("alice", false, true, &["team"]).await;
    let r = s
        .request(
            Method::POST,
            "/latest/user/logout",
            &[("authorization", &format!("Bearer {token}"))],
            "",
        )
        .await;
    assert_eq!(r.code(), 204);
    assert!(r.body.is_empty());
    // Logout revokes nothing.
    let r = s.get("/whoami", Some(&token)).await;
    assert_eq!(r.code(), 200);
    let body = r.json();
    assert_eq!(body, alice.to_public_json());
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys.len(),
        7,
        "id, email, is_active, is_superuser, is_verified, username, groups: {keys:?}"
    );
    assert!(body.get("hashed_password").is_none());
    assert_eq!(body["groups"][0]["name"], "team");
    s.stop().await;
}

every_backend!(register_is_disabled);
async fn register_is_disabled() {
    let s = TestServer::start().await;
    let admin = admin(&s).await;
    let (_, user) = s.user("bob", false, true, &[]).await;
    let body = json!({"username": "x", "email": "x@example.org", "password": "p"});
    let r = s.post("/latest/user/register", Some(&admin), &body).await;
    assert_eq!(
        (r.code(), r.detail()),
        (
            404,
            json!("User registration is disabled; use /user/invite instead.")
        )
    );
    assert_eq!(
        s.post("/latest/user/register", Some(&user), &body)
            .await
            .code(),
        403
    );
    assert_eq!(
        s.post("/latest/user/register", None, &body).await.code(),
        401
    );
    s.stop().await;
}

// ---- tokens and access classes -------------------------------------------------------

every_backend!(token_verification_with_the_unified_secret);
/// AUTH.md §1.2: `SECRET_KEY`, then `UNIFIED_SECRET`; `aud` must be present; other
/// keys, expired tokens, username subjects and other schemes are anonymous.
async fn token_verification_with_the_unified_secret() {
    let s = TestServer::start_with(HttpConfig {
        unified_secret: "shared-with-pipeline".into(),
        ..HttpConfig::for_tests(SECRET)
    })
    .await;
    let (alice, _) = s.user("alice", false, true, &[]).await;
    let sub = alice.id.to_string();
    let far = now_secs() + 3600;
    let whoami = |t: String| {
        let s = &s;
        async move { s.get("/latest/whoami", Some(&t)).await.code() }
    };
    let ok = |aud: Value, key: &str| hs256(&json!({"sub": sub, "aud": aud, "exp": far}), key);
    assert_eq!(
        whoami(ok(json!(["fastapi-users:auth"]), "shared-with-pipeline")).await,
        200
    );
    assert_eq!(
        whoami(ok(json!("fastapi-users:auth"), "shared-with-pipeline")).await,
        200
    );
    assert_eq!(whoami(ok(json!(["fastapi-users:auth"]), SECRET)).await, 200);
    // Without exp a token does not expire.
    assert_eq!(
        whoami(hs256(
            &json!({"sub": sub, "aud": ["fastapi-users:auth"]}),
            SECRET
        ))
        .await,
        200
    );
    // Refused: no aud (the published docs' example), another aud, another key,
    // expired, a username as sub, another algorithm.
    assert_eq!(whoami(hs256(&json!({"sub": sub}), SECRET)).await, 401);
    assert_eq!(
        whoami(hs256(
            &json!({"sub": sub, "exp": far}),
            "shared-with-pipeline"
        ))
        .await,
        401
    );
    assert_eq!(
        whoami(ok(json!(["fastapi-users:reset"]), SECRET)).await,
        401
    );
    assert_eq!(
        whoami(ok(json!(["fastapi-users:auth"]), "somebody-else")).await,
        401
    );
    let expired = hs256(
        &json!({"sub": sub, "aud": ["fastapi-users:auth"], "exp": now_secs() - 10}),
        SECRET,
    );
    assert_eq!(whoami(expired).await, 401);
    assert_eq!(
        whoami(hs256(
            &json!({"sub": "alice", "aud": ["fastapi-users:auth"]}),
            SECRET
        ))
        .await,
        401
    );
    let hs512 = mint(
        &json!({"sub": sub, "aud": ["fastapi-users:auth"]}),
        SECRET,
        jsonwebtoken::Algorithm::HS512,
    );
    assert_eq!(whoami(hs512).await, 401);
    // The scheme is case-insensitive; other schemes are anonymous.
    let token = s.state.tokens().issue_access(alice.id, Timestamp::now());
    for (header, want) in [
        (format!("bearer {token}"), 200),
        (format!("BEARER {token}"), 200),
        (format!("Token {token}"), 401),
        (token.clone(), 401),
    ] {
        let r = s
            .request(
                Method::GET,
                "/latest/whoami",
                &[("authorization", &header)],
                "",
            )
            .await;
        assert_eq!(r.code(), want, "{header}");
        if want == 401 {
            assert_eq!(r.detail(), json!("Unauthorized"));
            assert!(r.header("www-authenticate").is_none());
        }
    }
    s.stop().await;
}

every_backend!(access_classes_of_every_user_endpoint);
/// AUTH.md §1.2's requirement table for every endpoint of this area: anonymous, a
/// bad token and an inactive user are 401; an unverified user is 403 on the
/// "verified" endpoints; a non-superuser is 403 on the "admin" ones.
async fn access_classes_of_every_user_endpoint() {
    let s = TestServer::start().await;
    let (_, admin) = s.user("admin", true, false, &[]).await; // admins need not be verified
    let (_, verified) = s.user("verified", false, true, &[]).await;
    let (_, unverified) = s.user("unverified", false, false, &[]).await;
    let (off, inactive) = s.user("off", true, true, &[]).await;
    deactivate(&s, &off).await;
    let (target, _) = s.user("target", false, false, &[]).await;
    let id = target.id.to_string();
    let body = json!({});
    #[derive(Clone, Copy, PartialEq, Debug)]
    enum Class {
        User,
        Verified,
        Admin,
    }
    use Class::*;
    let endpoints: Vec<(Method, String, Class)> = vec![
        (Method::POST, "/latest/user/logout".into(), Verified),
        (Method::GET, "/latest/whoami".into(), Verified),
        (Method::POST, "/latest/user/register".into(), Admin),
        (Method::POST, "/latest/user/invite".into(), Admin),
        (Method::GET, "/latest/user/invite/url".into(), Admin),
        (Method::GET, format!("/latest/user/{id}"), User),
        (Method::PATCH, "/latest/user/me".into(), User),
        (Method::PATCH, format!("/latest/user/{id}"), Admin),
        (Method::GET, "/latest/users".into(), User),
        (Method::GET, "/latest/user-groups".into(), Admin),
        (Method::POST, "/latest/user-groups".into(), Admin),
        (Method::GET, format!("/latest/user-groups/{id}"), Admin),
        (Method::DELETE, format!("/latest/user-groups/{id}"), Admin),
        // Last: it deletes the target.
        (Method::DELETE, format!("/latest/user/{id}"), Admin),
    ];
    for (method, path, class) in endpoints {
        let call = |token: Option<String>| {
            let (s, method, path, body) = (&s, method.clone(), path.clone(), &body);
            async move {
                let with_body = matches!(method, Method::POST | Method::PATCH);
                s.send_json(method, &path, token.as_deref(), with_body.then_some(body))
                    .await
            }
        };
        for token in [None, Some("not-a-jwt".to_owned()), Some(inactive.clone())] {
            let r = call(token.clone()).await;
            assert_eq!(
                (r.code(), r.detail()),
                (401, json!("Unauthorized")),
                "{method} {path} {token:?}"
            );
        }
        let cases = [
            (&unverified, class == User),
            (&verified, class != Admin),
            (&admin, class != Verified),
        ];
        for (token, allowed) in cases {
            let r = call(Some(token.clone())).await;
            if allowed {
                assert!(
                    !matches!(r.code(), 401 | 403),
                    "{method} {path}: {} {}",
                    r.code(),
                    r.text()
                );
            } else {
                assert_eq!(
                    (r.code(), r.detail()),
                    (403, json!("Forbidden")),
                    "{method} {path}"
                );
            }
        }
    }
    s.stop().await;
}

// ---- AUTH.md §4: the user-state table ------------------------------------------------

every_backend!(user_state_table_of_auth_md);
async fn user_state_table_of_auth_md() {
    let mut smtp = FakeSmtp::start(Behaviour::default()).await;
    let s = TestServer::start_with(smtp_config(&smtp)).await;
    let (good, good_token) = account(&s, "good", false, true, "pw").await;
    let (uv, uv_token) = account(&s, "uv", false, false, "pw").await;
    let (off, off_token) = account(&s, "off", false, true, "pw").await;
    deactivate(&s, &off).await;
    let accept = |user: &User, password: &str| {
        let token = account_tokens::invite_token(&s.state, user, Timestamp::now());
        let body = json!({"token": token, "password": password});
        let s = &s;
        async move { s.post("/latest/user/accept-invite", None, &body).await }
    };
    let forgot = |email: &str| {
        let body = json!({"email": email});
        let s = &s;
        async move {
            let r = s.post("/latest/user/forgot-password", None, &body).await;
            assert_eq!((r.code(), r.json()), (202, Value::Null), "{}", r.text());
        }
    };

    // active + verified: 200, full use, update-password 200, invite already
    // accepted, reset e-mail sent.
    assert_eq!(login(&s, "good", "pw").await.code(), 200);
    assert_eq!(s.get("/latest/whoami", Some(&good_token)).await.code(), 200);
    assert_eq!(s.get("/latest/users", Some(&good_token)).await.code(), 200);
    assert_eq!(update_password(&s, "good", "pw", "pw2").await.code(), 200);
    let r = accept(&good, "x").await;
    assert_eq!(
        (r.code(), r.detail()),
        (400, json!("Invite already accepted"))
    );
    forgot("good@example.org").await;
    assert_eq!(smtp.next().await.to, vec!["good@example.org".to_owned()]);

    // active, unverified: LOGIN_USER_NOT_VERIFIED; "user" endpoints work, whoami
    // and logout 403; update-password allowed; accept-invite sets the password and
    // verifies; e-mail sent.
    let r = login(&s, "uv", "pw").await;
    assert_eq!(
        (r.code(), r.detail()),
        (400, json!("LOGIN_USER_NOT_VERIFIED"))
    );
    assert_eq!(s.get("/latest/users", Some(&uv_token)).await.code(), 200);
    assert_eq!(
        s.get(&format!("/latest/user/{}", good.id), Some(&uv_token))
            .await
            .code(),
        200
    );
    assert_eq!(s.get("/latest/whoami", Some(&uv_token)).await.code(), 403);
    let r = s
        .request(
            Method::POST,
            "/latest/user/logout",
            &[("authorization", &format!("Bearer {uv_token}"))],
            "",
        )
        .await;
    assert_eq!(r.code(), 403);
    assert_eq!(update_password(&s, "uv", "pw", "pw2").await.code(), 200);
    forgot("uv@example.org").await;
    assert_eq!(smtp.next().await.to, vec!["uv@example.org".to_owned()]);
    let r = accept(&uv, "chosen").await;
    assert_eq!(r.code(), 200, "{}", r.text());
    assert_eq!(r.json()["is_verified"], true);
    let welcome = smtp.next().await;
    assert_eq!(welcome.to, vec!["uv@example.org".to_owned()]);
    assert_eq!(welcome.header("Subject"), Some("Welcome to KernelCI API"));
    assert_eq!(login(&s, "uv", "chosen").await.code(), 200);
    assert_eq!(s.get("/latest/whoami", Some(&uv_token)).await.code(), 200);

    // inactive: LOGIN_BAD_CREDENTIALS, 401 everywhere, update-password refused,
    // accept-invite "User is inactive", forgot-password 202 and nothing sent.
    let r = login(&s, "off", "pw").await;
    assert_eq!(
        (r.code(), r.detail()),
        (400, json!("LOGIN_BAD_CREDENTIALS"))
    );
    assert_eq!(s.get("/latest/users", Some(&off_token)).await.code(), 401);
    assert_eq!(s.get("/latest/whoami", Some(&off_token)).await.code(), 401);
    let r = update_password(&s, "off", "pw", "x").await;
    assert_eq!(
        (r.code(), r.detail()),
        (400, json!("LOGIN_BAD_CREDENTIALS"))
    );
    let r = accept(&off, "x").await;
    assert_eq!((r.code(), r.detail()), (400, json!("User is inactive")));
    forgot("off@example.org").await;

    // wrong password / unknown user: LOGIN_BAD_CREDENTIALS; forgot 202, nothing.
    for (u, p) in [("good", "nope"), ("ghost", "pw")] {
        let r = login(&s, u, p).await;
        assert_eq!(
            (r.code(), r.detail()),
            (400, json!("LOGIN_BAD_CREDENTIALS"))
        );
        let r = update_password(&s, u, p, "x").await;
        assert_eq!(
            (r.code(), r.detail()),
            (400, json!("LOGIN_BAD_CREDENTIALS"))
        );
    }
    forgot("ghost@example.org").await;
    // Nothing was sent for the inactive and unknown users: the next message is the
    // one for this request.
    forgot("good@example.org").await;
    assert_eq!(smtp.next().await.to, vec!["good@example.org".to_owned()]);
    assert!(smtp.try_next().is_none());
    s.stop().await;
}

// ---- invitations ---------------------------------------------------------------------

every_backend!(invite_accept_login_whoami);
/// The whole flow: invite → accept-invite → login → whoami, with the accept page
/// served at the invite link's path.
async fn invite_accept_login_whoami() {
    let s = TestServer::start().await;
    let admin = admin(&s).await;
    s.user("seed", false, true, &["kernelci", "lab"]).await; // creates the groups
    let body = invite(&s, &admin, "carol", json!({"groups": ["kernelci", "lab"]})).await;
    let base = format!("http://{}", s.addr);
    assert_eq!(body["email_sent"], false);
    assert_eq!(body["public_base_url"], base);
    assert_eq!(
        body["accept_invite_url"],
        format!("{base}/user/accept-invite")
    );
    let token = body["token"].as_str().unwrap();
    assert_eq!(
        body["invite_url"],
        format!("{base}/user/accept-invite?token={token}")
    );
    let user = &body["user"];
    assert_eq!(user["username"], "carol");
    assert_eq!(user["email"], "carol@example.org");
    assert_eq!(user["is_verified"], false);
    assert_eq!(user["is_active"], true);
    assert_eq!(user["is_superuser"], false);
    let names: Vec<&str> = user["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["kernelci", "lab"]);
    assert!(user.get("hashed_password").is_none());

    // The token: sub, email, purpose, iat, exp = iat + 7 days, HS256, no aud.
    let claims = payload(token);
    assert_eq!(claims["sub"], user["id"]);
    assert_eq!(claims["email"], "carol@example.org");
    assert_eq!(claims["purpose"], "invite");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        604_800
    );
    assert!(claims.get("aud").is_none());
    // It is not an access token.
    assert_eq!(s.get("/latest/users", Some(token)).await.code(), 401);
    // Before accepting, the random password is unknown and the user unverified.
    assert_eq!(
        login(&s, "carol", "").await.detail(),
        json!("LOGIN_BAD_CREDENTIALS")
    );

    let link_path = body["invite_url"]
        .as_str()
        .unwrap()
        .strip_prefix(&base)
        .unwrap()
        .to_owned();
    let page = s.get(&link_path, None).await;
    assert_eq!(page.code(), 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));

    let r = s
        .post(
            "/user/accept-invite",
            None,
            &json!({"token": token, "password": "carol-pw"}),
        )
        .await;
    assert_eq!(r.code(), 200, "{}", r.text());
    assert_eq!(r.json()["is_verified"], true);
    assert_eq!(r.json()["id"], user["id"]);
    let stored_hash = s
        .store
        .get_user_by_username("carol")
        .await
        .unwrap()
        .unwrap()
        .hashed_password;
    assert!(stored_hash.starts_with("$argon2id$"), "{stored_hash}");

    let r = login(&s, "carol", "carol-pw").await;
    assert_eq!(r.code(), 200, "{}", r.text());
    let access = r.json()["access_token"].as_str().unwrap().to_owned();
    let who = s.get("/latest/whoami", Some(&access)).await;
    assert_eq!(who.code(), 200);
    assert_eq!(who.json()["username"], "carol");
    assert_eq!(who.json()["is_verified"], true);
    // Accepting twice fails.
    let r = s
        .post(
            "/user/accept-invite",
            None,
            &json!({"token": token, "password": "again"}),
        )
        .await;
    assert_eq!(
        (r.code(), r.detail()),
        (400, json!("Invite already accepted"))
    );
    s.stop().await;
}

every_backend!(invite_validation_errors);
async fn invite_validation_errors() {
    let s = TestServer::start().await;
    let admin = admin(&s).await;
    let post = |body: Value| {
        let (s, admin) = (&s, admin.clone());
        async move { s.post("/latest/user/invite", Some(&admin), &body).await }
    };
    // 422: invalid e-mail, duplicate groups, missing and mistyped fields.
    let r = post(json!({"username": "x", "email": "not-an-address"})).await;
    assert_eq!(r.code(), 422);
    assert_eq!(r.detail()[0]["type"], "value_error");
    assert_eq!(r.detail()[0]["loc"], json!(["body", "email"]));
    assert!(r.detail()[0]["msg"]
        .as_str()
        .unwrap()
        .starts_with("value is not a valid email address: "));
    let r = post(json!({"username": "x", "email": "x@example.org", "groups": ["a", "a"]})).await;
    assert_eq!(r.code(), 422);
    assert_eq!(r.detail()[0]["loc"], json!(["body", "groups"]));
    assert_eq!(
        r.detail()[0]["msg"],
        "Value error, Groups must have unique names."
    );
    let r = post(json!({"email": "x@example.org"})).await;
    assert_eq!(
        (r.code(), r.detail()[0]["loc"].clone()),
        (422, json!(["body", "username"]))
    );
    assert_eq!(r.detail()[0]["type"], "missing");
    let r = post(
        json!({"username": 5, "email": "x@example.org", "groups": "a", "send_email": "maybe"}),
    )
    .await;
    assert_eq!(r.code(), 422);
    let kinds: Vec<Value> = r
        .detail()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].clone())
        .collect();
    assert_eq!(
        kinds,
        vec![
            json!("string_type"),
            json!("list_type"),
            json!("bool_parsing")
        ]
    );
    let r = post(json!(["not", "an", "object"])).await;
    assert_eq!(r.code(), 422);
    // Malformed JSON is 422 even without a token; valid JSON without a token 401.
    let r = s
        .request(
            Method::POST,
            "/latest/user/invite",
            &[("content-type", "application/json")],
            "{oops",
        )
        .await;
    assert_eq!(
        (r.code(), r.detail()[0]["type"].clone()),
        (422, json!("json_invalid"))
    );
    assert_eq!(
        s.post("/latest/user/invite", None, &json!({})).await.code(),
        401
    );
    // 400: unknown group (and nothing is created).
    let r = post(json!({"username": "x", "email": "x@example.org", "groups": ["missing"]})).await;
    assert_eq!(
        (r.code(), r.detail()),
        (400, json!("User group does not exist with name: missing"))
    );
    assert!(s.store.get_user_by_username("x").await.unwrap().is_none());
    // Lenient booleans, e-mail domain normalised.
    let r = post(
        json!({"username": "y", "email": "y@Example.ORG", "send_email": 0, "is_superuser": "yes"}),
    )
    .await;
    assert_eq!(r.code(), 200, "{}", r.text());
    assert_eq!(r.json()["user"]["email"], "y@example.org");
    assert_eq!(r.json()["user"]["is_superuser"], true);
    assert_eq!(
        r.json()["token"],
        Value::Null,
        "return_token defaults to false"
    );
    assert_eq!(r.json()["invite_url"], Value::Null);
    s.stop().await;
}

every_backend!(invite_existing_users);
async fn invite_existing_users() {
    let s = TestServer::start().await;
    let admin = admin(&s).await;
    s.user("verified", false, true, &[]).await;
    s.user("team-seed", false, true, &["team"]).await;
    let first = invite(&s, &admin, "dave", json!({})).await;
    let post = |body: Value| {
        let (s, admin) = (&s, admin.clone());
        async move { s.post("/latest/user/invite", Some(&admin), &body).await }
    };
    let cases = [
        (
            json!({"username": "dave", "email": "other@example.org"}),
            "User already exists",
        ),
        (
            json!({"username": "someone", "email": "dave@example.org"}),
            "User already exists",
        ),
        (
            json!({"username": "verified", "email": "verified@example.org", "resend_if_exists": true}),
            "User already verified",
        ),
        (
            json!({"username": "dave", "email": "other@example.org", "resend_if_exists": true}),
            "Existing user has a different email",
        ),
        (
            json!({"username": "someone", "email": "dave@example.org", "resend_if_exists": true}),
            "Existing user has a different username",
        ),
    ];
    for (body, detail) in cases {
        let r = post(body.clone()).await;
        assert_eq!((r.code(), r.detail()), (400, json!(detail)), "{body}");
    }
    // A resend re-uses the user (groups and superuser in the request are ignored)
    // and issues a new token; the older one stays usable until one is accepted.
    let again = invite(
        &s,
        &admin,
        "dave",
        json!({"resend_if_exists": true, "groups": ["team"], "is_superuser": true}),
    )
    .await;
    assert_eq!(again["user"]["id"], first["user"]["id"]);
    assert_eq!(again["user"]["groups"], json!([]));
    assert_eq!(again["user"]["is_superuser"], false);
    let r = s
        .post(
            "/latest/user/accept-invite",
            None,
            &json!({"token": first["token"], "password": "p"}),
        )
        .await;
    assert_eq!(r.code(), 200, "{}", r.text());
    let r = s
        .post(
            "/latest/user/accept-invite",
            None,
            &json!({"token": again["token"], "password": "q"}),
        )
        .await;
    assert_eq!(r.detail(), json!("Invite already accepted"));
    s.stop().await;
}

every_backend!(accept_invite_errors);
/// Every error of `POST /user/accept-invite`, in API.md §4's order.
async fn accept_invite_errors() {
    let s = TestServer::start_with(HttpConfig {
        unified_secret: "unified".into(),
        ..HttpConfig::for_tests(SECRET)
    })
    .await;
    let (uv, access) = s.user("uv", false, false, &[]).await;
    let (off, _) = s.user("off", false, false, &[]).await;
    deactivate(&s, &off).await;
    let sub = uv.id.to_string();
    let iat = now_secs();
    let claims = |over: Value| {
        let mut c = json!({"sub": sub, "email": "uv@example.org", "purpose": "invite", "iat": iat, "exp": iat + 600});
        for (k, v) in over.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    let accept = |token: String| {
        let s = &s;
        async move {
            s.post(
                "/latest/user/accept-invite",
                None,
                &json!({"token": token, "password": "pw"}),
            )
            .await
        }
    };
    let expired_or_bad = "Invalid or expired invite token";
    let cases: Vec<(String, u16, &str)> = vec![
        ("garbage".into(), 400, expired_or_bad),
        (hs256(&claims(json!({"exp": iat - 1})), SECRET), 400, expired_or_bad),
        (hs256(&claims(json!({})), "another-key"), 400, expired_or_bad),
        // Invites are never signed with the unified secret.
        (hs256(&claims(json!({})), "unified"), 400, expired_or_bad),
        // An access token has aud: refused as undecodable.
        (access.clone(), 400, expired_or_bad),
        (hs256(&claims(json!({"aud": "x"})), SECRET), 400, expired_or_bad),
        (hs256(&claims(json!({"purpose": "reset"})), SECRET), 400, "Invalid invite token"),
        (hs256(&claims(json!({"purpose": null})), SECRET), 400, "Invalid invite token"),
        (
            hs256(&claims(json!({"sub": "nope"})), SECRET),
            400,
            "'nope' is not a valid ObjectId, it must be a 12-byte input or a 24-character hex string",
        ),
        (
            hs256(&claims(json!({"sub": "0123456789abcdef01234567"})), SECRET),
            404,
            "User not found",
        ),
        (
            hs256(&claims(json!({"sub": off.id.to_string(), "email": "other@example.org"})), SECRET),
            400,
            "User is inactive",
        ),
        (hs256(&claims(json!({"email": "other@example.org"})), SECRET), 400, "Invalid invite token"),
        (hs256(&claims(json!({"email": null})), SECRET), 400, "Invalid invite token"),
    ];
    for (token, code, detail) in cases {
        let r = accept(token.clone()).await;
        assert_eq!(
            (r.code(), r.detail()),
            (code, json!(detail)),
            "{}",
            payload_or(&token)
        );
    }
    // Missing fields are 422.
    let r = s
        .post("/latest/user/accept-invite", None, &json!({"token": "x"}))
        .await;
    assert_eq!(
        (r.code(), r.detail()[0]["loc"].clone()),
        (422, json!(["body", "password"]))
    );
    // Still unverified: a valid token works, then "Invite already accepted".
    let good = hs256(&claims(json!({})), SECRET);
    assert_eq!(accept(good.clone()).await.code(), 200);
    assert_eq!(
        accept(good).await.detail(),
        json!("Invite already accepted")
    );
    s.stop().await;
}

fn payload_or(token: &str) -> String {
    if token.split('.').count() == 3 {
        payload(token).to_string()
    } else {
        token.to_owned()
    }
}

every_backend!(public_base_url_resolution);
/// AUTH.md §6 step 3 over real HTTP (the peer is loopback, configured as a trusted
/// proxy; then not).
async fn public_base_url_resolution() {
    let s = TestServer::start_with(HttpConfig {
        trusted_proxies: vec!["127.0.0.1".parse().unwrap()],
        ..HttpConfig::for_tests(SECRET)
    })
    .await;
    let admin = admin(&s).await;
    let auth = format!("Bearer {admin}");
    let url = |headers: Vec<(&'static str, &'static str)>| {
        let (s, auth) = (&s, auth.clone());
        async move {
            let mut h: Vec<(&str, &str)> = vec![("authorization", &auth)];
            h.extend(headers);
            let r = s
                .request(Method::GET, "/latest/user/invite/url", &h, "")
                .await;
            assert_eq!(r.code(), 200, "{}", r.text());
            let body = r.json();
            let base = body["public_base_url"].as_str().unwrap().to_owned();
            assert_eq!(
                body["accept_invite_url"],
                format!("{base}/user/accept-invite")
            );
            assert_eq!(body.as_object().unwrap().len(), 2);
            base
        }
    };
    assert_eq!(url(vec![]).await, format!("http://{}", s.addr));
    assert_eq!(
        url(vec![(
            "forwarded",
            "host=client-chosen.example.org, for=203.0.113.9;host=api.example.org;proto=https"
        )])
        .await,
        "https://api.example.org"
    );
    assert_eq!(
        url(vec![
            ("forwarded", "host=\"quoted.example.org\""),
            ("x-forwarded-proto", "https")
        ])
        .await,
        "https://quoted.example.org"
    );
    assert_eq!(
        url(vec![
            ("x-forwarded-host", "kernelci.example.org"),
            ("x-forwarded-proto", "https")
        ])
        .await,
        "https://kernelci.example.org"
    );
    assert_eq!(
        url(vec![("x-forwarded-host", "plain.example.org")]).await,
        "http://plain.example.org"
    );
    // The invite itself uses the same base.
    let r = s
        .request(
            Method::POST,
            "/latest/user/invite",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
                ("x-forwarded-host", "kernelci.example.org"),
                ("x-forwarded-proto", "https"),
            ],
            r#"{"username": "e", "email": "e@example.org", "send_email": false, "return_token": true}"#,
        )
        .await;
    assert_eq!(r.code(), 200);
    assert!(r.json()["invite_url"]
        .as_str()
        .unwrap()
        .starts_with("https://kernelci.example.org/user/accept-invite?token=ey"));
    s.stop().await;

    // From a peer that is not a trusted proxy (loopback is not trusted for being
    // loopback), forwarding headers are ignored.
    let s = TestServer::start().await;
    let admin = s.user("admin", true, true, &[]).await.1;
    let r = s
        .request(
            Method::GET,
            "/latest/user/invite/url",
            &[
                ("authorization", &format!("Bearer {admin}")),
                ("x-forwarded-host", "evil.example.org"),
                ("forwarded", "host=evil.example.org;proto=https"),
            ],
            "",
        )
        .await;
    assert_eq!(r.json()["public_base_url"], format!("http://{}", s.addr));
    s.stop().await;

    // PUBLIC_BASE_URL wins, its trailing slash stripped.
    let s = TestServer::start_with(HttpConfig {
        public_base_url: Some("https://api.kernelci.org/".into()),
        ..HttpConfig::for_tests(SECRET)
    })
    .await;
    let admin = s.user("admin", true, true, &[]).await.1;
    let r = s
        .request(
            Method::GET,
            "/latest/user/invite/url",
            &[
                ("authorization", &format!("Bearer {admin}")),
                ("x-forwarded-host", "other.example.org"),
            ],
            "",
        )
        .await;
    assert_eq!(
        r.json(),
        json!({"public_base_url": "https://api.kernelci.org", "accept_invite_url": "https://api.kernelci.org/user/accept-invite"})
    );
    s.stop().await;
}

// ---- e-mail --------------------------------------------------------------------------

every_backend!(invite_email_through_smtp);
/// An invite with `send_email: true` goes through SMTP (AUTH PLAIN with the
/// configured credentials) and carries the invite link; `email_sent: true`.
async fn invite_email_through_smtp() {
    let mut smtp = FakeSmtp::start(Behaviour::default()).await;
    let s = TestServer::start_with(HttpConfig {
        smtp: Some(smtp.config("smtp-pw")),
        ..HttpConfig::for_tests(SECRET)
    })
    .await;
    let admin = admin(&s).await;
    let body = invite(&s, &admin, "frank", json!({"send_email": true})).await;
    assert_eq!(body["email_sent"], true);
    let m = smtp.next().await;
    assert_eq!(m.from, "kernelci@example.org");
    assert_eq!(m.to, vec!["frank@example.org".to_owned()]);
    assert_eq!(
        m.auth,
        Some(("kernelci@example.org".to_owned(), "smtp-pw".to_owned()))
    );
    assert_eq!(
        m.header("Subject"),
        Some("You have been invited to KernelCI API")
    );
    assert_eq!(m.header("To"), Some("frank@example.org"));
    assert_eq!(m.header("From"), Some("kernelci@example.org"));
    let link = body["invite_url"].as_str().unwrap();
    assert!(m.body().contains(link), "{}", m.data);
    // EHLO with this machine's host name (lettre's default, as smtplib's).
    assert!(m.commands[0].starts_with("EHLO "), "{:?}", m.commands);
    assert_eq!(m.commands.last().map(String::as_str), Some("QUIT"));
    // The link from the e-mail accepts the invite.
    let token = link.split_once("token=").unwrap().1;
    let r = s
        .post(
            "/latest/user/accept-invite",
            None,
            &json!({"token": token, "password": "f"}),
        )
        .await;
    assert_eq!(r.code(), 200, "{}", r.text());
    s.stop().await;
}

every_backend!(invite_email_failures_are_swallowed);
/// Failures to send only turn `email_sent` false: no SMTP settings, a refused
/// recipient, a server that does not offer the STARTTLS the settings require, a
/// plain server where implicit TLS is expected.
async fn invite_email_failures_are_swallowed() {
    let refusing = FakeSmtp::start(Behaviour {
        reject_rcpt: Some("550 5.1.1 No such user".into()),
        ..Behaviour::default()
    })
    .await;
    let plain = FakeSmtp::start(Behaviour::default()).await;
    let wants_starttls = kernelci_http::SmtpConfig {
        tls: kernelci_http::SmtpTls::Starttls,
        ..plain.config("")
    };
    let wants_tls = kernelci_http::SmtpConfig {
        tls: kernelci_http::SmtpTls::Tls,
        ..plain.config("")
    };
    for (i, smtp) in [
        None,
        Some(refusing.config("")),
        Some(wants_starttls),
        Some(wants_tls),
    ]
    .into_iter()
    .enumerate()
    {
        let s = TestServer::start_with(HttpConfig {
            smtp,
            ..HttpConfig::for_tests(SECRET)
        })
        .await;
        let admin = admin(&s).await;
        let body = invite(&s, &admin, "gina", json!({"send_email": true})).await;
        assert_eq!(body["email_sent"], false, "case {i}");
        assert_eq!(body["user"]["username"], "gina");
        s.stop().await;
    }
}

every_backend!(mailer_protocol);
/// The SMTP client as a plain relay's client: AUTH when a password is set,
/// dot-stuffing, refusals, a server that never answers, no server at all.
async fn mailer_protocol() {
    use kernelci_http::mail::{Email, MailError, Mailer};
    let email = Email {
        to: "h@example.org".into(),
        subject: "Dots".into(),
        body: "first\n.hidden\n..two\nlast".into(),
    };
    let mut login_only = FakeSmtp::start(Behaviour {
        extensions: vec!["AUTH LOGIN".into()],
        ..Behaviour::default()
    })
    .await;
    Mailer::new(Some(login_only.config("pw")))
        .unwrap()
        .send(&email)
        .await
        .unwrap();
    let m = login_only.next().await;
    assert_eq!(m.auth, Some(("kernelci@example.org".into(), "pw".into())));
    assert_eq!(m.body(), "first\r\n.hidden\r\n..two\r\nlast");
    assert_eq!(m.to, vec!["h@example.org".to_owned()]);

    // No password: no AUTH at all, also with a server that offers it.
    let mut open = FakeSmtp::start(Behaviour::default()).await;
    Mailer::new(Some(open.config("")))
        .unwrap()
        .send(&email)
        .await
        .unwrap();
    let m = open.next().await;
    assert_eq!(m.auth, None);
    assert!(!m.commands.iter().any(|c| c.starts_with("AUTH")));

    let not_configured = Mailer::new(None).unwrap().send(&email).await;
    assert!(matches!(not_configured, Err(MailError::NotConfigured)));
    let refusing = FakeSmtp::start(Behaviour {
        reject_rcpt: Some("550 5.1.1 No such user".into()),
        ..Behaviour::default()
    })
    .await;
    let e = Mailer::new(Some(refusing.config("")))
        .unwrap()
        .send(&email)
        .await
        .unwrap_err();
    assert!(
        matches!(e, MailError::Smtp(ref s) if s.is_permanent()),
        "{e}"
    );
    assert!(e.to_string().contains("No such user"), "{e}");
    // A server that accepts the connection and never greets: the delivery ends
    // after the configured time.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_cfg = kernelci_http::SmtpConfig {
        port: silent.local_addr().unwrap().port(),
        timeout_seconds: 1,
        ..open.config("")
    };
    let e = Mailer::new(Some(silent_cfg))
        .unwrap()
        .send(&email)
        .await
        .unwrap_err();
    assert!(matches!(e, MailError::Timeout(1)), "{e}");
    drop(silent);
    // Nothing listening.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let gone = kernelci_http::SmtpConfig {
        port: closed,
        ..open.config("")
    };
    assert!(matches!(
        Mailer::new(Some(gone)).unwrap().send(&email).await,
        Err(MailError::Smtp(_))
    ));
}

// ---- password reset and change -------------------------------------------------------

/// The reset token from the e-mail, as the user would copy it.
fn token_from_mail(m: &fake_smtp::Received) -> String {
    let body = m.body();
    let after = body.split_once("within one hour:").unwrap().1;
    after.split_whitespace().next().unwrap().to_owned()
}

every_backend!(forgot_and_reset_password_by_email);
async fn forgot_and_reset_password_by_email() {
    let mut smtp = FakeSmtp::start(Behaviour::default()).await;
    let s = TestServer::start_with(smtp_config(&smtp)).await;
    let (hana, _) = account(&s, "hana", false, true, "old").await;
    let r = s
        .post(
            "/latest/user/forgot-password",
            None,
            &json!({"email": "hana@example.org"}),
        )
        .await;
    assert_eq!((r.code(), r.json()), (202, Value::Null));
    let m = smtp.next().await;
    assert_eq!(m.to, vec!["hana@example.org".to_owned()]);
    assert_eq!(
        m.header("Subject"),
        Some("Reset Password Token for KernelCI API account")
    );
    let token = token_from_mail(&m);
    let claims = payload(&token);
    assert_eq!(claims["sub"], hana.id.to_string());
    assert_eq!(claims["aud"], "fastapi-users:reset");
    assert!((claims["exp"].as_i64().unwrap() - now_secs() - 3600).abs() <= 5);
    let r = s
        .post(
            "/latest/user/reset-password",
            None,
            &json!({"token": token, "password": "new"}),
        )
        .await;
    assert_eq!((r.code(), r.json()), (200, Value::Null), "{}", r.text());
    assert_eq!(login(&s, "hana", "new").await.code(), 200);
    assert_eq!(login(&s, "hana", "old").await.code(), 400);
    // A confirmation is sent; the token is spent (the password changed).
    assert_eq!(
        smtp.next().await.header("Subject"),
        Some("Password reset successful for KernelCI API account")
    );
    let r = s
        .post(
            "/latest/user/reset-password",
            None,
            &json!({"token": token, "password": "again"}),
        )
        .await;
    assert_eq!(
        (r.code(), r.detail()),
        (400, json!("RESET_PASSWORD_BAD_TOKEN"))
    );
    // 422 for an invalid or missing address; 202 for an unknown one.
    let r = s
        .post(
            "/latest/user/forgot-password",
            None,
            &json!({"email": "nope"}),
        )
        .await;
    assert_eq!(
        (r.code(), r.detail()[0]["loc"].clone()),
        (422, json!(["body", "email"]))
    );
    let r = s
        .post("/latest/user/forgot-password", None, &json!({}))
        .await;
    assert_eq!(r.code(), 422);
    let r = s
        .post(
            "/latest/user/forgot-password",
            None,
            &json!({"email": "who@example.org"}),
        )
        .await;
    assert_eq!((r.code(), r.json()), (202, Value::Null));
    assert!(smtp.try_next().is_none());
    s.stop().await;
}

every_backend!(reset_tokens_without_smtp);
/// Without SMTP, forgot-password answers 202 and sends nothing; the token can be
/// minted server-side. Every RESET_PASSWORD_BAD_TOKEN case, including a password
/// change that invalidates an unused token.
async fn reset_tokens_without_smtp() {
    let s = TestServer::start().await;
    let (ivy, ivy_token) = account(&s, "ivy", false, false, "pw").await;
    let r = s
        .post(
            "/latest/user/forgot-password",
            None,
            &json!({"email": "ivy@example.org"}),
        )
        .await;
    assert_eq!((r.code(), r.json()), (202, Value::Null));
    let reset = |token: String, password: &str| {
        let body = json!({"token": token, "password": password});
        let s = &s;
        async move { s.post("/user/reset-password", None, &body).await }
    };
    let bad = json!("RESET_PASSWORD_BAD_TOKEN");
    let mint_for = |u: &User, at: Timestamp| account_tokens::reset_token(&s.state, u, at);

    // A password change (update-password) invalidates an unused token.
    let unused = mint_for(&stored(&s, &ivy).await, Timestamp::now());
    assert_eq!(update_password(&s, "ivy", "pw", "pw2").await.code(), 200);
    assert_eq!(reset(unused, "x").await.detail(), bad);
    // So does PATCH /user/me with a password.
    let unused = mint_for(&stored(&s, &ivy).await, Timestamp::now());
    let r = s
        .patch(
            "/latest/user/me",
            Some(&ivy_token),
            &json!({"password": "pw3"}),
        )
        .await;
    assert_eq!(r.code(), 200);
    assert_eq!(reset(unused, "x").await.detail(), bad);

    let current = stored(&s, &ivy).await;
    let expired = mint_for(&current, Timestamp::now().plus_seconds(-3601));
    assert_eq!(reset(expired, "x").await.detail(), bad);
    let mut ghost = current.clone();
    ghost.id = kernelci_core::id::ObjectId::new();
    assert_eq!(
        reset(mint_for(&ghost, Timestamp::now()), "x")
            .await
            .detail(),
        bad
    );
    assert_eq!(reset("garbage".into(), "x").await.detail(), bad);
    assert_eq!(
        reset(ivy_token.clone(), "x").await.detail(),
        bad,
        "an access token"
    );
    let forged = hs256(
        &json!({"sub": ivy.id.to_string(), "password_fgpt": "x", "aud": "fastapi-users:reset", "exp": now_secs() + 60}),
        SECRET,
    );
    assert_eq!(
        reset(forged, "x").await.detail(),
        bad,
        "a wrong fingerprint"
    );
    let r = s
        .post("/user/reset-password", None, &json!({"token": "x"}))
        .await;
    assert_eq!(
        (r.code(), r.detail()[0]["loc"].clone()),
        (422, json!(["body", "password"]))
    );

    // A valid token works once, for an unverified user too (who stays unverified).
    let token = mint_for(&current, Timestamp::now());
    let r = reset(token.clone(), "final").await;
    assert_eq!((r.code(), r.json()), (200, Value::Null));
    assert_eq!(
        update_password(&s, "ivy", "final", "final").await.code(),
        200
    );
    assert!(!stored(&s, &ivy).await.is_verified);
    assert_eq!(reset(token, "x").await.detail(), bad);
    // An inactive user's token is refused.
    let token = mint_for(&stored(&s, &ivy).await, Timestamp::now());
    deactivate(&s, &ivy).await;
    assert_eq!(reset(token, "x").await.detail(), bad);
    s.stop().await;
}

every_backend!(update_password_errors);
async fn update_password_errors() {
    let s = TestServer::start().await;
    account(&s, "jo", false, true, "pw").await;
    let r = update_password(&s, "jo", "wrong", "x").await;
    assert_eq!(
        (r.code(), r.detail()),
        (400, json!("LOGIN_BAD_CREDENTIALS"))
    );
    let r = s
        .post_form(
            "/latest/user/update-password",
            None,
            &[("username", "jo"), ("password", "pw")],
        )
        .await;
    assert_eq!(
        (r.code(), r.detail()[0]["loc"].clone()),
        (422, json!(["body", "new_password"]))
    );
    let r = s
        .post_form(
            "/latest/user/update-password",
            None,
            &[
                ("grant_type", "x"),
                ("username", "jo"),
                ("password", "pw"),
                ("new_password", "n"),
            ],
        )
        .await;
    assert_eq!(r.code(), 422);
    assert_eq!(login(&s, "jo", "pw").await.code(), 200, "nothing changed");
    let r = update_password(&s, "jo", "pw", "").await;
    assert_eq!((r.code(), r.json()), (200, Value::Null));
    assert_eq!(login(&s, "jo", "").await.code(), 200, "no password policy");
    s.stop().await;
}

// ---- reading and deleting ------------------------------------------------------------

every_backend!(get_and_delete_user);
async fn get_and_delete_user() {
    let s = TestServer::start().await;
    let admin = admin(&s).await;
    let (kim, kim_token) = s.user("kim", false, false, &["g"]).await;
    let (_, other) = s.user("other", false, false, &[]).await;
    let path = format!("/latest/user/{}", kim.id);
    // Any active user may read any user.
    let r = s.get(&path, Some(&other)).await;
    assert_eq!(r.code(), 200);
    assert_eq!(r.json(), kim.to_public_json());
    let upper = format!("/latest/user/{}", kim.id.to_string().to_uppercase());
    assert_eq!(s.get(&upper, Some(&other)).await.code(), 200);
    for bad in ["nope", "0123456789abcdef01234567"] {
        let r = s.get(&format!("/latest/user/{bad}"), Some(&other)).await;
        assert_eq!((r.code(), r.detail()), (404, json!("Not Found")), "{bad}");
        let r = s.delete(&format!("/latest/user/{bad}"), Some(&admin)).await;
        assert_eq!((r.code(), r.detail()), (404, json!("Not Found")), "{bad}");
    }
    // GET /user/me is not an id.
    assert_eq!(s.get("/latest/user/me", Some(&other)).await.code(), 404);
    let r = s.delete(&path, Some(&admin)).await;
    assert_eq!((r.code(), r.json()), (200, Value::Null));
    assert_eq!(s.get(&path, Some(&other)).await.code(), 404);
    assert_eq!(s.delete(&path, Some(&admin)).await.code(), 404);
    // The deleted user's token no longer works.
    assert_eq!(s.get("/latest/users", Some(&kim_token)).await.code(), 401);
    s.stop().await;
}

// ---- updates -------------------------------------------------------------------------

every_backend!(patch_me_does_not_escalate);
/// PATCH /user/me cannot escalate: the flags are ignored, groups refused.
async fn patch_me_does_not_escalate() {
    let s = TestServer::start().await;
    let (lee, token) = s.user("lee", false, false, &["team"]).await;
    s.user("seed", false, false, &["admins"]).await;
    let r = s
        .patch(
            "/latest/user/me",
            Some(&token),
            &json!({"is_superuser": true, "is_verified": true, "is_active": false, "groups": []}),
        )
        .await;
    assert_eq!(r.code(), 200, "{}", r.text());
    assert_eq!(r.json(), lee.to_public_json());
    assert_eq!(stored(&s, &lee).await, lee);
    let r = s
        .patch(
            "/latest/user/me",
            Some(&token),
            &json!({"groups": ["admins"]}),
        )
        .await;
    assert_eq!(
        (r.code(), r.detail()),
        (
            400,
            json!("User groups can only be updated by an admin user")
        )
    );
    assert_eq!(s.get("/latest/user-groups", Some(&token)).await.code(), 403);
    assert_eq!(stored(&s, &lee).await.groups, lee.groups);
    s.stop().await;
}

every_backend!(patch_me_profile_changes);
async fn patch_me_profile_changes() {
    let s = TestServer::start().await;
    let (mia, token) = account(&s, "mia", false, true, "pw").await;
    s.user("taken", false, false, &[]).await;
    let patch = |body: Value| {
        let (s, token) = (&s, token.clone());
        async move { s.patch("/latest/user/me", Some(&token), &body).await }
    };
    let r = patch(json!({"username": "taken"})).await;
    assert_eq!(
        (r.code(), r.detail()),
        (400, json!("Username already exists: taken"))
    );
    let r = patch(json!({"email": "taken@example.org"})).await;
    assert_eq!(
        (r.code(), r.detail()),
        (400, json!("UPDATE_USER_EMAIL_ALREADY_EXISTS"))
    );
    let r = patch(json!({"email": "bad"})).await;
    assert_eq!(
        (r.code(), r.detail()[0]["loc"].clone()),
        (422, json!(["body", "email"]))
    );
    let r = patch(json!({"groups": ["a", "a"]})).await;
    assert_eq!(r.code(), 422);
    // null fields and the same values change nothing.
    let r = patch(json!({"username": null, "email": "mia@example.org", "password": null})).await;
    assert_eq!((r.code(), r.json()), (200, mia.to_public_json()));
    // A new username and password.
    let r = patch(json!({"username": "mia2", "password": "pw2"})).await;
    assert_eq!(r.code(), 200);
    assert_eq!(r.json()["username"], "mia2");
    assert_eq!(r.json()["is_verified"], true);
    assert_eq!(login(&s, "mia2", "pw2").await.code(), 200);
    // A new e-mail unverifies: whoami then 403, login LOGIN_USER_NOT_VERIFIED.
    let r = patch(json!({"email": "mia@Other.example.org"})).await;
    assert_eq!(r.code(), 200);
    assert_eq!(r.json()["email"], "mia@other.example.org");
    assert_eq!(r.json()["is_verified"], false);
    assert_eq!(s.get("/latest/whoami", Some(&token)).await.code(), 403);
    assert_eq!(
        login(&s, "mia2", "pw2").await.detail(),
        json!("LOGIN_USER_NOT_VERIFIED")
    );
    // 422 comes after authentication; malformed JSON before.
    assert_eq!(
        s.patch("/latest/user/me", None, &json!({"email": "bad"}))
            .await
            .code(),
        401
    );
    let r = s
        .request(
            Method::PATCH,
            "/latest/user/me",
            &[("content-type", "application/json")],
            "[",
        )
        .await;
    assert_eq!(r.code(), 422);
    s.stop().await;
}

every_backend!(patch_user_as_admin);
async fn patch_user_as_admin() {
    let s = TestServer::start().await;
    let admin = admin(&s).await;
    let (ned, ned_token) = s.user("ned", false, true, &["old"]).await;
    s.user("seed", false, false, &["a", "b"]).await;
    let path = format!("/latest/user/{}", ned.id);
    let patch = |path: String, body: Value| {
        let (s, admin) = (&s, admin.clone());
        async move { s.patch(&path, Some(&admin), &body).await }
    };
    let r = patch("/latest/user/0123456789abcdef01234567".into(), json!({})).await;
    assert_eq!(
        (r.code(), r.detail()),
        (
            404,
            json!("User not found with id: 0123456789abcdef01234567")
        )
    );
    let r = patch("/latest/user/xyz".into(), json!({})).await;
    assert_eq!(
        (r.code(), r.detail()),
        (
            400,
            json!("'xyz' is not a valid ObjectId, it must be a 12-byte input or a 24-character hex string")
        )
    );
    let r = patch(path.clone(), json!({"groups": ["a", "missing"]})).await;
    assert_eq!(
        (r.code(), r.detail()),
        (400, json!("User group does not exist with name: missing"))
    );
    let r = patch(path.clone(), json!({"username": "seed"})).await;
    assert_eq!(
        (r.code(), r.detail()),
        (400, json!("Username already exists: seed"))
    );
    let r = patch(path.clone(), json!({"email": "seed@example.org"})).await;
    assert_eq!(
        (r.code(), r.detail()),
        (400, json!("UPDATE_USER_EMAIL_ALREADY_EXISTS"))
    );
    // Groups: a non-empty list replaces, an empty one changes nothing.
    let r = patch(path.clone(), json!({"groups": ["a", "b"]})).await;
    let names = |v: &Value| -> Vec<String> {
        v["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(&r.json()), ["a", "b"]);
    let r = patch(path.clone(), json!({"groups": []})).await;
    assert_eq!(names(&r.json()), ["a", "b"]);
    // Flags are applied.
    let r = patch(path.clone(), json!({"is_superuser": true})).await;
    assert_eq!(r.json()["is_superuser"], true);
    assert_eq!(
        s.get("/latest/user-groups", Some(&ned_token)).await.code(),
        200
    );
    // E-mail change unverifies, unless is_verified: true comes with it.
    let r = patch(path.clone(), json!({"email": "ned2@example.org"})).await;
    assert_eq!(
        (r.json()["email"].clone(), r.json()["is_verified"].clone()),
        (json!("ned2@example.org"), json!(false))
    );
    let r = patch(
        path.clone(),
        json!({"email": "ned3@example.org", "is_verified": true}),
    )
    .await;
    assert_eq!(
        (r.json()["email"].clone(), r.json()["is_verified"].clone()),
        (json!("ned3@example.org"), json!(true))
    );
    let r = patch(path.clone(), json!({"is_verified": false})).await;
    assert_eq!(r.json()["is_verified"], false);
    // Password and username.
    let r = patch(
        path.clone(),
        json!({"password": "set-by-admin", "username": "ned-b", "is_verified": true}),
    )
    .await;
    assert_eq!(r.code(), 200);
    assert_eq!(login(&s, "ned-b", "set-by-admin").await.code(), 200);
    // Deactivation: the user's token stops working.
    let r = patch(path.clone(), json!({"is_active": false})).await;
    assert_eq!(r.json()["is_active"], false);
    assert_eq!(s.get("/latest/users", Some(&ned_token)).await.code(), 401);
    let after = stored(&s, &ned).await;
    assert_eq!(after.to_public_json(), r.json());
    s.stop().await;
}

// ---- listing -------------------------------------------------------------------------

every_backend!(list_users_pages_and_filters);
async fn list_users_pages_and_filters() {
    let s = TestServer::start().await;
    let (_, token) = s.user("u0", true, true, &["team-a"]).await;
    for i in 1..5 {
        let groups: &[&str] = if i % 2 == 0 { &["team-a"] } else { &["team-b"] };
        s.user(&format!("u{i}"), false, i % 2 == 0, groups).await;
    }
    let get = |q: &str| {
        let (s, token, q) = (&s, token.clone(), q.to_owned());
        async move { s.get(&format!("/latest/users{q}"), Some(&token)).await }
    };
    let r = get("").await;
    assert_eq!(r.code(), 200);
    let body = r.json();
    assert_eq!(
        (
            body["total"].clone(),
            body["limit"].clone(),
            body["offset"].clone()
        ),
        (json!(5), json!(50), json!(0))
    );
    let items = body["items"].as_array().unwrap();
    let names: Vec<&str> = items
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["u0", "u1", "u2", "u3", "u4"]);
    for item in items {
        assert_eq!(item["revision_id"], Value::Null);
        assert!(item.get("hashed_password").is_none());
        assert_eq!(item.as_object().unwrap().len(), 8);
    }
    let r = get("?limit=2&offset=3").await.json();
    assert_eq!(
        (r["total"].clone(), r["limit"].clone(), r["offset"].clone()),
        (json!(5), json!(2), json!(3))
    );
    let names: Vec<&str> = r["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["u3", "u4"]);
    let r = get("?offset=10").await.json();
    assert_eq!(
        (r["items"].clone(), r["total"].clone()),
        (json!([]), json!(5))
    );
    for (q, want) in [
        ("?username=u2", 1),
        ("?is_superuser=true", 1),
        ("?is_superuser=false", 4),
        ("?is_verified=True", 3),
        ("?groups.name=team-a", 3),
        ("?groups.name=team-b&is_verified=false", 2),
        ("?email=u3@example.org", 1),
        ("?username=u1&username=u2", 1),
        ("?nothing=here", 0),
        ("?hashed_password=", 0),
    ] {
        assert_eq!(get(q).await.json()["total"], want, "{q}");
    }
    // 422 for bad windows, each parameter reported.
    let r = get("?limit=0&offset=-1").await;
    assert_eq!(r.code(), 422);
    let d = r.detail();
    assert_eq!(d[0]["loc"], json!(["query", "limit"]));
    assert_eq!(d[0]["type"], "greater_than_equal");
    assert_eq!(d[1]["loc"], json!(["query", "offset"]));
    let r = get("?limit=abc").await;
    assert_eq!(
        (r.code(), r.detail()[0]["type"].clone()),
        (422, json!("int_parsing"))
    );
    assert_eq!(
        get("?limit=99999999999999999999999").await.code(),
        200,
        "no maximum"
    );
    s.stop().await;
}

// ---- pages ---------------------------------------------------------------------------

every_backend!(invite_and_accept_pages);
async fn invite_and_accept_pages() {
    let s = TestServer::start().await;
    for (path, id, target) in [
        ("/user/invite", "invite", "invite"),
        ("/latest/user/invite", "invite", "invite"),
        ("/user/accept-invite?token=abc", "accept", "accept-invite"),
    ] {
        let r = s.get(path, None).await;
        assert_eq!(r.code(), 200, "{path}");
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("text/html; charset=utf-8")
        );
        assert!(r.header("cache-control").is_none());
        let html = r.text();
        assert!(html.contains(&format!("<form id=\"{id}\">")), "{path}");
        assert!(html.contains(&format!("<pre id=\"{id}-result\"")), "{path}");
        assert!(html.contains("/static/js/forms.js"), "{path}");
        assert!(
            html.contains(&format!("kciForm(\"{id}\", \"{target}\", function")),
            "{path}"
        );
    }
    let accept = s.get("/user/accept-invite", None).await.text();
    assert!(accept.contains("URLSearchParams(window.location.search).get(\"token\")"));
    assert!(accept.contains("type=\"password\""));
    // The script the pages use is served.
    let js = s.get("/static/js/forms.js", None).await;
    assert_eq!(js.code(), 200);
    assert!(js.text().contains("function kciForm"));
    s.stop().await;
}

// ---- start-up ------------------------------------------------------------------------

every_backend!(initial_admin_is_created_once);
async fn initial_admin_is_created_once() {
    let config = HttpConfig {
        initial_admin: Some(kernelci_http::InitialAdmin {
            username: "root".into(),
            email: "root@Kernelci.org".into(),
            password: "first".into(),
        }),
        ..HttpConfig::for_tests(SECRET)
    };
    let s = TestServer::start_with(config.clone()).await;
    // The server answers only once bootstrapping is done.
    assert_eq!(s.get("/latest/", None).await.code(), 200);
    let root = s.store.get_user_by_username("root").await.unwrap().unwrap();
    assert!(root.is_superuser && root.is_verified && root.is_active);
    assert_eq!(root.email, "root@kernelci.org");
    assert!(root.hashed_password.starts_with("$argon2id$"));
    let r = login(&s, "root", "first").await;
    assert_eq!(r.code(), 200);
    let token = r.json()["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        update_password(&s, "root", "first", "second").await.code(),
        200
    );
    assert_eq!(s.get("/latest/user-groups", Some(&token)).await.code(), 200);
    // A restart with the same setting leaves the existing user alone.
    let data = s.stop().await;
    let s = TestServer::start_at(data, config).await;
    assert_eq!(login(&s, "root", "second").await.code(), 200);
    assert_eq!(login(&s, "root", "first").await.code(), 400);
    s.stop().await;

    // A bad setting stops the server from starting.
    let bad = HttpConfig {
        initial_admin: Some(kernelci_http::InitialAdmin {
            username: "root".into(),
            email: "root@kernelci.org".into(),
            password: String::new(),
        }),
        ..HttpConfig::for_tests(SECRET)
    };
    let location = common::Location::fresh();
    let (store, _) = location.open().await;
    let state = kernelci_http::AppState::new(store, bad).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let e = kernelci_http::serve(listener, state, std::future::pending())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("KCI_INITIAL_PASSWORD"), "{e}");
}

every_backend!(invite_tokens_follow_the_configured_algorithm);
/// Invite tokens use the configured `ALGORITHM`; reset tokens are always HS256.
async fn invite_tokens_follow_the_configured_algorithm() {
    let s = TestServer::start_with(HttpConfig {
        algorithm: "HS384".into(),
        ..HttpConfig::for_tests(SECRET)
    })
    .await;
    let admin = admin(&s).await;
    let body = invite(&s, &admin, "olga", json!({})).await;
    let token = body["token"].as_str().unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::HS384);
    // An HS256 invite with the right key is refused under HS384.
    let mut claims = payload(token);
    claims["iat"] = json!(now_secs());
    let r = s
        .post(
            "/latest/user/accept-invite",
            None,
            &json!({"token": hs256(&claims, SECRET), "password": "p"}),
        )
        .await;
    assert_eq!(r.detail(), json!("Invalid or expired invite token"));
    let user = s.store.get_user_by_username("olga").await.unwrap().unwrap();
    let reset = account_tokens::reset_token(&s.state, &user, Timestamp::now());
    assert_eq!(
        jsonwebtoken::decode_header(&reset).unwrap().alg,
        jsonwebtoken::Algorithm::HS256
    );
    let r = s
        .post(
            "/latest/user/accept-invite",
            None,
            &json!({"token": token, "password": "p"}),
        )
        .await;
    assert_eq!(r.code(), 200, "{}", r.text());
    assert_eq!(login(&s, "olga", "p").await.code(), 200);
    s.stop().await;
}
