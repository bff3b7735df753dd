//! Node endpoints (API.md §6): read, query, count, create, replace, patch, batch
//! set, hierarchy submission.
//!
//! The rules are kernelci-core's ([`kernelci_core::state`], [`kernelci_core::auth`]);
//! this module orders the checks as the reference does, talks to the store, and
//! publishes node events.
//!
//! Decisions where the reference is silent or accidental:
//! - Queries (`/nodes`, `/nodes/fast`, `/count`) run on the blocking thread pool
//!   (`offload`), so a long scan on an unindexed field never stalls other
//!   requests; `limit` and `offset` are applied by the store's index walk. An
//!   answer the store's counters give ([`Store::count_nodes_from_counters`]: a
//!   count, or a page or list known to be empty) is given straight away.
//! - Writes are compare-and-swap on the node's version: a PUT or PATCH racing another
//!   write of the same node re-reads it and re-applies its rules (up to
//!   [`CAS_ATTEMPTS`] times, then 409), so no update is silently lost.
//! - A hierarchy is checked whole (kinds, data models, the existence of every child
//!   referenced by id) before anything is written; the reference wrote node by node
//!   and left a half-written tree on error.
//! - `/batch/nodeset` refuses values other than true/false (400) instead of storing
//!   a string in a boolean field.
//! - `PUT /nodes/{id}` checks the edit permission on every existing node the
//!   hierarchy names by id, not only on the root (401 `Unauthorized to complete the
//!   operation`, nothing written): the reference checks the root only, so any user
//!   could overwrite any node by naming it as a child of a root of their own.

use std::sync::Arc;
use std::time::Duration;

use hyper::StatusCode;
use serde_json::{json, Value};

use kernelci_core::auth::{may_edit_node, Operation, Principal};
use kernelci_core::events::{node_event, NodeOp};
use kernelci_core::id::{IdGenerator, ObjectId};
use kernelci_core::node::{Node, NodeBody, NodePatch};
use kernelci_core::query::{Mode, Query};
use kernelci_core::state::{self, HierarchyBody};
use kernelci_core::store::{node_not_found, FieldSet, Page, Store, Version};
use kernelci_core::time::Timestamp;
use kernelci_core::validation::value::string_list;
use kernelci_core::validation::Fields;
use kernelci_core::Error as CoreError;

use crate::error::{ApiError, ApiResult};
use crate::request::{require_body, Req};
use crate::response::{self, Resp};
use crate::state::AppState;

/// How many times a write re-reads a node that changed under it before giving up.
pub const CAS_ATTEMPTS: usize = 64;

/// 413 when `node`, as JSON, is larger than `max_node_bytes` (a node is written
/// whole on each change of it, and the reference's MongoDB refuses documents over
/// 16 MB).
fn check_size(state: &AppState, node: &Node) -> ApiResult<()> {
    /// Counts bytes instead of keeping them.
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let max = state.config().max_node_bytes;
    let mut n = Count(0);
    serde_json::to_writer(&mut n, node)
        .map_err(|e| ApiError::internal(format!("node not serialisable: {e}")))?;
    if n.0 > max {
        return Err(ApiError::detail(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Node too large: {} bytes as JSON, at most {max}", n.0),
        ));
    }
    Ok(())
}

fn body_loc() -> Vec<Value> {
    vec![Value::from("body")]
}

/// Runs a store query on the blocking pool (see the module docs), so that a long
/// scan never stalls the async worker threads (listens, other requests).
pub(crate) async fn offload<T, F>(state: &AppState, f: F) -> ApiResult<T>
where
    T: Send + 'static,
    F: FnOnce(
            Arc<dyn Store>,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = kernelci_core::Result<T>> + Send>,
        > + Send
        + 'static,
{
    let store = state.store_arc();
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || handle.block_on(f(store)))
        .await
        .map_err(|e| ApiError::internal(format!("query task failed: {e}")))?
        .map_err(ApiError::from)
}

fn parse_query(req: &Req, mode: Mode) -> ApiResult<Query> {
    Query::parse(&req.query, mode).map_err(|e| ApiError::from_query(e, req))
}

fn node_id(req: &Req) -> ApiResult<ObjectId> {
    Ok(ObjectId::parse(req.param(0)).map_err(CoreError::from)?)
}

