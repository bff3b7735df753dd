//! The endpoint handlers, one module per area of API.md, and [`dispatch`], which
//! maps an [`Endpoint`] to its handler.

use crate::error::ApiResult;
use crate::request::Req;
use crate::response::Resp;
use crate::routes::Endpoint;
use crate::state::AppState;

pub mod backup;
pub mod event_stream;
pub mod events;
pub mod groups;
pub mod kv;
pub mod nodes;
pub mod pages;
pub mod pubsub;
pub mod telemetry;
pub mod users;

/// Runs the handler of `endpoint`. Counts the request in `http_requests_total` for
/// the endpoints API.md §1.8 counts.
pub async fn dispatch(state: AppState, endpoint: Endpoint, req: Req) -> ApiResult<Resp> {
    use kernelci_core::auth::Operation::*;
    if counted(endpoint) {
        state.metrics().count_request();
    }
    let st = &state;
    match endpoint {
        Root => pages::root(st, &req).await,
        OpenApi => pages::openapi(st, &req).await,
        HtmlPage => pages::html_page(st, &req).await,
        Icon => pages::icon(st, &req).await,
        StaticCss => pages::static_file(st, &req, "css").await,
        StaticJs => pages::static_file(st, &req, "js").await,
        Metrics => pages::metrics(st, &req).await,
        Health => pages::health(st, &req).await,
        Ready => pages::ready(st, &req).await,

        Login => users::login(st, &req).await,
        Logout => users::logout(st, &req).await,
        Register => users::register(st, &req).await,
        InvitePage => users::invite_page(st, &req).await,
        Invite => users::invite(st, &req).await,
        InviteUrl => users::invite_url(st, &req).await,
        AcceptInvitePage => users::accept_invite_page(st, &req).await,
        AcceptInvite => users::accept_invite(st, &req).await,
        ForgotPassword => users::forgot_password(st, &req).await,
        ResetPassword => users::reset_password(st, &req).await,
        UpdatePassword => users::update_password(st, &req).await,
        Whoami => users::whoami(st, &req).await,
        GetUser => users::get_user(st, &req).await,
        DeleteUser => users::delete_user(st, &req).await,
        PatchMe => users::patch_me(st, &req).await,
        PatchUser => users::patch_user(st, &req).await,
        ListUsers => users::list_users(st, &req).await,

        ListGroups => groups::list_groups(st, &req).await,
        GetGroup => groups::get_group(st, &req).await,
        CreateGroup => groups::create_group(st, &req).await,
        DeleteGroup => groups::delete_group(st, &req).await,

        GetNode => nodes::get_node(st, &req).await,
        ListNodes => nodes::list_nodes(st, &req).await,
        ListNodesFast => nodes::list_nodes_fast(st, &req).await,
        CountNodes => nodes::count_nodes(st, &req).await,
        CreateNode => nodes::create_node(st, &req).await,
        ReplaceNode => nodes::replace_node(st, &req).await,
        PatchNode => nodes::patch_node(st, &req).await,
        BatchNodeset => nodes::batch_nodeset(st, &req).await,
        SubmitHierarchy => nodes::submit_hierarchy(st, &req).await,

        ListEvents => events::list_events(st, &req).await,
        EventStream => event_stream::stream_events(st, &req).await,

        PostTelemetry => telemetry::post_telemetry(st, &req).await,
        GetTelemetry => telemetry::get_telemetry(st, &req).await,
        TelemetryStats => telemetry::telemetry_stats(st, &req).await,
        TelemetryAnomalies => telemetry::telemetry_anomalies(st, &req).await,

        KvGet => kv::kv_get(st, &req).await,
        KvSet => kv::kv_set(st, &req).await,
        KvDelete => kv::kv_delete(st, &req).await,

        Subscribe => pubsub::subscribe(st, &req).await,
        Unsubscribe => pubsub::unsubscribe(st, &req).await,
        Listen => pubsub::listen(st, &req).await,
        Publish => pubsub::publish(st, &req).await,
        Push => pubsub::push(st, &req).await,
        Pop => pubsub::pop(st, &req).await,
        SubscriptionStats => pubsub::subscription_stats(st, &req).await,
        Backup => backup::page(st, &req).await,
    }
}

/// The endpoints that do not count in `http_requests_total` (API.md §1.8).
fn counted(endpoint: Endpoint) -> bool {
    use kernelci_core::auth::Operation::*;
    !matches!(
        endpoint,
        Login
            | Logout
            | ForgotPassword
            | ResetPassword
            | Register
            | Whoami
            | GetUser
            | DeleteUser
            | ListNodesFast
    )
}
