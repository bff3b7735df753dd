//! Test support: a real server on a loopback port over a fresh store of the backend
//! under test, and a small HTTP/1.1 client over real sockets.
//!
//! # One test body, every backend
//!
//! A test is a plain `async fn` without arguments, registered with
//! [`every_backend!`]:
//!
//! ```ignore
//! every_backend!(create_and_read);
//! async fn create_and_read() {
//!     let s = TestServer::start().await; // on the backend of the running variant
//!     ...
//! }
//! ```
//!
//! which generates the tests `create_and_read::sled` and `create_and_read::postgres`.
//! Each runs the body with [`Backend::run`], which sets the backend that
//! [`TestServer::start`] (and [`Location::fresh`]) use for the whole body. The
//! PostgreSQL variant runs on a database of its own in the test process' shared
//! throwaway cluster ([`TestCluster::shared`]); without PostgreSQL it passes at once
//! after the cluster's `SKIPPED:` line (with `KCI_REQUIRE_POSTGRES=1` it fails
//! instead). A test function that is not registered is never run, and the compiler
//! says so (`dead_code`).
//!
//! A restart is backend-neutral: [`TestServer::stop`] hands back the data's
//! [`Location`] (a sled directory, or a PostgreSQL database URL) and
//! [`TestServer::start_at`] starts a new server and store on it.
#![allow(
    dead_code,
    unused_macros,
    unused_imports,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
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
use kernelci_store::postgres::testing::TestCluster;
use kernelci_store::postgres::{PgConfig, PgStore};
use kernelci_store::{SledConfig, SledStore};

/// The secret of test servers.
pub const SECRET: &str = "test-secret-key";

/// Registers each async test function (no arguments) once per backend: `name::sled`
/// and `name::postgres`, both on a multi-threaded runtime with two workers (see the
/// module docs).
macro_rules! every_backend {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sled() {
                $crate::common::Backend::Sled.run(super::$name()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                $crate::common::Backend::Postgres.run(super::$name()).await;
            }
        }
    )+};
}
pub(crate) use every_backend;

/// A storage backend the tests run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `SledStore` in a temporary directory.
    Sled,
    /// `PgStore` on a fresh database of the shared test cluster.
    Postgres,
}

tokio::task_local! {
    /// The backend of the running test variant (set by [`Backend::run`]).
    static BACKEND: Backend;
}

impl Backend {
    /// The backend of the running test, set by [`Backend::run`].
    ///
    /// # Panics
    ///
    /// Outside [`Backend::run`] (a plain `#[tokio::test]`, or a task the test
    /// spawned): rather than silently falling back to one backend. A sled-only test
    /// is `Backend::Sled.run(async { ... }).await` in a plain `#[tokio::test]`.
    pub fn current() -> Backend {
        BACKEND.try_with(|b| *b).unwrap_or_else(|_| {
            panic!("no backend: run the test with every_backend! or Backend::run")
        })
    }

    /// Runs `test` with `self` as the current backend; on PostgreSQL, returns at once
    /// when PostgreSQL is missing and not required (the cluster printed `SKIPPED:`).
    pub async fn run(self, test: impl Future<Output = ()>) {
        if self == Backend::Postgres && TestCluster::shared().is_none() {
            return;
        }
        BACKEND.scope(self, test).await;
    }
}

/// Where a server's data lives: what [`TestServer::stop`] hands back and
/// [`TestServer::start_at`] opens again.
#[derive(Debug)]
pub enum Location {
    /// A sled store in `data/` under this temporary directory (removed on drop).
    Sled(tempfile::TempDir),
    /// A PostgreSQL database (it stays until the test process ends).
    Postgres(String),
}

impl Location {
    /// A new empty location of the current backend.
    pub fn fresh() -> Location {
        match Backend::current() {
            Backend::Sled => Location::Sled(tempfile::tempdir().unwrap()),
            Backend::Postgres => Location::Postgres(
                TestCluster::shared()
                    .expect("Backend::run checked that PostgreSQL is there")
                    .create_database(),
            ),
        }
    }

