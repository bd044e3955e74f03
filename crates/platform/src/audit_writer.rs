//! Group commit for the audit log. Every read of personal data must be on the record before the
//! data is returned, and a hash chain admits one writer at a time, so one task appends the
//! drafts that arrive together in a single transaction and answers each caller when it is
//! durable. Under load this turns thousands of tiny transactions into a few larger ones. The
//! same [`group_writer`] runs the exchange's two writes per call.

use crate::clock::Clock;
use crate::{PlatformError, Result};
use std::sync::Arc;
use store::Store;
use tokio::sync::{mpsc, oneshot};

/// How many drafts may wait; beyond this callers wait for room (back-pressure).
pub const QUEUE_MAX: usize = 4_096;
/// How many drafts go into one transaction.
pub const BATCH_MAX: usize = 512;

pub(crate) type Reply<T> = oneshot::Sender<Result<T>>;

#[derive(Clone)]
pub struct AuditWriter {
    tx: mpsc::Sender<(audit::Draft, Reply<audit::Entry>)>,
}

impl AuditWriter {
    pub fn start(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        let tx = group_writer("audit log", QUEUE_MAX, BATCH_MAX, move |drafts| {
            let (store, now) = (store.clone(), clock.now_ms());
            async move { store.audit_append_batch(drafts, now).await }
        });
        AuditWriter { tx }
    }

    pub async fn append(&self, draft: audit::Draft) -> Result<audit::Entry> {
        send(&self.tx, draft).await
    }
}

/// One group-committing writer (this one's, and the exchange's two): whatever queued while
/// its previous transaction ran — up to `batch_max` — is written by `write` in one
/// transaction, and every caller gets its own answer once it is durable, or the error. At most
/// `queue_max` wait; beyond that callers wait for room.
pub(crate) fn group_writer<I, O, F, Fut>(
    what: &'static str,
    queue_max: usize,
    batch_max: usize,
    write: F,
) -> mpsc::Sender<(I, Reply<O>)>
where
    I: Send + 'static,
    O: Send + 'static,
    F: Fn(Vec<I>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = store::Result<Vec<O>>> + Send,
{
    let (tx, mut rx) = mpsc::channel::<(I, Reply<O>)>(queue_max);
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(batch_max);
        while rx.recv_many(&mut batch, batch_max).await > 0 {
            let (items, replies): (Vec<I>, Vec<Reply<O>>) = batch.drain(..).unzip();
            match write(items).await {
                Ok(answers) => {
                    for (r, a) in replies.into_iter().zip(answers) {
                        let _ = r.send(Ok(a));
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "{what}: group write failed");
                    for r in replies {
                        let _ = r.send(Err(PlatformError::Unexpected(format!(
                            "{what} unavailable: {e}"
                        ))));
                    }
                }
            }
        }
    });
    tx
}

/// Queues `item` on a [`group_writer`] and waits for its answer.
pub(crate) async fn send<I, O>(queue: &mpsc::Sender<(I, Reply<O>)>, item: I) -> Result<O> {
    let stopped = || PlatformError::Unexpected("a group writer stopped".into());
    let (reply, wait) = oneshot::channel();
    queue.send((item, reply)).await.map_err(|_| stopped())?;
    wait.await.map_err(|_| stopped())?
}
