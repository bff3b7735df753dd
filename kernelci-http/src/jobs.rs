//! Background work inside the server (API.md §10 and the time-driven state
//! machine of MODELS.md §5):
//!
//! - **state machine** (every `state_period_seconds`): nodes whose `timeout` passed
//!   are closed as `done` (result `incomplete`, `error_code` `node_timeout` when they
//!   had no result), `available` nodes whose `holdoff` passed move to `closing` (or
//!   `done` when all descendants are done), `closing` nodes whose descendants are all
//!   done move to `done`. Each transition is a compare-and-swap write (a concurrent
//!   client update wins and the node is looked at again next round) and publishes an
//!   `updated` node event with `previous_state`/`previous_result`, as a PUT by the
//!   pipeline's timeout service would. The rules are core's
//!   [`kernelci_core::state::due_transition`].
//! - **housekeeping** (every `housekeeping_period_seconds`): drop subscriptions idle
//!   longer than `subscription_idle_seconds` (counter `subscriptions_cleaned`), trim
//!   the event history older than `EVENT_HISTORY_TTL_SECONDS`, trim telemetry older
//!   than `TELEMETRY_TTL_SECONDS`.
//! - **node purge** (10 minutes after start, then daily; an hour after a failure):
//!   nodes (but checkouts) created more than `NODE_PURGE_AGE_DAYS` ago (default 180,
//!   as the reference) are deleted in batches of 10 000 (counter `nodes_purged`).
//!
//! **Several servers, one store**: the state machine, the trims and the purge run on
//! one server at a time, the holder of the store's `jobs` lease
//! ([`kernelci_core::store::Store::acquire_lease`]), renewed every
//! [`LEASE_RENEW`] for [`LEASE_TTL`]: when the leader dies another server takes the
//! lease within `LEASE_TTL + LEASE_RENEW`. A transition is a compare-and-swap, so even
//! two servers running a round at once (a lease lost mid-round) write it once and
//! publish one event. Dropping idle subscriptions runs on every server (each holds
//! its own). An embedded store always grants the lease.
//!
//! Every job is also callable once ([`run_state_machine`], [`run_housekeeping`],
//! [`run_purge`]) so
//! tests drive them without waiting.
//!
//! Once the server begins to stop, a round in progress ends early: the state
//! machine before its next node, the purge before its next batch (a transition is
//! never left without its event).

use std::time::Duration;

use kernelci_core::events::{node_event, NodeOp};
use kernelci_core::query::{Mode, Query};
use kernelci_core::state::{apply_timed, due_transition, ChildrenSummary, TimedReason};
use kernelci_core::time::Timestamp;
use kernelci_core::Error as CoreError;
use tokio::task::JoinHandle;

use crate::state::AppState;

/// Purge batch size (as the reference).
const PURGE_BATCH: usize = 10_000;

/// How long the `jobs` lease lasts without renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(5);

/// How often the lease is renewed (and tried by the other servers).
pub const LEASE_RENEW: Duration = Duration::from_secs(1);

/// The running background tasks.
#[derive(Debug, Default)]
pub struct Jobs {
    tasks: Vec<JoinHandle<()>>,
}

impl Jobs {
    /// Waits for the tasks to end (they end when the state begins shutting down).
    pub async fn stop(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Starts the jobs (none when `background_jobs` is off).
pub fn spawn(state: &AppState) -> Jobs {
    let mut jobs = Jobs::default();
    if !state.config().background_jobs {
        return jobs;
    }
    jobs.tasks
        .push(every(state.clone(), LEASE_RENEW, |st| async move {
            renew_lease(&st).await;
        }));
    let period = Duration::from_secs(state.config().state_period_seconds.max(1));
    jobs.tasks
        .push(every(state.clone(), period, |st| async move {
            if !st.is_leader() {
                return;
            }
            let result = run_state_machine(&st, Timestamp::now()).await;
            st.metrics().job_run("state_machine", result.is_ok());
            if let Err(e) = result {
                tracing::warn!(error = %e, "state machine round failed");
            }
        }));
    let period = Duration::from_secs(state.config().housekeeping_period_seconds.max(1));
    jobs.tasks
        .push(every(state.clone(), period, |st| async move {
            let result = run_housekeeping(&st, Timestamp::now()).await;
            st.metrics().job_run("housekeeping", result.is_ok());
            if let Err(e) = result {
                tracing::warn!(error = %e, "housekeeping round failed");
            }
        }));
    if state.config().node_purge_age_days.is_some() {
        jobs.tasks.push(tokio::spawn(purge_loop(state.clone())));
    }
    jobs
}

fn every<F, Fut>(state: AppState, period: Duration, f: F) -> JoinHandle<()>
where
    F: Fn(AppState) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut stopping = state.stopping();
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = crate::state::stopped(&mut stopping) => return,
                _ = ticker.tick() => f(state.clone()).await,
            }
        }
    })
}

/// What one state-machine round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StateRound {
    /// Nodes closed by their timeout.
    pub timed_out: u64,
    /// Nodes moved on by their holdoff.
    pub held_off: u64,
    /// Closing nodes whose descendants are all done.
    pub closed: u64,
}

/// Takes or renews the `jobs` lease; a store error loses it (another server may
/// have taken it meanwhile).
async fn renew_lease(state: &AppState) {
    let held = state
        .store()
        .acquire_lease("jobs", state.server_id(), LEASE_TTL)
        .await;
    match held {
        Ok(held) => state.set_leader(held),
        Err(e) => {
            tracing::warn!(error = %e, "jobs lease not renewed");
            state.set_leader(false);
        }
    }
}

/// Whether the server is stopping (a round in progress ends early).
fn stopping(state: &AppState) -> bool {
    *state.stopping().borrow()
}

