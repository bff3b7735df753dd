//! Test support: a real server on a loopback port (sled in a temp dir) and a small
//! HTTP/1.1 client over real sockets.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use kernelci_core::auth::{User, UserGroup};
use kernelci_core::id::ObjectId;
use kernelci_core::store::Store;
use kernelci_core::time::Timestamp;
use kernelci_http::{serve, AppState, HttpConfig};
use kernelci_store::{SledConfig, SledStore};

/// The secret of test servers.
pub const SECRET: &str = "test-secret-key";

/// A running server.
pub struct TestServer {
    pub addr: SocketAddr,
    pub state: AppState,
    pub store: Arc<SledStore>,
    pub dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), kernelci_http::HttpError>>>,
    _tmp: Option<tempfile::TempDir>,
}

/// An answer.
#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl TestResponse {
    /// The body as JSON (panics with the body text if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The status as a number.
    pub fn code(&self) -> u16 {
        self.status.as_u16()
    }

    /// `detail` of a JSON error body.
    pub fn detail(&self) -> Value {
        self.json()["detail"].clone()
    }

    /// The `loc` of each item of a 422 `detail` list.
    pub fn detail_locs(&self) -> Vec<Value> {
        self.detail()
            .as_array()
            .unwrap_or_else(|| panic!("detail is not a list: {}", self.text()))
            .iter()
            .map(|e| e["loc"].clone())
            .collect()
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
}

impl TestServer {
    /// A server with the test configuration on a fresh sled store.
    pub async fn start() -> Self {
        Self::start_with(HttpConfig::for_tests(SECRET)).await
    }

    /// A server with `config` on a fresh sled store.
    pub async fn start_with(config: HttpConfig) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let mut s = Self::start_in(&dir, config).await;
        s._tmp = Some(tmp);
        s
    }

    /// A server on the sled store in `dir` (created or reopened).
    pub async fn start_in(dir: &Path, config: HttpConfig) -> Self {
        let store = Arc::new(SledStore::open(dir, SledConfig::default()).unwrap());
        let state = AppState::new(store.clone() as Arc<dyn Store>, config).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, rx) = oneshot::channel();
        let st = state.clone();
        let task = tokio::spawn(async move {
            serve(listener, st, async {
                let _ = rx.await;
            })
            .await
        });
        TestServer {
            addr,
            state,
            store,
            dir: dir.to_path_buf(),
            stop: Some(stop),
            task: Some(task),
            _tmp: None,
        }
    }

    /// Stops the server (graceful) and closes the store; returns the temp dir
    /// holding the data (so a new server can reopen it).
    pub async fn stop(mut self) -> Option<tempfile::TempDir> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
        let TestServer { state, store, .. } = self;
        drop(state);
        // The server's tasks are gone: this is the last handle.
        if let Ok(store) = Arc::try_unwrap(store) {
            store.close().unwrap();
        }
        self._tmp.take()
    }

    /// Sends a request; `headers` are added as given.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> TestResponse {
        let stream = TcpStream::connect(self.addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string());
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b.body(Full::new(body.into())).unwrap();
        let resp = sender.send_request(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        TestResponse {
            status,
            headers,
            body,
        }
    }

    fn auth(token: Option<&str>) -> Option<String> {
        token.map(|t| format!("Bearer {t}"))
    }

    /// GET with an optional token.
    pub async fn get(&self, path: &str, token: Option<&str>) -> TestResponse {
        self.send_json(Method::GET, path, token, None).await
    }

    /// DELETE with an optional token.
    pub async fn delete(&self, path: &str, token: Option<&str>) -> TestResponse {
        self.send_json(Method::DELETE, path, token, None).await
    }

    /// A request with a JSON body (or none).
    pub async fn send_json(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> TestResponse {
        let auth = Self::auth(token);
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let Some(a) = &auth {
            headers.push(("authorization", a));
        }
        let bytes = match body {
            Some(v) => {
                headers.push(("content-type", "application/json"));
                serde_json::to_vec(v).unwrap()
            }
            None => Vec::new(),
        };
        self.request(method, path, &headers, bytes).await
    }

    /// POST JSON.
    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> TestResponse {
        self.send_json(Method::POST, path, token, Some(body)).await
    }

    /// PUT JSON.
    pub async fn put(&self, path: &str, token: Option<&str>, body: &Value) -> TestResponse {
        self.send_json(Method::PUT, path, token, Some(body)).await
    }

    /// PATCH JSON.
    pub async fn patch(&self, path: &str, token: Option<&str>, body: &Value) -> TestResponse {
        self.send_json(Method::PATCH, path, token, Some(body)).await
    }

    /// POST a form.
    pub async fn post_form(
        &self,
        path: &str,
        token: Option<&str>,
        form: &[(&str, &str)],
    ) -> TestResponse {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let auth = Self::auth(token);
        let mut headers = vec![("content-type", "application/x-www-form-urlencoded")];
        if let Some(a) = &auth {
            headers.push(("authorization", a));
        }
        self.request(Method::POST, path, &headers, body).await
    }

    /// Creates a user directly in the store (active; `verified` and `superuser` as
    /// given; groups by name, created when missing) and returns it with an access
    /// token.
    pub async fn user(
        &self,
        username: &str,
        superuser: bool,
        verified: bool,
        groups: &[&str],
    ) -> (User, String) {
        let store = self.state.store();
        let mut gs = Vec::new();
        for name in groups {
            let g = match store.get_group_by_name(name).await.unwrap() {
                Some(g) => g,
                None => {
                    let g = UserGroup {
                        id: ObjectId::new(),
                        name: (*name).to_owned(),
                    };
                    store.insert_group(&g).await.unwrap();
                    g
                }
            };
            gs.push(g);
        }
        let user = User {
            id: ObjectId::new(),
            username: username.into(),
            email: format!("{username}@example.org"),
            hashed_password: String::new(),
            is_active: true,
            is_superuser: superuser,
            is_verified: verified,
            groups: gs,
        };
        store.insert_user(&user).await.unwrap();
        let token = self.state.tokens().issue_access(user.id, Timestamp::now());
        (user, token)
    }
}
