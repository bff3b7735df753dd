//! Throwaway PostgreSQL clusters for tests (feature `pg-test-util`).
//!
//! [`TestCluster`] runs a private PostgreSQL server out of a temporary directory: its
//! own `initdb`, a free loopback port, trust authentication for the role `kci`, no
//! password. Tests that need a database ask for one with
//! [`TestCluster::create_database`] and get a URL:
//!
//! ```no_run
//! use kernelci_store::postgres::testing::TestCluster;
//!
//! // `None`: PostgreSQL is not installed, the test is skipped (a loud line says so).
//! let Some(cluster) = TestCluster::shared() else { return };
//! let url = cluster.create_database(); // postgres://kci@127.0.0.1:PORT/kci_test_N
//! # let _ = url;
//! ```
//!
//! # Finding PostgreSQL, skipping and requiring
//!
//! The server binaries (`initdb`, `postgres`) are taken from `PATH`, else from the
//! newest `/usr/lib/postgresql/*/bin` (Debian's layout, which does not put them on
//! `PATH`); the client `psql` from `PATH`, else from the same directory. When they are
//! missing, the constructors return `None` after one line on standard error starting
//! with `SKIPPED:` (written past the test harness' output capture, so it shows in a
//! CI log); with the environment variable `KCI_REQUIRE_POSTGRES=1` they panic instead,
//! so that a CI machine that is meant to run these tests cannot skip them silently.
//!
//! `initdb` refuses to run as root: when the tests run as root, `initdb` and
//! `postgres` run as the `postgres` OS user (which Debian's `postgresql` package
//! creates) and the cluster's directory belongs to that user. The directory is created
//! under [`std::env::temp_dir`], which that user must be able to reach (`/tmp` is).
//!
//! # Cleanup
//!
//! There is no global teardown in Rust's test harness, and the shared cluster lives in
//! a `static` that is never dropped. Every cluster therefore gets a watchdog: a small
//! `sh` script, in its own process group (a Ctrl-C on the terminal does not reach it)
//! and ignoring `HUP`/`INT`/`TERM`, that polls the test process every half second and,
//! once it is gone (normal exit, panic, abort, `SIGKILL`), stops the server
//! (immediate shutdown) and removes the directory. A cluster that is dropped
//! ([`TestCluster::start`] and [`TestCluster::start_with_tls`] return owned values)
//! does the same at once and ends its watchdog.
//!
//! Clusters keep `fsync` on (crash and durability tests need a real one); only
//! `initdb`'s own final sync of the fresh directory is skipped.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, Once, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// The environment variable that turns a missing PostgreSQL into a test failure.
const REQUIRE_ENV: &str = "KCI_REQUIRE_POSTGRES";
/// The superuser role `initdb` creates; every URL connects as this role.
const ROLE: &str = "kci";
/// The OS user the server runs as when the tests run as root.
const OS_USER: &str = "postgres";
/// How long a starting server may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stopping server may take before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Start attempts, each on a new port, when the port was taken in the meantime.
const START_ATTEMPTS: usize = 3;

/// Database names handed out by [`TestCluster::create_database`] (unique per process).
static NEXT_DATABASE: AtomicU64 = AtomicU64::new(1);

/// The watchdog. Arguments: `$1` the test process id, `$2` the cluster directory,
/// `$3` the data directory. Waits for the test process to end, stops the server whose
/// pid is in `postmaster.pid` (only if that pid is still a `postgres` process), then
/// removes the directory. A zombie counts as gone (a container's PID 1 may never reap).
const WATCHDOG: &str = r#"
trap '' HUP INT QUIT TERM PIPE
alive() {
    kill -0 "$1" 2>/dev/null || return 1
    if grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; then return 1; fi
    return 0
}
while alive "$1"; do sleep 0.5; done
if [ -f "$3/postmaster.pid" ]; then
    pid=$(head -n 1 "$3/postmaster.pid" 2>/dev/null)
    case "$pid" in
        ''|*[!0-9]*) ;;
        *)
            case "$(cat "/proc/$pid/comm" 2>/dev/null)" in
                postgres|postmaster)
                    kill -QUIT "$pid" 2>/dev/null
                    i=0
                    while alive "$pid" && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i+1)); done
                    if alive "$pid"; then kill -KILL "$pid" 2>/dev/null; fi
                    ;;
            esac
            ;;
    esac
fi
rm -rf "$2"
"#;

/// A private PostgreSQL server for tests, in a temporary directory, on a free
/// `127.0.0.1` port, with trust authentication for the role `kci`.
///
/// Get one with [`shared`](Self::shared) (one per test process, for ordinary tests),
/// [`start`](Self::start) (a cluster of your own, for tests that
/// [`stop`](Self::stop) and [`restart`](Self::restart) the server) or
/// [`start_with_tls`](Self::start_with_tls). See the [module docs](self) for
/// skipping, root, and cleanup.
#[derive(Debug)]
pub struct TestCluster {
    /// The temporary directory: `data/`, `postgres.log`, `tls/`, the Unix socket.
    dir: PathBuf,
    /// The data directory (`dir/data`).
    data: PathBuf,
    /// The server's log (standard output and error, all starts appended).
    log: PathBuf,
    /// The TCP port on 127.0.0.1.
    port: u16,
    /// The CA certificate, for TLS clusters.
    ca_file: Option<PathBuf>,
    /// The binaries and the user to run them as.
    tools: &'static Tools,
    /// The running server, `None` while stopped.
    server: Mutex<Option<Child>>,
    /// The watchdog; `None` once a drop has ended it.
    watchdog: Mutex<Option<Child>>,
}