    /// The sled directory, for a sled location.
    pub fn sled_dir(&self) -> Option<PathBuf> {
        match self {
            Location::Sled(tmp) => Some(tmp.path().join("data")),
            Location::Postgres(_) => None,
        }
    }

    /// Opens a store on this location (created or reopened); the typed sled handle
    /// too, for a sled location (to close it).
    pub async fn open(&self) -> (Arc<dyn Store>, Option<Arc<SledStore>>) {
        match self {
            Location::Sled(_) => {
                let dir = self.sled_dir().unwrap();
                let sled = Arc::new(SledStore::open(&dir, SledConfig::default()).unwrap());
                (sled.clone(), Some(sled))
            }
            Location::Postgres(url) => {
                let pg = PgStore::open(&PgConfig::new(url.as_str()))
                    .await
                    .unwrap_or_else(|e| panic!("PgStore::open({url}): {e}"));
                (Arc::new(pg), None)
            }
        }
    }
}

/// A running server.
pub struct TestServer {
    pub addr: SocketAddr,
    pub state: AppState,
    /// The server's store.
    pub store: Arc<dyn Store>,
    /// The same store, typed, on sled (closed by [`TestServer::stop`]).
    sled: Option<Arc<SledStore>>,
    location: Location,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), kernelci_http::HttpError>>>,
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

    /// The answer with its body decoded as an HTTP client library does it
    /// (`Content-Encoding: gzip` or `deflate`; the header is kept).
    pub fn decoded(mut self) -> Self {
        use std::io::Read;
        let mut out = Vec::new();
        match self.header("content-encoding").as_deref() {
            Some("gzip") => {
                flate2::read::GzDecoder::new(&self.body[..])
                    .read_to_end(&mut out)
                    .unwrap();
            }
            Some("deflate") => {
                flate2::read::ZlibDecoder::new(&self.body[..])
                    .read_to_end(&mut out)
                    .unwrap();
            }
            _ => return self,
        }
        self.body = Bytes::from(out);
        self
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
    /// A server with the test configuration on a fresh store of the current backend.
    pub async fn start() -> Self {
        Self::start_with(HttpConfig::for_tests(SECRET)).await
    }

    /// A server with `config` on a fresh store of the current backend.
    pub async fn start_with(config: HttpConfig) -> Self {
        Self::start_at(Location::fresh(), config).await
    }

    /// A server with `config` on the data at `location` (created or reopened).
    ///
    /// It returns once the server listens; the server's start-up work (built-in
    /// groups, initial administrator) may still be running: a test that depends on
    /// it asks the server something first (the server answers only once it is done).
    pub async fn start_at(location: Location, config: HttpConfig) -> Self {
        let (store, sled) = location.open().await;
        let state = AppState::new(store.clone(), config).unwrap();
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
            sled,
            location,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops the server (graceful) and closes the store; returns where the data is
    /// (so that [`TestServer::start_at`] can reopen it).
    pub async fn stop(mut self) -> Location {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
        let TestServer {
            state,
            store,
            sled,
            location,
            ..
        } = self;
        drop((state, store));
        // The server's tasks are gone: this is the last handle.
        if let Some(Ok(sled)) = sled.map(Arc::try_unwrap) {
            sled.close().unwrap();
        }
        location
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
        let mut b = Request::builder().method(method).uri(path);
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            b = b.header("host", self.addr.to_string());
        }
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
                    match store.insert_group(&g).await {
                        Ok(()) => g,
                        // The server's start-up step may still be running and have
                        // created it meanwhile (`node:edit:any`).
                        Err(kernelci_core::Error::Conflict(_)) => {
                            store.get_group_by_name(name).await.unwrap().unwrap()
                        }
                        Err(e) => panic!("insert_group({name}): {e}"),
                    }
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
