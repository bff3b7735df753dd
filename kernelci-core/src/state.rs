//! The node state machine and the rules of every node write (MODELS.md §4–§6).
//!
//! Each write operation is a pure function from (stored node, checked body, time) to
//! the node to store, so every backend and endpoint shares one implementation:
//!
//! | write | function |
//! |---|---|
//! | `POST /node` | [`create`] |
//! | `PUT /node/{id}` | [`replace`] |
//! | `PATCH /node/{id}` | [`patch`] |
//! | `PUT /batch/nodeset` | [`check_batch_field`], [`batch_value`], [`set_processed`] |
//! | `PUT /nodes/{id}` | [`plan_hierarchy`] |
//! | time (timeouts, holdoff) | [`due_transition`] + [`apply_timed`] |
//!
//! Every function returns nodes in their stored form: datetimes truncated to the
//! millisecond ([`Node::truncate_times`]).
//!
//! Checks that need stored data (parent exists, user groups exist, permission) are
//! the caller's; each function's doc says which.
//!
//! **Never change a child because its parent changed state.** Upstream's timeout
//! service once closed whole subtrees when a parent timed out, killing children that
//! were still legitimately running; here every transition concerns exactly one node.

use serde_json::{Map, Value};

use crate::error::{Error, Result, ValidationErrors};
use crate::id::{IdGenerator, ObjectId};
use crate::node::body::NodeBody;
use crate::node::{kind, Node, NodePatch, NodeResult, State};
use crate::time::Timestamp;
use crate::validation::FieldError;

/// Whether the state machine allows `from` → `to` (MODELS.md §5): states only move
/// forward (running → available → closing → done), any forward jump is allowed, and
/// staying in the same state is always allowed.
pub fn transition_allowed(from: State, to: State) -> bool {
    to >= from
}

/// [`transition_allowed`] as a result. The message names the new state by its wire
/// name (`Transition not allowed with state: available`) for PUT and PATCH alike;
/// the reference's PATCH printed the Python enum (`StateValues.AVAILABLE`), which
/// clients only display.
pub fn check_transition(from: State, to: State) -> Result<()> {
    if transition_allowed(from, to) {
        Ok(())
    } else {
        Err(Error::InvalidTransition { from, to })
    }
}

/// `POST /node`: the node to insert.
///
/// Applies, in order: the kernel version coercion, the kind check (400), the refusal of
/// a body `id` (400 `Object cannot be created with id: <id>`), `owner` := `caller`,
/// `updated` := `now`, `id` := `id`. Everything else comes from the body.
///
/// The caller must still check that `parent` exists (404 `Parent not found with id`)
/// and that every `user_groups` name exists (400), then insert the node and publish a
/// `created` event. (The reference checks the parent and groups before refusing a
/// body `id`; a body that is wrong in both ways gets the other error first here.)
pub fn create(body: NodeBody, caller: &str, id: ObjectId, now: Timestamp) -> Result<Node> {
    let mut node = body.node;
    coerce_and_check(&mut node)?;
    if let Some(given) = body.id {
        return Err(Error::Invalid(format!(
            "Object cannot be created with id: {given}"
        )));
    }
    node.id = id;
    node.owner = Some(caller.to_owned());
    node.updated = now;
    node.truncate_times();
    Ok(node)
}

fn coerce_and_check(node: &mut Node) -> Result<kind::Kind> {
    if let Some(data) = node.data.as_mut() {
        kind::coerce_kernel_version(data)?;
    }
    kind::check(node)
}

/// `PUT /node/{id}`: full replacement of `stored` by `body`.
///
/// Keeps `owner`, `submitter` and `user_groups` from `stored`; every other field comes
/// from the body with its defaults (so an omitted `created` is reset to the body's
/// `now`). Checks, in order: the kind (400), the state transition against the stored
/// state ([`Error::InvalidTransition`]), and that `parent` is not the node itself
/// (400). `processed_by_kcidb_bridge` ends `true` only when the body says `true`, the
/// stored value is `false` and the state does not change. `updated` := `now`.
///
/// The caller checks existence (404) and permission ([`crate::auth::may_edit_node`])
/// before calling.
pub fn replace(stored: &Node, body: NodeBody, now: Timestamp) -> Result<Node> {
    let mut node = body.node;
    coerce_and_check(&mut node)?;
    check_transition(stored.state, node.state)?;
    if node.parent == Some(stored.id) {
        return Err(Error::Invalid(
            "Parent cannot be the same as the object".into(),
        ));
    }
    node.processed_by_kcidb_bridge = node.processed_by_kcidb_bridge
        && !stored.processed_by_kcidb_bridge
        && node.state == stored.state;
    node.id = stored.id;
    node.owner.clone_from(&stored.owner);
    node.submitter.clone_from(&stored.submitter);
    node.user_groups.clone_from(&stored.user_groups);
    node.updated = now;
    node.truncate_times();
    Ok(node)
}

