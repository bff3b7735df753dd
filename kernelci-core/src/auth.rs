//! Users, groups and the permission rules (AUTH.md §1, §5, §9).
//!
//! Two pure decisions, used by every endpoint (batch ones too):
//!
//! - [`authorize`]: may this caller (or an anonymous one) perform this
//!   [`Operation`] at all? Each operation has one [`Access`] class.
//! - [`may_edit_node`]: may this caller change this stored node?
//!
//! Handlers receive an authenticated [`Principal`], so a permission check is part of
//! their signature and cannot be skipped.

use serde::{Deserialize, Serialize};

use crate::error::{Denied, Error, Result};
use crate::id::ObjectId;
use crate::node::Node;

/// The group whose members may edit every node.
pub const NODE_EDIT_ANY: &str = "node:edit:any";

/// A user account as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    /// Database id (the `sub` of access tokens).
    pub id: ObjectId,
    /// Unique login name.
    pub username: String,
    /// Unique e-mail address.
    pub email: String,
    /// Argon2id or bcrypt hash in PHC / modular crypt format; never returned by the API.
    pub hashed_password: String,
    /// Inactive users cannot log in and their tokens are refused.
    pub is_active: bool,
    /// Superusers pass every check.
    pub is_superuser: bool,
    /// Set by accepting an invite or by an admin.
    pub is_verified: bool,
    /// Embedded copies of the user's groups.
    pub groups: Vec<UserGroup>,
}

impl User {
    /// The public form (`UserRead`): everything but the password hash.
    pub fn to_public_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "email": self.email,
            "is_active": self.is_active,
            "is_superuser": self.is_superuser,
            "is_verified": self.is_verified,
            "username": self.username,
            "groups": self.groups,
        })
    }

    /// The caller this user acts as.
    pub fn principal(&self) -> Principal {
        Principal {
            user_id: self.id,
            username: self.username.clone(),
            is_active: self.is_active,
            is_superuser: self.is_superuser,
            is_verified: self.is_verified,
            groups: self.groups.iter().map(|g| g.name.clone()).collect(),
        }
    }
}

/// A user group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserGroup {
    /// Database id.
    pub id: ObjectId,
    /// Unique name (`node:edit:any`, `runtime:lava-collabora:node-editor`, ...).
    pub name: String,
}

/// An authenticated caller, as the permission rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// User id.
    pub user_id: ObjectId,
    /// Username (compared with node owners).
    pub username: String,
    /// Active flag.
    pub is_active: bool,
    /// Superuser flag.
    pub is_superuser: bool,
    /// Verified flag.
    pub is_verified: bool,
    /// Names of the user's groups.
    pub groups: Vec<String>,
}

impl Principal {
    /// Whether the caller belongs to the group `name`.
    pub fn in_group(&self, name: &str) -> bool {
        self.groups.iter().any(|g| g == name)
    }
}

/// Who may call an operation (AUTH.md §1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, no token needed.
    Public,
    /// Any active user (verification not required).
    User,
    /// Active and verified users.
    Verified,
    /// Active superusers.
    Admin,
}

/// Every operation of the API, for [`Operation::access`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // the variant names are the endpoints
pub enum Operation {
    Root,
    HtmlPage,
    OpenApi,
    InvitePage,
    AcceptInvitePage,
    Icon,
    StaticCss,
    StaticJs,
    Metrics,
    Health,
    Ready,
    Login,
    Logout,
    Register,
    Invite,
    InviteUrl,
    AcceptInvite,
    ForgotPassword,
    ResetPassword,
    UpdatePassword,
    Whoami,
    GetUser,
    DeleteUser,
    PatchMe,
    PatchUser,
    ListUsers,
    ListGroups,
    GetGroup,
    CreateGroup,
    DeleteGroup,
    GetNode,
    ListNodes,
    ListNodesFast,
    CountNodes,
    CreateNode,
    ReplaceNode,
    PatchNode,
    BatchNodeset,
    SubmitHierarchy,
    ListEvents,
    /// `GET /events/stream`: the event log as server-sent events.
    EventStream,
    PostTelemetry,
    GetTelemetry,
    TelemetryStats,
    TelemetryAnomalies,
    KvGet,
    KvSet,
    KvDelete,
    Subscribe,
    Unsubscribe,
    Listen,
    Publish,
    Push,
    Pop,
    SubscriptionStats,
    Backup,
}

