//! The review queue of the resident base database's feeds (issue 8, item 6): a reported value
//! that contradicts a stored one and comes from a department that is not the field's authority
//! is held here by `residents_apply` instead of overwriting, until an officer accepts or rejects
//! it, once. And the card-side effect of a graduation: student concessions end.

use crate::Result;
use async_trait::async_trait;
use keys::BlindIndex;
use resident::Field;

/// Reviews one call lists at most.
pub const REVIEWS_LIST_MAX: u32 = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewStatus {
    Pending,
    Accepted,
    Rejected,
}

impl ReviewStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewStatus::Pending => "pending",
            ReviewStatus::Accepted => "accepted",
            ReviewStatus::Rejected => "rejected",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(ReviewStatus::Pending),
            "accepted" => Some(ReviewStatus::Accepted),
            "rejected" => Some(ReviewStatus::Rejected),
            _ => None,
        }
    }
}

/// One held value: which resident and field, who reported it in which feed, the value sealed
/// exactly as the resident row would hold it (same vault context), and its decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewRow {
    pub id: i64,
    pub resident_id: i64,
    pub feed_id: i64,
    pub source: String,
    pub field: Field,
    pub mac: BlindIndex,
    pub sealed: Vec<u8>,
    pub status: ReviewStatus,
    pub created_ms: i64,
    pub decided_by: Option<String>,
    pub decided_ms: Option<i64>,
    pub note: Option<String>,
}

#[async_trait]
pub trait FeedReviewStore: Send + Sync {
    /// Reviews after `after_id` in id order, optionally of one status.
    async fn feed_reviews(
        &self,
        status: Option<ReviewStatus>,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<ReviewRow>>;

    async fn feed_review(&self, id: i64) -> Result<Option<ReviewRow>>;

    /// Decides a pending review, once (`Conflict` when already decided, `NotFound` when there
    /// is none). Accepting makes the held value the field's value and writes a history row
    /// (the review's feed, the field's bit, `change_sealed`); both write the audit entry, all
    /// in one transaction.
    #[allow(clippy::too_many_arguments)]
    async fn feed_review_decide(
        &self,
        id: i64,
        accept: bool,
        decided_by: &str,
        note: &str,
        change_sealed: &[u8],
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<ReviewRow>;

    /// Ends a resident's student concession: every card of theirs of type `student` becomes
    /// `ordinary`, with one audit entry, in one transaction. Returns the card numbers changed;
    /// with none, nothing is written.
    async fn cards_end_student_concession(
        &self,
        resident_id: i64,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<Vec<String>>;
}
