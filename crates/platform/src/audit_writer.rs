//! Group commit for the audit log. Every read of personal data must be on the record before the
//! data is returned, and a hash chain admits one writer at a time, so one task appends the
//! drafts that arrive together in a single transaction and answers each caller when it is
//! durable. Under load this turns thousands of tiny transactions into a few larger ones.

use crate::clock::Clock;
use crate::{PlatformError, Result};
use std::sync::Arc;
use store::Store;
use tokio::sync::{mpsc, oneshot};

/// How many drafts may wait; beyond this callers wait for room (back-pressure).
pub const QUEUE_MAX: usize = 4_096;
/// How many drafts go into one transaction.
pub const BATCH_MAX: usize = 512;

type Reply = oneshot::Sender<Result<audit::Entry>>;

#[derive(Clone)]
pub struct AuditWriter {
    tx: mpsc::Sender<(audit::Draft, Reply)>,
}

impl AuditWriter {
    pub fn start(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        let (tx, mut rx) = mpsc::channel::<(audit::Draft, Reply)>(QUEUE_MAX);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH_MAX);
            while rx.recv_many(&mut batch, BATCH_MAX).await > 0 {
                let (drafts, replies): (Vec<_>, Vec<_>) =
                    std::mem::take(&mut batch).into_iter().unzip();
                match store.audit_append_batch(drafts, clock.now_ms()).await {
                    Ok(entries) => {
                        for (reply, e) in replies.into_iter().zip(entries) {
                            let _ = reply.send(Ok(e));
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "audit append failed");
                        for reply in replies {
                            let _ = reply.send(Err(PlatformError::Unexpected(format!(
                                "audit log unavailable: {e}"
                            ))));
                        }
                    }
                }
            }
        });
        AuditWriter { tx }
    }

    pub async fn append(&self, draft: audit::Draft) -> Result<audit::Entry> {
        let (reply, wait) = oneshot::channel();
        self.tx
            .send((draft, reply))
            .await
            .map_err(|_| PlatformError::Unexpected("audit writer stopped".into()))?;
        wait.await
            .map_err(|_| PlatformError::Unexpected("audit writer stopped".into()))?
    }
}