/// The `noevent` query flag (a pydantic boolean: `true/1/yes/on/t/y` suppress the
/// event, any case); 422 `bool_parsing` for another value, checked after the token
/// and before the node is looked up, as FastAPI validates declared parameters.
fn noevent(req: &Req) -> ApiResult<bool> {
    match req.query_last("noevent") {
        None => Ok(false),
        Some(v) => super::pubsub::query_bool("noevent", v),
    }
}

/// `GET /node/{id}`: the node, or 200 `null` when it does not exist.
pub async fn get_node(state: &AppState, req: &Req) -> ApiResult<Resp> {
    let id = node_id(req)?;
    Ok(match state.store().get_node_json(id).await? {
        Some(json) => response::ok_raw(json),
        None => response::ok_typed(&()),
    })
}

/// `GET /nodes`: one page and the total. `limit` and `offset` are validated first,
/// both at once, as FastAPI does (422 listing each bad one; integers beyond 64 bits
/// saturate, as on `/users`).
pub async fn list_nodes(state: &AppState, req: &Req) -> ApiResult<Resp> {
    let (limit, offset) = crate::request::page_window(req)?;
    let filters: Vec<(String, String)> = req
        .query
        .iter()
        .filter(|(k, _)| k != "limit" && k != "offset")
        .cloned()
        .collect();
    let query = Query::parse(&filters, Mode::Page)
        .map_err(|e| ApiError::from_query(e, req))?
        .with_window(Some(limit), offset);
    let page = if state.store().count_nodes_from_counters(&query).await? == Some(0) {
        Page {
            items: Vec::new(),
            total: 0,
        }
    } else {
        offload(state, move |s| {
            Box::pin(async move { s.find_page_json(&query).await })
        })
        .await?
    };
    // The reference's keys, in its order, with the items as the store wrote them.
    let mut body = Vec::with_capacity(json_list_len(&page.items) + 64);
    body.extend_from_slice(b"{\"items\":");
    push_json_list(&mut body, &page.items);
    body.extend_from_slice(
        format!(
            ",\"total\":{},\"limit\":{limit},\"offset\":{offset}}}",
            page.total
        )
        .as_bytes(),
    );
    Ok(response::ok_raw(body))
}

/// `GET /nodes/fast`: a plain array, 504 after the configured time.
pub async fn list_nodes_fast(state: &AppState, req: &Req) -> ApiResult<Resp> {
    let query = parse_query(req, Mode::Fast)?;
    if state.store().count_nodes_from_counters(&query).await? == Some(0) {
        return Ok(response::ok_typed(&[] as &[Node]));
    }
    let limit = Duration::from_secs(state.config().fast_query_timeout_seconds);
    let work = offload(state, move |s| {
        Box::pin(async move { s.find_nodes_json(&query).await })
    });
    let nodes = tokio::time::timeout(limit, work).await.map_err(|_| {
        ApiError::detail(
            StatusCode::GATEWAY_TIMEOUT,
            "Timeout while fetching nodes: ",
        )
    })??;
    let mut body = Vec::with_capacity(json_list_len(&nodes));
    push_json_list(&mut body, &nodes);
    Ok(response::ok_raw(body))
}

/// The length of the JSON array [`push_json_list`] writes.
fn json_list_len(items: &[Vec<u8>]) -> usize {
    items.iter().map(|i| i.len() + 1).sum::<usize>() + 2
}

/// Appends the JSON array of `items`, each already JSON (a node as the store
/// wrote it).
fn push_json_list(out: &mut Vec<u8>, items: &[Vec<u8>]) {
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(item);
    }
    out.push(b']');
}

/// `GET /count`: a bare integer.
pub async fn count_nodes(state: &AppState, req: &Req) -> ApiResult<Resp> {
    let query = parse_query(req, Mode::Count)?;
    if let Some(n) = state.store().count_nodes_from_counters(&query).await? {
        return Ok(response::ok(&json!(n)));
    }
    let n = offload(state, move |s| {
        Box::pin(async move { s.count_nodes(&query).await })
    })
    .await?;
    Ok(response::ok(&json!(n)))
}