/// `PATCH /node/{id}`: the fields present in `patch` replace the stored ones wholesale
/// (`data` is replaced, not merged).
///
/// A non-null `state` is transition-checked against the stored state. The merged node
/// passes the kind check (400). `processed_by_kcidb_bridge` becomes the patch's value,
/// `false` when absent, and `false` whenever the state changes. `updated` := `now`.
/// No kernel version coercion (as in the reference).
pub fn patch(stored: &Node, patch: NodePatch, now: Timestamp) -> Result<Node> {
    let mut node = stored.clone();
    if let Some(Some(to)) = patch.state {
        check_transition(stored.state, to)?;
        node.state = to;
    }
    if let Some(v) = patch.result {
        node.result = v;
    }
    if let Some(v) = patch.artifacts {
        node.artifacts = v;
    }
    if let Some(v) = patch.data {
        node.data = v;
    }
    if let Some(v) = patch.debug {
        node.debug = v;
    }
    if let Some(v) = patch.jobfilter {
        node.jobfilter = v;
    }
    if let Some(v) = patch.platform_filter {
        node.platform_filter = v;
    }
    if let Some(v) = patch.timeout {
        node.timeout = v;
    }
    if let Some(v) = patch.holdoff {
        node.holdoff = v;
    }
    node.processed_by_kcidb_bridge =
        patch.processed_by_kcidb_bridge.unwrap_or(false) && node.state == stored.state;
    kind::check(&node)?;
    node.updated = now;
    node.truncate_times();
    Ok(node)
}

/// The only field `PUT /batch/nodeset` may set.
pub const BATCH_FIELD: &str = "processed_by_kcidb_bridge";

/// Checks the `field` of a `PUT /batch/nodeset` body: only
/// `processed_by_kcidb_bridge` is supported (400 `Field not supported`).
///
/// Order, as in the reference: the ids are processed in turn (malformed → 400,
/// missing → 404, stopping there; no permission → skipped); this check and
/// [`batch_value`] run when the first permitted node is reached, so a batch in which
/// no node is permitted answers 0 whatever its field.
pub fn check_batch_field(field: &str) -> Result<()> {
    if field == BATCH_FIELD {
        Ok(())
    } else {
        Err(Error::Invalid("Field not supported".into()))
    }
}

/// The value of a `PUT /batch/nodeset` body: `true`/`True` or `false`/`False`.
///
/// The reference stores any other string verbatim into the boolean field, which
/// breaks every later query on it; we refuse it with a clear error instead.
pub fn batch_value(value: &str) -> Result<bool> {
    match value {
        "true" | "True" => Ok(true),
        "false" | "False" => Ok(false),
        other => Err(Error::Invalid(format!(
            "Value not supported for {BATCH_FIELD}: '{other}' (use true or false)"
        ))),
    }
}

/// One node of the batch: `processed_by_kcidb_bridge` := `value`, `updated` := `now`.
/// No event, no state change.
pub fn set_processed(node: &mut Node, value: bool, now: Timestamp) {
    node.processed_by_kcidb_bridge = value;
    node.updated = now.truncate_to_millis();
}

/// A checked `PUT /nodes/{id}` body: a node and its children, recursively.
#[derive(Debug, Clone, PartialEq)]
pub struct HierarchyBody {
    /// The node at this level.
    pub node: NodeBody,
    /// Its children.
    pub child_nodes: Vec<HierarchyBody>,
}

