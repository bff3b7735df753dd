//! Online backups: `kernelci-server backup`, `restore` and `verify`.
//!
//! `backup --url URL --out FILE` copies a running server's store, page by page,
//! through its admin endpoint `GET /backup/{section}` (whatever the backend, and
//! without stopping it: sled allows one process per data directory, so the server
//! itself reads its store). The file is [`mod@format`]: versioned JSON lines with a
//! checksum. `restore FILE` writes a backup into an empty store (the one the usual
//! settings select) after checking the whole file; `verify FILE` only checks it.
//!
//! What a backup holds: every record acknowledged before it started. Sections are
//! read one after the other while the server goes on, so a record written during
//! the backup may or may not be in it; the order keeps what the server relies on
//! consistent: durable subscribers are read before the events (a restored
//! subscriber's position is never past the restored log), the event sequence mark
//! and counters last (never below a restored event), groups before users.
//!
//! The backup client speaks plain HTTP: run it on the server's machine or its
//! network (`http://127.0.0.1:8001`), or through a tunnel, rather than over the
//! internet.

pub mod format;

use std::path::Path;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use serde_json::Value;

use kernelci_core::store::{Record, Section, Store};

/// The order sections are read in (see the module docs).
pub const ORDER: [Section; 10] = [
    Section::Subscribers,
    Section::Groups,
    Section::Users,
    Section::Nodes,
    Section::Events,
    Section::Tokens,
    Section::Kv,
    Section::Telemetry,
    Section::Queues,
    Section::Counters,
];

/// Records per page asked of the server.
const PAGE: usize = 2000;

/// One HTTP/1.1 connection to the server.
struct Client {
    sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    host: String,
    prefix: String,
    token: String,
}

impl Client {
    async fn connect(url: &str, token: &str) -> Result<Self, String> {
        let uri: hyper::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!(
                "{url}: the backup client speaks plain http (run it next to the server, \
                 e.g. http://127.0.0.1:8001)"
            ));
        }
        let host = uri.host().ok_or(format!("{url}: no host"))?;
        let port = uri.port_u16().unwrap_or(80);
        let stream = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|e| format!("cannot connect to {url}: {e}"))?;
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| format!("{url}: {e}"))?;
        tokio::spawn(conn);
        Ok(Client {
            sender,
            host: format!("{host}:{port}"),
            prefix: uri.path().trim_end_matches('/').to_owned(),
            token: token.to_owned(),
        })
    }

    async fn page(
        &mut self,
        section: Section,
        after: Option<&str>,
    ) -> Result<(Vec<Record>, Option<String>), String> {
        let mut path = format!(
            "{}/latest/backup/{}?limit={PAGE}",
            self.prefix,
            section.name()
        );
        if let Some(a) = after {
            path.push_str("&after=");
            path.push_str(a);
        }
        let req = Request::get(&path)
            .header("host", &self.host)
            .header("authorization", format!("Bearer {}", self.token))
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        self.sender
            .ready()
            .await
            .map_err(|e| format!("the server closed the connection: {e}"))?;
        let resp = self
            .sender
            .send_request(req)
            .await
            .map_err(|e| format!("{path}: {e}"))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{path}: {e}"))?
            .to_bytes();
        if !status.is_success() {
            return Err(format!(
                "{path}: {status} {}",
                String::from_utf8_lossy(&body).trim()
            ));
        }
        let mut v: Value = serde_json::from_slice(&body).map_err(|e| format!("{path}: {e}"))?;
        let next = v["next"].as_str().map(str::to_owned);
        let records = serde_json::from_value(v["records"].take())
            .map_err(|e| format!("{path}: a record this version does not know: {e}"))?;
        Ok((records, next))
    }
}

/// `backup`: every section of the server at `url` into `out`. Returns the counts.
pub async fn backup(url: &str, token: &str, out: &Path) -> Result<format::End, String> {
    let mut client = Client::connect(url, token).await?;
    let mut w = format::Writer::create(out, url)?;
    for section in ORDER {
        let mut after: Option<String> = None;
        loop {
            let (records, next) = client.page(section, after.as_deref()).await?;
            for r in &records {
                w.record(r)?;
            }
            match next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
    }
    w.finish()
}

/// `verify`: the whole file checked; its header and counts.
pub fn verify(path: &Path) -> Result<(format::Header, format::End), String> {
    format::read(path, |_| Ok(()))
}

/// `restore`: checks the whole file, refuses a store that holds nodes, events or
/// users, then writes every record (`batch` per import call). Returns the counts.
pub async fn restore(path: &Path, store: &dyn Store, batch: usize) -> Result<format::End, String> {
    verify(path)?;
    for section in [Section::Nodes, Section::Events, Section::Users] {
        let (records, _) = store
            .export_records(section, None, 1)
            .await
            .map_err(|e| e.to_string())?;
        if !records.is_empty() {
            return Err(format!(
                "the target store already holds {section}: restore into an empty store"
            ));
        }
    }
    // The file was checked: read it again, writing as it goes (bounded memory).
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Record>>(2);
    let file = path.to_path_buf();
    let batch = batch.max(1);
    let reader = std::thread::spawn(move || {
        let mut pending = Vec::with_capacity(batch);
        let result = format::read(&file, |r| {
            pending.push(r);
            if pending.len() >= batch {
                let full = std::mem::replace(&mut pending, Vec::with_capacity(batch));
                tx.blocking_send(full)
                    .map_err(|_| "the writer stopped".to_string())?;
            }
            Ok(())
        });
        if !pending.is_empty() {
            let _ = tx.blocking_send(pending);
        }
        result
    });
    let mut written = Ok(());
    while let Some(records) = rx.recv().await {
        if let Err(e) = store.import_records(&records).await {
            written = Err(format!("writing the store: {e}"));
            break;
        }
    }
    drop(rx);
    let read = reader
        .join()
        .map_err(|_| "the reading thread failed".to_string())?;
    written?;
    let (_, end) = read?;
    store.flush().await.map_err(|e| e.to_string())?;
    Ok(end)
}
