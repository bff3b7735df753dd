//! Group inserts: concurrent single-node inserts of one process share a statement.
//!
//! Each node write changes about twenty counter rows, and concurrent writers mostly
//! change the same ones (`kind=test`, `state=done`...). [`InsertGroups`] queues the
//! `insert_node` calls of the process; up to [`MAX_IN_FLIGHT`] drain tasks take what
//! is queued, up to [`MAX_GROUP`] rows at a time, and write each group with one
//! statement (the rows, then every counter row once with the group's summed delta)
//! in one transaction, then answer each caller. A single writer's insert is alone in
//! its group and waits for nobody; with many writers, groups form by themselves
//! while the previous ones commit.
//!
//! - **Atomicity and durability** as the trait asks, per node: a caller is answered
//!   `Ok` only after its group committed. A group is all or nothing; when it fails on
//!   a duplicate id, each of its rows is written again alone, so every caller gets
//!   its own answer (the duplicate's `Conflict`, the others `Ok`).
//! - **Cancellation**: groups run in spawned tasks, so a caller that goes away (its
//!   HTTP client disconnected) never cancels the write of the others; its own node
//!   is still written, as an insert already sent to the database would be.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use deadpool_postgres::{Object, Pool};
use kernelci_core::events::NewEvent;
use kernelci_core::id::ObjectId;
use kernelci_core::{Error, Result};
use tokio::sync::oneshot;

use super::errors::{conv, is_unique_violation};
use super::events::sequence;
use super::nodes::{insert_values, NodeRow, StagedEvents, COPY_FROM};

/// Most rows in one group (one statement: under [`COPY_FROM`]).
pub(super) const MAX_GROUP: usize = COPY_FROM;

/// Most groups written at once (each on its own connection).
pub(super) const MAX_IN_FLIGHT: usize = 2;

/// What a grouped insert answers besides its own success: the sequence id of its
/// event, if it had one (numbered by the group's task after the commit).
pub(super) type Staged = Option<Result<u64>>;

/// One queued insert and where its answer goes.
struct Pending {
    row: NodeRow,
    id: ObjectId,
    event: Option<NewEvent>,
    done: oneshot::Sender<Result<Staged>>,
}

#[derive(Default)]
struct Queue {
    pending: VecDeque<Pending>,
    in_flight: usize,
}

/// The insert queue of one store (see the module docs).
#[derive(Default)]
pub(super) struct InsertGroups {
    queue: Mutex<Queue>,
    /// Groups written, and the rows in them (for [`super::PgStore::insert_group_stats`]).
    groups: AtomicU64,
    rows: AtomicU64,
}

impl InsertGroups {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Every critical section is a push or a drain: consistent after a panic.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Groups written so far and the rows they held.
    pub(super) fn stats(&self) -> (u64, u64) {
        (
            self.groups.load(Ordering::Relaxed),
            self.rows.load(Ordering::Relaxed),
        )
    }

    /// Writes `row` (the node `id`), and `event` if any (committed unsequenced in
    /// the same transaction), in the next group and waits for its commit. Returns
    /// the event's staging number.
    pub(super) async fn insert(
        self: &Arc<Self>,
        pool: &Pool,
        id: ObjectId,
        row: NodeRow,
        event: Option<NewEvent>,
    ) -> Result<Staged> {
        let (done, answer) = oneshot::channel();
        let start = {
            let mut q = self.lock();
            q.pending.push_back(Pending {
                row,
                id,
                event,
                done,
            });
            let start = q.in_flight < MAX_IN_FLIGHT;
            if start {
                q.in_flight += 1;
            }
            start
        };
        if start {
            // The guard exists before the task: a task dropped before it first
            // runs (a runtime shutting down) still gives its slot back.
            tokio::spawn(drain(InFlight::new(self.clone(), pool.clone())));
        }
        answer
            .await
            .unwrap_or_else(|_| Err(Error::Storage("node insert abandoned".into())))
    }
}

/// A drain task's slot among the [`MAX_IN_FLIGHT`]. A task that finds the queue
/// empty gives the slot back itself, under the lock that saw it empty, and disarms
/// this; otherwise (a panic, a task dropped by its runtime) dropping this gives it
/// back, and a task that had started hands what is still queued to a new one.
struct InFlight {
    groups: Arc<InsertGroups>,
    pool: Pool,
    armed: bool,
    started: bool,
}

impl InFlight {
    fn new(groups: Arc<InsertGroups>, pool: Pool) -> Self {
        Self {
            groups,
            pool,
            armed: true,
            started: false,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut q = self.groups.lock();
        q.in_flight = q.in_flight.saturating_sub(1);
        // Only a task that ran respawns: one dropped unstarted belongs to a runtime
        // that is going away.
        if self.started && !q.pending.is_empty() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                q.in_flight += 1;
                drop(q);
                runtime.spawn(drain(InFlight::new(self.groups.clone(), self.pool.clone())));
            }
        }
    }
}