/// One round of the time-driven state machine at `now` (nothing once the server is
/// stopping).
pub async fn run_state_machine(state: &AppState, now: Timestamp) -> Result<StateRound, CoreError> {
    let mut round = StateRound::default();
    let now_q = now.to_string();
    // Each query is served by a compound index (state + timeout / holdoff).
    let queries = [
        format!("state=running&timeout__lt={now_q}"),
        format!("state=available&timeout__lt={now_q}"),
        format!("state=closing&timeout__lt={now_q}"),
        format!("state=available&holdoff__lt={now_q}"),
        "state=closing".to_owned(),
    ];
    for q in queries {
        let query = Query::parse_str(&q, Mode::Fast)?;
        for node in state.store().find_nodes(&query).await? {
            if stopping(state) {
                return Ok(round);
            }
            let summary = if node.state == kernelci_core::node::State::Running {
                ChildrenSummary::default()
            } else {
                state.store().descendants_summary(node.id).await?
            };
            let Some(t) = due_transition(&node, summary, now) else {
                continue;
            };
            let Some(stored) = state.store().get_node(node.id).await? else {
                continue;
            };
            // Re-check on the version we are about to replace.
            let Some(t2) = due_transition(&stored.value, summary, now) else {
                continue;
            };
            if t2 != t {
                continue;
            }
            let updated = apply_timed(&stored.value, &t, now);
            let op = NodeOp::Updated {
                previous_state: stored.value.state,
                previous_result: stored.value.result,
            };
            let event = node_event(&updated, op, false, now);
            // The transition and its event in one write where the store allows it:
            // a leader that dies between them cannot leave a transition unannounced.
            match state
                .store()
                .replace_node_with_event(&updated, stored.version, event)
                .await
            {
                Ok((_, logged)) => state.announce(updated.id, logged),
                Err(CoreError::Conflict(_)) | Err(CoreError::NotFound(_)) => continue,
                Err(e) => return Err(e),
            }
            match t.reason {
                TimedReason::Timeout => round.timed_out += 1,
                TimedReason::Holdoff => round.held_off += 1,
                TimedReason::ChildrenDone => round.closed += 1,
            }
        }
    }
    Ok(round)
}

/// What one housekeeping round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HousekeepingRound {
    /// Subscriptions dropped for idleness.
    pub subscriptions_cleaned: u64,
    /// Events trimmed.
    pub events_trimmed: u64,
    /// Telemetry events trimmed.
    pub telemetry_trimmed: u64,
}

/// One housekeeping round at `now`.
pub async fn run_housekeeping(
    state: &AppState,
    now: Timestamp,
) -> Result<HousekeepingRound, CoreError> {
    let cfg = state.config();
    let mut round = HousekeepingRound::default();
    let idle = Duration::from_secs(cfg.subscription_idle_seconds);
    round.subscriptions_cleaned = match state.broker().drop_idle(idle, now).await {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "idle subscriptions not dropped");
            0
        }
    };
    if round.subscriptions_cleaned > 0 {
        state
            .metrics()
            .add("subscriptions_cleaned", round.subscriptions_cleaned);
    }
    if !state.is_leader() && state.config().background_jobs {
        // The trims are the leader's (the subscriptions above are this server's).
        return Ok(round);
    }
    let ttl = i64::try_from(cfg.event_history_ttl_seconds).unwrap_or(i64::MAX);
    round.events_trimmed = state.store().trim_events(now.plus_seconds(-ttl)).await?;
    let ttl = i64::try_from(cfg.telemetry_ttl_seconds).unwrap_or(i64::MAX);
    round.telemetry_trimmed = state.store().trim_telemetry(now.plus_seconds(-ttl)).await?;
    Ok(round)
}

/// Deletes the nodes (but checkouts) created more than `NODE_PURGE_AGE_DAYS` before
/// `now`, in batches of 10 000, oldest first; returns how many (0 when the purge is
/// off). Counted in `nodes_purged`, which appears in `/metrics` once the purge ran.
pub async fn run_purge(state: &AppState, now: Timestamp) -> Result<u64, CoreError> {
    let Some(days) = state.config().node_purge_age_days else {
        return Ok(0);
    };
    let age = i64::try_from(days.saturating_mul(86_400)).unwrap_or(i64::MAX);
    let before = now.plus_seconds(-age);
    let mut purged = 0;
    // Stops between batches once the server is stopping.
    while !stopping(state) {
        let n = state
            .store()
            .delete_nodes_created_before(before, &["checkout"], PURGE_BATCH)
            .await?;
        purged += n;
        if n < PURGE_BATCH as u64 {
            break;
        }
    }
    state.metrics().add("nodes_purged", purged);
    if purged > 0 {
        tracing::info!(purged, days, "purged old nodes");
    }
    Ok(purged)
}

/// The purge schedule of the reference: first 10 minutes after start, then every
/// 24 hours, or 1 hour after a failed run.
async fn purge_loop(state: AppState) {
    let mut stopping = state.stopping();
    let mut wait = Duration::from_secs(600);
    loop {
        tokio::select! {
            _ = crate::state::stopped(&mut stopping) => return,
            _ = tokio::time::sleep(wait) => {}
        }
        if !state.is_leader() {
            // Not this server's turn: look again in a minute.
            wait = Duration::from_secs(60);
            continue;
        }
        let result = run_purge(&state, Timestamp::now()).await;
        state.metrics().job_run("purge", result.is_ok());
        wait = match result {
            Ok(_) => Duration::from_secs(86_400),
            Err(e) => {
                tracing::warn!(error = %e, "node purge failed; retrying in an hour");
                Duration::from_secs(3_600)
            }
        };
    }
}