/// Limits on hierarchy submissions, so a hostile body cannot exhaust the stack or
/// memory.
pub const HIERARCHY_MAX_DEPTH: usize = 64;
/// The largest number of nodes one hierarchy submission may hold.
pub const HIERARCHY_MAX_NODES: usize = 100_000;

impl HierarchyBody {
    /// Checks a hierarchy body (`{"node": {...}, "child_nodes": [...]}`) with the base
    /// layer on every node. A missing or null `child_nodes` means no children (the
    /// reference's model requires the key; leaves are easier to write without it).
    /// Errors carry their full location
    /// (`["body", "child_nodes", 0, "node", "name"]`).
    pub fn from_json(body: &Value, now: Timestamp) -> Result<Self> {
        let mut count = 0;
        Self::parse(body, &[Value::from("body")], now, 0, &mut count)
    }

    fn parse(
        v: &Value,
        loc: &[Value],
        now: Timestamp,
        depth: usize,
        count: &mut usize,
    ) -> Result<Self> {
        let mut errs = ValidationErrors::default();
        if depth >= HIERARCHY_MAX_DEPTH {
            return Err(Error::Invalid(format!(
                "Hierarchy too deep: at most {HIERARCHY_MAX_DEPTH} levels"
            )));
        }
        *count += 1;
        if *count > HIERARCHY_MAX_NODES {
            return Err(Error::Invalid(format!(
                "Hierarchy too large: at most {HIERARCHY_MAX_NODES} nodes"
            )));
        }
        let Value::Object(obj) = v else {
            errs.add(FieldError::model_attributes_type(loc.to_vec(), v.clone()));
            return Err(Error::Validation(errs));
        };
        let node_loc = at(loc, "node");
        let Some(node_json) = obj.get("node") else {
            errs.add(FieldError::missing(node_loc, v.clone()));
            return Err(Error::Validation(errs));
        };
        let node = NodeBody::from_json(node_json, &node_loc, now)?;
        let child_loc = at(loc, "child_nodes");
        let child_nodes = match obj.get("child_nodes") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, c)| Self::parse(c, &at(&child_loc, i), now, depth + 1, count))
                .collect::<Result<_>>()?,
            Some(other) => {
                errs.add(FieldError::list_type(child_loc, other.clone()));
                return Err(Error::Validation(errs));
            }
        };
        Ok(Self { node, child_nodes })
    }
}

fn at(loc: &[Value], key: impl Into<Value>) -> Vec<Value> {
    let mut l = loc.to_vec();
    l.push(key.into());
    l
}

/// One write of a hierarchy submission.
#[derive(Debug, Clone, PartialEq)]
pub struct HierarchyWrite {
    /// The node to store (kind-normalised `data`).
    pub node: Node,
    /// `true`: replace the stored node with this id (it must exist, else 400
    /// `No object found with id: <id>`); `false`: insert a new node.
    pub replace: bool,
}

/// `PUT /nodes/{id}`: the writes of a hierarchy submission, root first, pre-order.
///
/// The root takes the path's id and replaces `root_stored`. For every node: an empty
/// `owner` becomes `caller`; `submitter` and `treeid` become the stored root's;
/// children get `parent` := their tree parent; `updated` := `now` for replaced nodes;
/// the kind check applies (400) and `data` is stored kind-normalised
/// ([`kind::normalise`]). States are **not** transition-checked and child ids are not
/// permission-checked (as in the reference).
///
/// Unlike the reference, which writes node by node and leaves earlier nodes written
/// when a later one fails, the whole tree is checked before anything is written.
/// The caller checks the root's existence and permission, performs the writes, and
/// publishes one `updated` event for the root with `is_hierarchy: true`.
pub fn plan_hierarchy(
    root_stored: &Node,
    body: HierarchyBody,
    caller: &str,
    ids: &IdGenerator,
    now: Timestamp,
) -> Result<Vec<HierarchyWrite>> {
    let mut out = Vec::new();
    plan_level(root_stored, body, None, caller, ids, now, &mut out)?;
    Ok(out)
}

