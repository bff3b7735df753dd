//! The release server as the HTTP benchmarks run it: a child process serving a
//! data directory on a free loopback port, in `--dev` mode (its administrator
//! password printed), killed when dropped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A running release server and what it printed.
#[derive(Debug)]
pub struct Server {
    /// The process.
    pub child: Child,
    /// `host:port` it listens on.
    pub addr: String,
    /// The `admin` password `--dev` generated (or kept from the data directory).
    pub password: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGTERM (a graceful stop, as in production), then wait for it.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// The server binary: `$KCI_BIN`, else `target/release/kernelci-server`.
pub fn server_bin() -> PathBuf {
    std::env::var_os("KCI_BIN").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/kernelci-server"),
        PathBuf::from,
    )
}

/// Starts the release server on `data` and waits until it listens.
///
/// # Panics
///
/// When the binary is missing (`cargo build --release -p kernelci-server`) or
/// its output cannot be read: a benchmark cannot go on without it.
#[allow(clippy::expect_used, clippy::unwrap_used)] // benchmark harness
pub fn start_server(data: &Path) -> Server {
    let mut child = Command::new(server_bin())
        .args(["serve", "--dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the release server (cargo build --release -p kernelci-server)");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let (mut addr, mut password) = (String::new(), String::new());
    let mut line = String::new();
    while out.read_line(&mut line).unwrap() > 0 {
        if let Some(a) = line
            .trim()
            .strip_prefix("kernelci-server listening on http://")
        {
            addr = a.to_owned();
        }
        if let Some(p) = line.split("password=").nth(1) {
            password = p.split_whitespace().next().unwrap().to_owned();
            break;
        }
        line.clear();
    }
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    Server {
        child,
        addr,
        password,
    }
}