impl Operation {
    /// The access class of the operation (AUTH.md §9). Node writes also need
    /// [`may_edit_node`] on the stored node; listening and unsubscribing also need the
    /// subscription to be the caller's.
    pub fn access(self) -> Access {
        use Operation::*;
        match self {
            Root | HtmlPage | OpenApi | InvitePage | AcceptInvitePage | Icon | StaticCss
            | StaticJs | Metrics | Health | Ready | Login | AcceptInvite | ForgotPassword
            | ResetPassword | UpdatePassword | GetNode | ListNodes | ListNodesFast | CountNodes
            | ListEvents | EventStream | GetTelemetry | TelemetryStats | TelemetryAnomalies => {
                Access::Public
            }
            GetUser | PatchMe | ListUsers | CreateNode | ReplaceNode | PatchNode | BatchNodeset
            | SubmitHierarchy | PostTelemetry | KvGet | KvSet | KvDelete | Subscribe
            | Unsubscribe | Listen | Publish | Push | Pop => Access::User,
            Whoami | Logout => Access::Verified,
            Register | Invite | InviteUrl | DeleteUser | PatchUser | ListGroups | GetGroup
            | CreateGroup | DeleteGroup | SubscriptionStats | Backup => Access::Admin,
        }
    }
}

/// May `caller` (`None` = anonymous or a token that did not verify) perform `op`?
///
/// Returns the authenticated principal for non-public operations. Anonymous and
/// inactive callers get [`Denied::Unauthenticated`] (401); a missing verification or
/// superuser flag is [`Denied::NotVerified`] / [`Denied::NotSuperuser`] (403).
pub fn authorize(caller: Option<&Principal>, op: Operation) -> Result<Option<&Principal>> {
    let access = op.access();
    if access == Access::Public {
        return Ok(caller);
    }
    let p = match caller {
        Some(p) if p.is_active => p,
        _ => return Err(Error::Forbidden(Denied::Unauthenticated)),
    };
    match access {
        Access::Verified if !p.is_verified => Err(Error::Forbidden(Denied::NotVerified)),
        Access::Admin if !p.is_superuser => Err(Error::Forbidden(Denied::NotSuperuser)),
        _ => Ok(Some(p)),
    }
}

/// Why an edit is allowed (the first rule of AUTH.md §5 that grants it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EditGrant {
    /// The caller is a superuser.
    Superuser,
    /// The caller owns the node.
    Owner,
    /// The caller is in `node:edit:any`.
    EditAny,
    /// The caller is in one of the node's `user_groups`.
    UserGroup,
    /// The caller is in `runtime:<R>:node-editor` or `runtime:<R>:node-admin` for the
    /// node's `data.runtime`.
    Runtime,
}