/// Writes groups until the queue is empty.
async fn drain(mut guard: InFlight) {
    guard.started = true;
    loop {
        let group: Vec<Pending> = {
            let mut q = guard.groups.lock();
            if q.pending.is_empty() {
                // Lowered under the same lock that saw the queue empty: an insert
                // queued after this sees a free slot and starts a task.
                q.in_flight = q.in_flight.saturating_sub(1);
                drop(q);
                guard.armed = false;
                return;
            }
            let n = q.pending.len().min(MAX_GROUP);
            q.pending.drain(..n).collect()
        };
        guard.groups.groups.fetch_add(1, Ordering::Relaxed);
        guard
            .groups
            .rows
            .fetch_add(group.len() as u64, Ordering::Relaxed);
        write_group(&guard.pool, group).await;
    }
}

/// Writes one group and answers its callers.
async fn write_group(pool: &Pool, group: Vec<Pending>) {
    let client = match pool.get().await {
        Ok(c) => c,
        Err(e) => {
            let err = Error::Unavailable(e.to_string());
            for p in group {
                let _ = p.done.send(Err(err.clone()));
            }
            return;
        }
    };
    let mut rows = Vec::with_capacity(group.len());
    let mut answers = Vec::with_capacity(group.len());
    for p in group {
        rows.push(p.row);
        answers.push((p.id, p.event, p.done));
    }
    let mut events = StagedEvents::default();
    let encodable = answers
        .iter()
        .filter_map(|(_, event, _)| event.as_ref())
        .all(|e| events.push(e).is_ok());
    if !encodable {
        // Each alone: the one that cannot be encoded gets its error.
        return one_by_one(&client, rows, answers).await;
    }
    match insert_values(&client, &rows, &events).await {
        Ok(staged) => {
            // Numbered here, in the group's task: a caller gone away meanwhile
            // cannot leave its committed event without a number.
            let stages: Vec<i64> = staged.iter().map(|(_, s)| *s).collect();
            let numbered = if stages.is_empty() {
                Ok(Vec::new())
            } else {
                sequence(&client, &stages).await
            };
            for (_, event, done) in answers {
                let answer = event.map(|e| {
                    let id = e.id.bytes().to_vec();
                    let stage = staged.iter().find(|(i, _)| *i == id).map(|(_, s)| *s);
                    match (&numbered, stage) {
                        (Ok(seqs), Some(stage)) => seqs
                            .iter()
                            .find(|(s, _)| *s == stage)
                            .map(|(_, seq)| *seq)
                            .ok_or_else(|| Error::Storage("event left unsequenced".into())),
                        (Err(e), _) => Err(e.clone()),
                        (_, None) => Err(Error::Storage("event not staged".into())),
                    }
                });
                let _ = done.send(Ok(answer));
            }
        }
        Err(e) if is_unique_violation(&e) && rows.len() > 1 => {
            one_by_one(&client, rows, answers).await;
        }
        Err(e) => {
            let unique = is_unique_violation(&e);
            let err = conv(e);
            for (id, _, done) in answers {
                let _ = done.send(Err(if unique { conflict(id) } else { err.clone() }));
            }
        }
    }
}

/// Writes each row of a group alone (after the group failed on a duplicate id, or
/// when an event of it cannot be encoded), so each caller gets its own answer.
async fn one_by_one(client: &Object, rows: Vec<NodeRow>, answers: Vec<Answer>) {
    for (row, (id, event, done)) in rows.iter().zip(answers) {
        let _ = done.send(write_one(client, row, id, event.as_ref()).await);
    }
}

/// One row and its event, alone.
async fn write_one(
    client: &Object,
    row: &NodeRow,
    id: ObjectId,
    event: Option<&NewEvent>,
) -> Result<Staged> {
    let mut events = StagedEvents::default();
    if let Some(e) = event {
        events.push(e)?;
    }
    let staged = insert_values(client, std::slice::from_ref(row), &events)
        .await
        .map_err(|e| single_error(e, id))?;
    Ok(match staged.first() {
        Some((_, stage)) => Some(
            sequence(client, &[*stage])
                .await
                .map(|numbered| numbered.first().map_or(0, |(_, seq)| *seq)),
        ),
        None => None,
    })
}

/// The caller's side of a pending insert, once its row is taken out.
type Answer = (ObjectId, Option<NewEvent>, oneshot::Sender<Result<Staged>>);

fn conflict(id: ObjectId) -> Error {
    Error::Conflict(format!("Node already exists with id: {id}"))
}

fn single_error(e: tokio_postgres::Error, id: ObjectId) -> Error {
    if is_unique_violation(&e) {
        conflict(id)
    } else {
        conv(e)
    }
}