fn plan_level(
    root: &Node,
    body: HierarchyBody,
    parent: Option<ObjectId>,
    caller: &str,
    ids: &IdGenerator,
    now: Timestamp,
    out: &mut Vec<HierarchyWrite>,
) -> Result<()> {
    let is_root = parent.is_none();
    let mut node = body.node.node;
    let kind = kind::check(&node)?;
    node.data = kind::normalise(kind, node.data.as_ref());
    let (id, replace) = if is_root {
        (root.id, true)
    } else {
        match body.node.id {
            Some(id) => (id, true),
            None => (ids.next_id(), false),
        }
    };
    node.id = id;
    if let Some(p) = parent {
        node.parent = Some(p);
    }
    if node.owner.as_deref().unwrap_or("").is_empty() {
        node.owner = Some(caller.to_owned());
    }
    node.submitter.clone_from(&root.submitter);
    node.treeid.clone_from(&root.treeid);
    if replace {
        node.updated = now;
    }
    node.truncate_times();
    out.push(HierarchyWrite { node, replace });
    for child in body.child_nodes {
        plan_level(root, child, Some(id), caller, ids, now, out)?;
    }
    Ok(())
}

/// The state of a node's descendants (children, grandchildren...), as the
/// time-driven rules need it. Descendants, not only direct children, as
/// kernelci-pipeline's timeout service checks them: a checkout must not close while a
/// test two levels below it still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChildrenSummary {
    /// Number of descendants.
    pub total: u64,
    /// Number of descendants in state `done`.
    pub done: u64,
}

impl ChildrenSummary {
    /// True when every descendant is done (vacuously true without any).
    pub fn all_done(&self) -> bool {
        self.done >= self.total
    }
}

/// Why a time-driven transition happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimedReason {
    /// `timeout` has passed: the node is closed as done.
    Timeout,
    /// An `available` node's `holdoff` has passed.
    Holdoff,
    /// A `closing` node's descendants are all done.
    ChildrenDone,
}

/// A transition the clock makes due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedTransition {
    /// Why.
    pub reason: TimedReason,
    /// The new state.
    pub to: State,
    /// Set `result` to `incomplete` and `data.error_code` to `node_timeout` (a
    /// timed-out node that had no result yet).
    pub mark_incomplete: bool,
}

/// The transition the clock makes due for `node` at `now`, if any (MODELS.md §5):
///
/// 1. not `done` and `timeout` < `now` → `done` (with `result` `incomplete` and
///    `data.error_code` `node_timeout` when it has no result);
/// 2. `available` and `holdoff` < `now` → `done` when all descendants are done,
///    else `closing`;
/// 3. `closing` and all descendants done → `done`.
///
/// The rules are checked in that order and the first that applies wins. Applying the
/// result with [`apply_timed`] leaves a node for which this returns `None` (at the
/// same `now` and descendants), so a background task may run it any number of times.
pub fn due_transition(
    node: &Node,
    children: ChildrenSummary,
    now: Timestamp,
) -> Option<TimedTransition> {
    if node.state != State::Done && node.timeout < now {
        return Some(TimedTransition {
            reason: TimedReason::Timeout,
            to: State::Done,
            mark_incomplete: node.result.is_none(),
        });
    }
    match node.state {
        State::Available if node.holdoff.is_some_and(|h| h < now) => Some(TimedTransition {
            reason: TimedReason::Holdoff,
            to: if children.all_done() {
                State::Done
            } else {
                State::Closing
            },
            mark_incomplete: false,
        }),
        State::Closing if children.all_done() => Some(TimedTransition {
            reason: TimedReason::ChildrenDone,
            to: State::Done,
            mark_incomplete: false,
        }),
        _ => None,
    }
}