/// The node edit rule (AUTH.md §5), evaluated against the node **as stored before
/// the update**: superuser, owner, `node:edit:any`, a group named in the node's
/// `user_groups`, or a runtime editor/admin group of the node's `data.runtime`.
///
/// Denial is [`Denied::NodeEdit`] (401 `Unauthorized to complete the operation` at
/// the edge, as in the reference).
pub fn may_edit_node(caller: &Principal, node: &Node) -> Result<EditGrant> {
    if caller.is_superuser {
        return Ok(EditGrant::Superuser);
    }
    if node.owner.as_deref() == Some(caller.username.as_str()) {
        return Ok(EditGrant::Owner);
    }
    if caller.in_group(NODE_EDIT_ANY) {
        return Ok(EditGrant::EditAny);
    }
    if node.user_groups.iter().any(|g| caller.in_group(g)) {
        return Ok(EditGrant::UserGroup);
    }
    if let Some(runtime) = node.runtime() {
        let editor = format!("runtime:{runtime}:node-editor");
        let admin = format!("runtime:{runtime}:node-admin");
        if caller.in_group(&editor) || caller.in_group(&admin) {
            return Ok(EditGrant::Runtime);
        }
    }
    Err(Error::Forbidden(Denied::NodeEdit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Timestamp;

    fn principal(name: &str, superuser: bool, groups: &[&str]) -> Principal {
        Principal {
            user_id: ObjectId::new(),
            username: name.into(),
            is_active: true,
            is_superuser: superuser,
            is_verified: true,
            groups: groups.iter().map(|g| (*g).to_string()).collect(),
        }
    }

    fn node(owner: &str, user_groups: &[&str], runtime: Option<&str>) -> Node {
        let mut n = Node::new("job", "j", Timestamp::now());
        n.owner = Some(owner.into());
        n.user_groups = user_groups.iter().map(|g| (*g).to_string()).collect();
        if let Some(r) = runtime {
            n.data = serde_json::json!({"runtime": r}).as_object().cloned();
        }
        n
    }

    #[test]
    fn node_edit_matrix() {
        use EditGrant::*;
        let lava = Some("lava-collabora");
        let cases: Vec<(Principal, Node, Option<EditGrant>)> = vec![
            (
                principal("root", true, &[]),
                node("alice", &[], None),
                Some(Superuser),
            ),
            (
                principal("alice", false, &[]),
                node("alice", &[], None),
                Some(Owner),
            ),
            (principal("bob", false, &[]), node("alice", &[], None), None),
            (
                principal("bob", false, &["node:edit:any"]),
                node("alice", &[], None),
                Some(EditAny),
            ),
            (
                principal("bob", false, &["team"]),
                node("alice", &["team"], None),
                Some(UserGroup),
            ),
            (
                principal("bob", false, &["team"]),
                node("alice", &["other"], None),
                None,
            ),
            (
                principal("bob", false, &["runtime:lava-collabora:node-editor"]),
                node("alice", &[], lava),
                Some(Runtime),
            ),
            (
                principal("bob", false, &["runtime:lava-collabora:node-admin"]),
                node("alice", &[], lava),
                Some(Runtime),
            ),
            (
                principal("bob", false, &["runtime:lava-baylibre:node-editor"]),
                node("alice", &[], lava),
                None,
            ),
            (
                principal("bob", false, &["runtime::node-editor"]),
                node("alice", &[], Some("")),
                None,
            ),
            (
                principal("bob", false, &["runtime:lava-collabora:node-editor"]),
                node("alice", &[], None),
                None,
            ),
            (
                principal("bob", false, &["node:edit"]),
                node("alice", &[], None),
                None,
            ),
        ];
        for (who, n, want) in cases {
            let got = may_edit_node(&who, &n).ok();
            assert_eq!(
                got, want,
                "{} {:?} on {:?}",
                who.username, who.groups, n.owner
            );
        }
        assert_eq!(
            may_edit_node(&principal("x", false, &[]), &node("y", &[], None))
                .unwrap_err()
                .to_string(),
            "Unauthorized to complete the operation"
        );
    }

    #[test]
    fn access_classes() {
        let mut user = principal("u", false, &[]);
        user.is_verified = false;
        let admin = principal("a", true, &[]);
        let mut inactive = principal("i", true, &[]);
        inactive.is_active = false;
        let d = |r: Result<Option<&Principal>>| r.err().map(|e| e.to_string());
        assert_eq!(d(authorize(None, Operation::ListNodes)), None);
        assert_eq!(
            d(authorize(None, Operation::CreateNode)).as_deref(),
            Some("Unauthorized")
        );
        assert_eq!(
            d(authorize(Some(&inactive), Operation::CreateNode)).as_deref(),
            Some("Unauthorized")
        );
        assert_eq!(d(authorize(Some(&user), Operation::CreateNode)), None);
        assert_eq!(
            d(authorize(Some(&user), Operation::Whoami)).as_deref(),
            Some("Forbidden")
        );
        assert_eq!(
            d(authorize(Some(&user), Operation::Invite)).as_deref(),
            Some("Forbidden")
        );
        assert_eq!(
            authorize(Some(&user), Operation::Invite).unwrap_err(),
            Error::Forbidden(Denied::NotSuperuser)
        );
        assert_eq!(d(authorize(Some(&admin), Operation::Invite)), None);
        assert_eq!(d(authorize(Some(&inactive), Operation::ListNodes)), None);
        for op in [Operation::Whoami, Operation::Logout] {
            assert_eq!(op.access(), Access::Verified);
        }
    }

    /// AUTH.md §1.2: requirement × caller → outcome (None = allowed).
    #[test]
    fn requirement_table_of_auth_md() {
        let active = principal("u", false, &[]);
        let mut inactive = active.clone();
        inactive.is_active = false;
        let mut unverified = active.clone();
        unverified.is_verified = false;
        let not_super = active.clone();
        let admin_unverified = Principal {
            is_superuser: true,
            is_verified: false,
            ..active.clone()
        };
        let u = Some(Denied::Unauthenticated);
        let table: [(Operation, [Option<Denied>; 5]); 3] = [
            // op (requirement): anonymous, inactive, unverified, not superuser, unverified superuser
            (Operation::CreateNode, [u, u, None, None, None]),
            (
                Operation::Whoami,
                [
                    u,
                    u,
                    Some(Denied::NotVerified),
                    None,
                    Some(Denied::NotVerified),
                ],
            ),
            (
                Operation::CreateGroup,
                [
                    u,
                    u,
                    Some(Denied::NotSuperuser),
                    Some(Denied::NotSuperuser),
                    None,
                ],
            ),
        ];
        for (op, expected) in table {
            let callers = [
                None,
                Some(&inactive),
                Some(&unverified),
                Some(&not_super),
                Some(&admin_unverified),
            ];
            for (caller, want) in callers.into_iter().zip(expected) {
                let got = match authorize(caller, op) {
                    Ok(_) => None,
                    Err(Error::Forbidden(d)) => Some(d),
                    Err(e) => panic!("{e:?}"),
                };
                assert_eq!(got, want, "{op:?} by {caller:?}");
            }
        }
    }

    #[test]
    fn public_user_json_has_no_hash() {
        let u = User {
            id: ObjectId::new(),
            username: "alice".into(),
            email: "alice@example.org".into(),
            hashed_password: "$argon2id$...".into(),
            is_active: true,
            is_superuser: false,
            is_verified: true,
            groups: vec![UserGroup {
                id: ObjectId::new(),
                name: "kernelci".into(),
            }],
        };
        let j = u.to_public_json();
        assert!(j.get("hashed_password").is_none());
        assert_eq!(j["groups"][0]["name"], "kernelci");
        assert_eq!(u.principal().groups, vec!["kernelci".to_string()]);
    }
}
