//! Group commit (SQLite): the commands of many callers share one write transaction.
//!
//! A commit is the expensive part of a write (an fsync with `synchronous=FULL`), and a command
//! alone is a handful of index seeks. So callers queue their commands and a committer task takes whatever has queued up (up to
//! [`MAX_BATCH`]), runs each command under its own savepoint in one transaction, commits once,
//! and only then answers each caller with its own command's outcome. Under light load a batch is
//! one command and nothing waits; under heavy load the batches grow by themselves.
//!
//! Failures stay each caller's own: a command a rule refuses rolls back to its savepoint and its
//! neighbours commit; a transaction PostgreSQL aborts as a serialization failure or deadlock is
//! retried whole; any other store failure of a batch is retried one command per transaction,
//! so a command that breaks the store fails alone, and the committer keeps running.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Mutex, mpsc, oneshot};

use super::{Backend, Item, MAX_ATTEMPTS, Writer, transact};
use crate::command::{Command, Context, Outcome};
use crate::error::{LedgerError, StoreError};

/// Most commands in one transaction: enough to amortise a commit many times over, few enough
/// that the first caller of a batch does not wait long for the last.
const MAX_BATCH: usize = 128;

/// Commands waiting for a committer; past this, callers wait to enqueue (back-pressure).
const QUEUE_DEPTH: usize = 8192;

/// One caller's commands (one, or the batch [`Store::apply`](super::Store::apply) was given),
/// each run under its own savepoint, answered together.
struct Job {
    ctx: Context,
    commands: Vec<Command>,
    now: i64,
    reply: oneshot::Sender<Result<Vec<Result<Outcome, LedgerError>>, StoreError>>,
}

pub(crate) struct GroupCommit {
    queue: mpsc::Sender<Job>,
    stats: Arc<Counters>,
}

/// Transactions the committers ran and the commands in them.
#[derive(Default)]
struct Counters {
    batches: AtomicU64,
    commands: AtomicU64,
}

/// How well group commit is batching: `commands / batches` commands share a commit on average.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitStats {
    pub batches: u64,
    pub commands: u64,
}

impl GroupCommit {
    /// Starts `committers` tasks writing through `pool`. They end when the `GroupCommit` is
    /// dropped (the queue closes) after finishing what was queued.
    pub fn start(pool: Writer, backend: Backend, committers: usize) -> GroupCommit {
        let (queue, jobs) = mpsc::channel(QUEUE_DEPTH);
        let jobs = Arc::new(Mutex::new(jobs));
        let stats = Arc::new(Counters::default());
        for _ in 0..committers.max(1) {
            tokio::spawn(committer(
                pool.clone(),
                backend,
                jobs.clone(),
                stats.clone(),
            ));
        }
        GroupCommit { queue, stats }
    }

    pub fn stats(&self) -> CommitStats {
        CommitStats {
            batches: self.stats.batches.load(Ordering::Relaxed),
            commands: self.stats.commands.load(Ordering::Relaxed),
        }
    }

    /// Applies `commands`, each under its own savepoint, in a transaction shared with other
    /// callers' commands; answered after that transaction committed. `Err` means the store
    /// failed and none of them was applied.
    pub async fn apply(
        &self,
        ctx: Context,
        commands: Vec<Command>,
        now: i64,
    ) -> Result<Vec<Result<Outcome, LedgerError>>, StoreError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            ctx,
            commands,
            now,
            reply,
        };
        if self.queue.send(job).await.is_err() {
            return Err(StoreError::Closed);
        }
        // The committer answers every job it takes; a dropped reply means it died mid-batch,
        // before the commit, so none of the commands was applied.
        answer.await.unwrap_or(Err(StoreError::Closed))
    }
}

/// Takes the next batch off the queue: waits for one job, then takes whatever else is already
/// there (up to [`MAX_BATCH`] commands), without waiting for more.
async fn next_batch(jobs: &Mutex<mpsc::Receiver<Job>>) -> Option<Vec<Job>> {
    let mut jobs = jobs.lock().await;
    let first = jobs.recv().await?;
    let mut commands = first.commands.len();
    let mut batch = vec![first];
    while commands < MAX_BATCH {
        match jobs.try_recv() {
            Ok(job) => {
                commands += job.commands.len();
                batch.push(job);
            }
            Err(_) => break,
        }
    }
    Some(batch)
}

async fn committer(
    pool: Writer,
    backend: Backend,
    jobs: Arc<Mutex<mpsc::Receiver<Job>>>,
    stats: Arc<Counters>,
) {
    while let Some(batch) = next_batch(&jobs).await {
        let commands: usize = batch.iter().map(|job| job.commands.len()).sum();
        tracing::trace!(callers = batch.len(), commands, "group commit");
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats.commands.fetch_add(commands as u64, Ordering::Relaxed);
        match commit_with_retries(&pool, backend, &batch).await {
            Ok(outcomes) => answer(batch, outcomes),
            Err(_) if batch.len() > 1 => {
                // Find the caller whose commands broke the transaction by giving each its own.
                for job in batch {
                    let outcomes =
                        commit_with_retries(&pool, backend, std::slice::from_ref(&job)).await;
                    let _ = job.reply.send(outcomes);
                }
            }
            Err(e) => {
                for job in batch {
                    let _ = job.reply.send(Err(StoreError::Corrupt(e.to_string())));
                }
            }
        }
    }
}

/// Runs the batch in one transaction, again from the start when the store reports a transient
/// failure (a serialization failure or deadlock).
async fn commit_with_retries(
    pool: &Writer,
    backend: Backend,
    batch: &[Job],
) -> Result<Vec<Result<Outcome, LedgerError>>, StoreError> {
    let items: Vec<Item<'_>> = batch
        .iter()
        .flat_map(|job| {
            job.commands.iter().map(|command| Item {
                ctx: &job.ctx,
                command,
                now: job.now,
            })
        })
        .collect();
    let mut attempt = 0;
    loop {
        attempt += 1;
        match transact(pool, backend, &items, false, true).await {
            Err(e) if e.is_retryable() && attempt < MAX_ATTEMPTS => {
                let jitter = rand::random::<u64>() % (5 * attempt as u64);
                tokio::time::sleep(Duration::from_millis(jitter)).await;
            }
            other => return other,
        }
    }
}

/// Hands each caller its own commands' outcomes, in order.
fn answer(batch: Vec<Job>, outcomes: Vec<Result<Outcome, LedgerError>>) {
    let mut outcomes = outcomes.into_iter();
    for job in batch {
        let mine: Vec<_> = outcomes.by_ref().take(job.commands.len()).collect();
        let answer = if mine.len() == job.commands.len() {
            Ok(mine)
        } else {
            Err(StoreError::Corrupt("fewer outcomes than commands".into()))
        };
        // A caller that went away (its request timed out) still had its commands applied.
        let _ = job.reply.send(answer);
    }
}
