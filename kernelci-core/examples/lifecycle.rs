//! Embedding the state machine: a checkout → kbuild → test tree driven through its
//! life by client updates and by the clock, then queried.
//!
//! ```sh
//! cargo run -p kernelci-core --example lifecycle
//! ```
//!
//! This is what a pipeline author's simulator, or a server's background task, does:
//! every change goes through `kernelci_core::state`, and the query language decides
//! what a `/nodes` request would return.

use kernelci_core::id::ObjectId;
use kernelci_core::node::{Node, NodeBody, NodePatch, State};
use kernelci_core::query::{matches, sort_nodes, Mode, Query};
use kernelci_core::state::{self, ChildrenSummary};
use kernelci_core::time::parse_query_datetime;
use kernelci_core::Result;
use serde_json::json;

/// Descendants of `id` (children, grandchildren...) and how many are done.
fn summary(nodes: &[Node], id: ObjectId) -> ChildrenSummary {
    let mut s = ChildrenSummary::default();
    for child in nodes.iter().filter(|n| n.parent == Some(id)) {
        let below = summary(nodes, child.id);
        s.total += 1 + below.total;
        s.done += u64::from(child.state == State::Done) + below.done;
    }
    s
}

fn main() -> Result<()> {
    let t0 = parse_query_datetime("2024-05-01T08:00:00")?;
    let body = |v: serde_json::Value| NodeBody::from_json(&v, &["body".into()], t0);

    // The pipeline creates a checkout, a build under it, and a test under the build.
    let checkout = state::create(
        body(
            json!({"kind": "checkout", "name": "checkout", "path": ["checkout"],
                    "holdoff": "2024-05-01T09:00:00"}),
        )?,
        "pipeline",
        ObjectId::new(),
        t0,
    )?;
    let kbuild = state::create(
        body(
            json!({"kind": "kbuild", "name": "kbuild-gcc-12-x86", "parent": checkout.id.to_string(),
                    "path": ["checkout", "kbuild-gcc-12-x86"], "data": {"arch": "x86_64"}}),
        )?,
        "pipeline",
        ObjectId::new(),
        t0,
    )?;
    let test = state::create(
        body(
            json!({"kind": "test", "name": "baseline", "parent": kbuild.id.to_string(),
                    "path": ["checkout", "kbuild-gcc-12-x86", "baseline"],
                    "timeout": "2024-05-01T10:00:00"}),
        )?,
        "lab-runner",
        ObjectId::new(),
        t0,
    )?;
    let mut nodes = vec![checkout, kbuild, test];

    // The checkout becomes available; the build finishes.
    let at = |s: &str| parse_query_datetime(s);
    nodes[0] = state::patch(
        &nodes[0],
        NodePatch::from_json(&json!({"state": "available"}))?,
        at("2024-05-01T08:05:00")?,
    )?;
    nodes[1] = state::patch(
        &nodes[1],
        NodePatch::from_json(&json!({"state": "done", "result": "pass"}))?,
        at("2024-05-01T08:30:00")?,
    )?;

    // The clock ticks every half hour: holdoff, closing and timeouts happen by themselves.
    for now in [
        "2024-05-01T09:30:00",
        "2024-05-01T10:30:00",
        "2024-05-01T11:00:00",
    ] {
        let now = at(now)?;
        for i in 0..nodes.len() {
            let children = summary(&nodes, nodes[i].id);
            if let Some(t) = state::due_transition(&nodes[i], children, now) {
                println!(
                    "{now}: {} {} -> {} ({:?})",
                    nodes[i].name, nodes[i].state, t.to, t.reason
                );
                nodes[i] = state::apply_timed(&nodes[i], &t, now);
            }
        }
    }

    // What would `/nodes?state=done&sort=-updated` answer?
    let q = Query::parse_str("state=done&sort=-updated", Mode::Page)?;
    let mut done: Vec<Node> = nodes.iter().filter(|n| matches(n, &q)).cloned().collect();
    sort_nodes(&mut done, q.sort.as_ref());
    for n in &done {
        println!(
            "done: {:<20} result={:?} updated={}",
            n.name,
            n.result.map(|r| r.as_str()),
            n.updated
        );
    }
    Ok(())
}