impl TestCluster {
    /// The test process' shared cluster, started on first use and kept until the
    /// process exits (the watchdog then stops it and removes its directory).
    ///
    /// Tests share it: give each test its own database with
    /// [`create_database`](Self::create_database), and never [`stop`](Self::stop) it
    /// (use [`start`](Self::start) for that). `None` when PostgreSQL is missing and
    /// `KCI_REQUIRE_POSTGRES=1` is not set (the caller then skips its test).
    ///
    /// # Panics
    ///
    /// When PostgreSQL is missing and `KCI_REQUIRE_POSTGRES=1`, or when the cluster
    /// cannot be created or started (the message holds the server log's tail).
    pub fn shared() -> Option<&'static TestCluster> {
        static SHARED: OnceLock<Option<TestCluster>> = OnceLock::new();
        SHARED.get_or_init(|| Self::launch_new(false)).as_ref()
    }

    /// Starts a new cluster of the caller's own: `initdb` in a fresh temporary
    /// directory, a free loopback port, plain TCP only (`ssl` is off).
    ///
    /// Dropping it stops the server and removes its directory. `None` when PostgreSQL
    /// is missing, as for [`shared`](Self::shared).
    ///
    /// # Panics
    ///
    /// As [`shared`](Self::shared).
    pub fn start() -> Option<TestCluster> {
        Self::launch_new(false)
    }

    /// Starts a new cluster, as [`start`](Self::start), that only accepts TLS.
    ///
    /// A fresh CA and a server certificate signed by it are generated with the
    /// `openssl` command (ECDSA P-256, valid 30 days, subject `CN=localhost`, subject
    /// alternative names `DNS:localhost` and `IP:127.0.0.1`), so that clients can
    /// verify the server fully (`sslmode=verify-full`) against
    /// [`ca_file`](Self::ca_file) whether they connect to `localhost` or `127.0.0.1`.
    /// The server runs with `ssl = on` and its `pg_hba.conf` accepts TCP connections
    /// only over TLS (`hostssl ... trust`, then `hostnossl all all all reject`): a
    /// client that does not use TLS (`sslmode=disable`) is refused, which lets a test
    /// prove that its client really speaks TLS. (A [`start`](Self::start) cluster is
    /// the opposite case: no TLS at all.)
    ///
    /// `None` when PostgreSQL or `openssl` is missing (see [`shared`](Self::shared)).
    ///
    /// # Panics
    ///
    /// As [`shared`](Self::shared); also when `openssl` fails.
    pub fn start_with_tls() -> Option<TestCluster> {
        Self::launch_new(true)
    }

    /// The CA certificate (PEM) that signed the server's certificate, for a
    /// [`start_with_tls`](Self::start_with_tls) cluster; `None` for the others.
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }

    /// The server's TCP port on `127.0.0.1`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates a new empty database with a name unique in this process
    /// (`kci_test_N`) and returns its URL, `postgres://kci@127.0.0.1:PORT/kci_test_N`
    /// (trust authentication, no password).
    ///
    /// # Panics
    ///
    /// When `CREATE DATABASE` fails (for instance, the server is stopped).
    pub fn create_database(&self) -> String {
        let name = format!("kci_test_{}", NEXT_DATABASE.fetch_add(1, Ordering::Relaxed));
        if let Err(error) = self.psql("postgres", &format!("CREATE DATABASE \"{name}\"")) {
            panic!(
                "PostgreSQL test cluster on port {}: CREATE DATABASE {name} failed: {error}",
                self.port
            );
        }
        self.url(&name)
    }

    /// The URL of database `name` on this cluster,
    /// `postgres://kci@127.0.0.1:PORT/NAME`; `url("postgres")` is the maintenance
    /// database. `name` is put in the URL as is (use names that need no escaping).
    pub fn url(&self, name: &str) -> String {
        format!("postgres://{ROLE}@127.0.0.1:{}/{name}", self.port)
    }

    /// Stops the server at once, for outage tests: an immediate shutdown (`SIGQUIT`,
    /// then `SIGKILL` if it is not gone after 10 s), so open connections break, no
    /// checkpoint is written, and the next start goes through crash recovery, which
    /// keeps every committed transaction (`fsync` is on). Returns once the server has
    /// exited. Does nothing if it is already stopped. Never call it on the
    /// [`shared`](Self::shared) cluster.
    pub fn stop(&self) {
        self.stop_server();
    }

    /// Starts the server again after [`stop`](Self::stop), on the same port and data,
    /// and returns once it accepts connections. Does nothing if it is running.
    ///
    /// # Panics
    ///
    /// When the server does not start (for instance, something else took the port
    /// while it was stopped); the message holds the server log's tail.
    pub fn restart(&self) {
        let mut server = lock(&self.server);
        if let Some(child) = server.as_mut() {
            if matches!(child.try_wait(), Ok(None)) {
                return;
            }
            *server = None;
        }
        match self.launch(&mut server) {
            Ok(()) => {}
            Err(Failure::PortTaken(tail) | Failure::Other(tail)) => panic!(
                "PostgreSQL test cluster {}: restart on port {} failed; server log tail:\n{tail}",
                self.dir.display(),
                self.port
            ),
        }
    }

    /// Creates, configures and starts a cluster; `None` when PostgreSQL is missing.
    fn launch_new(tls: bool) -> Option<TestCluster> {
        let tools = tools()?;
        if tls && tools.openssl.is_none() {
            return unavailable("openssl was not found (needed for the TLS test cluster)");
        }
        let dir = match tempfile::Builder::new()
            .prefix("kci-pg-")
            .tempdir_in(std::env::temp_dir())
        {
            Ok(dir) => dir.keep(),
            Err(error) => panic!(
                "PostgreSQL test cluster: cannot create a directory in {}: {error}",
                std::env::temp_dir().display()
            ),
        };
        let mut cluster = TestCluster {
            data: dir.join("data"),
            log: dir.join("postgres.log"),
            dir,
            port: 0,
            ca_file: None,
            tools,
            server: Mutex::new(None),
            watchdog: Mutex::new(None),
        };
        // From here on, a panic drops `cluster`, which removes the directory; the
        // watchdog covers an abort.
        cluster.spawn_watchdog();
        cluster.chown_all();
        cluster.initdb();
        if tls {
            cluster.ca_file = Some(cluster.make_certificates());
        }
        cluster.configure(tls);
        cluster.chown_all();

        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            cluster.port = free_port();
            let mut server = lock(&cluster.server);
            match cluster.launch(&mut server) {
                Ok(()) => {
                    drop(server);
                    return Some(cluster);
                }
                Err(Failure::PortTaken(tail)) => last = tail,
                Err(Failure::Other(tail)) => panic!(
                    "PostgreSQL test cluster {}: the server did not start; log tail:\n{tail}",
                    cluster.dir.display()
                ),
            }
        }
        panic!(
            "PostgreSQL test cluster {}: the server did not start after {START_ATTEMPTS} \
             attempts (port taken each time); log tail:\n{last}",
            cluster.dir.display()
        );
    }

    /// Starts the watchdog that cleans up after the test process (see [`WATCHDOG`]).
    fn spawn_watchdog(&self) {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(WATCHDOG)
            .arg("kci-pg-watchdog")
            .arg(std::process::id().to_string())
            .arg(&self.dir)
            .arg(&self.data)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        match command.spawn() {
            Ok(child) => *lock(&self.watchdog) = Some(child),
            Err(error) => {
                panic!("PostgreSQL test cluster: cannot run sh for the watchdog: {error}")
            }
        }
    }

    /// A command for a server binary, run as the `postgres` user when we are root.
    fn server_command(&self, program: &Path) -> Command {
        let mut command = Command::new(program);
        clean_env(&mut command);
        command.current_dir(&self.dir).stdin(Stdio::null());
        if let Some(owner) = self.tools.run_as {
            command.uid(owner.uid).gid(owner.gid);
        }
        command
    }

    /// Gives the whole directory to the `postgres` user when we are root.
    fn chown_all(&self) {
        if let Some(owner) = self.tools.run_as {
            if let Err(error) = chown_recursive(&self.dir, owner) {
                panic!(
                    "PostgreSQL test cluster: cannot give {} to the {OS_USER} user: {error}",
                    self.dir.display()
                );
            }
        }
    }

    /// Runs `initdb`.
    fn initdb(&self) {
        let mut command = self.server_command(&self.tools.initdb);
        command
            .arg("-D")
            .arg(&self.data)
            .args(["-U", ROLE, "--auth=trust", "-E", "UTF8", "--locale=C"])
            // Skips only initdb's final sync of the new files; the server keeps fsync on.
            .arg("--no-sync");
        let output = run(&mut command, "initdb");
        if !output.status.success() {
            panic!(
                "PostgreSQL test cluster: {} failed ({}):\n{}{}",
                self.tools.initdb.display(),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }

    /// Appends the test settings to `postgresql.conf` (and, for TLS, replaces
    /// `pg_hba.conf`). The port is not there: it is given on the command line.
    fn configure(&self, tls: bool) {
        // A Unix socket path is limited to about 100 bytes; the tests use TCP anyway.
        let socket_dir = if self.dir.as_os_str().len() <= 80 {
            conf_quote(&self.dir)
        } else {
            "''".to_owned()
        };
        let mut settings = format!(
            "\n# kernelci-store postgres::testing\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = {socket_dir}\n\
             max_connections = 200\n\
             shared_buffers = 64MB\n\
             fsync = on\n"
        );
        if tls {
            let tls_dir = self.dir.join("tls");
            settings.push_str(&format!(
                "ssl = on\nssl_cert_file = {}\nssl_key_file = {}\n",
                conf_quote(&tls_dir.join("server.crt")),
                conf_quote(&tls_dir.join("server.key"))
            ));
            let hba = "# kernelci-store postgres::testing: TCP only over TLS\n\
                       local all all trust\n\
                       hostssl all all 127.0.0.1/32 trust\n\
                       hostssl all all ::1/128 trust\n\
                       hostnossl all all all reject\n";
            write_file(&self.data.join("pg_hba.conf"), hba);
        }
        let conf = self.data.join("postgresql.conf");
        let appended = OpenOptions::new()
            .append(true)
            .open(&conf)
            .and_then(|mut file| file.write_all(settings.as_bytes()));
        if let Err(error) = appended {
            panic!(
                "PostgreSQL test cluster: cannot write {}: {error}",
                conf.display()
            );
        }
    }

    /// Generates the CA and the server certificate under `dir/tls`; returns the CA's
    /// file.
    fn make_certificates(&self) -> PathBuf {
        let tls = self.dir.join("tls");
        if let Err(error) = fs::create_dir(&tls) {
            panic!(
                "PostgreSQL test cluster: cannot create {}: {error}",
                tls.display()
            );
        }
        write_file(
            &tls.join("ca.cnf"),
            "[req]\ndistinguished_name = dn\nprompt = no\nx509_extensions = v3_ca\n\
             [dn]\nCN = kernelci-rs test CA\n\
             [v3_ca]\nbasicConstraints = critical,CA:TRUE\n\
             keyUsage = critical,keyCertSign,cRLSign\n\
             subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid:always\n",
        );
        write_file(
            &tls.join("server.cnf"),
            "[req]\ndistinguished_name = dn\nprompt = no\n\
             [dn]\nCN = localhost\n\
             [v3_server]\nbasicConstraints = critical,CA:FALSE\n\
             keyUsage = critical,digitalSignature\nextendedKeyUsage = serverAuth\n\
             subjectAltName = DNS:localhost,IP:127.0.0.1\n\
             subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid,issuer\n",
        );
        let key = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        self.openssl(&tls, |c| {
            c.args(["req", "-x509", "-new"]).args(key).args([
                "-keyout", "ca.key", "-out", "ca.crt", "-days", "30", "-config", "ca.cnf",
            ])
        });
        self.openssl(&tls, |c| {
            c.args(["req", "-new"]).args(key).args([
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-config",
                "server.cnf",
            ])
        });
        self.openssl(&tls, |c| {
            c.args([
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
            ])
            .args(["-CAcreateserial", "-out", "server.crt", "-days", "30"])
            .args(["-extfile", "server.cnf", "-extensions", "v3_server"])
        });
        // PostgreSQL refuses a key that others can read.
        let server_key = tls.join("server.key");
        if let Err(error) = fs::set_permissions(&server_key, fs::Permissions::from_mode(0o600)) {
            panic!(
                "PostgreSQL test cluster: chmod {}: {error}",
                server_key.display()
            );
        }
        tls.join("ca.crt")
    }

    /// Runs `openssl` in `dir` with the arguments `args` adds; panics on failure.
    fn openssl(&self, dir: &Path, args: impl FnOnce(&mut Command) -> &mut Command) {
        let Some(openssl) = &self.tools.openssl else {
            panic!("PostgreSQL test cluster: openssl was not found");
        };
        let mut command = Command::new(openssl);
        command
            .current_dir(dir)
            .stdin(Stdio::null())
            .env_remove("OPENSSL_CONF");
        args(&mut command);
        let output = run(&mut command, "openssl");
        if !output.status.success() {
            panic!(
                "PostgreSQL test cluster: {command:?} failed ({}):\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }

    /// Starts `postgres` on `self.port` and waits until it accepts connections.
    /// `server` is the locked slot for the server process (empty on entry).
    fn launch(&self, server: &mut MutexGuard<'_, Option<Child>>) -> Result<(), Failure> {
        let log = match OpenOptions::new().create(true).append(true).open(&self.log) {
            Ok(log) => log,
            Err(error) => panic!(
                "PostgreSQL test cluster: cannot open {}: {error}",
                self.log.display()
            ),
        };
        let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let log_err = match log.try_clone() {
            Ok(log_err) => log_err,
            Err(error) => {
                panic!("PostgreSQL test cluster: cannot duplicate a file handle: {error}")
            }
        };
        let mut command = self.server_command(&self.tools.postgres);
        command
            .arg("-D")
            .arg(&self.data)
            .arg("-p")
            .arg(self.port.to_string())
            .stdout(log)
            .stderr(log_err)
            // Away from the terminal's process group: a Ctrl-C reaches the watchdog's
            // cleanup, not the server directly.
            .process_group(0);
        let child = match command.spawn() {
            Ok(child) => child,
            Err(error) => panic!(
                "PostgreSQL test cluster: cannot run {}: {error}",
                self.tools.postgres.display()
            ),
        };
        **server = Some(child);

        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let exited = match server.as_mut() {
                Some(child) => !matches!(child.try_wait(), Ok(None)),
                None => true,
            };
            if exited {
                **server = None;
                let tail = self.log_tail(log_start);
                return Err(if port_taken(&tail) {
                    Failure::PortTaken(tail)
                } else {
                    Failure::Other(tail)
                });
            }
            if self.psql("postgres", "SELECT 1").is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                if let Some(child) = server.take() {
                    stop_child(child, None);
                }
                return Err(Failure::Other(format!(
                    "(not ready after {} s)\n{}",
                    READY_TIMEOUT.as_secs(),
                    self.log_tail(log_start)
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the server if it runs (immediate shutdown).
    fn stop_server(&self) {
        let child = lock(&self.server).take();
        if let Some(child) = child {
            stop_child(child, Some(&self.log));
        }
    }

    /// The last lines the server logged since byte `from` of its log.
    fn log_tail(&self, from: u64) -> String {
        let mut text = String::new();
        if let Ok(mut file) = File::open(&self.log) {
            if file.seek(SeekFrom::Start(from)).is_ok() {
                let mut bytes = Vec::new();
                let _ = file.read_to_end(&mut bytes);
                text = String::from_utf8_lossy(&bytes).into_owned();
            }
        }
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Runs `sql` in database `db` with `psql`; its unaligned output or its error.
    fn psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let mut command = Command::new(&self.tools.psql);
        clean_env(&mut command);
        command
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
            ])
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                ROLE,
                "-d",
                db,
                "-c",
                sql,
            ])
            .env("PGCONNECT_TIMEOUT", "5")
            .current_dir(&self.dir)
            .stdin(Stdio::null());
        match &self.ca_file {
            Some(ca) => command
                .env("PGSSLMODE", "verify-full")
                .env("PGSSLROOTCERT", ca),
            None => command.env("PGSSLMODE", "disable"),
        };
        let output = run(&mut command, "psql");
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
        }
    }
}

impl Drop for TestCluster {
    /// Stops the server and removes the cluster's directory now.
    fn drop(&mut self) {
        self.stop_server();
        let _ = fs::remove_dir_all(&self.dir);
        // Last, so that it still cleans up if the process dies during the above.
        if let Some(mut watchdog) = lock(&self.watchdog).take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
    }
}

/// Why a start failed: the port was taken (try another) or anything else. Both hold
/// the log's tail.
enum Failure {
    PortTaken(String),
    Other(String),
}

/// Whether a server log says the port was in use.
fn port_taken(log: &str) -> bool {
    log.contains("Address already in use") || log.contains("could not create any TCP/IP sockets")
}

/// Stops a server process: `SIGQUIT` (immediate shutdown), `SIGKILL` after
/// [`STOP_TIMEOUT`]; waits for it. The server is our child (no intermediate process),
/// so its id is the postmaster's.
fn stop_child(mut child: Child, log: Option<&Path>) {
    if !matches!(child.try_wait(), Ok(None)) {
        return;
    }
    signal("QUIT", child.id());
    let deadline = Instant::now() + STOP_TIMEOUT;
    while matches!(child.try_wait(), Ok(None)) {
        if Instant::now() > deadline {
            if let Some(log) = log {
                let _ = writeln!(
                    std::io::stderr(),
                    "PostgreSQL test cluster: the server ignored SIGQUIT for {} s; killing it (log: {})",
                    STOP_TIMEOUT.as_secs(),
                    log.display()
                );
            }
            let _ = child.kill();
            let _ = child.wait();
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends signal `name` to process `pid` with `kill` (no libc here).
fn signal(name: &str, pid: u32) {
    let _ = Command::new("kill")
        .args(["-s", name, &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Runs `command` to completion; panics when it cannot be run at all.
fn run(command: &mut Command, what: &str) -> Output {
    match command.output() {
        Ok(output) => output,
        Err(error) => panic!("PostgreSQL test cluster: cannot run {what} ({command:?}): {error}"),
    }
}

/// Removes the `PG*` environment variables (`PGHOST`, `PGPORT`, `PGDATA`,
/// `PGSSLMODE`...) so that the caller's environment cannot redirect a command.
fn clean_env(command: &mut Command) {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PG") {
            command.env_remove(name);
        }
    }
}

/// A free TCP port on 127.0.0.1 (bound, then released for the server to take).
fn free_port() -> u16 {
    match TcpListener::bind("127.0.0.1:0").and_then(|listener| listener.local_addr()) {
        Ok(address) => address.port(),
        Err(error) => panic!("PostgreSQL test cluster: cannot bind 127.0.0.1:0: {error}"),
    }
}

/// Writes `text` to `path`; panics on failure.
fn write_file(path: &Path, text: &str) {
    if let Err(error) = fs::write(path, text) {
        panic!(
            "PostgreSQL test cluster: cannot write {}: {error}",
            path.display()
        );
    }
}

/// A path as a `postgresql.conf` string literal.
fn conf_quote(path: &Path) -> String {
    format!("'{}'", path.to_string_lossy().replace('\'', "''"))
}

/// Locks `mutex`, ignoring poisoning (a panicking test must not break the cleanup).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Changes the owner of `path` and everything under it (symlinks not followed).
fn chown_recursive(path: &Path, owner: Owner) -> std::io::Result<()> {
    std::os::unix::fs::lchown(path, Some(owner.uid), Some(owner.gid))?;
    if fs::symlink_metadata(path)?.is_dir() {
        for entry in fs::read_dir(path)? {
            chown_recursive(&entry?.path(), owner)?;
        }
    }
    Ok(())
}

/// A user and group id to run the server as.
#[derive(Debug, Clone, Copy)]
struct Owner {
    uid: u32,
    gid: u32,
}

/// The PostgreSQL binaries found on this machine.
#[derive(Debug)]
struct Tools {
    initdb: PathBuf,
    postgres: PathBuf,
    psql: PathBuf,
    /// `openssl`, needed by TLS clusters only.
    openssl: Option<PathBuf>,
    /// The `postgres` OS user, when we are root (`initdb` refuses to run as root).
    run_as: Option<Owner>,
}

/// The binaries, found once per process; `None` (after the loud skip line) when they
/// are missing.
///
/// # Panics
///
/// When they are missing and `KCI_REQUIRE_POSTGRES=1`.
fn tools() -> Option<&'static Tools> {
    static TOOLS: OnceLock<Result<Tools, String>> = OnceLock::new();
    match TOOLS.get_or_init(find_tools) {
        Ok(tools) => Some(tools),
        Err(reason) => unavailable(reason),
    }
}

/// Reports that PostgreSQL cannot be used: panics under `KCI_REQUIRE_POSTGRES=1`,
/// else writes the skip line (once per process) and returns `None`.
fn unavailable<T>(reason: &str) -> Option<T> {
    let required = std::env::var(REQUIRE_ENV)
        .map(|value| matches!(value.trim(), "1" | "true" | "yes"))
        .unwrap_or(false);
    if required {
        panic!("PostgreSQL is required ({REQUIRE_ENV}=1) but {reason}: install postgresql");
    }
    static LOUD: Once = Once::new();
    LOUD.call_once(|| {
        // Straight to the process' standard error: `eprintln!` would be captured by
        // the test harness and never shown for a passing (skipped) test.
        let _ = writeln!(
            std::io::stderr(),
            "\nSKIPPED: PostgreSQL not usable ({reason}); the PostgreSQL tests did not run. \
             Install postgresql or set {REQUIRE_ENV}=1 to make this an error.\n"
        );
    });
    None
}

/// Looks for the binaries and, when we are root, the `postgres` user.
fn find_tools() -> Result<Tools, String> {
    let path_dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect())
        .unwrap_or_default();
    let on_path = |name: &str| {
        path_dirs
            .iter()
            .map(|dir| dir.join(name))
            .find(|file| is_executable(file))
    };
    let packaged = newest_packaged_bin_dir();
    let in_dir = |dir: &Option<PathBuf>, name: &str| {
        dir.as_ref()
            .map(|dir| dir.join(name))
            .filter(|file| is_executable(file))
    };

    let initdb = on_path("initdb")
        .or_else(|| in_dir(&packaged, "initdb"))
        .ok_or("initdb was not found (on PATH or in /usr/lib/postgresql/*/bin)")?;
    // The server of the same installation as initdb (initdb itself runs that one).
    let server_dir = fs::canonicalize(&initdb)
        .ok()
        .and_then(|file| file.parent().map(Path::to_path_buf));
    let postgres = in_dir(&server_dir, "postgres")
        .or_else(|| on_path("postgres"))
        .ok_or_else(|| format!("postgres was not found next to {}", initdb.display()))?;
    let psql = on_path("psql")
        .or_else(|| in_dir(&server_dir, "psql"))
        .or_else(|| in_dir(&packaged, "psql"))
        .ok_or("psql was not found (on PATH or next to initdb)")?;
    let openssl = on_path("openssl");

    let run_as = if effective_uid()? == 0 {
        let id = |flag: &str| -> Result<u32, String> {
            let output = Command::new("id")
                .args([flag, OS_USER])
                .stdin(Stdio::null())
                .output()
                .map_err(|error| format!("cannot run id: {error}"))?;
            String::from_utf8_lossy(&output.stdout)
                .trim()
                .parse()
                .map_err(|_| {
                    format!(
                        "the tests run as root (initdb refuses to) and there is no \
                         `{OS_USER}` OS user to run PostgreSQL as"
                    )
                })
        };
        Some(Owner {
            uid: id("-u")?,
            gid: id("-g")?,
        })
    } else {
        None
    };
    Ok(Tools {
        initdb,
        postgres,
        psql,
        openssl,
        run_as,
    })
}

/// The newest `/usr/lib/postgresql/VERSION/bin` that holds `initdb` (Debian, Ubuntu).
fn newest_packaged_bin_dir() -> Option<PathBuf> {
    let version = |name: &OsStr| -> Option<Vec<u32>> {
        name.to_str()?
            .split('.')
            .map(|part| part.parse().ok())
            .collect()
    };
    fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| Some((version(&entry.file_name())?, entry.path().join("bin"))))
        .filter(|(_, bin)| is_executable(&bin.join("initdb")))
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, bin)| bin)
}

/// Whether `file` is an executable regular file (symlinks followed).
fn is_executable(file: &Path) -> bool {
    fs::metadata(file).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// This process' effective user id, from `/proc/self/status`, else `id -u`.
fn effective_uid() -> Result<u32, String> {
    if let Ok(status) = fs::read_to_string("/proc/self/status") {
        let uid = status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            .and_then(|euid| euid.parse().ok());
        if let Some(uid) = uid {
            return Ok(uid);
        }
    }
    let output = Command::new("id")
        .arg("-u")
        .stdin(Stdio::null())
        .output()
        .map_err(|error| format!("cannot tell whether this process is root (id -u: {error})"))?;
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .map_err(|_| "cannot tell whether this process is root (id -u)".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `sql` through `psql` with connection string `conninfo` (a URL or
    /// `key=value` pairs).
    fn psql_at(conninfo: &str, sql: &str) -> Result<String, String> {
        let tools = tools().expect("a cluster exists, so do the tools");
        let mut command = Command::new(&tools.psql);
        clean_env(&mut command);
        command
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
                "-d",
                conninfo,
            ])
            .env("PGCONNECT_TIMEOUT", "5")
            .stdin(Stdio::null());
        let output = run(&mut command, "psql");
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
        }
    }

    /// Whether process `pid` still runs (and is not a zombie).
    fn alive(pid: u32) -> bool {
        match fs::read_to_string(format!("/proc/{pid}/status")) {
            Ok(status) => !status
                .lines()
                .any(|line| line.starts_with("State:") && line.contains('Z')),
            Err(_) => false,
        }
    }

    fn server_pid(cluster: &TestCluster) -> u32 {
        lock(&cluster.server).as_ref().expect("server running").id()
    }

    #[test]
    fn shared_cluster_hands_out_separate_databases() {
        let Some(cluster) = TestCluster::shared() else {
            return;
        };
        assert!(std::ptr::eq(
            cluster,
            TestCluster::shared().expect("same cluster")
        ));
        let a = cluster.create_database();
        let b = cluster.create_database();
        assert_ne!(a, b);
        let prefix = format!("postgres://kci@127.0.0.1:{}/kci_test_", cluster.port());
        assert!(a.starts_with(&prefix), "{a}");
        psql_at(&a, "CREATE TABLE t (x int); INSERT INTO t VALUES (1)").expect("write to a");
        for url in [&a, &b] {
            assert_eq!(psql_at(url, "SELECT 1").expect("SELECT 1"), "1");
        }
        // Separate databases: b has no table t.
        assert_eq!(psql_at(&a, "SELECT count(*) FROM t").expect("count"), "1");
        assert!(psql_at(&b, "SELECT count(*) FROM t").is_err());
        let maintenance = cluster.url("postgres");
        assert_eq!(
            psql_at(&maintenance, "SELECT current_user").expect("maintenance db"),
            "kci"
        );
        assert_eq!(
            psql_at(&maintenance, "SHOW fsync").expect("SHOW fsync"),
            "on"
        );
        assert_eq!(cluster.ca_file(), None);
        // Plain TCP: not TLS.
        assert_eq!(
            psql_at(
                &format!("{maintenance}?sslmode=prefer"),
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
            )
            .expect("pg_stat_ssl"),
            "f"
        );
    }

    #[test]
    fn tls_cluster_verifies_and_refuses_plain_tcp() {
        let Some(cluster) = TestCluster::start_with_tls() else {
            return;
        };
        let ca = cluster
            .ca_file()
            .expect("a TLS cluster has a CA")
            .display()
            .to_string();
        let ssl_query = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
        for host in ["localhost", "127.0.0.1"] {
            let conninfo = format!(
                "sslmode=verify-full sslrootcert={ca} host={host} port={} user=kci dbname=postgres",
                cluster.port()
            );
            assert_eq!(
                psql_at(&conninfo, ssl_query).expect("verify-full"),
                "t",
                "{host}"
            );
        }
        let url = cluster.create_database();
        assert_eq!(
            psql_at(
                &format!("{url}?sslmode=verify-full&sslrootcert={ca}"),
                ssl_query
            )
            .expect("URL with verify-full"),
            "t"
        );
        let plain = psql_at(&format!("{url}?sslmode=disable"), "SELECT 1")
            .expect_err("plain TCP must be refused");
        assert!(plain.contains("no encryption"), "{plain}");
    }

    /// The CA and server certificate are accepted by rustls (webpki), which the
    /// PostgreSQL store uses, not only by OpenSSL.
    #[test]
    fn tls_cluster_certificates_satisfy_rustls() {
        use rustls_pki_types::pem::PemObject;
        let Some(cluster) = TestCluster::start_with_tls() else {
            return;
        };
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pki_types::CertificateDer::pem_file_iter(
            cluster.ca_file().expect("a TLS cluster has a CA"),
        )
        .expect("read CA")
        {
            roots.add(cert.expect("parse CA")).expect("add CA");
        }
        let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        for host in ["localhost", "127.0.0.1"] {
            let url = format!(
                "host={host} port={} user=kci dbname=postgres sslmode=require",
                cluster.port()
            );
            let tls = tokio_postgres_rustls::MakeRustlsConnect::new(config.clone());
            runtime.block_on(async {
                let (client, connection) = tokio_postgres::connect(&url, tls)
                    .await
                    .unwrap_or_else(|e| panic!("rustls connection to {host}: {e}"));
                let task = tokio::spawn(connection);
                let row = client
                    .query_one(
                        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                        &[],
                    )
                    .await
                    .expect("query");
                assert!(row.get::<_, bool>(0), "{host}");
                drop(client);
                let _ = task.await;
            });
        }
    }

    #[test]
    fn stop_and_restart_keep_committed_data() {
        let Some(cluster) = TestCluster::start() else {
            return;
        };
        let url = cluster.create_database();
        psql_at(&url, "CREATE TABLE t (x int); INSERT INTO t VALUES (42)").expect("write");
        let pid = server_pid(&cluster);
        cluster.stop();
        assert!(!alive(pid), "the server still runs after stop()");
        assert!(
            psql_at(&url, "SELECT 1").is_err(),
            "connected to a stopped server"
        );
        cluster.stop(); // already stopped: nothing
        cluster.restart();
        assert_eq!(
            psql_at(&url, "SELECT x FROM t").expect("read after restart"),
            "42"
        );
        let pid = server_pid(&cluster);
        cluster.restart(); // already running: nothing
        assert_eq!(server_pid(&cluster), pid);
        assert_eq!(psql_at(&url, "SELECT 1").expect("still up"), "1");
    }

    #[test]
    fn drop_stops_the_server_and_removes_the_directory() {
        let Some(cluster) = TestCluster::start() else {
            return;
        };
        let dir = cluster.dir.clone();
        let pid = server_pid(&cluster);
        assert!(dir.join("data/postmaster.pid").exists());
        drop(cluster);
        assert!(!alive(pid), "the server still runs after drop");
        assert!(!dir.exists(), "{} is left over", dir.display());
    }

    /// The environment variable under which [`watchdog_child`] really starts a
    /// cluster (it is run as a separate process by [`watchdog_cleans_up_after_sigkill`]).
    const CHILD_ENV: &str = "KCI_PG_TESTING_WATCHDOG_CHILD";

    /// In a normal run: nothing. As the child of
    /// [`watchdog_cleans_up_after_sigkill`]: starts a cluster, prints its directory
    /// and server pid, and waits to be killed.
    #[test]
    fn watchdog_child() {
        if std::env::var_os(CHILD_ENV).is_none() {
            return;
        }
        let Some(cluster) = TestCluster::start() else {
            return;
        };
        let mut out = std::io::stdout();
        writeln!(out, "KCI_PG_DIR={}", cluster.dir.display()).expect("stdout");
        writeln!(out, "KCI_PG_PID={}", server_pid(&cluster)).expect("stdout");
        out.flush().expect("stdout");
        std::thread::sleep(Duration::from_secs(120));
    }

    /// A test process killed with SIGKILL (no unwinding, no Drop) still leaves no
    /// server and no directory behind: the watchdog cleans up.
    #[test]
    fn watchdog_cleans_up_after_sigkill() {
        if tools().is_none() {
            return;
        }
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "postgres::testing::tests::watchdog_child",
                "--nocapture",
            ])
            .env(CHILD_ENV, "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run the test binary");
        let mut stdout = child.stdout.take().expect("stdout");
        let mut seen = String::new();
        let mut buf = [0u8; 4096];
        let (mut dir, mut pid) = (None, None);
        let deadline = Instant::now() + Duration::from_secs(60);
        while pid.is_none() && Instant::now() < deadline {
            let n = stdout.read(&mut buf).expect("read child");
            if n == 0 {
                break;
            }
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            for line in seen.lines() {
                if let Some(d) = line.strip_prefix("KCI_PG_DIR=") {
                    dir = Some(PathBuf::from(d));
                }
                if let Some(p) = line.strip_prefix("KCI_PG_PID=") {
                    pid = p.trim().parse::<u32>().ok();
                }
            }
        }
        let (dir, pid) = match (dir, pid) {
            (Some(dir), Some(pid)) => (dir, pid),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the child did not report its cluster:\n{seen}");
            }
        };
        assert!(dir.exists() && alive(pid));
        child.kill().expect("kill the child");
        child.wait().expect("reap the child");
        let deadline = Instant::now() + Duration::from_secs(20);
        while (dir.exists() || alive(pid)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(!alive(pid), "the server {pid} survived its test process");
        assert!(!dir.exists(), "{} survived its test process", dir.display());
    }
}