/// `node` after the timed transition `t` at `now`: the new state, the timeout marks,
/// `processed_by_kcidb_bridge` := false (the state changed, as on a PUT), `updated` :=
/// `now`. Only this node changes, never its children.
pub fn apply_timed(node: &Node, t: &TimedTransition, now: Timestamp) -> Node {
    let mut n = node.clone();
    n.state = t.to;
    if t.mark_incomplete {
        n.result = Some(NodeResult::Incomplete);
        n.data
            .get_or_insert_with(Map::new)
            .insert("error_code".into(), Value::from("node_timeout"));
    }
    n.processed_by_kcidb_bridge = false;
    n.updated = now;
    n.truncate_times();
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t(s: &str) -> Timestamp {
        crate::time::parse_query_datetime(s).unwrap()
    }

    fn body(v: Value) -> NodeBody {
        NodeBody::from_json(&v, &["body".into()], t("2024-01-01T00:00:00")).unwrap()
    }

    fn stored(state: State) -> Node {
        let mut n = Node::new("kbuild", "k", t("2023-06-01"));
        n.state = state;
        n.owner = Some("alice".into());
        n.submitter = Some("svc".into());
        n.user_groups = vec!["g".into()];
        n
    }

    #[test]
    fn every_transition_of_the_table() {
        use State::*;
        let allowed = [
            (Running, Running),
            (Running, Available),
            (Running, Closing),
            (Running, Done),
            (Available, Available),
            (Available, Closing),
            (Available, Done),
            (Closing, Closing),
            (Closing, Done),
            (Done, Done),
        ];
        for from in State::ALL {
            for to in State::ALL {
                let want = allowed.contains(&(from, to));
                assert_eq!(transition_allowed(from, to), want, "{from} -> {to}");
                let r = check_transition(from, to);
                if want {
                    assert_eq!(r, Ok(()));
                } else {
                    assert_eq!(
                        r.unwrap_err().to_string(),
                        format!("Transition not allowed with state: {to}")
                    );
                }
            }
        }
    }

    #[test]
    fn create_forces_owner_and_refuses_an_id() {
        let n = create(
            body(json!({"kind": "checkout", "name": "c", "path": ["c"], "owner": "mallory"})),
            "alice",
            ObjectId::new(),
            t("2024-01-01T00:00:01"),
        )
        .unwrap();
        assert_eq!(n.owner.as_deref(), Some("alice"));
        assert_eq!(n.updated, t("2024-01-01T00:00:01"));
        let err = create(body(json!({"kind": "checkout", "name": "c", "path": ["c"], "id": "65a1355ee98651d0fe81e412"})), "alice", ObjectId::new(), t("2024-01-01")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Object cannot be created with id: 65a1355ee98651d0fe81e412"
        );
        let err = create(
            body(json!({"name": "c", "path": ["c"]})),
            "alice",
            ObjectId::new(),
            t("2024-01-01"),
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "Unsupported node kind: node");
    }

    #[test]
    fn create_coerces_kernel_versions() {
        let n = create(body(json!({"kind": "checkout", "name": "c", "path": ["c"], "data": {"kernel_revision": {
            "tree": "t", "url": "https://x/", "branch": "b", "commit": "c", "version": {"version": "6", "patchlevel": "1"}}}})), "a", ObjectId::new(), t("2024-01-01")).unwrap();
        assert_eq!(
            n.data.unwrap()["kernel_revision"]["version"],
            json!({"version": 6, "patchlevel": 1})
        );
    }

    #[test]
    fn put_keeps_owner_submitter_groups_and_checks_the_transition() {
        let s = stored(State::Available);
        let n = replace(
            &s,
            body(
                json!({"kind": "kbuild", "name": "k2", "path": ["k2"], "state": "done",
            "owner": "x", "submitter": "y", "user_groups": ["z"], "treeid": "t"}),
            ),
            t("2024-02-02"),
        )
        .unwrap();
        assert_eq!(
            (n.owner.as_deref(), n.submitter.as_deref()),
            (Some("alice"), Some("svc"))
        );
        assert_eq!(n.user_groups, vec!["g".to_string()]);
        assert_eq!(n.treeid.as_deref(), Some("t"));
        assert_eq!(n.id, s.id);
        assert_eq!(
            n.created,
            t("2024-01-01"),
            "omitted created is reset to the body's now"
        );
        assert_eq!(n.updated, t("2024-02-02"));
        let err = replace(
            &s,
            body(json!({"kind": "kbuild", "name": "k", "path": ["k"], "state": "running"})),
            t("2024-02-02"),
        )
        .unwrap_err();
        assert_eq!(
            err,
            Error::InvalidTransition {
                from: State::Available,
                to: State::Running
            }
        );
        let mut b =
            body(json!({"kind": "kbuild", "name": "k", "path": ["k"], "state": "available"}));
        b.node.parent = Some(s.id);
        assert_eq!(
            replace(&s, b, t("2024-02-02")).unwrap_err().to_string(),
            "Parent cannot be the same as the object"
        );
    }

    #[test]
    fn put_kcidb_flag_rule() {
        // (stored flag, body flag, state changes) -> final
        let cases = [
            (false, true, false, true),
            (false, true, true, false),
            (true, true, false, false),
            (false, false, false, false),
            (true, false, false, false),
        ];
        for (stored_flag, body_flag, change, want) in cases {
            let mut s = stored(State::Running);
            s.processed_by_kcidb_bridge = stored_flag;
            let state = if change { "done" } else { "running" };
            let n = replace(
                &s,
                body(
                    json!({"kind": "kbuild", "name": "k", "path": ["k"], "state": state,
                "processed_by_kcidb_bridge": body_flag}),
                ),
                t("2024-02-02"),
            )
            .unwrap();
            assert_eq!(
                n.processed_by_kcidb_bridge, want,
                "{stored_flag} {body_flag} {change}"
            );
        }
    }

    #[test]
    fn patch_rules() {
        let mut s = stored(State::Running);
        s.processed_by_kcidb_bridge = true;
        s.data = json!({"a": 1, "b": 2}).as_object().cloned();
        let p = NodePatch::from_json(&json!({"data": {"c": 3}, "result": "pass"})).unwrap();
        let n = patch(&s, p, t("2024-02-02")).unwrap();
        assert_eq!(
            Value::Object(n.data.clone().unwrap()),
            json!({"c": 3}),
            "data replaced, not merged"
        );
        assert_eq!(n.result, Some(NodeResult::Pass));
        assert!(!n.processed_by_kcidb_bridge, "absent flag resets to false");
        let p = NodePatch::from_json(&json!({"processed_by_kcidb_bridge": true})).unwrap();
        assert!(
            patch(&s, p, t("2024-02-02"))
                .unwrap()
                .processed_by_kcidb_bridge
        );
        let p = NodePatch::from_json(&json!({"processed_by_kcidb_bridge": true, "state": "done"}))
            .unwrap();
        let n = patch(&s, p, t("2024-02-02")).unwrap();
        assert!(!n.processed_by_kcidb_bridge, "a state change forces false");
        assert_eq!(n.state, State::Done);
        let p = NodePatch::from_json(&json!({"state": "running"})).unwrap();
        assert!(patch(&n, p, t("2024-02-02")).is_err());
        let p = NodePatch::from_json(&json!({"state": null})).unwrap();
        assert_eq!(patch(&n, p, t("2024-02-02")).unwrap().state, State::Done);
        let p = NodePatch::from_json(&json!({"data": {"arch": 5}})).unwrap();
        assert!(matches!(
            patch(&s, p, t("2024-02-02")),
            Err(Error::Invalid(_))
        ));
    }

    #[test]
    fn batch_values() {
        assert_eq!(batch_value("True"), Ok(true));
        assert_eq!(batch_value("true"), Ok(true));
        assert_eq!(batch_value("false"), Ok(false));
        assert_eq!(batch_value("False"), Ok(false));
        assert!(batch_value("yes").is_err());
        assert_eq!(check_batch_field("processed_by_kcidb_bridge"), Ok(()));
        assert_eq!(
            check_batch_field("state"),
            Err(Error::Invalid("Field not supported".into()))
        );
    }

    #[test]
    fn hierarchy_plan() {
        let root = stored(State::Running);
        let mut root_with = root.clone();
        root_with.treeid = Some("tree-1".into());
        let child_id = ObjectId::new();
        let h = HierarchyBody::from_json(&json!({
            "node": {"kind": "kbuild", "name": "k", "path": ["k"], "owner": "", "data": {"arch": "x86", "junk": 1}},
            "child_nodes": [
                {"node": {"kind": "test", "name": "t1", "path": ["k", "t1"], "submitter": "nope"},
                 "child_nodes": [{"node": {"kind": "test", "name": "t2", "path": ["k", "t1", "t2"], "owner": "bob"}}]},
                {"node": {"kind": "test", "name": "t3", "path": ["k", "t3"], "id": child_id.to_string(), "state": "running"}}
            ]}), t("2024-03-03")).unwrap();
        let ids = IdGenerator::new();
        let plan = plan_hierarchy(&root_with, h, "carol", &ids, t("2024-03-03")).unwrap();
        let names: Vec<&str> = plan.iter().map(|w| w.node.name.as_str()).collect();
        assert_eq!(names, ["k", "t1", "t2", "t3"]);
        assert_eq!(plan[0].node.id, root.id);
        assert!(plan[0].replace && !plan[1].replace && !plan[2].replace && plan[3].replace);
        assert_eq!(plan[1].node.parent, Some(root.id));
        assert_eq!(plan[2].node.parent, Some(plan[1].node.id));
        assert_eq!(plan[3].node.id, child_id);
        assert_eq!(plan[0].node.owner.as_deref(), Some("carol"));
        assert_eq!(plan[2].node.owner.as_deref(), Some("bob"));
        assert!(plan
            .iter()
            .all(|w| w.node.submitter.as_deref() == Some("svc")
                && w.node.treeid.as_deref() == Some("tree-1")));
        let data = plan[0].node.data.as_ref().unwrap();
        assert!(!data.contains_key("junk") && data.contains_key("defconfig"));
        assert_eq!(plan[1].node.data.as_ref().unwrap()["misc"], json!({}));

        let err = HierarchyBody::from_json(
            &json!({"node": {"name": "x", "path": []}, "child_nodes": [{"node": {"path": []}}]}),
            t("2024-03-03"),
        )
        .unwrap_err();
        let Error::Validation(errs) = err else {
            panic!("{err:?}")
        };
        assert_eq!(
            errs.0[0].loc,
            vec![
                json!("body"),
                json!("child_nodes"),
                json!(0),
                json!("node"),
                json!("name")
            ]
        );
        let bad_kind = HierarchyBody::from_json(&json!({"node": {"kind": "kbuild", "name": "k", "path": []}, "child_nodes": [{"node": {"name": "c", "path": []}}]}), t("2024-03-03")).unwrap();
        assert!(plan_hierarchy(&root, bad_kind, "c", &ids, t("2024-03-03")).is_err());
    }

    #[test]
    fn hierarchy_depth_is_limited() {
        let mut v = json!({"node": {"kind": "test", "name": "n", "path": []}});
        for _ in 0..HIERARCHY_MAX_DEPTH {
            v = json!({"node": {"kind": "test", "name": "n", "path": []}, "child_nodes": [v]});
        }
        assert!(
            matches!(HierarchyBody::from_json(&v, t("2024-01-01")), Err(Error::Invalid(m)) if m.contains("too deep"))
        );
    }

    #[test]
    fn timed_rules() {
        let now = t("2024-06-01T12:00:00");
        let none = ChildrenSummary::default();
        let busy = ChildrenSummary { total: 2, done: 1 };
        let mut n = stored(State::Running);
        n.timeout = t("2024-06-01T11:00:00");
        let tr = due_transition(&n, busy, now).unwrap();
        assert_eq!(
            (tr.reason, tr.to, tr.mark_incomplete),
            (TimedReason::Timeout, State::Done, true)
        );
        let after = apply_timed(&n, &tr, now);
        assert_eq!(after.result, Some(NodeResult::Incomplete));
        assert_eq!(after.data.as_ref().unwrap()["error_code"], "node_timeout");
        assert_eq!(due_transition(&after, busy, now), None);

        n.result = Some(NodeResult::Fail);
        assert!(!due_transition(&n, busy, now).unwrap().mark_incomplete);

        let mut a = stored(State::Available);
        a.timeout = t("2024-06-02");
        assert_eq!(due_transition(&a, busy, now), None, "no holdoff, no change");
        a.holdoff = Some(t("2024-06-01T11:59:59"));
        assert_eq!(due_transition(&a, busy, now).unwrap().to, State::Closing);
        assert_eq!(due_transition(&a, none, now).unwrap().to, State::Done);
        let closing = apply_timed(&a, &due_transition(&a, busy, now).unwrap(), now);
        assert_eq!(due_transition(&closing, busy, now), None);
        let tr = due_transition(&closing, ChildrenSummary { total: 2, done: 2 }, now).unwrap();
        assert_eq!((tr.reason, tr.to), (TimedReason::ChildrenDone, State::Done));
        a.holdoff = Some(t("2024-06-01T12:00:01"));
        assert_eq!(
            due_transition(&a, none, now),
            None,
            "holdoff not yet passed"
        );
    }
}
