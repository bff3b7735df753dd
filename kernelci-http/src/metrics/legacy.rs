//! The reference's counters, exposed at the top of `/metrics` exactly as the
//! reference writes them (API.md §3): `<name>{instance="api"} <integer>`, no
//! `# TYPE` lines.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Named counters. `http_requests_total` always exists; others appear once set.
#[derive(Debug, Default)]
pub struct ReferenceCounters {
    requests: AtomicU64,
    others: Mutex<BTreeMap<&'static str, u64>>,
}

impl ReferenceCounters {
    /// Counts one request (the handlers API.md §1.8 lists).
    pub fn count_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n` to counter `name`.
    pub fn add(&self, name: &'static str, n: u64) {
        if let Ok(mut m) = self.others.lock() {
            *m.entry(name).or_default() += n;
        }
    }

    /// The value of `http_requests_total`.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// The value of a named counter (0 when never set).
    pub fn get(&self, name: &str) -> u64 {
        self.others
            .lock()
            .map(|m| m.get(name).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = format!(
            "http_requests_total{{instance=\"api\"}} {}\n",
            self.requests()
        );
        if let Ok(m) = self.others.lock() {
            for (name, v) in m.iter() {
                out.push_str(&format!("{name}{{instance=\"api\"}} {v}\n"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters() {
        let m = ReferenceCounters::default();
        m.count_request();
        m.add("nodes_purged", 3);
        assert_eq!(
            m.render(),
            "http_requests_total{instance=\"api\"} 1\nnodes_purged{instance=\"api\"} 3\n"
        );
    }
}