/// `POST /node`.
pub async fn create_node(state: &AppState, req: &Req) -> ApiResult<Resp> {
    let body = req.json_opt()?;
    let (principal, _) = state.require_user(req, Operation::CreateNode).await?;
    let body = require_body(body)?;
    let now = Timestamp::now();
    let body = NodeBody::from_json(&body, &body_loc(), now)?;
    let node = state::create(
        body,
        &principal.username,
        IdGenerator::global().next_id(),
        now,
    )?;
    check_size(state, &node)?;
    if let Some(parent) = node.parent {
        if state.store().get_node(parent).await?.is_none() {
            return Err(ApiError::not_found(format!(
                "Parent not found with id: {parent}"
            )));
        }
    }
    for g in &node.user_groups {
        if state.store().get_group_by_name(g).await?.is_none() {
            return Err(ApiError::bad_request(format!(
                "User group does not exist with name: {g}"
            )));
        }
    }
    // The node and its event in one write where the store allows it (PostgreSQL).
    let event = node_event(&node, NodeOp::Created, false, now);
    let logged = state.store().insert_node_with_event(&node, event).await?;
    state.announce(node.id, logged);
    Ok(response::ok_typed(&node))
}

/// Reads the node of the path, checks the caller may edit it, computes its new form
/// with `apply`, and stores it with compare-and-swap (re-reading on a race), with
/// its `updated` event in the same write when `event` (and the store allows it).
async fn edit_node(
    state: &AppState,
    id: ObjectId,
    principal: &Principal,
    event: bool,
    apply: impl Fn(&Node, Timestamp) -> kernelci_core::Result<Node>,
) -> ApiResult<(Node, Node, Timestamp)> {
    for _ in 0..CAS_ATTEMPTS {
        let stored = state
            .store()
            .get_node(id)
            .await?
            .ok_or_else(|| node_not_found(id))?;
        may_edit_node(principal, &stored.value)?;
        let now = Timestamp::now();
        let new = apply(&stored.value, now)?;
        check_size(state, &new)?;
        let written = if event {
            let ev = node_event(&new, updated_op(&stored.value), false, now);
            state
                .store()
                .replace_node_with_event(&new, stored.version, ev)
                .await
                .map(|(_, logged)| Some(logged))
        } else {
            state
                .store()
                .replace_node(&new, stored.version)
                .await
                .map(|_| None)
        };
        match written {
            Ok(logged) => {
                if let Some(logged) = logged {
                    state.announce(id, logged);
                }
                return Ok((stored.value, new, now));
            }
            Err(CoreError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::detail(
        StatusCode::CONFLICT,
        format!("Node {id} is being updated concurrently; try again"),
    ))
}

fn updated_op(before: &Node) -> NodeOp {
    NodeOp::Updated {
        previous_state: before.state,
        previous_result: before.result,
    }
}

/// PUT and PATCH: decode, authenticate, check existence and permission (before
/// body validation, API.md §6), parse the body with `parse`, apply it with `apply`
/// (compare-and-swap, see [`edit_node`]), publish the `updated` event unless
/// `noevent`, answer the stored node.
async fn update_node<T: Clone>(
    state: &AppState,
    req: &Req,
    op: Operation,
    parse: impl FnOnce(&Value) -> kernelci_core::Result<T>,
    apply: impl Fn(&Node, T, Timestamp) -> kernelci_core::Result<Node>,
) -> ApiResult<Resp> {
    let body = req.json_opt()?;
    let (principal, _) = state.require_user(req, op).await?;
    let noevent = noevent(req)?;
    let body = require_body(body)?;
    let id = node_id(req)?;
    let stored = state
        .store()
        .get_node(id)
        .await?
        .ok_or_else(|| node_not_found(id))?;
    may_edit_node(&principal, &stored.value)?;
    let parsed = parse(&body)?;
    let (_, after, _) = edit_node(state, id, &principal, !noevent, |stored, now| {
        apply(stored, parsed.clone(), now)
    })
    .await?;
    Ok(response::ok_typed(&after))
}

/// `PUT /node/{id}`: full replacement.
pub async fn replace_node(state: &AppState, req: &Req) -> ApiResult<Resp> {
    let parse = |body: &Value| NodeBody::from_json(body, &body_loc(), Timestamp::now());
    update_node(state, req, Operation::ReplaceNode, parse, state::replace).await
}

/// `PATCH /node/{id}`: partial update.
pub async fn patch_node(state: &AppState, req: &Req) -> ApiResult<Resp> {
    update_node(
        state,
        req,
        Operation::PatchNode,
        NodePatch::from_json,
        state::patch,
    )
    .await
}

/// `PUT /batch/nodeset`: sets `processed_by_kcidb_bridge` on the nodes the caller may
/// edit (others are skipped silently); a bare count. No events.
pub async fn batch_nodeset(state: &AppState, req: &Req) -> ApiResult<Resp> {
    let body = req.json_opt()?;
    let (principal, _) = state.require_user(req, Operation::BatchNodeset).await?;
    let mut f = Fields::body(require_body(body)?)?;
    let nodes = f.required("nodes", string_list).unwrap_or_default();
    let field = f.required_str("field", usize::MAX).unwrap_or_default();
    let value = f.required_str("value", usize::MAX).unwrap_or_default();
    f.finish()?;
    let mut permitted = Vec::new();
    let mut checked = None;
    let mut failure = None;
    for raw in &nodes {
        let id = match ObjectId::parse(raw) {
            Ok(id) => id,
            Err(e) => {
                failure = Some(ApiError::from(CoreError::from(e)));
                break;
            }
        };
        let Some(stored) = state.store().get_node(id).await? else {
            failure = Some(node_not_found(id).into());
            break;
        };
        if may_edit_node(&principal, &stored.value).is_err() {
            continue;
        }
        if checked.is_none() {
            state::check_batch_field(&field)?;
            checked = Some(state::batch_value(&value)?);
        }
        permitted.push(id);
    }
    // Nodes before a failing id are updated, as in the reference.
    let mut n = 0;
    if let Some(v) = checked {
        n = state
            .store()
            .set_field_many(
                &permitted,
                FieldSet::ProcessedByKcidbBridge(v),
                Timestamp::now(),
            )
            .await?;
    }
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(response::ok(&json!(n)))
}

/// `PUT /nodes/{id}`: a hierarchy under an existing root; one `updated` event for the
/// root with `is_hierarchy: true`; the written nodes, root first.
pub async fn submit_hierarchy(state: &AppState, req: &Req) -> ApiResult<Resp> {
    let body = req.json_opt()?;
    let (principal, _) = state.require_user(req, Operation::SubmitHierarchy).await?;
    let body = require_body(body)?;
    let now = Timestamp::now();
    let tree = HierarchyBody::from_json(&body, now)?;
    let id = node_id(req)?;
    let root = state
        .store()
        .get_node(id)
        .await?
        .ok_or_else(|| node_not_found(id))?;
    may_edit_node(&principal, &root.value)?;
    let writes = state::plan_hierarchy(
        &root.value,
        tree,
        &principal.username,
        IdGenerator::global(),
        now,
    )?;
    for w in &writes {
        check_size(state, &w.node)?;
    }
    // Every node referenced by id must exist before anything is written.
    let mut versions: Vec<Option<Version>> = Vec::with_capacity(writes.len());
    for w in &writes {
        if w.replace {
            let v = if w.node.id == root.value.id {
                root.version
            } else {
                let child = state.store().get_node(w.node.id).await?.ok_or_else(|| {
                    ApiError::bad_request(format!("No object found with id: {}", w.node.id))
                })?;
                // Not checked by the reference (AUTH.md §5): there, editing one's own
                // root let a hierarchy overwrite anybody's node by naming its id.
                may_edit_node(&principal, &child.value)?;
                child.version
            };
            versions.push(Some(v));
        } else {
            versions.push(None);
        }
    }
    let Some(first) = writes.first() else {
        return Ok(response::ok_typed(&[] as &[Node]));
    };
    // Every node and the root's event in one write where the store allows it (sled:
    // one batch, one flush for the whole submission; all or nothing).
    let nodes: Vec<(&Node, Option<Version>)> = writes
        .iter()
        .zip(versions)
        .map(|(w, v)| (&w.node, v))
        .collect();
    let event = node_event(&first.node, updated_op(&root.value), true, now);
    let (_, logged) = state
        .store()
        .write_nodes_with_event(&nodes, event)
        .await
        .map_err(|e| match e {
            CoreError::Conflict(why) => ApiError::detail(
                StatusCode::CONFLICT,
                format!("{why}: the submission was not written"),
            ),
            other => other.into(),
        })?;
    state.announce(first.node.id, logged);
    let written: Vec<&Node> = writes.iter().map(|w| &w.node).collect();
    Ok(response::ok_typed(&written))
}
