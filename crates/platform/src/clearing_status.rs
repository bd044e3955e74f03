//! What the console and the command line show of clearing (清分状态): the open window with
//! what has been posted into it so far, the windows before it (closed, with their report's
//! totals, or not yet closed, with what was posted), and a closed window's settlement
//! instructions with what the bank's statement made of them (对账).

use crate::{Caller, Platform, PlatformError, Result};
use store::{
    ClearingWindowTotalsRow, ReconciliationExceptionRow, Role, SettlementInstructionRow,
    WindowRunningRow,
};

/// At most this many windows before the open one are shown.
pub const RECENT_WINDOWS_MAX: usize = 60;
/// Exceptions read to find a window's (the queue is small: differences are rare).
const EXCEPTIONS_READ_MAX: i64 = 10_000;

/// One window as the status shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowStatus {
    /// The window's closing date, `YYYY-MM-DD`.
    pub window: String,
    /// Its first instant and its cut-off (the first instant after it), unix ms.
    pub start_ms: i64,
    pub cut_off_ms: i64,
    /// The stored report's totals, once closed.
    pub closed: Option<ClearingWindowTotalsRow>,
    /// What has been posted into it so far, while it is not closed.
    pub running: Option<WindowRunningRow>,
}

impl WindowStatus {
    /// The report's gross once closed, else purchases plus payments less what was given back
    /// so far (the close computes the same sum).
    pub fn gross_fen(&self) -> i64 {
        match (&self.closed, &self.running) {
            (Some(c), _) => c.gross_fen,
            (None, Some(r)) => r.purchases_fen + r.movements_fen,
            (None, None) => 0,
        }
    }

    /// Purchases, payments, refunds and reversals in it.
    pub fn count(&self) -> i64 {
        match (&self.closed, &self.running) {
            (Some(c), _) => c.count,
            (None, Some(r)) => r.purchases + r.movements,
            (None, None) => 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClearingStatus {
    pub now_ms: i64,
    /// The window open now: it closes at its cut-off.
    pub open: WindowStatus,
    /// The windows before it, the latest first.
    pub recent: Vec<WindowStatus>,
}

/// A closed window's settlement and its reconciliation with the bank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowReconciliation {
    /// The instructions of its settlement file (sent, matched or exception); none if no file
    /// was made.
    pub instructions: Vec<SettlementInstructionRow>,
    /// The exceptions the bank's statements raised on them, oldest first.
    pub exceptions: Vec<ReconciliationExceptionRow>,
}

fn may_read(caller: &Caller) -> Result<()> {
    match caller.role {
        Role::Administrator | Role::ClearingOfficer | Role::Auditor => Ok(()),
        _ => Err(PlatformError::Forbidden(
            "clearing status is for clearing and audit".into(),
        )),
    }
}

impl Platform {
    /// The open window and the `recent` windows before it (at most [`RECENT_WINDOWS_MAX`]).
    pub async fn clearing_status(&self, caller: &Caller, recent: usize) -> Result<ClearingStatus> {
        may_read(caller)?;
        let recent = recent.min(RECENT_WINDOWS_MAX);
        let now_ms = self.clock.now_ms();
        // No window after the open one can be closed, so the latest closed windows hold every
        // closed one of the range.
        let closed = self
            .store
            .clearing_windows(i64::try_from(recent).unwrap_or(0) + 1)
            .await?;
        let mut w = self.windows.window_of(now_ms);
        let mut windows = Vec::with_capacity(recent + 1);
        for _ in 0..=recent {
            let id = w.to_string();
            let closed = closed.iter().find(|c| c.window.window_id == id).cloned();
            let running = match closed {
                Some(_) => None,
                None => Some(self.store.clearing_running(&id).await?),
            };
            windows.push(WindowStatus {
                window: id,
                start_ms: self.windows.start_ms(w),
                cut_off_ms: self.windows.end_ms(w),
                closed,
                running,
            });
            w = self.windows.window_of(self.windows.start_ms(w) - 1);
        }
        let open = windows.remove(0);
        Ok(ClearingStatus {
            now_ms,
            open,
            recent: windows,
        })
    }

    /// A window's settlement instructions and the exceptions raised on them.
    pub async fn window_reconciliation(
        &self,
        caller: &Caller,
        window: &str,
    ) -> Result<WindowReconciliation> {
        may_read(caller)?;
        let instructions = self.store.settlement_instructions_of_window(window).await?;
        let ids: std::collections::HashSet<&str> = instructions
            .iter()
            .map(|i| i.end_to_end_id.as_str())
            .collect();
        let exceptions = if ids.is_empty() {
            Vec::new()
        } else {
            self.store
                .reconciliation_exceptions(None, EXCEPTIONS_READ_MAX)
                .await?
                .into_iter()
                .filter(|e| {
                    e.end_to_end_id
                        .as_deref()
                        .is_some_and(|id| ids.contains(id))
                })
                .collect()
        };
        Ok(WindowReconciliation {
            instructions,
            exceptions,
        })
    }
}
